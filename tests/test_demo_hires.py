"""Hires fix with the demo model: the prompt survives the second pass and the result is sharper."""

import cv2
import numpy as np
from PIL import Image

from pipelines import text2image
from pipelines.demo.evaluate import fixed_cases
from pipelines.demo.judge import judge
from pipelines.jobs import Progress
from pipelines.text2image import Text2ImageRequest


def sharpness(image: np.ndarray) -> float:
    return float(cv2.Laplacian(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), cv2.CV_64F).var())


def test_hires_fix_keeps_the_prompt_at_double_size_and_is_sharper_than_lanczos(demo_engine):
    hits, sharper = 0, 0
    cases = fixed_cases(8, seed=555)
    for prompt, color, shape, _bg, seed in cases:
        request = dict(prompt=prompt, seed=seed, enable_hr=True, hr_scale=2.0, hr_upscaler="Latent", strength=0.6)
        final = text2image.run(demo_engine.manager, Text2ImageRequest(**request), Progress()).images[0].image
        first = text2image.run(demo_engine.manager, Text2ImageRequest(**{**request, "enable_hr": False}),
                               Progress()).images[0].image
        assert final.size == (128, 128)
        hits += judge(np.asarray(final)).matches(color=color, shape=shape)
        sharper += sharpness(np.asarray(final)) > sharpness(np.asarray(first.resize((128, 128), Image.LANCZOS)))
    assert hits >= 6, f"prompted colour and shape at 128 px in only {hits}/8"
    assert sharper >= 6, f"sharper than a Lanczos enlargement in only {sharper}/8"
