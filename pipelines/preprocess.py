"""Control-map makers for ControlNet: each takes any image and returns an RGB map at the given size.

All but depth are plain OpenCV and run offline. Depth uses a transformers depth-estimation model
(DPT / Depth Anything) when its weights are on this machine, and says so clearly when they are not.
"""

from __future__ import annotations

import cv2
import numpy as np
from PIL import Image

from pipelines.errors import StudioError
from pipelines.images import to_rgb

DEPTH_MODEL = "Intel/dpt-hybrid-midas"
MAX_STRETCH = 4.0  # a map is resized to the generation size; beyond this aspect change it is refused


def canny(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    if not 0 <= low <= high <= 255 * 4:
        raise StudioError(f"Canny thresholds need 0 ≤ low ≤ high (got {low}, {high}).")
    return cv2.Canny(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), low, high)


def scribble(image: np.ndarray, low: int = 100, high: int = 200) -> np.ndarray:
    """Thick, simplified strokes, like a hand scribble of the image's outlines."""
    edges = canny(cv2.GaussianBlur(image, (0, 0), 2), low, high)
    return cv2.dilate(edges, np.ones((3, 3), np.uint8), iterations=2)


def lineart(image: np.ndarray, low: int = 0, high: int = 0) -> np.ndarray:
    """Dark lines of the image as white lines on black (the lineart ControlNet convention)."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY), (3, 3), 0)
    return cv2.adaptiveThreshold(grey, 255, cv2.ADAPTIVE_THRESH_MEAN_C, cv2.THRESH_BINARY_INV, 9, 6)


def soft_edge(image: np.ndarray, low: int = 0, high: int = 0) -> np.ndarray:
    """Soft edge strength (HED-like): blurred gradient magnitude, normalised to 0–255."""
    grey = cv2.GaussianBlur(cv2.cvtColor(image, cv2.COLOR_RGB2GRAY).astype(np.float32), (0, 0), 1.5)
    magnitude = cv2.magnitude(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    top = float(magnitude.max()) or 1.0
    return np.clip(cv2.GaussianBlur(magnitude, (0, 0), 1.0) / top * 255, 0, 255).astype(np.uint8)


def depth(image: np.ndarray, low: int = 0, high: int = 0) -> np.ndarray:
    from transformers import pipeline

    try:
        estimator = pipeline("depth-estimation", model=DEPTH_MODEL, model_kwargs={"local_files_only": True})
    except Exception as error:  # noqa: BLE001 - any load failure means "weights not here"
        raise StudioError(f"The depth preprocessor needs the '{DEPTH_MODEL}' weights, which are not on this "
                          f"machine (connect once to download them, or upload a depth map with preprocessor "
                          f"'none'). ({type(error).__name__})") from None
    result = np.asarray(estimator(Image.fromarray(image))["depth"].convert("L"))
    return cv2.resize(result, (image.shape[1], image.shape[0]))


PREPROCESSORS = {"canny": canny, "scribble": scribble, "lineart": lineart, "soft edge": soft_edge,
                 "depth": depth, "none": None}


def control_map(image, preprocessor: str, size: tuple[int, int], low: int = 100, high: int = 200) -> Image.Image:
    """The control map for `image` at `size` (width, height); 'none' uses the image as the map."""
    if preprocessor not in PREPROCESSORS:
        raise StudioError(f"Unknown preprocessor '{preprocessor}'. Choose one of: {', '.join(PREPROCESSORS)}.")
    rgb = to_rgb(image, "control image", background=(0, 0, 0))
    stretch = (rgb.width / rgb.height) / (size[0] / size[1])
    if not 1 / MAX_STRETCH <= stretch <= MAX_STRETCH:
        raise StudioError(f"The control image is {rgb.width}x{rgb.height}, too far from the {size[0]}x{size[1]} "
                          f"generation's shape to match: crop it to a similar aspect ratio.")
    resized = np.asarray(rgb.resize(size, Image.LANCZOS if preprocessor == "none" else Image.BICUBIC))
    maker = PREPROCESSORS[preprocessor]
    if maker is None:
        return Image.fromarray(resized)
    return Image.fromarray(maker(resized, int(low), int(high))).convert("RGB")
