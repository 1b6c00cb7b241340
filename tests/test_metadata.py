import io

import pytest
from PIL import Image

from pipelines import metadata

# Strings in AUTOMATIC1111's exact infotext layout, as its web UI v1.x writes them.
A1111_LORA_HIRES = (
    "(colorful:1.3),\ndreamlike fantasy landscape where everything is a shade of pink,\n"
    " <lora:pastel-style:0.8> <lora:detail_tweaker:1>\n"
    "Negative prompt: (worst quality:1.4), (low quality:1.4) , (monochrome:1.1)\n"
    "Steps: 40, Sampler: DPM++ 2M Karras, CFG scale: 12, Seed: 2416682767, Size: 640x512, "
    "Model hash: 0f0eaaa61e, Model: pastelmix-better-vae-fp16, Denoising strength: 0.55, Clip skip: 2, "
    "ENSD: 31337, Hires upscale: 2, Hires steps: 20, Hires upscaler: Latent (bicubic antialiased), "
    'Lora hashes: "pastel-style: ce30cae7c555, detail_tweaker: f4112c058273", Version: v1.6.0'
)
A1111_SCHEDULE_TYPE = (
    "a knight in shining armour, castle in the background <lora:armor_v2:0.6>\n"
    "Negative prompt: bad fingers\n"
    "Steps: 20, Sampler: DPM++ 2M SDE, Schedule type: Karras, CFG scale: 7, Seed: 2245042501, Size: 512x768, "
    "Model hash: d4c1719023, Model: animekawa_v10, VAE hash: 735e4c3a44, VAE: vae-ft-mse-840000.safetensors, "
    "Denoising strength: 0.6, Hires upscale: 2, Hires steps: 10, Hires upscaler: R-ESRGAN 4x+ Anime6B, "
    'Lora hashes: "armor_v2: ce30cae7c555", TI hashes: "EasyNegative: c74b4e810b03", Version: v1.9.3'
)
A1111_NO_NEGATIVE = (
    "A woman standing on a tropical beach, golden hour\n"
    "Steps: 42, Sampler: Euler a, CFG scale: 6, Seed: 1922608063, Size: 768x1024, Model hash: a928fee35b, "
    "Model: albedobaseXL_v20, Version: v1.7.0"
)


def test_parses_a1111_string_with_lora_hires_and_multiline_prompt():
    p = metadata.parse_parameters(A1111_LORA_HIRES)
    assert p["Prompt"].startswith("(colorful:1.3),\ndreamlike fantasy")
    assert p["Prompt"].endswith("<lora:pastel-style:0.8> <lora:detail_tweaker:1>")
    assert p["Negative prompt"] == "(worst quality:1.4), (low quality:1.4) , (monochrome:1.1)"
    assert (p["Steps"], p["Sampler"], p["CFG scale"], p["Seed"]) == ("40", "DPM++ 2M Karras", "12", "2416682767")
    assert (p["Size-1"], p["Size-2"]) == ("640", "512")
    assert p["Hires upscaler"] == "Latent (bicubic antialiased)"
    assert p["Hires upscale"] == "2" and p["Hires steps"] == "20" and p["Denoising strength"] == "0.55"
    assert p["Lora hashes"] == "pastel-style: ce30cae7c555, detail_tweaker: f4112c058273"
    assert p["Version"] == "v1.6.0"


def test_parses_a1111_string_with_schedule_type_and_quoted_hashes():
    p = metadata.parse_parameters(A1111_SCHEDULE_TYPE)
    assert p["Prompt"] == "a knight in shining armour, castle in the background <lora:armor_v2:0.6>"
    assert p["Negative prompt"] == "bad fingers"
    assert p["Sampler"] == "DPM++ 2M SDE" and p["Schedule type"] == "Karras"
    assert p["TI hashes"] == "EasyNegative: c74b4e810b03"
    assert p["VAE"] == "vae-ft-mse-840000.safetensors"


def test_parses_a1111_string_without_negative_prompt():
    p = metadata.parse_parameters(A1111_NO_NEGATIVE)
    assert p["Prompt"] == "A woman standing on a tropical beach, golden hour"
    assert p["Negative prompt"] == ""
    assert p["Size"] == "768x1024" and p["Model"] == "albedobaseXL_v20"


def test_text_without_parameter_line_is_all_prompt():
    p = metadata.parse_parameters("just a prompt, nothing else")
    assert p == {"Prompt": "just a prompt, nothing else", "Negative prompt": ""}


@pytest.mark.parametrize("prompt,negative", [
    ("a red circle, on blue: really", "blurry, ugly"),
    ("first line\nsecond line: with colon", "neg one\nneg two"),
    ("ünïcødé 🌈 prompt, 日本語", "ネガティブ"),
    ("no negative", ""),
])
def test_write_read_round_trip(prompt, negative):
    fields = {"Steps": 20, "Sampler": "DPM++ 2M Karras", "CFG scale": "7.5", "Seed": 123, "Size": "64x64",
              "Model": "folder/model: v2, fp16", "Note": "a\nb"}
    text = metadata.format_parameters(prompt, negative, fields)
    parsed = metadata.parse_parameters(text)
    assert parsed["Prompt"] == prompt and parsed["Negative prompt"] == negative
    for key, value in fields.items():
        assert parsed[key] == str(value)


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "WEBP"])
def test_parameters_survive_png_jpeg_and_webp_files(fmt):
    text = metadata.format_parameters("a, b: ü\nc", "n", {"Steps": 3, "Seed": 1, "Size": "8x8"})
    buffer = io.BytesIO()
    options = {"pnginfo": metadata.png_info(text)} if fmt == "PNG" else {"exif": metadata.exif_with_parameters(text)}
    Image.new("RGB", (8, 8)).save(buffer, fmt, **options)
    buffer.seek(0)
    assert metadata.read_parameters(Image.open(buffer)) == text


def test_image_without_parameters_reads_none():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, "PNG")
    buffer.seek(0)
    assert metadata.read_parameters(Image.open(buffer)) is None


def test_settings_restored_from_ours_and_a1111():
    ours = metadata.settings_from_parameters(metadata.parse_parameters(metadata.format_parameters(
        "a red circle", "blur", {"Steps": 20, "Sampler": "Euler a", "CFG scale": "7.5", "Seed": 9,
                                 "Size": "64x96", "Model": "Shapes demo", "Denoising strength": "0.4"})))
    assert ours == {"prompt": "a red circle", "negative_prompt": "blur", "steps": 20, "sampler": "Euler a",
                    "cfg_scale": 7.5, "seed": 9, "width": 64, "height": 96, "model": "Shapes demo",
                    "denoising_strength": 0.4}
    theirs = metadata.settings_from_parameters(metadata.parse_parameters(A1111_SCHEDULE_TYPE))
    assert theirs["sampler"] == "DPM++ 2M SDE Karras" and theirs["seed"] == 2245042501
    assert (theirs["width"], theirs["height"]) == (512, 768)
