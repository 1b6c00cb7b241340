"""LoRA (`<lora:name:weight>`) and textual-inversion embeddings from the models dir, on the tiny model."""

import hashlib

import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from pipelines import inpaint, metadata, text2image
from pipelines.errors import StudioError
from pipelines.jobs import Progress
from pipelines.networks import split_prompt
from pipelines.text2image import Text2ImageRequest
from tiny_models import save_tiny_embedding, save_tiny_lora


@pytest.fixture(scope="module")
def networks_dir(models_dir):
    save_tiny_lora(models_dir / "lora" / "paint.safetensors", seed=1)
    save_tiny_lora(models_dir / "lora" / "paint-kohya.safetensors", seed=1, kohya=True)
    save_tiny_lora(models_dir / "lora" / "ink.safetensors", seed=2, text_encoder=False)
    save_tiny_lora(models_dir / "lora" / "other-family.safetensors", seed=3, cross_attention_dim=64,
                   text_encoder=False)
    (models_dir / "lora" / "old.pt").write_bytes(b"\x80\x04pickle")
    save_tiny_embedding(models_dir / "embeddings" / "shiny.safetensors", seed=4)
    return models_dir


def generate(engine, prompt, negative="", **kw):
    request = Text2ImageRequest(prompt=prompt, negative_prompt=negative, model=TINY, steps=3, width=64, height=64,
                                seed=7, sampler="Euler a", **kw)
    return text2image.run(engine.manager, request, Progress()).images[0]


def pixels(generated) -> np.ndarray:
    return np.asarray(generated.image).astype(int)


def test_prompt_tags_are_parsed_and_taken_out():
    clean, uses = split_prompt("a red circle, <lora:paint:0.8>")
    assert clean == "a red circle" and [(u.name, u.text_weight, u.unet_weight) for u in uses] == [("paint", 0.8, 0.8)]
    clean, uses = split_prompt("<lora:a> a red <lora:b:0.5:-1> circle")
    assert clean == "a red circle"
    assert [(u.name, u.text_weight, u.unet_weight) for u in uses] == [("a", 1.0, 1.0), ("b", 0.5, -1.0)]
    assert split_prompt("a  red  circle") == ("a  red  circle", [])  # untouched without tags


def test_lora_weight_scales_its_effect_and_is_switched_off_when_not_named(engine, networks_dir):
    plain = pixels(generate(engine, "a red circle"))
    assert np.array_equal(pixels(generate(engine, "a red circle <lora:paint:0>")), plain)
    half = np.abs(pixels(generate(engine, "a red circle <lora:paint:0.5>")) - plain).mean()
    full = np.abs(pixels(generate(engine, "a red circle <lora:paint:1>")) - plain).mean()
    assert 0 < half < full
    assert np.array_equal(pixels(generate(engine, "a red circle")), plain)  # loaded, but off


def test_a_kohya_layout_lora_acts_like_the_same_weights_in_diffusers_layout(engine, networks_dir):
    plain = pixels(generate(engine, "a red circle"))
    diffusers_layout = pixels(generate(engine, "a red circle <lora:paint:1>"))
    kohya_layout = pixels(generate(engine, "a red circle <lora:paint-kohya:1>"))
    assert np.abs(kohya_layout - diffusers_layout).mean() < 0.1 * np.abs(diffusers_layout - plain).mean()


def test_two_loras_combine_and_metadata_regenerates_the_image(engine, networks_dir):
    prompt = "a red circle, <lora:paint:0.7>, <lora:ink:1.2>"
    both = generate(engine, prompt)
    only_paint = pixels(generate(engine, "a red circle, <lora:paint:0.7>"))
    assert np.abs(pixels(both) - only_paint).mean() > 0.5
    params = metadata.parse_parameters(both.parameters)
    digest = hashlib.sha256((networks_dir / "lora" / "paint.safetensors").read_bytes()).hexdigest()[:12]
    assert f"paint: {digest}" in params["Lora hashes"] and "ink: " in params["Lora hashes"]
    restored = metadata.settings_from_parameters(params)
    assert restored["prompt"] == prompt
    assert np.array_equal(pixels(generate(engine, restored["prompt"])), pixels(both))


def test_an_embedding_named_in_the_prompt_or_negative_prompt_is_used(engine, networks_dir):
    plain = pixels(generate(engine, "a red circle"))
    with_embedding = generate(engine, "a red circle, shiny")
    assert np.abs(pixels(with_embedding) - pixels(generate(engine, "a red circle, shinx"))).mean() > 0.5
    assert "shiny: " in metadata.parse_parameters(with_embedding.parameters)["TI hashes"]
    assert np.abs(pixels(generate(engine, "a red circle", negative="shiny")) - plain).mean() > 0.5


def test_inpainting_takes_loras_too(engine, networks_dir):
    image, mask = Image.new("RGB", (64, 64), "blue"), Image.new("L", (64, 64), 0)
    mask.paste(255, (16, 16, 48, 48))
    runs = [inpaint.run(engine.manager, inpaint.InpaintRequest(image=image, mask=mask, prompt=prompt, model=TINY,
                                                                steps=3, seed=2), Progress()).images[0]
            for prompt in ("a red circle", "a red circle <lora:paint:1>")]
    assert np.abs(pixels(runs[0]) - pixels(runs[1])).mean() > 0.1
    assert "paint: " in metadata.parse_parameters(runs[1].parameters)["Lora hashes"]


@pytest.mark.parametrize("prompt,message", [
    ("a red circle <lora:missing:1>", "No LoRA named 'missing'. Available: ink, other-family, paint, paint-kohya"),
    ("a red circle <lora:old:1>", "pickle file"),
    ("a red circle <lora:paint:lots>", "not a number"),
    ("a red circle <lora:paint:9>", "between -5 and 5"),
    ("<lora:paint:1> a red circle <lora:paint:0.5>", "named twice"),
    ("a red circle <lora:other-family:1>", "does not fit 'tiny-sd'"),
])
def test_bad_lora_use_is_a_clear_error_and_the_model_keeps_working(engine, networks_dir, prompt, message):
    plain = pixels(generate(engine, "a red circle"))
    with pytest.raises(StudioError, match=message):
        generate(engine, prompt)
    assert np.array_equal(pixels(generate(engine, "a red circle")), plain)


def test_lora_tags_in_the_negative_prompt_are_refused(engine, networks_dir):
    with pytest.raises(StudioError, match="belong in the prompt"):
        generate(engine, "a red circle", negative="<lora:paint:1>")
