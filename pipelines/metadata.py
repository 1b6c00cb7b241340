"""Generation parameters in AUTOMATIC1111's text layout, stored in PNG text chunks or EXIF.

Layout (what A1111 writes and reads):
    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>
    Steps: 20, Sampler: DPM++ 2M Karras, CFG scale: 7, Seed: 123, Size: 512x512, Model: name
Values containing `,` `:` or a newline are JSON-quoted in the last line.
"""

from __future__ import annotations

import json
import re

from PIL import Image
from PIL.PngImagePlugin import PngInfo

PNG_KEY = "parameters"
EXIF_IFD = 0x8769
EXIF_USER_COMMENT = 0x9286
_UNICODE_PREFIX = b"UNICODE\x00"
_ASCII_PREFIX = b"ASCII\x00\x00\x00"

# The same patterns A1111 parses with, so strings from either tool read back the same way.
_PARAM = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])+"|[^,]*)(?:,|$)')
_SIZE = re.compile(r"^(\d+)x(\d+)$")
_NEGATIVE = "Negative prompt:"


def quote(value) -> str:
    text = str(value)
    if "," not in text and "\n" not in text and ":" not in text:
        return text
    return json.dumps(text, ensure_ascii=False)


def unquote(text: str) -> str:
    if len(text) < 2 or text[0] != '"' or text[-1] != '"':
        return text
    try:
        return json.loads(text)
    except ValueError:
        return text


def format_parameters(prompt: str, negative_prompt: str, fields: dict) -> str:
    """The parameters text for one image; fields whose value is None are left out."""
    line = ", ".join(f"{key}: {quote(value)}" for key, value in fields.items() if value is not None)
    parts = [prompt.strip()]
    if negative_prompt and negative_prompt.strip():
        parts.append(f"{_NEGATIVE} {negative_prompt.strip()}")
    parts.append(line)
    return "\n".join(parts)


def append_fields(text: str | None, fields: dict) -> str:
    """`text` with `fields` added to its last (parameters) line, e.g. a postprocessing step; a text of
    its own when there is none. Fields whose value is None are left out."""
    if not text or not text.strip():
        return format_parameters("", "", fields)
    line = ", ".join(f"{key}: {quote(value)}" for key, value in fields.items() if value is not None)
    *head, last = text.rstrip().split("\n")
    if len(_PARAM.findall(last)) >= 3:
        return "\n".join([*head, f"{last}, {line}"])
    return f"{text.rstrip()}\n{line}"


def parse_parameters(text: str) -> dict[str, str]:
    """Parse ours or A1111's text into {"Prompt", "Negative prompt", "Steps", …, "Size-1", "Size-2"}."""
    *lines, last = text.strip().split("\n")
    if len(_PARAM.findall(last)) < 3:
        lines.append(last)
        last = ""
    prompt, negative, in_negative = [], [], False
    for line in lines:
        line = line.strip()
        if line.startswith(_NEGATIVE):
            in_negative = True
            line = line[len(_NEGATIVE):].strip()
        (negative if in_negative else prompt).append(line)
    result = {"Prompt": "\n".join(prompt), "Negative prompt": "\n".join(negative)}
    for key, value in _PARAM.findall(last):
        value = unquote(value.strip())
        size = _SIZE.match(value)
        if size:
            result[f"{key}-1"], result[f"{key}-2"] = size.group(1), size.group(2)
        result[key] = value
    return result


def png_info(text: str) -> PngInfo:
    info = PngInfo()
    info.add_text(PNG_KEY, text)  # Pillow writes iTXt (UTF-8) when the text is not Latin-1
    return info


def exif_with_parameters(text: str) -> Image.Exif:
    """EXIF with the parameters in UserComment, encoded as A1111 (piexif 'unicode') does."""
    exif = Image.Exif()
    exif.get_ifd(EXIF_IFD)[EXIF_USER_COMMENT] = _UNICODE_PREFIX + text.encode("utf-16-be")
    return exif


def read_parameters(image: Image.Image) -> str | None:
    """The parameters text of an opened image (PNG text chunk, or JPEG/WebP EXIF UserComment)."""
    text = image.info.get(PNG_KEY)
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if text:
        return text
    try:
        comment = image.getexif().get_ifd(EXIF_IFD).get(EXIF_USER_COMMENT)
    except Exception:  # noqa: BLE001 - a broken EXIF block means "no parameters", not a crash
        return None
    return _decode_user_comment(comment) if comment else None


def _decode_user_comment(comment) -> str | None:
    if isinstance(comment, str):
        return comment.strip("\x00") or None
    if comment.startswith(_UNICODE_PREFIX):
        body = comment[len(_UNICODE_PREFIX):]
        # piexif writes UTF-16-BE; some tools write little-endian: ASCII text tells which.
        encoding = "utf-16-le" if len(body) > 1 and body[0] != 0 and body[1] == 0 else "utf-16-be"
        return body.decode(encoding, errors="replace").strip("\x00") or None
    if comment.startswith(_ASCII_PREFIX):
        comment = comment[len(_ASCII_PREFIX):]
    return comment.decode("utf-8", errors="replace").strip("\x00") or None


def settings_from_parameters(parsed: dict[str, str]) -> dict:
    """Typed generation settings from parsed parameters (ours or A1111's), for restoring a tab.

    Keys: prompt, negative_prompt, steps, sampler, cfg_scale, seed, width, height, model,
    denoising_strength, family — only those present and readable. A Flux image's guidance is its
    "Distilled CFG Scale" (as A1111 Forge writes it; its "CFG scale" is 1, real CFG off).
    """
    settings = {"prompt": parsed.get("Prompt", ""), "negative_prompt": parsed.get("Negative prompt", "")}
    conversions = {"steps": ("Steps", int), "cfg_scale": ("CFG scale", float), "seed": ("Seed", int),
                   "width": ("Size-1", int), "height": ("Size-2", int), "model": ("Model", str),
                   "denoising_strength": ("Denoising strength", float)}
    if "Distilled CFG Scale" in parsed:
        conversions["cfg_scale"] = ("Distilled CFG Scale", float)
    conversions["family"] = ("Family", str)
    for name, (key, kind) in conversions.items():
        try:
            settings[name] = kind(parsed[key])
        except (KeyError, ValueError):
            continue
    if "Hires upscale" in parsed:
        settings["enable_hr"] = True
        for name, key, kind in (("hr_scale", "Hires upscale", float), ("hr_steps", "Hires steps", int),
                                ("hr_upscaler", "Hires upscaler", str), ("hr_strength", "Denoising strength", float)):
            try:
                settings[name] = kind(parsed[key])
            except (KeyError, ValueError):
                continue
    sampler = parsed.get("Sampler")
    if sampler:
        schedule = parsed.get("Schedule type", "")  # A1111 ≥ 1.9 writes "Karras" separately
        settings["sampler"] = f"{sampler} Karras" if schedule == "Karras" and "Karras" not in sampler else sampler
    return settings
