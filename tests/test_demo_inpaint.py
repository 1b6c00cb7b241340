"""Inpainting in the shapes world with the demo models, through the studio's own inpaint path."""

import numpy as np
from PIL import Image

from pipelines import inpaint
from pipelines.demo import world
from pipelines.demo.judge import judge
from pipelines.inpaint import InpaintRequest
from pipelines.jobs import Progress

CASES = 16


def replace_circles(manager, model: str | None, n: int = CASES) -> int:
    """Mask out a circle, ask for a yellow triangle (default strength 1): in how many seeds is one found inside the hole?
    Pixels outside the mask must come back unchanged every time."""
    rng = np.random.default_rng(2718)
    hits = 0
    for seed in range(n):
        scene = world.sample_scene(rng, shape="circle", color=["red", "blue", "green", "purple"][seed % 4],
                                   background=["black", "gray", "white", "blue"][seed % 4])
        image = Image.fromarray(world.render(scene))
        (cx, cy), r = scene.main.center, scene.main.radius
        half = max(r + 6, 18)
        box = [int(max(0, cx - half)), int(max(0, cy - half)), int(min(64, cx + half)), int(min(64, cy + half))]
        mask = np.zeros((64, 64), np.uint8)
        mask[box[1]:box[3], box[0]:box[2]] = 255
        result = inpaint.run(manager, InpaintRequest(
            image=image, mask=Image.fromarray(mask), prompt=f"a yellow triangle on a {scene.background} background",
            model=model or "", seed=seed, mask_blur=0), Progress()).images[0].image
        out, keep = np.asarray(result), mask == 0
        assert np.array_equal(out[keep], np.asarray(image)[keep])  # outside the mask: untouched
        verdict = judge(out)
        inside = verdict.centroid is not None and mask[int(verdict.centroid[1]), int(verdict.centroid[0])] > 0
        hits += verdict.matches(color="yellow", shape="triangle") and inside
    return hits


def test_blend_mode_replaces_a_shape_with_the_prompted_one_and_keeps_the_rest(demo_engine):
    # the demo ships no 9-channel model: one fine-tuned from shapes-sd was not better than blend mode
    # (5/12 vs 7/12 after 1000 steps), so the plain demo model inpaints, as the issue allows
    hits = replace_circles(demo_engine.manager, None)
    print(f"\nyellow triangle inside the hole in {hits}/{CASES} seeds")
    assert hits > CASES // 2, f"only {hits}/{CASES}"
