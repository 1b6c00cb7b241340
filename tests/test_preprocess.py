import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipelines.errors import StudioError
from pipelines.preprocess import PREPROCESSORS, control_map


def shapes(mode="RGB", size=(96, 80)):
    image = Image.new("RGB", size, (20, 20, 60))
    draw = ImageDraw.Draw(image)
    draw.ellipse((10, 10, 50, 50), fill=(250, 240, 240))
    draw.polygon([(60, 70), (90, 70), (75, 40)], fill=(240, 220, 20))
    if mode == "I;16":
        return Image.fromarray((np.asarray(image.convert("L")).astype(np.uint16) * 257))
    return image.convert(mode)


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "I;16"])
@pytest.mark.parametrize("name", [p for p in PREPROCESSORS if p != "depth"])
def test_every_preprocessor_gives_an_rgb_map_at_the_generation_size(name, mode):
    result = control_map(shapes(mode), name, (64, 48))
    assert result.mode == "RGB" and result.size == (64, 48)
    assert np.asarray(result).std() > 0


def test_canny_edges_lie_on_the_shape_outlines_and_thresholds_change_the_map():
    edges = np.asarray(control_map(shapes(), "canny", (96, 80)))[..., 0] > 0
    ys, xs = np.nonzero(edges)
    radius = np.hypot(xs[xs < 55] - 30, ys[xs < 55] - 30)
    assert np.median(np.abs(radius - 20)) <= 2  # the circle's outline
    soft = np.asarray(control_map(shapes(), "canny", (96, 80), 10, 30)).sum()
    strict = np.asarray(control_map(shapes(), "canny", (96, 80), 400, 900)).sum()
    assert soft > strict


def test_depth_without_weights_and_bad_input_are_clear_errors():
    with pytest.raises(StudioError, match="depth preprocessor needs"):
        control_map(shapes(), "depth", (64, 64))
    with pytest.raises(StudioError, match="Unknown preprocessor"):
        control_map(shapes(), "magic", (64, 64))
    with pytest.raises(StudioError, match="No control image"):
        control_map(None, "canny", (64, 64))
    with pytest.raises(StudioError, match="thresholds"):
        control_map(shapes(), "canny", (64, 64), 200, 100)
