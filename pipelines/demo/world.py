"""The procedural "shapes" world: seeded 64x64 scenes of coloured primitives, with captions.

A scene is a plain background plus a list of shapes (one today; the list lets later tabs add a
second shape, motion over frames or 3D primitives without changing the callers).

    rng = np.random.default_rng(0)
    scene = sample_scene(rng)
    image = render(scene)              # uint8 HxWx3
    text = caption(scene)              # "a red circle on a blue background"
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace

import cv2
import numpy as np

# Shape colours (name -> RGB). Chosen far apart so a simple nearest-colour judge separates them.
COLORS: dict[str, tuple[int, int, int]] = {
    "red": (225, 30, 30),
    "green": (30, 185, 45),
    "blue": (35, 65, 225),
    "yellow": (240, 225, 30),
    "purple": (145, 45, 190),
    "orange": (250, 135, 20),
    "white": (245, 245, 245),
}
# Background-only colours; backgrounds may also be any shape colour other than the shape's.
BACKGROUND_ONLY: dict[str, tuple[int, int, int]] = {
    "black": (10, 10, 10),
    "gray": (128, 128, 128),
}
PALETTE: dict[str, tuple[int, int, int]] = {**COLORS, **BACKGROUND_ONLY}
BACKGROUNDS: tuple[str, ...] = ("black", "white", "gray", "red", "green", "blue", "yellow",
                                "purple", "orange")
SHAPES: tuple[str, ...] = ("circle", "square", "triangle")

CAPTION_FORMS = ("canonical", "short", "bare")
SIZE = 64                 # image side in pixels
MIN_RADIUS, MAX_RADIUS = 9, 22   # half-extent of a shape in pixels
MARGIN = 2                # shapes stay this far from the border
SUPERSAMPLE = 4           # render at 4x and downsample: smooth, anti-aliased edges


@dataclass(frozen=True)
class ShapeSpec:
    """One primitive. `center` and `radius` are in pixels of the output image; `radius` is the
    half-extent of the shape's bounding box. `rotation` (degrees) and `depth` are for later
    extensions (rotated shapes, 3D ordering); today's world samples rotation 0."""
    shape: str
    color: str
    center: tuple[float, float]
    radius: float
    rotation: float = 0.0
    depth: float = 0.0


@dataclass(frozen=True)
class Scene:
    background: str
    shapes: tuple[ShapeSpec, ...] = field(default_factory=tuple)
    width: int = SIZE
    height: int = SIZE

    @property
    def main(self) -> ShapeSpec:
        return self.shapes[0]


def sample_shape(rng: np.random.Generator, *, shape: str | None = None, color: str | None = None,
                 size: int = SIZE) -> ShapeSpec:
    shape = shape or SHAPES[rng.integers(len(SHAPES))]
    color = color or list(COLORS)[rng.integers(len(COLORS))]
    r = float(rng.uniform(MIN_RADIUS, MAX_RADIUS))
    lo, hi = r + MARGIN, size - r - MARGIN
    cx, cy = float(rng.uniform(lo, hi)), float(rng.uniform(lo, hi))
    return ShapeSpec(shape=shape, color=color, center=(cx, cy), radius=r)


def sample_scene(rng: np.random.Generator, *, shape: str | None = None, color: str | None = None,
                 background: str | None = None) -> Scene:
    """A random one-shape scene; any of shape/color/background can be fixed."""
    s = sample_shape(rng, shape=shape, color=color)
    if background is None:
        choices = [b for b in BACKGROUNDS if b != s.color]
        background = choices[rng.integers(len(choices))]
    if background == s.color:
        raise ValueError(f"background must differ from the shape colour ({background})")
    return Scene(background=background, shapes=(s,))


def _polygon(spec: ShapeSpec) -> np.ndarray:
    cx, cy = spec.center
    r = spec.radius
    if spec.shape == "square":
        pts = np.array([[-r, -r], [r, -r], [r, r], [-r, r]], dtype=np.float64)
    elif spec.shape == "triangle":
        pts = np.array([[0.0, -r], [r, r], [-r, r]], dtype=np.float64)
    else:
        raise ValueError(f"no polygon for {spec.shape!r}")
    if spec.rotation:
        t = np.deg2rad(spec.rotation)
        rot = np.array([[np.cos(t), -np.sin(t)], [np.sin(t), np.cos(t)]])
        pts = pts @ rot.T
    return pts + np.array([cx, cy])


def draw_shape(canvas: np.ndarray, spec: ShapeSpec, scale: float = 1.0) -> None:
    """Fill `spec` into `canvas` (HxWx3 uint8), coordinates multiplied by `scale`."""
    rgb = tuple(int(c) for c in PALETTE[spec.color])
    shift = 4  # sub-pixel precision bits for cv2
    f = scale * (1 << shift)
    if spec.shape == "circle":
        c = (int(round((spec.center[0] * scale - 0.5) * (1 << shift))),
             int(round((spec.center[1] * scale - 0.5) * (1 << shift))))
        cv2.circle(canvas, c, int(round(spec.radius * f)), rgb, -1, cv2.LINE_8, shift)
    else:
        pts = np.round((_polygon(spec) * scale - 0.5) * (1 << shift)).astype(np.int32)
        cv2.fillPoly(canvas, [pts], rgb, cv2.LINE_8, shift)


def render(scene: Scene, scale: int = 1) -> np.ndarray:
    """Render to uint8 HxWx3 RGB, `scale` times the scene's size (the same scene in more detail:
    super-resolution ground truth). Shapes are drawn in order of decreasing depth."""
    k = SUPERSAMPLE * scale
    canvas = np.empty((scene.height * k, scene.width * k, 3), dtype=np.uint8)
    canvas[:] = PALETTE[scene.background]
    for spec in sorted(scene.shapes, key=lambda s: -s.depth):
        draw_shape(canvas, spec, scale=k)
    return cv2.resize(canvas, (scene.width * scale, scene.height * scale), interpolation=cv2.INTER_AREA)


def caption(scene: Scene, form: str = "canonical") -> str:
    """`canonical`: "a red circle on a blue background"; `short`: "a red circle";
    `bare`: "red circle". Several shapes are joined with "and"."""
    if form not in CAPTION_FORMS:
        raise ValueError(f"form must be one of {CAPTION_FORMS}, got {form!r}")
    article = "" if form == "bare" else "a "
    things = " and ".join(f"{article}{s.color} {s.shape}" for s in scene.shapes)
    if form == "canonical":
        return f"{things} on a {scene.background} background"
    return things


def prompt_for(color: str, shape: str, background: str | None = None, form: str = "canonical") -> str:
    """Caption for a one-shape scene given its names (background needed for `canonical`)."""
    spec = ShapeSpec(shape=shape, color=color, center=(0, 0), radius=1)
    return caption(Scene(background=background or "black", shapes=(spec,)), form=form)


def vocabulary() -> list[str]:
    """Every word a caption of this world can use."""
    words = {"a", "on", "and", "background"} | set(SHAPES) | set(PALETTE)
    return sorted(words)


def sample_batch(rng: np.random.Generator, n: int) -> tuple[np.ndarray, list[Scene]]:
    """n scenes rendered: (n, 64, 64, 3) uint8 and the scenes."""
    scenes = [sample_scene(rng) for _ in range(n)]
    return np.stack([render(s) for s in scenes]), scenes


# ----------------------------------------------------------------------------- motion (video)
DIRECTIONS: dict[str, tuple[int, int]] = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}
MOTION_MAX_RADIUS = 15    # moving shapes are a little smaller, to leave room to travel
# pixels from the first to the last frame: most of the frame (trained on 10-24 px, the demo adapter
# moved its shapes ~2 px; on this, 17-30 px, though still not the prompted way: docs/demo-models.md)
MIN_TRAVEL, MAX_TRAVEL = 28.0, 44.0


def sample_motion(rng: np.random.Generator, frames: int = 8, *, shape: str | None = None,
                  color: str | None = None, background: str | None = None,
                  direction: str | None = None) -> tuple[list[Scene], str]:
    """A clip of `frames` scenes: one shape moving in a straight line at constant speed in one of
    DIRECTIONS, fully inside the frame (MARGIN) in every frame. Returns (scenes, direction)."""
    direction = direction or list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]
    dx, dy = DIRECTIONS[direction]
    base = sample_scene(rng, shape=shape, color=color, background=background)
    r = float(rng.uniform(MIN_RADIUS, MOTION_MAX_RADIUS))
    lo, hi = r + MARGIN, SIZE - r - MARGIN
    travel = float(rng.uniform(min(MIN_TRAVEL, hi - lo), min(MAX_TRAVEL, hi - lo)))
    start = float(rng.uniform(lo, hi - travel))        # along the motion axis
    across = float(rng.uniform(lo, hi))                # the other coordinate, fixed
    sign = dx + dy
    scenes = []
    for i in range(frames):
        along = start + travel * i / max(frames - 1, 1)
        if sign < 0:
            along = SIZE - along                       # mirror: same path, other way
        center = (along, across) if dx else (across, along)
        spec = replace(base.main, center=center, radius=r)
        scenes.append(replace(base, shapes=(spec,)))
    return scenes, direction


def motion_caption(color: str, shape: str, direction: str, background: str | None = None,
                   form: str = "short") -> str:
    """"a red circle moving right" (`short`), "... moving right on a blue background"
    (`canonical`), "red circle moving right" (`bare`)."""
    if form not in CAPTION_FORMS:
        raise ValueError(f"form must be one of {CAPTION_FORMS}, got {form!r}")
    article = "" if form == "bare" else "a "
    text = f"{article}{color} {shape} moving {direction}"
    if form == "canonical":
        text += f" on a {background} background"
    return text


def render_clip(scenes: list[Scene]) -> np.ndarray:
    """(frames, 64, 64, 3) uint8."""
    return np.stack([render(s) for s in scenes])


__all__ = ["COLORS", "BACKGROUNDS", "BACKGROUND_ONLY", "PALETTE", "SHAPES", "CAPTION_FORMS",
           "ShapeSpec", "Scene", "sample_shape", "sample_scene", "render", "caption", "prompt_for",
           "vocabulary", "sample_batch", "draw_shape", "replace", "DIRECTIONS", "sample_motion",
           "motion_caption", "render_clip"]
