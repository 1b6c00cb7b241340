import numpy as np
import pytest
from PIL import Image, ImageDraw

from conftest import TINY
from pipelines import metadata, text2image
from pipelines.controlnet import ControlUnit, controlnet_names
from pipelines.errors import StudioError
from pipelines.jobs import Progress
from pipelines.text2image import Text2ImageRequest
from tiny_models import save_tiny_controlnet


@pytest.fixture(scope="module")
def controlnets(models_dir):
    save_tiny_controlnet(models_dir / "controlnet" / "tiny-cn-a", seed=1)
    save_tiny_controlnet(models_dir / "controlnet" / "tiny-cn-b", seed=2)
    save_tiny_controlnet(models_dir / "controlnet" / "other-family", cross_attention_dim=64)
    return "controlnet/tiny-cn-a", "controlnet/tiny-cn-b"


def edges(box=(16, 16, 48, 48)) -> Image.Image:
    image = Image.new("RGB", (64, 64), "black")
    ImageDraw.Draw(image).rectangle(box, outline="white", width=2)
    return image


def generate(engine, units, **kw):
    request = Text2ImageRequest(**{"prompt": "a red square", "model": TINY, "steps": 3, "width": 64, "height": 64,
                                   "seed": 4, "sampler": "Euler a", "controlnets": units, **kw})
    return np.asarray(text2image.run(engine.manager, request, Progress()).images[0].image).astype(int)


def test_scale_zero_reproduces_plain_text_to_image(engine, controlnets):
    plain = generate(engine, [])
    assert np.array_equal(generate(engine, [ControlUnit(controlnets[0], edges(), "none", scale=0.0)]), plain)
    assert np.abs(generate(engine, [ControlUnit(controlnets[0], edges(), "none", scale=1.0)]) - plain).mean() > 1


def test_two_controlnets_run_and_both_maps_influence_the_result(engine, controlnets):
    a, b = controlnets
    both = generate(engine, [ControlUnit(a, edges(), "none"), ControlUnit(b, edges(), "none")])
    moved_first = generate(engine, [ControlUnit(a, edges((4, 4, 30, 30)), "none"), ControlUnit(b, edges(), "none")])
    moved_second = generate(engine, [ControlUnit(a, edges(), "none"), ControlUnit(b, edges((4, 4, 30, 30)), "none")])
    # an ignored map would leave the image bit-identical; the tiny random UNet damps the change to ~0.6 levels
    assert np.abs(both - moved_first).mean() > 0.1 and np.abs(both - moved_second).mean() > 0.1


def test_controlnet_from_a_local_folder_with_preprocessor_and_metadata(engine, controlnets):
    source = Image.new("RGB", (128, 128), (20, 20, 80))
    ImageDraw.Draw(source).ellipse((30, 30, 100, 100), fill=(250, 250, 250))
    request = Text2ImageRequest("a red circle", model=TINY, steps=2, width=64, height=64, seed=1, controlnets=[
        ControlUnit(controlnets[0], source, "canny", 50, 150, scale=0.8, start=0.1, end=0.9)])
    text = text2image.run(engine.manager, request, Progress()).images[0].parameters
    fields = metadata.parse_parameters(text)
    assert fields["ControlNet 0"] == ("Module: canny, Model: controlnet/tiny-cn-a, Weight: 0.8, Threshold A: 50, "
                                      "Threshold B: 150, Guidance Start: 0.1, Guidance End: 0.9")


def test_a_local_folder_controlnet_is_listed_and_runs_through_the_tabs_job_path(engine, controlnets):
    # the tab lists controlnet_names() and submits a Text2ImageRequest to the engine's job queue
    assert set(controlnets) <= set(controlnet_names(engine.manager.catalog.models_dir))
    job = engine.submit_text2image(Text2ImageRequest("a red square", model=TINY, steps=2, width=64, height=64,
                                                     seed=3, controlnets=[ControlUnit(controlnets[1], edges())]))
    saved, _warnings = job.outcome()
    assert "Model: controlnet/tiny-cn-b" in saved[0].generated.parameters


def test_integer_scales_from_a_ui_or_json_client_work(engine, controlnets):
    assert generate(engine, [ControlUnit(controlnets[0], edges(), "none", scale=1, start=0, end=1)]).shape == (64, 64, 3)


def test_controlnet_with_image_to_image(engine, controlnets):
    result = generate(engine, [ControlUnit(controlnets[0], edges(), "none")], init_image=edges(), strength=0.6)
    assert result.shape == (64, 64, 3)


@pytest.mark.parametrize("unit,message", [
    (ControlUnit("controlnet/tiny-cn-a", None), "No control image"),
    (ControlUnit("controlnet/other-family", edges(), "none"), "another base model family"),
    (ControlUnit("demo/shapes-canny", edges(), "none"), "another base model family"),  # built for the demo base
    (ControlUnit("controlnet/tiny-cn-a", edges(), start=0.8, end=0.2), "start must be below end"),
    (ControlUnit("controlnet/tiny-cn-a", edges(), scale=3), "scale must be between"),
    (ControlUnit("controlnet/missing", edges()), "Unknown ControlNet"),
    (ControlUnit("controlnet/tiny-cn-a", Image.new("RGB", (640, 20))), "too far from"),
])
def test_bad_controlnet_input_is_a_clear_error(engine, controlnets, unit, message):
    with pytest.raises(StudioError, match=message):
        generate(engine, [unit])
