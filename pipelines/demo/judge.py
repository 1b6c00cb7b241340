"""An OpenCV judge for the shapes world: background colour, foreground shape, its colour.

    v = judge(image)          # PIL image or uint8 numpy HxWx3 (RGB), any size
    v.color, v.shape, v.background, v.mask, v.centroid, v.bbox

Method: the background is the median colour of the image border; the foreground is every pixel
far from it (largest connected component); its colour is the nearest palette colour to the
median of the component's interior; its shape comes from how much of its minimum-area
rectangle it fills (square ~1, circle ~0.79, triangle ~0.5) and its circularity.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from .world import COLORS, PALETTE

SIZE = 64
FG_THRESHOLD = 48.0   # RGB distance from the background that makes a pixel foreground
MIN_AREA = 12         # pixels (at 64x64); smaller components are noise, "no shape"

_PAL_NAMES = list(PALETTE)
_SHAPE_COLOR_NAMES = list(COLORS)


def _to_lab(rgb: np.ndarray) -> np.ndarray:
    arr = np.asarray(rgb, dtype=np.float32).reshape(-1, 1, 3) / 255.0
    return cv2.cvtColor(arr, cv2.COLOR_RGB2Lab).reshape(-1, 3)


_PAL_LAB = _to_lab(np.array([PALETTE[n] for n in _PAL_NAMES]))


def nearest_color(rgb, names: list[str] | None = None) -> str:
    """Palette name nearest to an RGB triple (CIE Lab distance)."""
    names = names or _PAL_NAMES
    lab = _to_lab(np.array(rgb))[0]
    idx = [_PAL_NAMES.index(n) for n in names]
    d = np.linalg.norm(_PAL_LAB[idx] - lab, axis=1)
    return names[int(np.argmin(d))]


@dataclass
class Verdict:
    background: str
    color: str | None               # None when no foreground shape was found
    shape: str | None
    mask: np.ndarray                # bool HxW at the judged size (64x64)
    centroid: tuple[float, float] | None   # (x, y) in judged pixels
    bbox: tuple[int, int, int, int] | None  # (x, y, w, h) in judged pixels
    area: int = 0
    fill: float = 0.0               # area / min-area-rectangle area
    circularity: float = 0.0        # 4*pi*area / perimeter^2
    background_rgb: tuple[int, int, int] = (0, 0, 0)
    color_rgb: tuple[int, int, int] | None = None

    @property
    def found(self) -> bool:
        return self.shape is not None

    def matches(self, color: str | None = None, shape: str | None = None,
                background: str | None = None) -> bool:
        return ((color is None or self.color == color) and (shape is None or self.shape == shape)
                and (background is None or self.background == background))


def _as_array(image) -> np.ndarray:
    if hasattr(image, "convert"):  # PIL
        image = np.asarray(image.convert("RGB"))
    arr = np.asarray(image)
    if arr.dtype != np.uint8:
        a = arr.astype(np.float32)
        if a.max() <= 1.0 + 1e-6:
            a = a * 255.0
        arr = np.clip(a + 0.5, 0, 255).astype(np.uint8)
    if arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    if arr.shape[2] == 4:
        arr = arr[..., :3]
    if arr.shape[:2] != (SIZE, SIZE):
        arr = cv2.resize(arr, (SIZE, SIZE), interpolation=cv2.INTER_AREA)
    return np.ascontiguousarray(arr)


def classify_shape(fill: float, circularity: float) -> str:
    if fill >= 0.88:
        return "square"
    if fill <= 0.64:
        return "triangle"
    return "circle"


def judge(image) -> Verdict:
    img = _as_array(image)
    h, w = img.shape[:2]
    border = np.concatenate([img[:2].reshape(-1, 3), img[-2:].reshape(-1, 3),
                             img[:, :2].reshape(-1, 3), img[:, -2:].reshape(-1, 3)])
    bg_rgb = np.median(border, axis=0)
    background = nearest_color(bg_rgb)
    dist = np.linalg.norm(img.astype(np.float32) - bg_rgb[None, None], axis=2)
    fg = (dist > FG_THRESHOLD).astype(np.uint8)
    fg = cv2.morphologyEx(fg, cv2.MORPH_OPEN, np.ones((2, 2), np.uint8))
    n, labels, stats, cents = cv2.connectedComponentsWithStats(fg, connectivity=8)
    bg_t = tuple(int(v) for v in bg_rgb)
    if n <= 1:
        return Verdict(background, None, None, np.zeros((h, w), bool), None, None,
                       background_rgb=bg_t)
    k = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    area = int(stats[k, cv2.CC_STAT_AREA])
    mask = labels == k
    if area < MIN_AREA:
        return Verdict(background, None, None, mask, None, None, area=area, background_rgb=bg_t)
    # fill holes so a ring-like artefact still reads as its outline
    m8 = mask.astype(np.uint8)
    contours, _ = cv2.findContours(m8, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
    cnt = max(contours, key=cv2.contourArea)
    c_area = max(cv2.contourArea(cnt), 1.0)
    (_, _), (rw, rh), _ = cv2.minAreaRect(cnt)
    fill = float(c_area / max(rw * rh, 1.0))
    perim = cv2.arcLength(cnt, True)
    circ = float(4 * np.pi * c_area / max(perim * perim, 1e-6))
    shape = classify_shape(fill, circ)
    interior = cv2.erode(m8, np.ones((3, 3), np.uint8)).astype(bool)
    if interior.sum() < 4:
        interior = mask
    col_rgb = np.median(img[interior], axis=0)
    color = nearest_color(col_rgb, _SHAPE_COLOR_NAMES)
    x, y, bw, bh = (int(v) for v in stats[k, :4])
    return Verdict(background=background, color=color, shape=shape, mask=mask,
                   centroid=(float(cents[k][0]), float(cents[k][1])), bbox=(x, y, bw, bh),
                   area=area, fill=fill, circularity=circ, background_rgb=bg_t,
                   color_rgb=tuple(int(v) for v in col_rgb))


def accuracy(n: int = 2000, seed: int = 12345) -> dict[str, float]:
    """Judge accuracy on n held-out ground-truth scenes (seeds disjoint from training's)."""
    from .world import render, sample_scene
    rng = np.random.default_rng(seed)
    ok = {"color": 0, "shape": 0, "background": 0, "all": 0}
    for _ in range(n):
        s = sample_scene(rng)
        v = judge(render(s))
        c, sh, b = v.color == s.main.color, v.shape == s.main.shape, v.background == s.background
        ok["color"] += c
        ok["shape"] += sh
        ok["background"] += b
        ok["all"] += c and sh and b
    return {k: v / n for k, v in ok.items()}


if __name__ == "__main__":
    print(accuracy())
