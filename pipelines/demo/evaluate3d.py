"""Judge a point-cloud model folder on every (colour, shape) prompt of the 3D shapes world.

    OMP_NUM_THREADS=1 python -m pipelines.demo.evaluate3d assets/models/shapes-pointcloud --seeds 2
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from pipelines.demo import judge3d, world3d
from pipelines.demo.world import COLORS
from pipelines.samplers import build_scheduler


def load(folder: str | Path):
    from pipelines.pointcloud_model import PointCloudPipeline

    pipe = PointCloudPipeline.from_pretrained(str(folder), local_files_only=True, use_safetensors=True,
                                              dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def evaluate(pipe, prompts: list[tuple[str, str]], seeds: list[int], *, points: int = world3d.POINTS,
             steps: int = 25, cfg: float = 3.0, sampler: str = "DPM++ 2M") -> dict:
    """Fractions of clouds whose judged shape, colour, and both match the prompt."""
    pipe.scheduler = build_scheduler(sampler, pipe.scheduler.config)
    hits = {"shape": 0, "color": 0, "shape_color": 0}
    misses = []
    for seed in seeds:
        texts = [world3d.prompt_for(color, shape) for color, shape in prompts]
        generators = [torch.Generator().manual_seed(seed + i) for i in range(len(texts))]
        out = pipe(texts, num_points=points, num_inference_steps=steps, guidance_scale=cfg, generator=generators)
        for (color, shape), pts, rgb in zip(prompts, out.points, out.colors):
            verdict = judge3d.judge(pts, rgb)
            hits["shape"] += verdict.shape == shape
            hits["color"] += verdict.color == color
            hits["shape_color"] += verdict.matches(shape, color)
            if not verdict.matches(shape, color):
                misses.append(f"{color} {shape} -> {verdict.color} {verdict.shape}")
    n = len(prompts) * len(seeds)
    return {**{k: round(v / n, 3) for k, v in hits.items()}, "n": n, "points": points, "steps": steps,
            "cfg_scale": cfg, "sampler": sampler, "misses": misses}


def all_prompts() -> list[tuple[str, str]]:
    return [(c, s) for c in COLORS for s in world3d.SHAPES3D]


def evaluate_folder(folder: str | Path, card: dict, seeds: int = 2) -> dict:
    """Every prompt × `seeds` seeds with the model card's recommended settings."""
    result = evaluate(load(folder), all_prompts(), [1000 * k for k in range(seeds)], points=card["points"],
                      steps=card["steps"], cfg=card["cfg_scale"], sampler=card["sampler"])
    result.pop("misses")
    return result


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.evaluate3d")
    ap.add_argument("folder")
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--points", type=int, default=world3d.POINTS)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--cfg", type=float, default=3.0)
    ap.add_argument("--sampler", default="DPM++ 2M")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    result = evaluate(load(args.folder), all_prompts(), [1000 * k for k in range(args.seeds)], points=args.points,
                      steps=args.steps, cfg=args.cfg, sampler=args.sampler)
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
