"""Super-resolution: tiling and blending, tiny SD x4 / LDM x4 upscalers loaded by path, inputs, errors."""

import cv2
import numpy as np
import pytest
from PIL import Image

from pipelines import metadata
from pipelines.errors import StudioError
from pipelines.models import GENERATE, UPSCALE
from pipelines.upscale import (MAX_OUTPUT_PIXELS, UpscaleRequest, axis_tiles, run, tile_starts,
                               upscale_tiled)
from studio.tabs import upscale as upscale_tab
from tiny_models import save_tiny_ldm_upscaler, save_tiny_sd_upscaler

SD_X4, LDM_X4 = "tiny-sd-x4", "tiny-ldm-x4"


@pytest.fixture(scope="module")
def upscalers(models_dir):
    for name, save in ((SD_X4, save_tiny_sd_upscaler), (LDM_X4, save_tiny_ldm_upscaler)):
        if not (models_dir / name).exists():
            save(models_dir / name)
    return models_dir


def border_jumps(image: np.ndarray, shared: np.ndarray, axis: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean |difference| between neighbouring columns (axis 1) or rows (axis 0): where tiles meet
    (`shared`: output positions covered by two tiles, and their edges), and inside single tiles."""
    diffs = np.abs(np.diff(image.astype(np.float64), axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
    at = shared[:-1] | shared[1:]
    return diffs[at], diffs[~at]


def tile_borders(length: int, tile: int, overlap: int, scale: int) -> np.ndarray:
    """Output positions along one axis that two tiles cover, plus every tile's first and last pixel."""
    cover = np.zeros(length * scale, int)
    edges = np.zeros(length * scale, bool)
    for start, size, _ in axis_tiles(length, tile, overlap, scale):
        cover[start * scale:(start + size) * scale] += 1
        edges[[start * scale, (start + size) * scale - 1]] = True
    edges[[0, -1]] = False
    return (cover > 1) | edges


def smooth_image(height: int, width: int) -> np.ndarray:
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    return np.stack([0.5 + 0.4 * np.sin(25 * x + y), 0.3 + 0.5 * x * y, 0.5 + 0.3 * np.cos(20 * y)], -1)


def disagreeing_tiles(scale: int):
    """An upscaler whose tiles disagree (each one a different brightness), like independent samples."""
    calls = []

    def upscale(tile: np.ndarray) -> np.ndarray:
        calls.append(tile.shape)
        enlarged = cv2.resize(tile, (tile.shape[1] * scale, tile.shape[0] * scale), interpolation=cv2.INTER_CUBIC)
        return enlarged + 0.02 * (len(calls) % 2)  # 5 grey levels apart

    return upscale


def test_tiles_cover_the_image_and_overlap_by_at_least_the_overlap():
    for length, tile, overlap in ((100, 32, 8), (64, 64, 16), (65, 64, 16), (33, 16, 0), (500, 128, 32)):
        starts = tile_starts(length, tile, overlap)
        assert starts[0] == 0 and starts[-1] + min(tile, length) == length
        for a, b in zip(starts, starts[1:]):
            assert tile - (b - a) >= overlap
    assert tile_starts(20, 64, 16) == [0]


def test_feather_weights_sum_to_one_everywhere():
    for length, tile, overlap, scale in ((100, 32, 8, 4), (97, 40, 12, 2), (50, 50, 10, 4)):
        total = np.zeros(length * scale)
        for start, size, weights in axis_tiles(length, tile, overlap, scale):
            total[start * scale:(start + size) * scale] += weights
        np.testing.assert_allclose(total, 1.0)


def test_feathered_tiles_leave_no_seam_where_butted_tiles_do():
    image, scale = smooth_image(60, 150), 4
    blended = upscale_tiled(image, disagreeing_tiles(scale), scale, tile=40, overlap=12)
    at, inside = border_jumps(blended, tile_borders(150, 40, 12, scale), axis=1)
    assert at.max() <= 1.25 * inside.max() and at.mean() <= 1.25 * inside.mean()  # as smooth as the picture
    butted = upscale_tiled(image, disagreeing_tiles(scale), scale, tile=40, overlap=0)
    at, inside = border_jumps(butted, tile_borders(150, 40, 0, scale), axis=1)
    assert at.max() > 2 * inside.max()  # the measure does see a seam when there is one


def test_tiled_matches_untiled_for_a_tile_local_upscaler():
    image, scale = smooth_image(70, 90), 4

    def bicubic(tile):
        return cv2.resize(tile, (tile.shape[1] * scale, tile.shape[0] * scale), interpolation=cv2.INTER_CUBIC)

    whole = upscale_tiled(image, bicubic, scale, tile=0, overlap=0)
    tiled = upscale_tiled(image, bicubic, scale, tile=32, overlap=8)
    assert tiled.shape == whole.shape == (280, 360, 3)
    assert np.abs(tiled - whole).max() < 0.01


def test_upscalers_are_their_own_catalog_task(upscalers, engine):
    catalog = engine.manager.catalog
    assert {SD_X4, LDM_X4} <= set(catalog.names(UPSCALE))
    assert SD_X4 not in catalog.names() and "Shapes upscaler (x4)" not in catalog.names(GENERATE)
    assert catalog.resolve(SD_X4).pipeline_class == "StableDiffusionUpscalePipeline"
    with pytest.raises(StudioError, match="is an upscaler: use it in the Super-resolution tab"):
        engine.manager.pipeline(catalog.resolve(LDM_X4))
    with pytest.raises(StudioError, match="not an upscaler"):
        run(engine.manager, UpscaleRequest(image=Image.new("RGB", (8, 8)), model="tiny-sd"), None)


def tab_request(path, model, tile, **extra):
    args = dict(image_path=str(path), model=model, scale=4, prompt="a red circle", negative="", noise_level=20,
                steps=2, cfg=7.0, seed=3, tile=tile, overlap=8)
    return upscale_tab.request_from_inputs(**{**args, **extra})


@pytest.mark.parametrize("model", [SD_X4, LDM_X4])
def test_diffusion_upscalers_run_tiled_and_untiled_from_the_tab(upscalers, engine, tmp_path, model):
    source = Image.fromarray(np.random.default_rng(1).integers(0, 255, (27, 45, 3), dtype=np.uint8))
    source.save(tmp_path / "in.png", pnginfo=metadata.png_info("a red circle\nSteps: 4, Seed: 5, Model: tiny-sd"))
    results = {}
    for tile in (0, 16):
        saved, _ = engine.submit_upscale(tab_request(tmp_path / "in.png", model, tile)).outcome()
        image = Image.open(saved[0].path)
        assert image.size == (180, 108) and image.mode == "RGB"
        params = metadata.parse_parameters(metadata.read_parameters(image))
        assert params["Prompt"] == "a red circle" and params["Seed"] == "5"  # the source's own parameters
        assert params["Upscaler"] == model and params["Upscale by"] == "4" and params["Upscaled size"] == "180x108"
        results[tile] = np.asarray(image)
    assert results[0].std() > 1 and results[16].std() > 1  # real pictures, not blank
    if model == SD_X4:
        assert params["Upscale prompt"] == "a red circle" and params["Upscale noise level"] == "20"


def test_progress_counts_every_tile_step(upscalers, engine):
    job = engine.submit_upscale(UpscaleRequest(image=Image.new("RGB", (40, 20), "red"), model=LDM_X4, steps=2,
                                               tile_size=16, tile_overlap=4))
    job.outcome()
    assert (job.step, job.total) == (6 * 2, 6 * 2)  # 3 x 2 tiles, 2 steps each


@pytest.mark.parametrize("mode,size", [("RGB", (33, 17)), ("RGBA", (20, 31)), ("L", (25, 25)), ("LA", (9, 14)),
                                       ("P", (16, 10))])
@pytest.mark.parametrize("model", ["Lanczos", LDM_X4])
def test_any_mode_and_size_gives_exactly_scale_times_the_input(upscalers, engine, mode, size, model):
    rng = np.random.default_rng(0)
    source = Image.fromarray(rng.integers(0, 255, (size[1], size[0], 4), dtype=np.uint8), "RGBA")
    source = source.convert(mode)
    request = UpscaleRequest(image=source, model=model, scale=4, steps=1, tile_size=16, tile_overlap=4)
    saved, _ = engine.submit_upscale(request).outcome()
    result = Image.open(saved[0].path)
    assert result.size == (size[0] * 4, size[1] * 4)
    assert result.mode == {"RGB": "RGB", "RGBA": "RGBA", "L": "L", "LA": "LA", "P": "RGB"}[mode]
    if "A" in mode:  # the transparency is upscaled with the picture
        alpha = np.asarray(result.getchannel("A").resize(size, Image.BOX), np.float64)
        assert np.abs(alpha - np.asarray(source.getchannel("A"), np.float64)).mean() < 20


def test_baselines_take_other_scales():
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (13, 21, 3), dtype=np.uint8))
    for model in ("Lanczos", "Bicubic"):
        for scale in (2, 3):
            result = run(None, UpscaleRequest(image=image, model=model, scale=scale), None).images[0]
            assert result.image.size == (21 * scale, 13 * scale)
            assert f"Upscaler: {model}" in result.parameters and f"Upscale by: {scale}" in result.parameters


@pytest.mark.parametrize("request_args,message", [
    (dict(image=None), "No image was given"),
    (dict(model=LDM_X4, scale=2), "upscales by 4 only"),
    (dict(model="Lanczos", scale=5), "upscales by 2 or 3 or 4 only"),
    (dict(image=Image.new("RGB", (1100, 1100)), model="Lanczos"), "the limit is 16 megapixels"),
    (dict(image=Image.new("RGB", (2000, 600)), model=LDM_X4), "the limit is 16 megapixels"),
    (dict(model=LDM_X4, tile_size=8), "Tile size must be 0"),
    (dict(model=LDM_X4, tile_size=32, tile_overlap=20), "Tile overlap must be between 0 and half"),
    (dict(model=SD_X4, noise_level=400), "Noise level must be between 0 and 350"),
    (dict(model=LDM_X4, steps=0), "Steps must be between"),
    (dict(model="no-such-upscaler"), "Unknown model"),
])
def test_bad_input_is_a_clear_error(upscalers, engine, request_args, message):
    request = UpscaleRequest(**{"image": Image.new("RGB", (16, 16), "blue"), **request_args})
    with pytest.raises(StudioError, match=message):
        engine.submit_upscale(request).outcome()
    assert MAX_OUTPUT_PIXELS == 4096 * 4096


def test_metadata_without_a_source_is_the_upscale_step_alone():
    result = run(None, UpscaleRequest(image=Image.new("RGB", (10, 10)), model="Lanczos", scale=2), None).images[0]
    params = metadata.parse_parameters(result.parameters)
    assert params["Prompt"] == "" and params["Upscaler"] == "Lanczos" and params["Upscaled size"] == "20x20"
    assert params["Version"].startswith("Diffusion Studio")
