"""Image → coloured point cloud by monocular depth: estimate (or take) a depth map, back-project it.

Depth maps follow the convention of depth estimators and ControlNet depth maps: brighter = nearer
(relative inverse depth). Any 8/16-bit or float greyscale map works; it is normalised to [0, 1]
and mapped to depth z in [NEAR, FAR] through 1/z, which keeps planes planar (the inverse depth
of a plane is affine in pixel coordinates).
"""

from __future__ import annotations

import logging

import numpy as np
from PIL import Image

from pipelines.errors import StudioError
from pipelines.images import to_rgb

log = logging.getLogger(__name__)

DEPTH_MODEL = "depth-anything/Depth-Anything-V2-Small-hf"
NEAR, FAR = 1.0, 4.0
FOV_DEGREES = 60.0  # horizontal field of view assumed for the camera


def depth_array(depth, size: tuple[int, int]) -> np.ndarray:
    """A user's depth map (PIL image or array) as float [0, 1] (1 = nearest) at `size` (w, h)."""
    if isinstance(depth, Image.Image):
        if depth.mode not in ("I;16", "I;16B", "I;16L", "I", "F", "L"):
            depth = depth.convert("L")
        depth = np.asarray(depth)
    array = np.asarray(depth, dtype=np.float64)
    if array.ndim == 3:
        array = array[..., :3].mean(axis=2)
    if array.ndim != 2 or array.size == 0 or not np.isfinite(array).all():
        raise StudioError("The depth map must be a greyscale image (brighter = nearer).")
    if array.shape[::-1] != tuple(size):
        array = np.asarray(Image.fromarray(array.astype(np.float32), mode="F").resize(size, Image.BILINEAR),
                           np.float64)
    lo, hi = array.min(), array.max()
    return (array - lo) / (hi - lo) if hi > lo else np.ones_like(array)


def estimate_depth(image: Image.Image) -> np.ndarray:
    """Relative inverse depth from a transformers depth model whose weights are already downloaded."""
    from huggingface_hub import try_to_load_from_cache

    if not isinstance(try_to_load_from_cache(DEPTH_MODEL, "config.json"), str):
        raise StudioError(f"No depth model is downloaded ({DEPTH_MODEL}): upload a depth map for the image "
                          "(brighter = nearer), or connect once so the studio can download it.")
    from transformers import pipeline

    estimator = pipeline("depth-estimation", model=DEPTH_MODEL, local_files_only=True)
    return np.asarray(estimator(image)["predicted_depth"].squeeze().float().cpu().numpy(), np.float64)


def backproject(image, depth, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` points (x right, y up, camera looking down −z) with the image's colours, scaled into
    [-1, 1]; pixels are drawn at random (seeded) from the whole image."""
    rgb = np.asarray(to_rgb(image, "image"))
    h, w = rgb.shape[:2]
    near = depth_array(depth, (w, h))
    z = 1.0 / (1.0 / FAR + near * (1.0 / NEAR - 1.0 / FAR))
    focal = (w / 2) / np.tan(np.deg2rad(FOV_DEGREES) / 2)
    rng = np.random.default_rng(seed)
    pick = rng.choice(h * w, size=min(count, h * w), replace=False)
    v, u = np.divmod(pick, w)
    zs = z[v, u]
    points = np.stack([(u + 0.5 - w / 2) * zs / focal, -(v + 0.5 - h / 2) * zs / focal, -zs], axis=1)
    return normalise(points), rgb[v, u]


def normalise(points: np.ndarray) -> np.ndarray:
    """Centre the bounding box on the origin and scale its longest side to 2 (a similarity: shapes keep)."""
    lo, hi = points.min(axis=0), points.max(axis=0)
    extent = float((hi - lo).max()) or 1.0
    return ((points - (lo + hi) / 2) * (2.0 / extent)).astype(np.float32)
