"""A newcomer's first run: no GPU, no network, empty models dir — the studio starts on the demo model
and the text-to-image path (job queue, sampler from studio.json, decode, PNG) draws what was asked."""

import numpy as np
from PIL import Image

from pipelines import metadata
from pipelines.demo.evaluate import fixed_cases
from pipelines.demo.judge import judge
from pipelines.engine import Engine
from pipelines.text2image import Text2ImageRequest


def test_fresh_studio_defaults_to_the_demo_model_and_follows_prompts(tmp_path):
    engine = Engine(tmp_path / "models", tmp_path / "outputs")
    entry = engine.manager.default_entry
    assert entry.source == "demo" and "demo" in engine.manager.default_reason
    cases = fixed_cases(16, seed=99)
    hits = 0
    for prompt, color, shape, _background, seed in cases:
        saved, _ = engine.submit_text2image(Text2ImageRequest(prompt, seed=seed)).outcome()
        image = Image.open(saved[0].path)
        params = metadata.parse_parameters(metadata.read_parameters(image))
        assert (params["Sampler"], params["Steps"], params["Size"]) == (entry.sampler, str(entry.steps), "64x64")
        hits += judge(np.asarray(image.convert("RGB"))).matches(color=color, shape=shape)
    # the 64-case adherence test holds the model to the bar; this guards the studio path itself
    # (a wrong scheduler, decode or colour order drops it to chance, ~5%)
    assert hits >= 11, f"only {hits}/16 judged right through the studio"


def test_karras_sigmas_on_the_cosine_schedule_are_refused_with_a_clear_message(tmp_path):
    # Karras spacing on the demo model's cosine schedule repeats timesteps (diffusers then fails with an
    # IndexError at 5 steps, found by benchmarks/samplers.py); the studio says so before sampling
    import pytest

    from pipelines.errors import StudioError

    engine = Engine(tmp_path / "models", tmp_path / "outputs")
    for steps in (5, 20):
        with pytest.raises(StudioError, match="'DPM\\+\\+ 2M Karras' repeats timesteps .* use 'DPM\\+\\+ 2M'"):
            engine.submit_text2image(Text2ImageRequest("a red circle", sampler="DPM++ 2M Karras", steps=steps)).outcome()
    saved, _ = engine.submit_text2image(Text2ImageRequest("a red circle", sampler="DPM++ 2M", steps=5)).outcome()
    assert saved[0].path.is_file()  # the worker is fine and the plain variant works
    assert not list((tmp_path / "outputs").glob("*/*/*-*.png"))[1:]  # nothing written for the refusals
