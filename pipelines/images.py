"""Turning whatever the user uploads into the RGB image the pipelines expect."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

from pipelines.errors import StudioError

MAX_INPUT_PIXELS = 4096 * 4096
Image.MAX_IMAGE_PIXELS = MAX_INPUT_PIXELS * 2  # beyond this Pillow refuses to decode (bomb guard)


def to_rgb(image, what: str = "image", background=(255, 255, 255)) -> Image.Image:
    """RGB 8-bit copy of a PIL image or array: EXIF rotation applied, 16-bit scaled, alpha flattened."""
    if image is None:
        raise StudioError(f"No {what} was given.")
    if isinstance(image, np.ndarray):
        image = _from_array(image, what)
    if not isinstance(image, Image.Image):
        raise StudioError(f"The {what} is not an image.")
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise StudioError(f"The {what} is {image.width}x{image.height}; the limit is {MAX_INPUT_PIXELS} pixels.")
    if image.width == 0 or image.height == 0:
        raise StudioError(f"The {what} is empty (0 pixels).")
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        image = _from_array(np.asarray(image), what)
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA"):
        flat = Image.new("RGB", image.size, background)
        flat.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return flat
    return image.convert("RGB")


def has_transparency(image: Image.Image) -> bool:
    if image.mode == "P":
        return "transparency" in image.info
    if image.mode in ("RGBA", "LA", "PA"):
        return image.getchannel("A").getextrema()[0] < 255
    return False


def _from_array(array: np.ndarray, what: str) -> Image.Image:
    if array.ndim not in (2, 3) or (array.ndim == 3 and array.shape[2] not in (1, 3, 4)):
        raise StudioError(f"The {what} has an unsupported shape {array.shape}.")
    if array.ndim == 3 and array.shape[2] == 1:
        array = array[..., 0]
    if array.dtype != np.uint8:
        array = array.astype(np.float64)
        top = 65535.0 if array.max() > 255 else (255.0 if array.max() > 1 else 1.0)
        array = np.clip(array / top * 255.0 + 0.5, 0, 255).astype(np.uint8)
    return Image.fromarray(array)
