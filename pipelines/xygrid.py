"""X/Y grid: one text-to-image request varied along two axes, rendered as a labelled grid plus the cells.

Values use A1111's syntax: a comma-separated list (`10, 20, 30`; quotes allowed), an inclusive
range `1-5`, a range with a step `10-30 (+10)`, or a count of evenly spaced values `1-9 [5]`.
For Prompt S/R the first value is the text to search for; each value replaces it in the prompt
and the negative prompt. One seed serves every cell unless Seed is an axis, so cells differ only
in what the axes change.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipelines import metadata, text2image
from pipelines.errors import StudioError
from pipelines.jobs import StageProgress
from pipelines.models import UPSCALE
from pipelines.samplers import FLOW_SAMPLERS, SAMPLERS
from pipelines.text2image import GeneratedImage, Text2ImageRequest, Text2ImageResult

NOTHING = "Nothing"
AXES = {NOTHING: None, "Seed": int, "Steps": int, "CFG scale": float, "Sampler": str, "Prompt S/R": str}
REQUEST_FIELD = {"Seed": "seed", "Steps": "steps", "CFG scale": "cfg_scale", "Sampler": "sampler"}
MAX_CELLS = 64
_RANGE = re.compile(r"^\s*(-?[\d.]+)\s*-\s*(-?[\d.]+)\s*(?:\(\s*\+?\s*(-?[\d.]+)\s*\)|\[\s*(\d+)\s*\])?\s*$")


@dataclass
class XYGridRequest:
    base: Text2ImageRequest
    x_type: str
    x_values: str
    y_type: str = NOTHING
    y_values: str = ""


def parse_values(axis: str, text: str) -> list:
    """The values of one axis, typed and checked; a clear error names the axis and the bad value."""
    if axis not in AXES:
        raise StudioError(f"Unknown grid axis '{axis}'. Choose one of: {', '.join(AXES)}.")
    if axis == NOTHING:
        return [None]
    kind = AXES[axis]
    items = [item.strip() for item in next(csv.reader([text or ""], skipinitialspace=True), [])]
    items = [item for item in items if item]
    if not items:
        raise StudioError(f"Give at least one value for the {axis} axis.")
    if kind is str:
        if axis == "Sampler":
            known = [*SAMPLERS, *FLOW_SAMPLERS]  # which fit the model's family is checked per cell
            unknown = [item for item in items if item not in known]
            if unknown:
                raise StudioError(f"Unknown sampler '{unknown[0]}' on the Sampler axis. "
                                  f"Choose from: {', '.join(known)}.")
        return items
    values = []
    for item in items:
        values += _expand(axis, kind, item)
    return values


def _expand(axis: str, kind, item: str) -> list:
    match = _RANGE.match(item)
    try:
        if not match:
            return [kind(item)]
        start, end = kind(match.group(1)), kind(match.group(2))
        if match.group(4):  # [count]: evenly spaced, ends included
            spaced = np.linspace(start, end, int(match.group(4)))
            return [kind(round(v)) if kind is int else round(float(v), 4) for v in spaced]
        step = kind(match.group(3)) if match.group(3) else kind(1 if end >= start else -1)
    except ValueError:
        raise StudioError(f"'{item}' is not a valid {axis} value.") from None
    if step == 0 or (end - start) * step < 0:
        raise StudioError(f"The range '{item}' on the {axis} axis never reaches its end.")
    count = int(abs((end - start) / step) + 1e-9) + 1
    if count > MAX_CELLS:
        raise StudioError(f"The range '{item}' on the {axis} axis has {count} values (at most {MAX_CELLS}).")
    return [kind(round(start + i * step, 4)) if kind is float else start + i * step for i in range(count)]


def apply(request: Text2ImageRequest, axis: str, value, search: str | None) -> Text2ImageRequest:
    """`request` with one axis set to `value`."""
    if axis == NOTHING:
        return request
    if axis == "Prompt S/R":
        return dataclasses.replace(request, prompt=request.prompt.replace(search, value),
                                   negative_prompt=request.negative_prompt.replace(search, value))
    return dataclasses.replace(request, **{REQUEST_FIELD[axis]: value})


def cell_requests(request: XYGridRequest) -> tuple[list, list, list[list[Text2ImageRequest]]]:
    """The X values, the Y values and a row of requests per Y value, all checked before any work."""
    if request.x_type == request.y_type and request.x_type != NOTHING:
        raise StudioError("The X and Y axes must differ.")
    if request.x_type == NOTHING:
        raise StudioError("Choose what the X axis varies.")
    xs, ys = parse_values(request.x_type, request.x_values), parse_values(request.y_type, request.y_values)
    if len(xs) * len(ys) > MAX_CELLS:
        raise StudioError(f"The grid would have {len(xs) * len(ys)} cells; at most {MAX_CELLS}.")
    base = dataclasses.replace(request.base, batch_count=1, batch_size=1,
                               seed=text2image.resolve_seed(request.base.seed))
    for axis, values in ((request.x_type, xs), (request.y_type, ys)):
        if axis == "Prompt S/R" and values[0] not in base.prompt + base.negative_prompt:
            raise StudioError(f"Prompt S/R: '{values[0]}' is not in the prompt or the negative prompt.")
    x_search = xs[0] if request.x_type == "Prompt S/R" else None
    y_search = ys[0] if request.y_type == "Prompt S/R" else None
    rows = [[apply(apply(base, request.x_type, x, x_search), request.y_type, y, y_search) for x in xs] for y in ys]
    return xs, ys, rows


def run(manager, request: XYGridRequest, progress) -> Text2ImageResult:
    """Every cell through text2image.run, then the labelled grid; the grid comes first in the result."""
    xs, ys, rows = cell_requests(request)
    entry = manager.entry(request.base.model)
    for row in rows:  # every cell's settings are valid before the first one is drawn
        for cell in row:
            text2image.resolve_settings(cell, entry, manager.catalog.names(UPSCALE))
    count = len(xs) * len(ys)
    cells, warnings = [], []
    for index, cell in enumerate(cell for row in rows for cell in row):
        result = text2image.run(manager, cell, StageProgress(progress, index, count))
        cells += result.images
        warnings += [w for w in result.warnings if w not in warnings]
    x_labels = [label(request.x_type, x) for x in xs]
    y_labels = [label(request.y_type, y) for y in ys] if request.y_type != NOTHING else []
    grid = draw_grid([c.image for c in cells], len(xs), x_labels, y_labels)
    fields = {"X Type": request.x_type, "X Values": request.x_values, "Y Type": request.y_type,
              "Y Values": request.y_values} if request.y_type != NOTHING else {
        "X Type": request.x_type, "X Values": request.x_values}
    text = cells[0].parameters.rstrip() + ", " + ", ".join(f"{k}: {metadata.quote(v)}" for k, v in fields.items())
    grid_image = GeneratedImage(grid, cells[0].seed, text, kind="txt2img-grids")
    return Text2ImageResult([grid_image, *cells], warnings)


def label(axis: str, value) -> str:
    if axis == "Prompt S/R":
        return str(value)
    return f"{axis}: {value:g}" if isinstance(value, float) else f"{axis}: {value}"


def draw_grid(images: list[Image.Image], columns: int, x_labels: list[str], y_labels: list[str]) -> Image.Image:
    """Cells left to right, top to bottom, with the X labels above the columns and Y labels left of rows."""
    width, height = images[0].size
    font_size = max(12, min(32, width // 8))
    font = ImageFont.load_default(size=font_size)
    measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
    x_lines = [wrap(text, font, width - 4, measure) for text in x_labels]
    top = (max(len(lines) for lines in x_lines) * (font_size + 4) + 8) if x_labels else 0
    left = min(max((int(measure.textlength(t, font=font)) for t in y_labels), default=-16) + 16, 2 * width)
    y_lines = [wrap(text, font, left - 16, measure) for text in y_labels]
    rows = (len(images) + columns - 1) // columns
    grid = Image.new("RGB", (left + columns * width, top + rows * height), "white")
    draw = ImageDraw.Draw(grid)
    for i, image in enumerate(images):
        grid.paste(image, (left + (i % columns) * width, top + (i // columns) * height))
    for column, lines in enumerate(x_lines):
        for n, line in enumerate(lines):
            x = left + column * width + (width - measure.textlength(line, font=font)) / 2
            draw.text((x, 4 + n * (font_size + 4)), line, fill="black", font=font)
    for row, lines in enumerate(y_lines):
        y = top + row * height + (height - len(lines) * (font_size + 4)) / 2
        for n, line in enumerate(lines):
            draw.text((8, y + n * (font_size + 4)), line, fill="black", font=font)
    return grid


def wrap(text: str, font, width: int, measure: ImageDraw.ImageDraw) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        candidate = f"{line} {word}".strip()
        if line and measure.textlength(candidate, font=font) > width:
            lines.append(line)
            candidate = word
        line = candidate
    return lines + [line] if line else lines or [""]
