"""The 3D side of the shapes world: seeded coloured point clouds of primitives, with captions.

Every primitive stands upright (its axis is y), centred at the origin, its size `scale` in
[MIN_SCALE, MAX_SCALE]; points are sampled uniformly over the surface (area-weighted), and each
point carries the shape's colour with a little per-point shading noise.

    rng = np.random.default_rng(0)
    cloud = sample_cloud(rng, shape="torus", color="red")   # Cloud(points (N,3), colors (N,3) uint8)
    caption(cloud)                                          # "a red torus"
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .world import COLORS

SHAPES3D: tuple[str, ...] = ("sphere", "cube", "cylinder", "cone", "torus")
MIN_SCALE, MAX_SCALE = 0.7, 1.0
POINTS = 512
COLOR_NOISE = 10  # per-point shading noise (uint8 units), so colours are not perfectly flat

# Proportions of each primitive relative to its scale (shared with the judge's surface fits).
SPHERE_R = 1.0
CUBE_HALF = 0.65
CYL_R, CYL_HALF = 0.6, 0.8
CONE_R, CONE_HALF = 0.75, 0.8
TORUS_R, TORUS_TUBE = 0.68, 0.28


@dataclass(frozen=True)
class Cloud:
    shape: str
    color: str
    scale: float
    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8


def _disk(rng, n, radius):
    rho, phi = radius * np.sqrt(rng.random(n)), rng.random(n) * 2 * np.pi
    return rho * np.cos(phi), rho * np.sin(phi)


def _sphere(rng, n, s):
    v = rng.normal(size=(n, 3))
    return s * SPHERE_R * v / np.linalg.norm(v, axis=1, keepdims=True)


def _cube(rng, n, s):
    a = s * CUBE_HALF
    p = rng.uniform(-a, a, size=(n, 3))
    axis, sign = rng.integers(3, size=n), rng.choice([-a, a], size=n)
    p[np.arange(n), axis] = sign
    return p


def _cylinder(rng, n, s):
    r, h = s * CYL_R, s * CYL_HALF
    side, cap = 2 * np.pi * r * 2 * h, np.pi * r * r
    kind = rng.choice(3, size=n, p=np.array([side, cap, cap]) / (side + 2 * cap))
    phi = rng.random(n) * 2 * np.pi
    x, z, y = r * np.cos(phi), r * np.sin(phi), rng.uniform(-h, h, n)
    dx, dz = _disk(rng, n, r)
    on_cap = kind > 0
    x, z = np.where(on_cap, dx, x), np.where(on_cap, dz, z)
    y = np.where(kind == 1, h, np.where(kind == 2, -h, y))
    return np.stack([x, y, z], axis=1)


def _cone(rng, n, s):
    r, h = s * CONE_R, s * CONE_HALF
    lateral, base = np.pi * r * np.hypot(r, 2 * h), np.pi * r * r
    on_base = rng.random(n) < base / (lateral + base)
    u = np.sqrt(rng.random(n))  # distance from the apex, area-weighted
    phi = rng.random(n) * 2 * np.pi
    x, z, y = r * u * np.cos(phi), r * u * np.sin(phi), h - 2 * h * u
    dx, dz = _disk(rng, n, r)
    return np.stack([np.where(on_base, dx, x), np.where(on_base, -h, y), np.where(on_base, dz, z)], axis=1)


def _torus(rng, n, s):
    big, tube = s * TORUS_R, s * TORUS_TUBE
    theta = np.empty(0)
    while theta.size < n:  # the outer side of the tube has more area: rejection-sample the tube angle
        t = rng.random(4 * n) * 2 * np.pi
        keep = rng.random(4 * n) < (big + tube * np.cos(t)) / (big + tube)
        theta = np.concatenate([theta, t[keep]])
    theta, phi = theta[:n], rng.random(n) * 2 * np.pi
    rho = big + tube * np.cos(theta)
    return np.stack([rho * np.cos(phi), tube * np.sin(theta), rho * np.sin(phi)], axis=1)


SAMPLERS = {"sphere": _sphere, "cube": _cube, "cylinder": _cylinder, "cone": _cone, "torus": _torus}


def sample_cloud(rng: np.random.Generator, *, shape: str | None = None, color: str | None = None,
                 n: int = POINTS, scale: float | None = None) -> Cloud:
    """A random primitive as n surface points; any of shape/colour/scale can be fixed."""
    shape = shape or SHAPES3D[rng.integers(len(SHAPES3D))]
    color = color or list(COLORS)[rng.integers(len(COLORS))]
    if shape not in SAMPLERS:
        raise ValueError(f"unknown shape {shape!r}: choose one of {SHAPES3D}")
    s = float(rng.uniform(MIN_SCALE, MAX_SCALE)) if scale is None else float(scale)
    points = SAMPLERS[shape](rng, n, s).astype(np.float32)
    rgb = np.asarray(COLORS[color], np.float64) + rng.uniform(-COLOR_NOISE, COLOR_NOISE, size=(n, 3))
    return Cloud(shape, color, s, points, np.clip(np.round(rgb), 0, 255).astype(np.uint8))


def caption(cloud: Cloud, form: str = "short") -> str:
    """`short`: "a red torus"; `bare`: "red torus"."""
    return prompt_for(cloud.color, cloud.shape, form)


def prompt_for(color: str, shape: str, form: str = "short") -> str:
    return f"{color} {shape}" if form == "bare" else f"a {color} {shape}"


def vocabulary() -> list[str]:
    return sorted({"a"} | set(SHAPES3D) | set(COLORS))
