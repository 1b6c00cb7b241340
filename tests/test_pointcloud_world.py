"""The 3D shapes world and its geometric judge: the judge must be right before it judges a model."""

import numpy as np
import pytest

from pipelines.demo import judge3d, world3d
from pipelines.demo.tokenizer import build_tokenizer, check_tokenizer
from pipelines.demo.world import COLORS


def test_clouds_are_seeded_sized_and_captioned():
    a = world3d.sample_cloud(np.random.default_rng(7), shape="torus", color="red")
    b = world3d.sample_cloud(np.random.default_rng(7), shape="torus", color="red")
    assert np.array_equal(a.points, b.points) and np.array_equal(a.colors, b.colors)
    assert a.points.shape == (world3d.POINTS, 3) and a.points.dtype == np.float32 and a.colors.dtype == np.uint8
    assert np.abs(a.points).max() <= world3d.MAX_SCALE + 1e-6
    assert world3d.caption(a) == "a red torus" and world3d.caption(a, "bare") == "red torus"
    assert np.abs(a.colors.astype(int) - COLORS["red"]).max() <= world3d.COLOR_NOISE


def test_every_caption_word_is_one_token():
    tokenizer = build_tokenizer(extra_words=world3d.SHAPES3D)
    check_tokenizer(tokenizer, world3d.SHAPES3D)
    assert len(tokenizer("a purple cylinder").input_ids) == 5  # start, 3 words, end


def test_judge_is_right_on_at_least_99_percent_of_ground_truth_clouds():
    rng = np.random.default_rng(123)
    right, total = 0, 0
    for color in COLORS:
        for shape in world3d.SHAPES3D:
            for _ in range(6):
                cloud = world3d.sample_cloud(rng, shape=shape, color=color)
                right += judge3d.judge(cloud.points, cloud.colors).matches(shape, color)
                total += 1
    assert right / total >= 0.99, f"{right}/{total}"


@pytest.mark.parametrize("shape", world3d.SHAPES3D)
def test_judge_tolerates_fewer_points_an_offset_and_a_little_noise(shape):
    rng = np.random.default_rng(5)
    for _ in range(4):
        cloud = world3d.sample_cloud(rng, shape=shape, color="green", n=256)
        noisy = cloud.points + rng.normal(0, 0.01, cloud.points.shape) + np.array([0.05, -0.04, 0.03])
        assert judge3d.judge(noisy, cloud.colors).shape == shape


def test_judge_rejects_what_is_no_primitive():
    rng = np.random.default_rng(1)
    blob = rng.uniform(-0.8, 0.8, size=(512, 3))  # a filled box of points: no surface
    assert judge3d.judge_shape(blob)[0] == "unknown"
    ball = rng.normal(0, 0.4, size=(512, 3))
    assert judge3d.judge_shape(ball)[0] == "unknown"


def test_a_shape_is_not_judged_as_another_one():
    rng = np.random.default_rng(2)
    sphere = world3d.sample_cloud(rng, shape="sphere", color="blue")
    verdict = judge3d.judge(sphere.points, sphere.colors)
    assert not verdict.matches("cube", "blue") and not verdict.matches("sphere", "purple")
