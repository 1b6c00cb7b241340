"""Publish a training export as a committed demo model (and the state --resume needs).

    python -m pipelines.demo.publish --sampler UniPC --steps 20 --cfg 4
    python -m pipelines.demo.publish --model inpaint --sampler UniPC --steps 20 --cfg 4

Copies runs/<model>/export -> assets/models/<folder> (fp16 diffusers folder) and writes its
studio.json; copies the resumable checkpoint (and the VAE) to assets/training/<folder>.
"""
from __future__ import annotations

import argparse
import json
import shutil
from pathlib import Path

from ..samplers import SAMPLERS
from .train import ROOT, atomic_json

NAME = "Shapes demo (64px)"
INPAINT_NAME = "Shapes demo inpainting (64px)"
WORLD = "the procedural shapes world"
MODELS = {
    "text2image": {"folder": "shapes-sd", "card": {
        "name": NAME, "inpainting_model": INPAINT_NAME,
        "description": f"built-in demo model trained on {WORLD} (prompts like 'a red circle on a blue background')"}},
    "inpaint": {"folder": "shapes-sd-inpaint", "card": {
        "name": INPAINT_NAME, "task": "inpaint",
        "description": f"built-in 9-channel inpainting model fine-tuned from the shapes demo on {WORLD}"}},
}
TRAINING_FILES = ("vae.safetensors", "vae.json", "ckpt.safetensors", "ckpt.json")


def publish(model: str, run_dir: Path, sampler: str, steps: int, cfg: float, metrics: dict | None = None,
            with_training_state: bool = True) -> None:
    if sampler not in SAMPLERS:
        raise SystemExit(f"unknown sampler {sampler!r}; one of {list(SAMPLERS)}")
    folder = MODELS[model]["folder"]
    asset_dir, training_dir = ROOT / "assets" / "models" / folder, ROOT / "assets" / "training" / folder
    src = run_dir / "export"
    trained = json.loads((src / "train_step.json").read_text())["step"]
    tmp = asset_dir.with_name(asset_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("train_step.json", "studio.json"))
    studio = {**MODELS[model]["card"], "sampler": sampler, "steps": steps, "cfg_scale": cfg,
              "width": 64, "height": 64, "trained_steps": trained}
    if metrics:
        studio["metrics"] = metrics
    atomic_json(studio, tmp / "studio.json")
    if asset_dir.exists():
        shutil.rmtree(asset_dir)
    tmp.rename(asset_dir)
    if with_training_state:
        training_dir.mkdir(parents=True, exist_ok=True)
        for name in TRAINING_FILES:
            if (run_dir / name).exists():
                shutil.copy(run_dir / name, training_dir / name)
    size = sum(p.stat().st_size for p in asset_dir.rglob("*") if p.is_file())
    print(f"published step {trained} to {asset_dir} ({size / 2**20:.1f} MiB): {studio}")


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.publish")
    ap.add_argument("--model", choices=list(MODELS), default="text2image")
    ap.add_argument("--run-dir", type=Path, default=None, help="default: runs/<model>")
    ap.add_argument("--sampler", required=True)
    ap.add_argument("--steps", type=int, required=True)
    ap.add_argument("--cfg", type=float, required=True)
    ap.add_argument("--metrics", type=str, default=None, help="JSON dict of measured numbers")
    ap.add_argument("--no-training-state", action="store_true")
    args = ap.parse_args(argv)
    publish(args.model, args.run_dir or ROOT / "runs" / args.model, args.sampler, args.steps, args.cfg,
            json.loads(args.metrics) if args.metrics else None, not args.no_training_state)


if __name__ == "__main__":
    main()
