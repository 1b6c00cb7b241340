"""Publish a training export as the committed demo model (and the state --resume needs).

    python -m pipelines.demo.publish --sampler "DPM++ 2M" --steps 20 --cfg 4

Copies runs/text2image/export -> assets/models/shapes-sd (fp16 diffusers folder) and writes its
studio.json; copies the resumable checkpoint and VAE to assets/training/shapes-sd.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..samplers import SAMPLERS
from .train import ASSET_DIR, DEFAULT_RUN_DIR, TRAINING_ASSET_DIR, atomic_json

NAME = "Shapes demo (64px)"


def publish(run_dir: Path, sampler: str, steps: int, cfg: float, metrics: dict | None = None,
            with_training_state: bool = True) -> None:
    if sampler not in SAMPLERS:
        raise SystemExit(f"unknown sampler {sampler!r}; one of {list(SAMPLERS)}")
    src = run_dir / "export"
    trained = json.loads((src / "train_step.json").read_text())["step"]
    tmp = ASSET_DIR.with_name(ASSET_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("train_step.json", "studio.json"))
    studio = {"name": NAME, "sampler": sampler, "steps": steps, "cfg_scale": cfg,
              "width": 64, "height": 64,
              "description": "built-in demo model trained on the procedural shapes world "
                             "(prompts like 'a red circle on a blue background')",
              "trained_steps": trained}
    if metrics:
        studio["metrics"] = metrics
    atomic_json(studio, tmp / "studio.json")
    if ASSET_DIR.exists():
        shutil.rmtree(ASSET_DIR)
    tmp.rename(ASSET_DIR)
    if with_training_state:
        TRAINING_ASSET_DIR.mkdir(parents=True, exist_ok=True)
        for name in ("vae.safetensors", "vae.json", "ckpt.safetensors", "ckpt.json"):
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, TRAINING_ASSET_DIR / name)
    size = sum(p.stat().st_size for p in ASSET_DIR.rglob("*") if p.is_file())
    print(f"published step {trained} to {ASSET_DIR} ({size / 2**20:.1f} MiB): {studio}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.publish")
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--sampler", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--cfg", type=float, required=True)
    ap.add_argument("--metrics", type=str, default=None, help="JSON dict of measured numbers")
    ap.add_argument("--no-training-state", action="store_true")
    args = ap.parse_args(argv)
    publish(args.run_dir, args.sampler, args.steps, args.cfg,
            json.loads(args.metrics) if args.metrics else None, not args.no_training_state)


if __name__ == "__main__":
    main()
