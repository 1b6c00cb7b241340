"""The demo motion adapter on the demo image model, through the studio's own video path: the colour
and shape hold from the first to the last frame. Numbers measured at publish time are in
docs/demo-models.md; the threshold sits below them with margin for a 16-clip sample.

Not tested here because it does not hold yet: that the shape moves the prompted way in most seeds
(issue #7). The committed adapter (771 steps on a shared CPU thread) gets the direction right in
3 of these 16 clips, chance level; so did the training states at steps 2542 and 7151, and step
10521 (not shipped) gets 25-31% on 32 held-out clips. `python -m pipelines.demo.train_motion --stage evaluate` measures it; its
`sensitivity` shows how much of the prompt's direction reaches the motion modules (~1% until step
9400, when the direction words' collapsed embeddings were replaced by fixed orthogonal ones; 6-7%
since) and docs/demo-models.md gives every measurement. A test for it belongs here once a longer
run (`--resume`) learns it."""

from __future__ import annotations

import numpy as np
import pytest

from pipelines import video
from pipelines.demo import world
from pipelines.demo.train_motion import motion_verdict

# 16 clips: every direction 4 times, every colour and shape more than once (held-out seeds)
PROMPTS = [("red", "circle", "right"), ("blue", "square", "left"), ("yellow", "triangle", "up"),
           ("green", "circle", "down"), ("purple", "square", "right"), ("orange", "triangle", "left"),
           ("white", "circle", "up"), ("red", "square", "down"), ("green", "triangle", "right"),
           ("yellow", "circle", "left"), ("blue", "triangle", "up"), ("orange", "square", "down"),
           ("white", "square", "right"), ("purple", "circle", "left"), ("red", "triangle", "up"),
           ("blue", "circle", "down")]
# Measured on exactly these 16 clips with the committed adapter (step 771): direction 18.8% (3/16),
# colour+shape held 81.3% (13/16).
HOLD_MIN = 0.7


@pytest.fixture(scope="module")
def verdicts(demo_engine):
    assert any(e.source == "demo" for e in video.models(demo_engine.manager, "text")), \
        "the demo motion adapter is missing from assets/models"
    out = []
    for i, (color, shape, direction) in enumerate(PROMPTS):
        request = video.VideoRequest(prompt=world.motion_caption(color, shape, direction), frames=8, fps=8,
                                     seed=20_000 + i)
        saved, _ = demo_engine.submit_video(request, save=False).outcome()
        out.append(motion_verdict(saved[0].generated.frames, color, shape, direction))
    return out


def test_demo_motion_keeps_colour_and_shape(verdicts):
    hold = np.mean([v["hold"] for v in verdicts])
    assert hold >= HOLD_MIN, f"colour and shape held in {hold:.0%} of clips"
