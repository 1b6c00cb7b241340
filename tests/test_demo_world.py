"""The shapes world, its judge and its tokenizer (fast, no model weights needed)."""
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import pytest
from PIL import Image

from pipelines.demo import world
from pipelines.demo.judge import judge
from pipelines.demo.tokenizer import build_tokenizer, world_words


def test_world_covers_the_spec():
    assert {"circle", "square", "triangle"} <= set(world.SHAPES)
    assert {"red", "green", "blue", "yellow", "purple", "orange", "white"} <= set(world.COLORS)
    assert {"black", "white", "gray"} <= set(world.BACKGROUNDS)
    assert all(len(v) == 3 for v in world.PALETTE.values())


def test_sampling_is_seeded_and_varied():
    a = [world.sample_scene(np.random.default_rng(7)) for _ in range(2)]
    assert a[0] == a[1]
    rng = np.random.default_rng(1)
    scenes = [world.sample_scene(rng) for _ in range(600)]
    assert {s.main.shape for s in scenes} == set(world.SHAPES)
    assert {s.main.color for s in scenes} == set(world.COLORS)
    assert {s.background for s in scenes} == set(world.BACKGROUNDS)
    assert all(s.background != s.main.color for s in scenes)
    radii = [s.main.radius for s in scenes]
    xs = [s.main.center[0] for s in scenes]
    assert max(radii) - min(radii) > 8 and max(xs) - min(xs) > 20


def test_render_and_captions():
    scene = world.sample_scene(np.random.default_rng(3), shape="triangle", color="red",
                               background="blue")
    img = world.render(scene)
    assert img.shape == (64, 64, 3) and img.dtype == np.uint8
    assert tuple(img[0, 0]) == world.PALETTE["blue"]
    cx, cy = (int(v) for v in scene.main.center)
    assert tuple(img[cy, cx]) == world.PALETTE["red"]
    assert world.caption(scene) == "a red triangle on a blue background"
    assert world.caption(scene, "short") == "a red triangle"
    assert world.caption(scene, "bare") == "red triangle"
    with pytest.raises(ValueError):
        world.sample_scene(np.random.default_rng(0), color="red", background="red")


def test_scene_extends_to_several_shapes():
    rng = np.random.default_rng(5)
    a = world.sample_shape(rng, shape="circle", color="green")
    b = world.sample_shape(rng, shape="square", color="white")
    scene = world.Scene(background="black", shapes=(a, b))
    assert world.render(scene).shape == (64, 64, 3)
    assert world.caption(scene) == "a green circle and a white square on a black background"


def test_judge_is_accurate_on_held_out_scenes():
    rng = np.random.default_rng(987654)  # not a training seed
    n, ok, fails = 1500, 0, []
    for _ in range(n):
        s = world.sample_scene(rng)
        v = judge(world.render(s))
        good = (v.color, v.shape, v.background) == (s.main.color, s.main.shape, s.background)
        ok += good
        if not good and len(fails) < 5:
            fails.append((world.caption(s), v.color, v.shape, v.background, v.fill))
    assert ok / n >= 0.99, (ok / n, fails)


def test_judge_accepts_pil_any_size_and_reports_geometry():
    s = world.sample_scene(np.random.default_rng(11), shape="square", color="yellow",
                           background="purple")
    img = world.render(s)
    big = Image.fromarray(img).resize((256, 256), Image.NEAREST)
    v = judge(big)
    assert (v.color, v.shape, v.background) == ("yellow", "square", "purple")
    assert v.mask.shape == (64, 64) and v.mask.dtype == bool
    cx, cy = s.main.center
    assert abs(v.centroid[0] - cx) < 2 and abs(v.centroid[1] - cy) < 2
    x, y, w, h = v.bbox
    assert abs(w - 2 * s.main.radius) < 3 and abs(h - 2 * s.main.radius) < 3
    v_float = judge(img.astype(np.float32) / 255.0)
    assert (v_float.color, v_float.shape) == ("yellow", "square")


def test_judge_finds_nothing_on_a_plain_image():
    v = judge(np.full((64, 64, 3), world.PALETTE["gray"], np.uint8))
    assert v.background == "gray" and v.shape is None and not v.found


def test_tokenizer_keeps_world_words_whole_and_never_fails():
    tok = build_tokenizer()
    for w in world_words():
        ids = tok(w, add_special_tokens=False).input_ids
        assert len(ids) == 1, (w, tok.convert_ids_to_tokens(ids))
    ids = tok("a purple triangle on a orange background").input_ids
    assert len(ids) == 7 + 2
    for text in ["Hello, wörld! 🙂", "", "x" * 200, "RED Circle"]:
        enc = tok(text, padding="max_length", max_length=tok.model_max_length, truncation=True)
        assert len(enc.input_ids) == tok.model_max_length
        assert max(enc.input_ids) < len(tok)
    assert tok("RED Circle").input_ids == tok("red circle").input_ids
