"""Video: the motion UNet on a shared base, text → video (tiny AnimateDiff adapter on a non-demo base),
image → video (tiny SVD), export (MP4/GIF/PNG/JSON), the motion words, and clear errors."""

from __future__ import annotations

import hashlib
import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from pipelines import video
from pipelines.errors import StudioError
from pipelines.export import OutputStore, read_mp4_comment
from pipelines.metadata import read_parameters
from tiny_models import save_tiny_sd
from tiny_video import save_tiny_motion_adapter, save_tiny_spatial_lora, save_tiny_svd

DEMO = "assets/models/shapes-sd"


@pytest.fixture(scope="module")
def video_dir(tmp_path_factory):
    """A models dir: tiny SD base, a motion adapter that fits it, one that does not, and a tiny SVD."""
    folder = tmp_path_factory.mktemp("video-models")
    save_tiny_sd(folder / "tiny-sd")
    save_tiny_motion_adapter(folder / "motion" / "tiny-adapter")
    save_tiny_motion_adapter(folder / "motion" / "wide-adapter", block_out_channels=(64, 128))
    save_tiny_svd(folder / "tiny-svd")
    return folder


@pytest.fixture(scope="module")
def video_engine(video_dir, tmp_path_factory):
    from pipelines.engine import Engine

    return Engine(video_dir, tmp_path_factory.mktemp("video-outputs"))


def run_tab(engine, **values):
    """Submit through the Video tab's own request mapping, as the Generate button does."""
    from studio.tabs.video import request_from_inputs

    inputs = dict(mode_label="Text → video", prompt="", negative="", base_model="", video_model="", image=None,
                  frames=4, fps=8, motion=127, seed=1, sampler="Euler", steps=2, cfg=5.0, noise_aug=0.02,
                  decode_chunk=2, width=64, height=64, frame_noise=None)
    inputs.update(values)
    return engine.submit_video(request_from_inputs(**inputs)).outcome()


def test_motion_unet_shares_the_base_weights_and_starts_as_the_image_model():
    from diffusers import UNet2DConditionModel

    from pipelines.demo.train_motion import make_adapter
    from pipelines.motion_unet import build_motion_unet

    unet = UNet2DConditionModel.from_pretrained(f"{DEMO}/unet", torch_dtype=torch.float32)
    adapter = make_adapter()
    model = build_motion_unet(unet, adapter)
    base_ptrs = {p.data_ptr() for p in unet.parameters()}
    adapter_ptrs = {p.data_ptr() for p in adapter.parameters()}
    own = [n for n, p in model.named_parameters() if p.data_ptr() not in base_ptrs | adapter_ptrs]
    assert own == []  # nothing copied: every tensor is the base's or the adapter's
    frames, x = 4, torch.randn(2, 4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    t, text = torch.tensor([700, 200]), torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        motion = model(x, t, encoder_hidden_states=text.repeat_interleave(frames, 0)).sample
        per_frame = unet(x.permute(0, 2, 1, 3, 4).reshape(8, 4, 16, 16), t.repeat_interleave(frames),
                         encoder_hidden_states=text.repeat_interleave(frames, 0)).sample
    # zero-initialised motion modules + the pooled-text embedding kept: exactly the image model per frame
    assert torch.allclose(motion.permute(0, 2, 1, 3, 4).reshape(8, 4, 16, 16), per_frame, atol=1e-4)


def test_direction_probes_read_every_motion_module_and_train_the_layers_below():
    """The training-only probes (train_motion.DirectionProbes) see each motion module's input, one
    head per module, and their loss reaches the spatial LoRA under the modules: that is what makes
    the direction plain to them."""
    from diffusers import UNet2DConditionModel

    from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

    from pipelines.demo.train_motion import DirectionProbes, add_spatial_lora, make_adapter
    from pipelines.motion_unet import build_motion_unet

    unet = UNet2DConditionModel.from_pretrained(f"{DEMO}/unet", torch_dtype=torch.float32).requires_grad_(False)
    lora = add_spatial_lora(unet)
    adapter = make_adapter()
    model = build_motion_unet(unet, adapter)
    probes = DirectionProbes(model, 4)
    modules = [m for m in adapter.modules() if isinstance(m, AnimateDiffTransformer3D)]
    assert len(probes.heads) == len(modules) == 10  # down 3, mid 1, up 6 (the demo UNet's layout)
    frames, x = 4, torch.randn(2, 4, 4, 16, 16, generator=torch.Generator().manual_seed(0))
    text = torch.randn(2, 16, 64, generator=torch.Generator().manual_seed(1)).repeat_interleave(frames, 0)
    model(x, torch.tensor([999, 900]), encoder_hidden_states=text)
    assert probes.loss(torch.tensor([0, 3]), torch.tensor([False, False])).item() == 0.0  # no caption said it
    model(x, torch.tensor([999, 900]), encoder_hidden_states=text)
    loss = probes.loss(torch.tensor([0, 3]), torch.tensor([True, False]))
    assert torch.isfinite(loss) and loss.item() > 0 and probes.seen == {}
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in lora.values())
    assert all(h.weight.grad is not None for h in probes.heads)


def test_text_to_video_with_a_tiny_adapter_on_a_non_demo_base(video_engine):
    saved, _ = run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model="motion/tiny-adapter",
                       frames=5, fps=6)
    clip = saved[0]
    assert clip.generated.frames.shape == (5, 64, 64, 3) and clip.generated.frames.dtype == np.uint8
    assert clip.generated.frames.std(axis=0).mean() > 0  # frames differ: the motion modules acted
    assert "Motion adapter: motion/tiny-adapter" in clip.generated.parameters
    assert "Model: tiny-sd" in clip.generated.parameters and "Frames: 5" in clip.generated.parameters
    import imageio.v3 as iio
    assert iio.imread(clip.files.mp4).shape == (5, 64, 64, 3)
    # the adapter is shared with the loaded base: its UNet was not loaded again
    assert video_engine.manager.loaded.name == "tiny-sd"


def test_image_to_video_with_tiny_svd_components_loaded_by_path(video_engine):
    picture = Image.new("RGB", (48, 40), (200, 40, 40))
    saved, _ = run_tab(video_engine, mode_label="Image → video", image=picture, video_model="tiny-svd", frames=3,
                       fps=7, motion=60, width=64, height=64, decode_chunk=2)
    clip = saved[0]
    assert clip.generated.frames.shape == (3, 64, 64, 3)
    info = json.loads(clip.files.info.read_text())
    assert info["mode"] == "image" and info["frames"] == 3 and info["fps"] == 7 and info["model"] == "tiny-svd"
    assert info["motion_bucket"] == 60
    assert video_engine.manager.loaded_side("video").name == "tiny-svd"


@pytest.mark.parametrize("values, message", [
    (dict(frames=1), "Frames must be between 2 and 32"),
    (dict(frames=33), "Frames must be between 2 and 32"),
    (dict(fps=0), "FPS must be between 1 and 30"),
    (dict(fps=31), "FPS must be between 1 and 30"),
    (dict(prompt=""), "needs a prompt"),
    (dict(mode_label="Image → video", video_model="tiny-svd"), "needs an image"),
    (dict(video_model="motion/wide-adapter"), "does not fit"),
    (dict(frames=20), "at most 16 frames"),
    (dict(video_model="tiny-svd"), "switch the mode to image → video"),
    (dict(mode_label="Image → video", image=Image.new("RGB", (32, 32)), video_model="motion/tiny-adapter"),
     "switch the mode to text → video"),
    (dict(mode_label="Image → video", image=Image.new("RGB", (32, 32)), video_model="tiny-svd", motion=0),
     "Motion must be between 1 and 255"),
    (dict(decode_chunk=40), "Decode chunk"),
    (dict(video_model="motion/none"), "motion/none"),
])
def test_bad_input_is_a_clear_error(video_engine, values, message):
    values = {"prompt": "a red circle", "base_model": "tiny-sd", "video_model": "motion/tiny-adapter", **values}
    with pytest.raises(StudioError, match=message):
        run_tab(video_engine, **values)


def test_adapter_that_does_not_fit_names_both_models(video_engine):
    with pytest.raises(StudioError) as error:
        run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model="motion/wide-adapter")
    text = str(error.value)
    assert "motion/wide-adapter" in text and "tiny-sd" in text and "[64, 128]" in text and "[32, 64]" in text


def test_an_adapters_spatial_lora_is_on_for_video_and_off_for_images(video_engine, video_dir):
    """A motion adapter may bring a LoRA for the base UNet (spatial_lora.safetensors beside it, as the
    demo adapter does): video runs with it, the next image is exactly what it was before."""
    from pipelines.text2image import Text2ImageRequest

    save_tiny_spatial_lora(save_tiny_motion_adapter(video_dir / "motion" / "lora-adapter"), video_dir / "tiny-sd")

    def image():
        saved, _ = video_engine.submit_text2image(Text2ImageRequest(
            prompt="a red circle", model="tiny-sd", width=64, height=64, steps=2, seed=3), save=False).outcome()
        return np.asarray(saved[0].generated.image)

    def clip(adapter):
        saved, _ = run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model=adapter,
                           frames=2, seed=5)
        return saved[0].generated.frames

    before, plain = image(), clip("motion/tiny-adapter")   # the same adapter weights, without the LoRA
    assert not np.array_equal(clip("motion/lora-adapter"), plain)  # the LoRA acts in video
    assert np.array_equal(image(), before)                          # and is off for the image after it
    assert np.array_equal(clip("motion/tiny-adapter"), plain)       # and for an adapter without one


def test_spatial_lora_loads_back_as_it_was_trained(video_dir, tmp_path):
    """The spatial LoRA covers every linear and convolution layer of the UNet (3x3 convs too) and the
    text encoder's attention and MLP; what the studio loads from spatial_lora.safetensors gives both
    exactly the outputs they had while training, and switching it off gives the base model back."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from pipelines.demo.train_motion import add_spatial_lora, save_spatial_lora
    from pipelines.motion_unet import use_spatial_lora

    base = video_dir / "tiny-sd"

    def load():
        return UNet2DConditionModel.from_pretrained(base / "unet"), CLIPTextModel.from_pretrained(base / "text_encoder")

    def outputs(unet, text_encoder):
        with torch.no_grad():
            states = text_encoder(ids)[0]
            return states, unet(x, t, encoder_hidden_states=states).sample

    trained_unet, trained_text = load()
    torch.manual_seed(1)
    with torch.no_grad():
        for p in add_spatial_lora(trained_unet, trained_text).values():
            p.copy_(torch.randn_like(p).mul(0.3).half())  # the file keeps fp16: start from fp16 values
    names = [n for n, _ in list(trained_unet.named_parameters()) + list(trained_text.named_parameters())]
    assert any(".conv1.lora_A" in n for n in names) and any("self_attn.k_proj.lora_A" in n for n in names)
    save_spatial_lora(trained_unet, tmp_path, trained_text)
    ids, x, t = torch.tensor([[0, 5, 9, 2, 1, 1]]).repeat(2, 1), torch.randn(2, 4, 8, 8), torch.tensor([999, 500])
    unet, text_encoder = load()
    plain = outputs(unet, text_encoder)
    assert use_spatial_lora(unet, tmp_path, "round-trip", text_encoder)
    expected = outputs(trained_unet, trained_text)
    for got, want, before in zip(outputs(unet, text_encoder), expected, plain):
        assert not torch.allclose(before, want, atol=1e-3)
        torch.testing.assert_close(got, want, atol=1e-5, rtol=1e-5)
    assert not use_spatial_lora(unet, None, "none", text_encoder)
    for got, before in zip(outputs(unet, text_encoder), plain):
        torch.testing.assert_close(got, before, atol=0, rtol=0)


def test_shared_frame_noise_starts_every_frame_from_the_same_noise(video_engine, video_dir):
    """With motion modules that do nothing (zero output projections, AnimateDiff's start), each frame is
    the image model's own sample from its starting noise: shared noise gives one picture in every
    frame, independent noise a different one in each; the clip records which it used."""
    from diffusers import MotionAdapter

    adapter = MotionAdapter.from_pretrained(video_dir / "motion" / "tiny-adapter")
    with torch.no_grad():
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.zero_()
    adapter.save_pretrained(video_dir / "motion" / "still-adapter", safe_serialization=True)

    def frames(noise):
        saved, _ = run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model="motion/still-adapter",
                           frames=3, seed=11, frame_noise=noise)
        return saved[0].generated

    shared, independent = frames("shared"), frames("independent")
    def spread(clip):  # the largest difference of any frame from the first, in levels of 255
        return max(int(np.abs(clip.frames[0].astype(int) - f).max()) for f in clip.frames[1:])

    assert spread(shared) <= 1  # the same input at another batch position may round one level apart
    assert spread(independent) > 50
    assert "Frame noise: shared" in shared.parameters and shared.info["frame_noise"] == "shared"
    with pytest.raises(StudioError, match="Frame noise must be one of independent, shared"):
        frames("per-pixel")


def test_a_corrupt_spatial_lora_is_a_clear_error(video_engine, video_dir):
    folder = save_tiny_motion_adapter(video_dir / "motion" / "broken-lora-adapter")
    (folder / "spatial_lora.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(StudioError, match="spatial_lora.safetensors|corrupt|truncated"):
        run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model="motion/broken-lora-adapter")


def test_a_spatial_lora_for_another_base_is_a_clear_error(video_engine, video_dir):
    """A LoRA naming layers the base UNet lacks is refused (diffusers would load the rest and only warn)."""
    from safetensors.torch import load_file, save_file

    folder = save_tiny_motion_adapter(video_dir / "motion" / "foreign-lora-adapter")
    path = save_tiny_spatial_lora(folder, video_dir / "tiny-sd")
    tensors = load_file(str(path))
    save_file({k.replace("attn2.to_k", "attn2.to_k_other"): v for k, v in tensors.items()}, str(path))
    with pytest.raises(StudioError, match="made for another base model.*to_k_other"):
        run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model="motion/foreign-lora-adapter")


def test_a_spatial_lora_whose_text_layers_do_not_fit_is_refused_every_time(video_engine, video_dir):
    """The UNet part loads before the text-encoder part; when the latter fails, the UNet must not keep
    its half, or the next clip would run with half a LoRA instead of the same clear error."""
    from safetensors.torch import load_file, save_file

    folder = save_tiny_motion_adapter(video_dir / "motion" / "bad-text-lora-adapter")
    path = save_tiny_spatial_lora(folder, video_dir / "tiny-sd")
    tensors = load_file(str(path))
    key = next(k for k in tensors if k.startswith("text_encoder.") and "lora_A" in k)
    tensors[key] = torch.zeros(tensors[key].shape[0], tensors[key].shape[1] + 3)
    save_file(tensors, str(path))
    for _ in range(2):
        with pytest.raises(StudioError, match="bad-text-lora-adapter.*does not fit"):
            run_tab(video_engine, prompt="a red circle", base_model="tiny-sd",
                    video_model="motion/bad-text-lora-adapter")


def test_video_models_are_listed_only_for_the_video_tab(video_engine):
    catalog = video_engine.manager.catalog
    assert "tiny-svd" not in catalog.names("text2image") and "tiny-svd" in catalog.names("video")
    assert "motion/tiny-adapter" in video.model_names(video_engine.manager, "text")
    assert "tiny-svd" in video.model_names(video_engine.manager, "image")
    with pytest.raises(StudioError, match="Video tab"):
        video_engine.manager.pipeline(catalog.resolve("tiny-svd"))


def test_mp4_gif_frames_and_json_round_trip(tmp_path):
    import imageio.v3 as iio

    frames = np.zeros((6, 48, 64, 3), np.uint8)  # a gradient with a square moving across it
    frames[..., 0] = np.linspace(0, 255, 64, dtype=np.uint8)[None, None, :]
    frames[..., 2] = np.linspace(255, 0, 48, dtype=np.uint8)[None, :, None]
    for i in range(6):
        frames[i, 16:32, 4 + 8 * i:20 + 8 * i] = (240, 225, 30)
    parameters = 'a red circle moving right\nSteps: 20, Sampler: UniPC, CFG scale: 4, Seed: 7, Model: "a, b"'
    store = OutputStore(tmp_path)
    files = store.save_video(frames, 12, parameters, {"prompt": "a red circle moving right", "seed": 7}, "video", "7")
    assert files.mp4.parent == files.gif.parent and store.contains(files.mp4)
    mp4 = iio.imread(files.mp4)
    assert mp4.shape == (6, 48, 64, 3)
    assert np.abs(mp4.astype(int) - frames).mean() < 6  # lossy, but the same pictures
    import imageio.v2 as iio2
    meta = iio2.get_reader(str(files.mp4)).get_meta_data()
    assert meta["codec"] == "h264" and meta["pix_fmt"].startswith("yuv420p") and meta["fps"] == 12
    assert read_mp4_comment(files.mp4) == parameters.replace("\n", " | ")
    gif = iio.imread(files.gif, index=None)
    assert gif.shape[:3] == (6, 48, 64)
    assert len(files.frames) == 6 and all(p.suffix == ".png" for p in files.frames)
    with Image.open(files.frames[3]) as png:
        assert read_parameters(png) == parameters
        assert np.array_equal(np.asarray(png.convert("RGB")), frames[3])
    info = json.loads(files.info.read_text())
    assert info["seed"] == 7 and info["parameters"] == parameters and info["files"]["mp4"] == files.mp4.name


def test_odd_sizes_are_padded_for_h264(tmp_path):
    import imageio.v3 as iio

    frames = np.full((3, 33, 47, 3), 120, np.uint8)
    files = OutputStore(tmp_path).save_video(frames, 8, "x", {}, "video", "1")
    assert iio.imread(files.mp4).shape == (3, 34, 48, 3)


# ----------------------------------------------------------------------------- motion words
# sha256 over the demo text encoder's tensors as the text-to-image model was trained (token embedding
# rows 0..598): growing the vocabulary must leave every one of them bit-identical
TEXT_ENCODER_SHA = "7d7d8911d8ac2394e30eda3a80ed7aeab1c60d3030ae5dec218df34566f67114"


def test_motion_words_leave_the_image_model_unchanged():
    from safetensors.torch import load_file
    from transformers import CLIPTokenizer

    from pipelines.demo import world
    from pipelines.demo.tokenizer import MOTION_WORDS, build_tokenizer, check_tokenizer

    old, new = build_tokenizer(), build_tokenizer(appended_words=MOTION_WORDS)
    shipped = CLIPTokenizer.from_pretrained(f"{DEMO}/tokenizer")
    check_tokenizer(shipped, appended_words=MOTION_WORDS if "moving</w>" in shipped.get_vocab() else ())
    prompts = [world.prompt_for(c, s, b, f) for c in world.COLORS for s in world.SHAPES
               for b in ("blue", "black") for f in world.CAPTION_FORMS] + ["an image of the shape", ""]
    for prompt in prompts:
        assert old(prompt).input_ids == new(prompt).input_ids == shipped(prompt).input_ids
    assert all(i >= len(old) for w in MOTION_WORDS for i in new(w, add_special_tokens=False).input_ids)
    state = load_file(f"{DEMO}/text_encoder/model.safetensors")
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        if key.endswith("token_embedding.weight"):
            value = value[:len(old)]
        digest.update(key.encode())
        digest.update(value.contiguous().numpy().tobytes())
    assert digest.hexdigest() == TEXT_ENCODER_SHA


def test_moving_clips_keep_the_shape_inside_and_move_the_prompted_way():
    from pipelines.demo import world
    from pipelines.demo.train_motion import motion_verdict

    rng = np.random.default_rng(3)
    for _ in range(40):
        scenes, direction = world.sample_motion(rng, 8)
        for scene in scenes:
            (x, y), r = scene.main.center, scene.main.radius
            assert r + world.MARGIN - 1e-6 <= min(x, y) and max(x, y) <= world.SIZE - r - world.MARGIN + 1e-6
        clip = world.render_clip(scenes)
        s = scenes[0].main
        verdict = motion_verdict(clip, s.color, s.shape, direction)
        assert verdict["direction"] and verdict["travel"] >= world.MIN_TRAVEL - 1
    assert world.motion_caption("red", "circle", "right") == "a red circle moving right"
    assert world.motion_caption("red", "circle", "up", "blue", "canonical") == "a red circle moving up on a blue background"


def test_motion_unet_rebuilt_after_the_base_changes(video_engine, video_dir, tmp_path):
    """The motion UNet is cached with the base; another base model gets its own (the extras are cleared)."""
    shutil.copytree(video_dir / "tiny-sd", video_dir / "tiny-sd-2", dirs_exist_ok=True)
    run_tab(video_engine, prompt="a red circle", base_model="tiny-sd", video_model="motion/tiny-adapter", frames=2)
    first = video_engine.manager.extras["motion-unet:motion/tiny-adapter"]
    run_tab(video_engine, prompt="a red circle", base_model="tiny-sd-2", video_model="motion/tiny-adapter", frames=2)
    second = video_engine.manager.extras["motion-unet:motion/tiny-adapter"]
    assert first is not second and second.conv_in is video_engine.manager.pipeline(
        video_engine.manager.loaded).unet.conv_in
