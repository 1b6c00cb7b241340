"""A geometric judge for coloured point clouds of the 3D shapes world.

Shape: each primitive of the world is fitted to the cloud (its proportions are known, its size is
searched) and the one whose surface lies closest to the points wins — a sphere has a constant
radius, a cube's points lie on flat faces, a torus has a hole around its axis. A cloud that fits
none of them well is "unknown". Colour: the nearest world colour to the points' median colour.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from . import world3d as w
from .world import COLORS

SCALES = np.linspace(0.45, 1.25, 41)
MAX_RESIDUAL = 0.06  # median distance to the best surface, relative to its size, above which: unknown


@dataclass(frozen=True)
class Verdict:
    shape: str  # one of SHAPES3D, or "unknown"
    color: str
    residuals: dict[str, float]  # per shape: median surface distance / size at the best size

    def matches(self, shape: str, color: str) -> bool:
        return self.shape == shape and self.color == color


def _segment_distance(rho, y, a, b):
    """(S, N) distances from (rho, y) points (1, N) to 2D segments a–b given per size: (S, 2) each."""
    p = np.stack([rho, y], axis=-1)  # (1, N, 2)
    a, b = a[:, None, :], b[:, None, :]
    ab = b - a
    t = np.clip(((p - a) * ab).sum(-1) / (ab * ab).sum(-1), 0.0, 1.0)
    return np.linalg.norm(p - (a + t[..., None] * ab), axis=-1)


def _profile_distance(rho, y, corners):
    """Distance to a polyline profile from the axis top to the axis bottom in the (rho, y) half-plane."""
    return np.min([_segment_distance(rho, y, a, b) for a, b in zip(corners[:-1], corners[1:])], axis=0)


def surface_distance(shape: str, p: np.ndarray, s: np.ndarray) -> np.ndarray:
    """(S, N) distances of points p (N, 3) to `shape` at each size s (S,)."""
    x, y, z = (p[None, :, i] for i in range(3))
    s = s[:, None]
    rho = np.hypot(x, z)
    if shape == "sphere":
        return np.abs(np.sqrt(rho**2 + y**2) - w.SPHERE_R * s)
    if shape == "torus":
        return np.abs(np.hypot(rho - w.TORUS_R * s, y) - w.TORUS_TUBE * s)
    if shape == "cube":
        q = np.abs(np.stack([x, y, z])) - w.CUBE_HALF * s
        outside = np.linalg.norm(np.maximum(q, 0), axis=0)
        return np.abs(outside + np.minimum(q.max(axis=0), 0))
    zero = np.zeros_like(s[:, 0])
    if shape == "cylinder":
        r, h = w.CYL_R * s[:, 0], w.CYL_HALF * s[:, 0]
        corners = [(zero, h), (r, h), (r, -h), (zero, -h)]
    elif shape == "cone":
        r, h = w.CONE_R * s[:, 0], w.CONE_HALF * s[:, 0]
        corners = [(zero, h), (r, -h), (zero, -h)]
    else:
        raise ValueError(f"unknown shape {shape!r}")
    return _profile_distance(rho, y, [np.stack(c, axis=-1) for c in corners])


def centre(points: np.ndarray) -> np.ndarray:
    """Centre the cloud's robust bounding box on the origin (the world's primitives are centred)."""
    lo, hi = np.percentile(points, 0.5, axis=0), np.percentile(points, 99.5, axis=0)
    return points - (lo + hi) / 2


def judge_shape(points: np.ndarray) -> tuple[str, dict[str, float]]:
    p = centre(np.asarray(points, np.float64))
    residuals = {}
    for shape in w.SHAPES3D:
        d = np.median(surface_distance(shape, p, SCALES), axis=1) / SCALES
        residuals[shape] = float(d.min())
    best = min(residuals, key=residuals.get)
    return (best if residuals[best] <= MAX_RESIDUAL else "unknown"), residuals


def judge_color(colors: np.ndarray) -> str:
    median = np.median(np.asarray(colors, np.float64), axis=0)
    names = list(COLORS)
    return names[int(np.argmin([np.linalg.norm(median - np.asarray(COLORS[n])) for n in names]))]


def judge(points: np.ndarray, colors: np.ndarray) -> Verdict:
    shape, residuals = judge_shape(points)
    return Verdict(shape, judge_color(colors), residuals)
