import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from pipelines import metadata, text2image, upscale
from pipelines.errors import StudioError
from pipelines.jobs import Progress
from pipelines.text2image import Text2ImageRequest


class Recorder(Progress):
    def __init__(self):
        super().__init__()
        self.reports = []

    def report(self, step, total):
        self.reports.append((step, total))


def generate(engine, progress=None, **kw):
    request = Text2ImageRequest(**{"prompt": "a red circle", "model": TINY, "steps": 4, "width": 64, "height": 64,
                                   "seed": 3, "enable_hr": True, **kw})
    return text2image.run(engine.manager, request, progress or Progress())


@pytest.mark.parametrize("scale,size", [(2, (128, 128)), (1.5, (96, 96)), (1.25, (80, 80))])
def test_output_size_is_scale_times_base(engine, scale, size):
    result = generate(engine, hr_scale=scale, strength=0.5)
    assert result.images[0].image.size == size


def test_strength_zero_returns_the_upscaled_first_pass_which_is_the_plain_generation(engine):
    plain = generate(engine, enable_hr=False).images[0].image
    upscaled = generate(engine, hr_upscaler="Lanczos", strength=0).images[0].image
    assert np.array_equal(np.asarray(upscaled), np.asarray(plain.resize((128, 128), Image.LANCZOS)))
    latent = generate(engine, hr_upscaler="Latent (bicubic antialiased)", strength=0).images[0].image
    assert latent.size == (128, 128)


def test_second_pass_changes_the_enlargement_and_progress_spans_both_passes(engine):
    progress = Recorder()
    refined = generate(engine, progress, hr_upscaler="Lanczos", strength=0.6, hr_steps=5).images[0]
    plain = generate(engine, hr_upscaler="Lanczos", strength=0).images[0].image
    assert not np.array_equal(np.asarray(refined.image), np.asarray(plain))
    steps = [step / total for step, total in progress.reports]
    assert steps[-1] == 1.0 and 0.4 < max(s for s in steps[:4]) <= 0.5  # first pass is the first half
    params = metadata.parse_parameters(refined.parameters)
    assert (params["Hires upscale"], params["Hires steps"], params["Hires upscaler"]) == ("2", "5", "Lanczos")
    assert params["Denoising strength"] == "0.6" and params["Size"] == "64x64"


@pytest.mark.parametrize("overrides,message", [
    ({"hr_scale": 5}, "Hires upscale must be between"),
    ({"hr_scale": 0.5}, "Hires upscale must be between"),
    ({"width": 1024, "height": 1024, "hr_scale": 4}, "limit is 2048"),
    ({"hr_upscaler": "ESRGAN"}, "Unknown hires upscaler"),
    ({"hr_steps": -1}, "Hires steps"),
    ({"init_image": Image.new("RGB", (64, 64))}, "Hires fix is for text to image"),
])
def test_bad_hires_input_is_a_clear_error(engine, overrides, message):
    with pytest.raises(StudioError, match=message):
        generate(engine, **overrides)


@pytest.fixture(scope="module")
def sr_upscaler(models_dir):
    from tiny_models import save_tiny_ldm_upscaler

    if not (models_dir / "tiny-ldm-x4").exists():
        save_tiny_ldm_upscaler(models_dir / "tiny-ldm-x4")
    return "tiny-ldm-x4"


def test_a_super_resolution_model_upscales_between_the_passes(engine, sr_upscaler):
    """The x4 model runs once, Lanczos brings its output to the hires size; progress covers the
    first pass, the model's steps and the second pass; metadata names the model."""
    plain = generate(engine, enable_hr=False).images[0]
    enlarged = upscale.run(engine.manager, upscale.UpscaleRequest(plain.image, sr_upscaler, scale=4, seed=3),
                           Progress()).images[0].image
    upscaled = generate(engine, hr_upscaler=sr_upscaler, hr_scale=1.5, strength=0).images[0].image
    assert upscaled.size == (96, 96)
    assert np.array_equal(np.asarray(upscaled), np.asarray(enlarged.resize((96, 96), Image.LANCZOS)))
    progress = Recorder()
    refined = generate(engine, progress, hr_upscaler=sr_upscaler, strength=0.5).images[0]
    assert refined.image.size == (128, 128)
    assert not np.array_equal(np.asarray(refined.image), np.asarray(enlarged.resize((128, 128), Image.LANCZOS)))
    fractions = [step / total for step, total in progress.reports]
    assert fractions == sorted(fractions) and fractions[-1] == 1.0  # one bar across both passes, never back
    assert metadata.parse_parameters(refined.parameters)["Hires upscaler"] == sr_upscaler


def test_the_tab_offers_super_resolution_models_as_hires_upscalers(engine, sr_upscaler):
    with pytest.raises(StudioError, match=f"Unknown hires upscaler 'ESRGAN'.*{sr_upscaler}"):
        generate(engine, hr_upscaler="ESRGAN")
    with pytest.raises(StudioError, match="is not an upscaler"):
        upscale.enlarge(engine.manager, TINY, Image.new("RGB", (8, 8)), (16, 16), 1, "", Progress())
