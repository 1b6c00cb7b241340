"""Whatever a user uploads becomes a clean RGB image, or a clear error."""

import io

import numpy as np
import pytest
from PIL import Image

from pipelines.errors import StudioError
from pipelines.images import has_transparency, to_rgb


def test_sixteen_bit_greyscale_is_scaled_not_clipped():
    image = Image.fromarray(np.array([[0, 32768, 65535]], np.uint16))
    assert np.asarray(to_rgb(image))[0, :, 0].tolist() == [0, 128, 255]


def test_float_arrays_in_0_1_and_greyscale_arrays_work():
    assert np.asarray(to_rgb(np.full((4, 4), 0.5)))[0, 0].tolist() == [128, 128, 128]
    assert to_rgb(np.zeros((4, 4, 1), np.uint8)).mode == "RGB"


@pytest.mark.parametrize("mode", ["P", "CMYK", "LA", "RGBA", "L", "1", "I"])
def test_every_common_mode_becomes_rgb(mode):
    assert to_rgb(Image.new("RGB", (5, 3), (10, 20, 30)).convert(mode)).mode == "RGB"


def test_alpha_is_flattened_on_white_and_detected():
    rgba = Image.new("RGBA", (2, 1), (255, 0, 0, 0))
    assert has_transparency(rgba) and not has_transparency(rgba.convert("RGB"))
    assert np.asarray(to_rgb(rgba))[0, 0].tolist() == [255, 255, 255]


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (4, 2))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise on display
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", exif=exif)
    assert to_rgb(Image.open(buffer)).size == (2, 4)


def test_huge_and_empty_images_are_clear_errors():
    with pytest.raises(StudioError, match="limit"):
        to_rgb(Image.new("L", (5000, 5000)))
    with pytest.raises(StudioError, match="No init image"):
        to_rgb(None, "init image")
    with pytest.raises(StudioError, match="not an image"):
        to_rgb("a string")
    with pytest.raises(StudioError, match="unsupported shape"):
        to_rgb(np.zeros((2, 2, 2, 2)))
