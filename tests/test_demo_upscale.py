"""The committed demo upscaler on held-out shape scenes: sharper and closer to the truth than the
pixel baselines, consistent with its input, and seamless when tiled."""

import json

import numpy as np
import pytest
from PIL import Image

from pipelines.demo import world
from pipelines.demo.train import psnr
from pipelines.demo.train_upscale import ASSET_DIR, NAME, evaluate, low_res, sharpness
from pipelines.upscale import UpscaleRequest
from test_upscale import border_jumps, tile_borders

WIDE = world.Scene(background="gray", width=176, height=80, shapes=(
    world.ShapeSpec("circle", "red", (30.3, 40.2), 17.5),
    world.ShapeSpec("square", "blue", (88.6, 37.1), 15.2),
    world.ShapeSpec("triangle", "yellow", (145.2, 44.7), 19.4),
))


@pytest.fixture(scope="module")
def scores():
    return evaluate(ASSET_DIR, n=12, steps=20)


def test_beats_lanczos_and_bicubic_on_held_out_scenes(scores):
    print(scores)
    assert scores["psnr"] > scores["psnr_lanczos"] + 1.0 and scores["psnr"] > scores["psnr_bicubic"] + 1.0
    assert scores["sharpness"] > scores["sharpness_lanczos"] + 0.1
    assert scores["sharpness"] > scores["sharpness_bicubic"] + 0.1
    assert 0.8 < scores["sharpness"] < 1.2  # as sharp as the truth, not over-sharpened


def test_output_downscaled_back_is_the_input(scores):
    assert scores["psnr_downscaled"] > 38


def test_card_records_the_measured_numbers():
    card = json.loads((ASSET_DIR / "studio.json").read_text())
    assert card["name"] == NAME and card["task"] == "upscale" and card["metrics"]["psnr"] > 0
    size = sum(p.stat().st_size for p in ASSET_DIR.rglob("*") if p.is_file())
    assert size < 5 * 2**20


@pytest.fixture(scope="module")
def wide(demo_engine):
    """A scene several tiles wide, upscaled through the studio tiled and whole."""
    truth = world.render(WIDE, 4)
    low = low_res(truth)
    results = {}
    for tile in (48, 0):
        request = UpscaleRequest(image=Image.fromarray(low), model=NAME, tile_size=tile, tile_overlap=16, seed=1)
        saved, _ = demo_engine.submit_upscale(request).outcome()
        results[tile] = np.asarray(saved[0].generated.image)
    return low, truth, results


def test_tiled_upscale_has_no_seams(wide):
    low, truth, results = wide
    tiled = results[48]
    assert tiled.shape == truth.shape == (320, 704, 3)
    for axis, length in ((1, low.shape[1]), (0, low.shape[0])):
        borders = tile_borders(length, 48, 16, 4)
        at, inside = border_jumps(tiled, borders, axis)
        print(axis, at.mean(), inside.mean(), at.max(), inside.max())
        assert at.mean() <= inside.mean() * 1.25 and at.max() <= inside.max()
        # and the jumps in the error field (output - truth) are no larger where tiles meet
        at_error, inside_error = border_jumps(tiled.astype(float) - truth, borders, axis)
        print(axis, at_error.mean(), inside_error.mean())
        assert at_error.mean() <= inside_error.mean() * 1.25


def test_tiled_matches_untiled_and_both_beat_lanczos(wide):
    low, truth, results = wide
    lanczos = np.asarray(Image.fromarray(low).resize(truth.shape[1::-1], Image.LANCZOS))
    print(psnr(results[48], results[0]), psnr(truth, results[48]), psnr(truth, results[0]), psnr(truth, lanczos))
    assert psnr(results[48], results[0]) > 35
    for result in results.values():
        assert psnr(truth, result) > psnr(truth, lanczos)
        assert sharpness(result, truth) > sharpness(lanczos, truth)
