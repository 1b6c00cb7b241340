"""Model families: tiny random SD 2.x, SDXL (+ refiner), SD3 and Flux.1 folders are detected, load by path and
run text to image, image to image, inpainting (and ControlNet for SDXL and Flux) through the tabs' own code
with their family's defaults; the memory plan; clear refusals where a family has no pipeline."""

import gc
import weakref

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines import families, inpaint, metadata, text2image, xygrid
from pipelines.controlnet import ControlUnit
from pipelines.errors import StudioError
from pipelines.jobs import Progress
from pipelines.memory import GiB, plan_memory
from pipelines.text2image import Text2ImageRequest
from tiny_families import (save_tiny_flux, save_tiny_flux_controlnet, save_tiny_sd2, save_tiny_sd3,
                           save_tiny_sd3_controlnet, save_tiny_sdxl, save_tiny_sdxl_controlnet, save_tiny_sdxl_refiner)

FOLDERS = {"sd2": save_tiny_sd2, "sdxl": save_tiny_sdxl, "sdxl-refiner": save_tiny_sdxl_refiner, "sd3": save_tiny_sd3,
           "flux-dev": save_tiny_flux, "flux-schnell": lambda folder: save_tiny_flux(folder, schnell=True)}
NAME = {key: f"tiny-{key}" for key in FOLDERS}
GENERATING = [key for key in FOLDERS if key != "sdxl-refiner"]


@pytest.fixture(scope="module")
def fam_engine(tmp_path_factory):
    from pipelines.engine import Engine

    models = tmp_path_factory.mktemp("family-models")
    for key, save in FOLDERS.items():
        save(models / NAME[key])
    save_tiny_sdxl_controlnet(models / "controlnet" / "tiny-sdxl-cn", seed=1)
    save_tiny_flux_controlnet(models / "controlnet" / "tiny-flux-cn", seed=1)
    save_tiny_sd3_controlnet(models / "controlnet" / "tiny-sd3-cn", seed=1)
    return Engine(models, tmp_path_factory.mktemp("family-outputs"))


def init_image() -> Image.Image:
    image = Image.new("RGB", (64, 64), (30, 40, 160))
    ImageDraw.Draw(image).ellipse((16, 16, 48, 48), fill=(220, 30, 30))
    return image


def square_mask() -> Image.Image:
    mask = Image.new("L", (64, 64), 0)
    ImageDraw.Draw(mask).rectangle((20, 20, 44, 44), fill=255)
    return mask


def txt2img(engine, key, **kw):
    request = Text2ImageRequest(**{"prompt": "a red circle", "model": NAME[key], "seed": 3, **kw})
    return text2image.run(engine.manager, request, Progress())


def check_image(result, size=(64, 64)):
    array = np.asarray(result.images[0].image)
    assert result.images[0].image.size == size and array.std() > 0 and np.isfinite(array).all()
    return array


@pytest.mark.parametrize("key", list(FOLDERS))
def test_each_family_is_detected_from_its_folder_with_its_defaults(fam_engine, key):
    entry = fam_engine.manager.catalog.resolve(NAME[key])
    family = families.family(key)
    assert entry.family == key and entry.source == "local" and entry.task == "text2image"
    assert entry.sampler == family.sampler and entry.cfg_scale == family.cfg_scale  # the card sets only size/steps
    assert (entry.width, entry.steps) == (64, 3)


def test_the_demo_model_and_plain_sd_folders_stay_sd1(engine):
    assert engine.manager.catalog.resolve("tiny-sd").family_info.key == "sd1"
    demo = [e for e in engine.manager.catalog.entries("text2image") if e.source == "demo"][0]
    assert demo.family_info is families.SD1


def test_family_defaults():
    flux, schnell, sd3, sdxl = (families.family(k) for k in ("flux-dev", "flux-schnell", "sd3", "sdxl"))
    assert (schnell.steps, flux.steps, flux.cfg_scale, sd3.cfg_scale) == (4, 28, 3.5, 4.5)
    assert sdxl.width == 1024 and "1216x832" in sdxl.sizes and families.family("sd2").width == 768
    assert not flux.negative_prompt and sd3.negative_prompt and sdxl.negative_prompt
    assert set(flux.samplers) == set(sd3.samplers) and "DPM++ 2M Karras" not in flux.samplers
    assert "Euler (flow)" not in sdxl.samplers


@pytest.mark.parametrize("keys,family", [
    ({"model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
      "model.diffusion_model.guidance_in.in_layer.bias"}, "flux-dev"),
    ({"double_blocks.0.img_attn.norm.key_norm.scale"}, "flux-schnell"),
    ({"model.diffusion_model.joint_blocks.0.context_block.adaLN_modulation.1.bias"}, "sd3"),
    ({"conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"}, "sdxl"),
    ({"conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"}, "sdxl-refiner"),
    ({"cond_stage_model.model.token_embedding.weight"}, "sd2"),
    ({"cond_stage_model.transformer.text_model.embeddings.position_embedding.weight"}, "sd1"),
])
def test_single_file_family_from_its_keys(keys, family):
    assert families.detect_keys(keys) == family


def test_hub_catalog_names_each_familys_well_known_models(fam_engine):
    by_name = {e.name: e for e in fam_engine.manager.catalog.entries()}
    for name, key in [("stabilityai/stable-diffusion-xl-base-1.0", "sdxl"),
                      ("black-forest-labs/FLUX.1-dev", "flux-dev"),
                      ("black-forest-labs/FLUX.1-schnell", "flux-schnell"), ("stabilityai/stable-diffusion-2-1", "sd2"),
                      ("stabilityai/stable-diffusion-3.5-large", "sd3"),
                      ("stabilityai/stable-diffusion-xl-refiner-1.0", "sdxl-refiner")]:
        assert by_name[name].family == key and by_name[name].source == "hub"
    assert by_name["black-forest-labs/FLUX.1-schnell"].steps == 4


@pytest.mark.parametrize("key", GENERATING)
def test_text_to_image_with_the_familys_defaults(fam_engine, key):
    result = txt2img(fam_engine, key)
    check_image(result)
    pipe = fam_engine.manager.pipeline(fam_engine.manager.entry(NAME[key]), "text2image")
    assert type(pipe).__name__ == {"sd2": "StableDiffusionPipeline", "sdxl": "StableDiffusionXLPipeline",
                                   "sd3": "StableDiffusion3Pipeline"}.get(key, "FluxPipeline")
    fields = metadata.parse_parameters(result.images[0].parameters)
    assert fields["Family"] == key and fields["Sampler"] == families.family(key).sampler
    again = txt2img(fam_engine, key)
    assert np.array_equal(np.asarray(result.images[0].image), np.asarray(again.images[0].image)), "not reproducible"


@pytest.mark.parametrize("key", list(FOLDERS))
def test_image_to_image_with_the_familys_defaults(fam_engine, key):
    rng = np.random.default_rng(0)
    a, b = (Image.fromarray(rng.integers(0, 255, (64, 64, 3), dtype=np.uint8)) for _ in range(2))

    def gap(strength):  # how much the init image still shows in the result
        out_a, out_b = (check_image(txt2img(fam_engine, key, init_image=i, strength=strength, steps=5)).astype(float)
                        for i in (a, b))
        return np.abs(out_a - out_b).mean()

    assert gap(0.4) > 1.5 * gap(1.0)


@pytest.mark.parametrize("key", list(FOLDERS))
def test_inpainting_with_the_familys_defaults_keeps_the_unmasked_pixels(fam_engine, key):
    source = init_image()
    request = inpaint.InpaintRequest(image=source, mask=square_mask(), prompt="a yellow square", model=NAME[key],
                                     seed=2, mask_blur=0)
    result = inpaint.run(fam_engine.manager, request, Progress())
    out = np.asarray(result.images[0].image)
    outside = np.asarray(square_mask()) == 0
    assert np.array_equal(out[outside], np.asarray(source)[outside])
    assert not np.array_equal(out[~outside], np.asarray(source)[~outside])
    assert f"Family: {key}" in result.images[0].parameters


@pytest.mark.parametrize("key,cn", [("sdxl", "controlnet/tiny-sdxl-cn"), ("flux-dev", "controlnet/tiny-flux-cn"),
                                    ("sd3", "controlnet/tiny-sd3-cn")])
def test_controlnet_on_sdxl_flux_and_sd3(fam_engine, key, cn):
    edges = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(edges).rectangle((16, 16, 48, 48), outline="white", width=2)
    off = check_image(txt2img(fam_engine, key, controlnets=[ControlUnit(cn, edges, "none", scale=0.0)]))
    on = check_image(txt2img(fam_engine, key, controlnets=[ControlUnit(cn, edges, "none", scale=1.0)]))
    assert np.abs(on.astype(float) - off).mean() > 0.1  # the map changes the picture
    if key != "flux-dev":  # (Flux's ControlNet pipeline samples the map's latents, so its noise differs)
        assert np.array_equal(off, check_image(txt2img(fam_engine, key)))  # scale 0 is plain text to image
    if key != "sd3":  # diffusers has no SD3 ControlNet image-to-image pipeline (refused: see below)
        check_image(txt2img(fam_engine, key, init_image=init_image(), strength=0.6,
                            controlnets=[ControlUnit(cn, edges, "none")]))


def test_a_controlnet_of_another_family_is_refused_clearly(fam_engine):
    edges = Image.new("RGB", (64, 64), "white")
    with pytest.raises(StudioError, match="another base model family"):
        txt2img(fam_engine, "flux-dev", controlnets=[ControlUnit("controlnet/tiny-sdxl-cn", edges, "none")])


@pytest.mark.parametrize("key,kwargs,message", [
    ("sdxl-refiner", {}, "no text to image pipeline for this family"),
    ("sd3", {"init_image": "image", "controlnets": "unit"}, "no ControlNet pipeline for image to image"),
    ("flux-dev", {"sampler": "DPM++ 2M Karras"}, "does not apply to Flux.1 \\[dev\\]"),
    ("sdxl", {"sampler": "Euler (flow)"}, "does not apply to SDXL"),
])
def test_a_family_without_a_pipeline_or_setting_gets_a_clear_message(fam_engine, key, kwargs, message):
    kwargs = dict(kwargs)
    if kwargs.get("init_image") == "image":
        kwargs["init_image"] = init_image()
    if kwargs.get("controlnets") == "unit":
        kwargs["controlnets"] = [ControlUnit("controlnet/tiny-sd3-cn", init_image(), "none")]
    job = fam_engine.submit_text2image(Text2ImageRequest("a red circle", model=NAME[key], **kwargs), save=False)
    with pytest.raises(StudioError, match=message):
        job.outcome()


@pytest.mark.parametrize("key", ["sd3", "flux-dev"])
@pytest.mark.parametrize("sampler", list(families.FLOW))
def test_every_flow_sampler_runs_on_flow_families(fam_engine, key, sampler):
    result = txt2img(fam_engine, key, sampler=sampler)
    check_image(result)
    assert f"Sampler: {sampler}," in result.images[0].parameters


def test_flux_takes_no_negative_prompt_and_records_distilled_guidance_which_png_info_restores(fam_engine):
    result = txt2img(fam_engine, "flux-dev", negative_prompt="blurry", cfg_scale=2.5)
    assert any("no negative prompt" in w for w in result.warnings)
    text = result.images[0].parameters
    assert "Negative prompt" not in text and "Distilled CFG Scale: 2.5" in text and "CFG scale: 1," in text
    restored = metadata.settings_from_parameters(metadata.parse_parameters(text))
    assert restored["cfg_scale"] == 2.5 and restored["family"] == "flux-dev" and restored["model"] == NAME["flux-dev"]
    # SD3 keeps real CFG and its negative prompt
    sd3 = txt2img(fam_engine, "sd3", negative_prompt="blurry", cfg_scale=5).images[0].parameters
    assert "Negative prompt: blurry" in sd3 and "CFG scale: 5," in sd3 and "Distilled" not in sd3


def test_hires_fix_per_family(fam_engine):
    # Flux's packed latents are unpacked to a grid first, so latent and pixel upscalers both work
    for upscaler in ("Latent", "Lanczos"):
        check_image(txt2img(fam_engine, "flux-dev", enable_hr=True, hr_upscaler=upscaler, hr_scale=1.5, strength=0.5),
                    (96, 96))
    check_image(txt2img(fam_engine, "sdxl", enable_hr=True, hr_scale=1.5, strength=0.5), (96, 96))
    check_image(txt2img(fam_engine, "sd3", enable_hr=True, hr_scale=1.5, strength=0.5), (96, 96))


def test_xy_grid_with_flow_samplers(fam_engine):
    grid = xygrid.XYGridRequest(Text2ImageRequest("a red circle", model=NAME["flux-schnell"], seed=1), "Sampler",
                                ", ".join(families.FLOW))
    result = xygrid.run(fam_engine.manager, grid, Progress())
    assert len(result.images) == 1 + len(families.FLOW)
    bad = xygrid.XYGridRequest(Text2ImageRequest("a red circle", model=NAME["flux-schnell"]), "Sampler", "Euler a")
    with pytest.raises(StudioError, match="does not apply"):
        xygrid.run(fam_engine.manager, bad, Progress())


def test_loading_a_second_family_frees_the_first(fam_engine):
    manager = fam_engine.manager
    first = weakref.ref(manager.pipeline(manager.entry(NAME["sdxl"]), "text2image"))
    manager.pipeline(manager.entry(NAME["flux-schnell"]), "text2image")
    gc.collect()
    assert first() is None and manager.loaded.family == "flux-schnell"


# --- memory plan ---

def test_memory_plan_fits_gives_plain_fp16_on_the_gpu():
    plan = plan_memory(20 * GiB, int(6.5 * GiB), "cuda", label="SDXL")
    assert (plan.precision, plan.offload, plan.vae_tiling) == ("fp16", "none", False)
    assert "fits" in plan.reason


def test_memory_plan_offloads_a_model_larger_than_the_vram_budget():
    plan = plan_memory(12 * GiB, 32 * GiB, "cuda", prefers_bf16=True, largest_component_bytes=9 * GiB,
                       label="Flux.1 [dev]")
    assert (plan.precision, plan.offload, plan.vae_tiling) == ("bf16", "model", True)
    assert "32.0 GiB" in plan.reason and "12.0 GiB VRAM free" in plan.reason
    tiny = plan_memory(4 * GiB, 32 * GiB, "cuda", prefers_bf16=True, largest_component_bytes=22 * GiB)
    assert tiny.offload == "sequential" and "slow" in tiny.reason
    no_bf16 = plan_memory(40 * GiB, 32 * GiB, "cuda", prefers_bf16=True, bf16_supported=False)
    assert no_bf16.precision == "fp16" and "no bf16" in no_bf16.reason


def test_memory_plan_user_override_and_cpu():
    forced = plan_memory(80 * GiB, 2 * GiB, "cuda", override="sequential offload")
    assert forced.offload == "sequential" and "chosen in settings" in forced.reason
    assert plan_memory(None, 2 * GiB, "cpu").precision == "fp32"
    assert plan_memory(None, 2 * GiB, "cpu").offload == "none"
    with pytest.raises(StudioError, match="Unknown memory policy"):
        plan_memory(1, 1, "cuda", override="magic")


def test_the_manager_plans_from_the_models_own_size_and_the_ui_shows_the_plan(fam_engine):
    manager = fam_engine.manager
    entry = manager.entry(NAME["flux-dev"])
    size = families.weights_bytes(entry.location)
    assert 0 < size < 10 * 2**20  # tiny: a few hundred kB at half precision
    manager.vram_probe = lambda device: size // 2  # a simulated GPU with half the model's size free
    try:
        plan = manager.plan_for(entry, device="cuda")
        assert plan.offload in ("model", "sequential") and plan.precision in ("bf16", "fp16")
        manager.vram_probe = lambda device: 100 * GiB
        assert manager.plan_for(entry, device="cuda").offload == "none"
        manager.memory_policy = "model offload"
        assert manager.plan_for(entry, device="cuda").offload == "model"
    finally:
        manager.vram_probe, manager.memory_policy = (lambda device: None), "auto"
    txt2img(fam_engine, "sdxl")
    status = fam_engine.status()
    assert "no CUDA GPU" in status["memory plan"] and status["loaded model family"] == "SDXL"
    manager.memory_plan = plan
    assert "CPU offload" in fam_engine.status()["memory plan"]


# --- in the app: the tabs' own endpoints ---

@pytest.fixture(scope="module")
def fam_served(fam_engine):
    from studio.app import build_app, launch_options

    app = build_app(fam_engine)
    app.queue()
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                           **launch_options(fam_engine))
    yield url
    app.close()


def test_the_tabs_run_a_flow_family_and_refuse_a_missing_pipeline_with_a_message(fam_served, fam_engine):
    from gradio_client import Client
    from gradio_client.exceptions import AppError

    client = Client(fam_served, verbose=False)
    # prompt, negative, model, sampler, steps, cfg, width, height, seed, batch count, batch size, init, strength
    gallery, info = client.predict("a red circle", "", NAME["flux-schnell"], "Euler (flow)", 2, 0, 64, 64, 5, 1, 1,
                                   None, 0.75, api_name="/txt2img")
    assert len(gallery) == 1 and "Family: flux-schnell" in info
    with pytest.raises(AppError, match="no text to image pipeline for this family"):
        client.predict("a red circle", "", NAME["sdxl-refiner"], "Euler a", 2, 6, 64, 64, 5, 1, 1, None, 0.75,
                       api_name="/txt2img")
    message, status = client.predict("", "", "png", 0, 0, 0, 0, "model offload", api_name="/save_settings")
    assert status["memory policy"] == "model offload" and fam_engine.manager.memory_policy == "model offload"
    client.predict("", "", "png", 0, 0, 0, 0, "auto", api_name="/save_settings")


class FakeOffloadPipe:
    """Records what the manager does with a freshly loaded pipeline on a (simulated) CUDA device."""

    def __init__(self):
        self.calls = []
        self.vae = type("Vae", (), {"enable_tiling": lambda s: self.calls.append("vae tiling"),
                                    "disable_tiling": lambda s: None, "disable_slicing": lambda s: None})()

    def enable_model_cpu_offload(self, device=None):
        self.calls.append("model offload")

    def enable_sequential_cpu_offload(self, device=None):
        self.calls.append("sequential offload")

    def to(self, device):
        self.calls.append(f"to {device}")

    def set_progress_bar_config(self, **kw):
        pass

    def disable_attention_slicing(self):
        pass


@pytest.mark.parametrize("free,expected", [(100 * GiB, ["to cuda"]), (1, ["sequential offload", "vae tiling"])])
def test_the_load_path_applies_the_plan_on_cuda_and_status_shows_it(fam_engine, monkeypatch, free, expected):
    import torch

    from pipelines import runtime
    from pipelines.models import ModelManager

    manager = ModelManager(fam_engine.manager.catalog)
    monkeypatch.setattr(manager, "device", torch.device("cuda"))
    monkeypatch.setattr(runtime, "free_vram_bytes", lambda device: free)  # `auto` attention slicing asks too
    manager.vram_probe = lambda device: free
    fake = FakeOffloadPipe()
    monkeypatch.setattr(manager, "_from_source", lambda entry: fake)
    assert manager._load(manager.entry(NAME["sdxl"])) is fake
    assert fake.calls == expected
    assert manager.dtype == torch.float16 and manager.memory_plan.precision == "fp16"
    assert ("fits" in manager.memory_plan.reason) == (free > 1)


def test_a_single_file_checkpoint_is_detected_from_its_keys_in_the_models_dir(fam_engine):
    import torch
    from safetensors.torch import save_file

    models = fam_engine.manager.catalog.models_dir
    keys = ["model.diffusion_model.double_blocks.0.img_attn.norm.key_norm.scale",
            "model.diffusion_model.guidance_in.in_layer.bias"]
    save_file({k: torch.zeros(2) for k in keys}, str(models / "my-flux.safetensors"))
    try:
        entry = fam_engine.manager.catalog.resolve("my-flux.safetensors")
        assert entry.family == "flux-dev" and entry.steps == 28 and entry.sampler == "Euler (flow)"
        assert families.family(entry.family).single_file_class == "FluxPipeline"
        with pytest.raises(StudioError, match="needs its model config"):  # offline, without a config folder
            txt2img(fam_engine, "flux-dev", model="my-flux.safetensors")
    finally:
        (models / "my-flux.safetensors").unlink()


def test_a_long_prompt_is_measured_against_the_t5_encoder_on_flow_families(fam_engine):
    words = "a red circle " * 4  # ~42 tokens with these character-level tokenizers: over CLIP's 32, within T5's 64
    assert any("tokens" in w for w in txt2img(fam_engine, "sdxl", prompt=words).warnings)
    assert not any("tokens" in w for w in txt2img(fam_engine, "flux-schnell", prompt=words).warnings)
