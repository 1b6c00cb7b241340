"""Quality of the committed demo point-cloud model, judged by the geometric judge (offline, CPU)."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from pipelines.demo import judge3d
from pipelines.demo.evaluate3d import evaluate, load
from pipelines.pointcloud import PointCloudRequest

MODEL = Path(__file__).resolve().parents[1] / "assets" / "models" / "shapes-pointcloud"
MIN_SHAPE_AND_COLOR = 0.7  # measured over all 35 prompts x 2 seeds: 0.886 (colour alone 1.00); see studio.json
# every shape twice, in seven colours over the ten prompts
PROMPTS = [("red", "sphere"), ("blue", "cube"), ("green", "cylinder"), ("yellow", "cone"), ("purple", "torus"),
           ("orange", "sphere"), ("white", "cube"), ("red", "cylinder"), ("blue", "cone"), ("green", "torus")]


@pytest.fixture(scope="module")
def card():
    return json.loads((MODEL / "studio.json").read_text())


def test_demo_model_draws_the_prompted_primitive_in_the_prompted_colour(card):
    torch.set_num_threads(1)
    result = evaluate(load(MODEL), PROMPTS, seeds=[0], points=card["points"], steps=card["steps"],
                      cfg=card["cfg_scale"], sampler=card["sampler"])
    assert result["color"] >= 0.9, result
    assert result["shape_color"] >= MIN_SHAPE_AND_COLOR, result


def test_demo_model_through_the_studio(demo_engine, card):
    job = demo_engine.submit_pointcloud(PointCloudRequest(prompt="a yellow cone", seed=1, points=card["points"]))
    cloud = job.outcome()[0][0]
    verdict = judge3d.judge(cloud.generated.points, cloud.generated.colors)
    assert verdict.color == "yellow", verdict
    assert f"Model: {card['name']}" in cloud.generated.parameters and cloud.ply.is_file()
    assert np.abs(cloud.generated.points).max() < 1.5  # a compact object, not scattered noise
