import numpy as np
import pytest
from PIL import Image

from conftest import TINY
from pipelines import metadata
from pipelines.errors import StudioError
from pipelines.text2image import Text2ImageRequest
from pipelines.xygrid import XYGridRequest, parse_values


@pytest.mark.parametrize("axis,text,expected", [
    ("Steps", "10, 20,30", [10, 20, 30]),
    ("Steps", "1-5", [1, 2, 3, 4, 5]),
    ("Steps", "10-30 (+10)", [10, 20, 30]),
    ("Steps", "30-10 (-10)", [30, 20, 10]),
    ("Steps", "1-9 [3]", [1, 5, 9]),
    ("CFG scale", "1-2 (+0.5), 7", [1.0, 1.5, 2.0, 7.0]),
    ("Seed", "5, 6", [5, 6]),
    ("Sampler", "Euler a, DDIM", ["Euler a", "DDIM"]),
    ("Prompt S/R", 'red, "blue, dark", green', ["red", "blue, dark", "green"]),
])
def test_axis_values_use_a1111_syntax(axis, text, expected):
    assert parse_values(axis, text) == expected


@pytest.mark.parametrize("axis,text,message", [
    ("Steps", "ten", "not a valid Steps value"),
    ("Steps", "", "at least one value"),
    ("Steps", "1-5 (+0)", "never reaches"),
    ("Steps", "1-1000", "at most"),
    ("Sampler", "Euler, Warp drive", "Unknown sampler 'Warp drive'"),
    ("Colour", "1", "Unknown grid axis"),
])
def test_bad_axis_values_are_named(axis, text, message):
    with pytest.raises(StudioError, match=message):
        parse_values(axis, text)


def grid_request(**overrides) -> XYGridRequest:
    base = Text2ImageRequest("a red circle", model=TINY, steps=2, width=64, height=64, seed=77)
    return XYGridRequest(**{"base": base, "x_type": "Steps", "x_values": "1, 2, 3", "y_type": "Prompt S/R",
                            "y_values": "red, blue", **overrides})


def test_grid_cells_equal_single_generations_and_are_labelled(engine):
    saved, _ = engine.submit_xygrid(grid_request()).outcome()
    grid, cells = saved[0], saved[1:]
    assert len(cells) == 6 and grid.path.parent.parent.name == "txt2img-grids"
    grid_image = np.asarray(Image.open(grid.path).convert("RGB"))
    rows, columns = 2, 3
    top, left = grid_image.shape[0] - rows * 64, grid_image.shape[1] - columns * 64
    assert top > 0 and left > 0  # room for the X labels above and the Y labels on the left
    for i, cell in enumerate(cells):
        r, c = divmod(i, columns)
        pixels = np.asarray(Image.open(cell.path).convert("RGB"))
        assert np.array_equal(grid_image[top + r * 64:top + (r + 1) * 64, left + c * 64:left + (c + 1) * 64], pixels)
        params = metadata.parse_parameters(metadata.read_parameters(Image.open(cell.path)))
        assert params["Steps"] == str([1, 2, 3][c]) and params["Prompt"] == ["a red circle", "a blue circle"][r]
        assert params["Seed"] == "77"
        # the same settings as a single generation give the same pixels
        alone, _ = engine.submit_text2image(Text2ImageRequest(
            params["Prompt"], model=TINY, steps=int(params["Steps"]), width=64, height=64, seed=77), save=False).outcome()
        assert np.array_equal(np.asarray(alone[0].generated.image), pixels)
    for c in range(columns):  # each column's label is drawn: dark text pixels above it
        assert (grid_image[:top, left + c * 64:left + (c + 1) * 64] < 128).any()
    for r in range(rows):
        assert (grid_image[top + r * 64:top + (r + 1) * 64, :left] < 128).any()
    assert not (grid_image[:top, :left] < 128).any()  # the corner stays blank
    info = metadata.parse_parameters(metadata.read_parameters(Image.open(grid.path)))
    assert (info["X Type"], info["X Values"], info["Y Type"], info["Y Values"]) == (
        "Steps", "1, 2, 3", "Prompt S/R", "red, blue")


def test_a_random_seed_is_drawn_once_for_the_whole_grid(engine):
    saved, _ = engine.submit_xygrid(grid_request(base=Text2ImageRequest(
        "a red circle", model=TINY, steps=1, width=64, height=64, seed=-1), y_type="Nothing", y_values=""),
        save=False).outcome()
    assert len({s.generated.seed for s in saved}) == 1


@pytest.mark.parametrize("overrides,message", [
    ({"y_type": "Steps", "y_values": "1"}, "must differ"),
    ({"x_type": "Nothing"}, "X axis"),
    ({"y_values": "green, blue"}, "'green' is not in the prompt"),
    ({"x_values": "1-8", "y_type": "Seed", "y_values": "1-9"}, "72 cells"),
    ({"x_type": "CFG scale", "x_values": "3, 99"}, "CFG scale must be between"),
])
def test_bad_grids_fail_before_any_image_is_drawn(engine, overrides, message):
    before = sorted(engine.store.root.rglob("*.png"))
    with pytest.raises(StudioError, match=message):
        engine.submit_xygrid(grid_request(**overrides)).outcome()
    assert sorted(engine.store.root.rglob("*.png")) == before
