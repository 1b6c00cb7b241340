"""Judge a shapes text-to-image model: prompt adherence on fixed prompts x seeds.

    python -m pipelines.demo.evaluate [PATH] [--sampler "DPM++ 2M"] [--steps 20] [--cfg 4 1]

PATH defaults to the committed assets/models/shapes-sd. Prints one line per setting:
colour+shape rate, background rate, all-three rate, seconds per image.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import numpy as np
import torch

from . import world
from .judge import judge
from ..samplers import build_scheduler

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_MODEL = ROOT / "assets" / "models" / "shapes-sd"

def set_sampler(pipe, name: str):
    """Use the studio's own sampler table, so evaluation and the studio sample the same way."""
    pipe.scheduler = build_scheduler(name, pipe.scheduler.config)
    return pipe


def load(path=DEFAULT_MODEL, sampler: str | None = None):
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(str(path), local_files_only=True,
                                                   dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    if sampler is None:
        studio = Path(path) / "studio.json"
        if studio.exists():
            sampler = json.loads(studio.read_text())["sampler"]
    if sampler:
        set_sampler(pipe, sampler)
    return pipe


def fixed_cases(n: int = 64, seed: int = 2024, form: str = "canonical"):
    """n (prompt, colour, shape, background, seed) cases, fixed by `seed`."""
    rng = np.random.default_rng(seed)
    colors, cases = list(world.COLORS), []
    for i in range(n):
        c = colors[rng.integers(len(colors))]
        s = world.SHAPES[rng.integers(len(world.SHAPES))]
        bgs = [b for b in world.BACKGROUNDS if b != c]
        b = bgs[rng.integers(len(bgs))]
        cases.append((world.prompt_for(c, s, b, form), c, s, b, int(rng.integers(1 << 31))))
    return cases


def generate(pipe, prompts, seeds, steps=20, cfg=4.0, batch=64, **kw) -> list[np.ndarray]:
    out = []
    for i in range(0, len(prompts), batch):
        gens = [torch.Generator("cpu").manual_seed(s) for s in seeds[i:i + batch]]
        r = pipe(prompt=list(prompts[i:i + batch]), num_inference_steps=steps, guidance_scale=cfg,
                 height=64, width=64, generator=gens, output_type="np", **kw)
        out += [(im * 255).round().clip(0, 255).astype(np.uint8) for im in r.images]
    return out


def adherence(pipe, steps=20, cfg=4.0, n=64, form="canonical", seed=2024) -> dict:
    cases = fixed_cases(n, seed, form)
    t = time.time()
    imgs = generate(pipe, [c[0] for c in cases], [c[4] for c in cases], steps, cfg)
    dt = (time.time() - t) / n
    cs = bg = allk = 0
    for (p, c, s, b, _), im in zip(cases, imgs):
        v = judge(im)
        ok = v.color == c and v.shape == s
        cs += ok
        bg += v.background == b
        allk += ok and v.background == b
    return {"color_shape": cs / n, "background": bg / n, "all": allk / n, "sec_per_image": dt,
            "images": imgs}


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.evaluate")
    ap.add_argument("path", nargs="?", default=str(DEFAULT_MODEL))
    ap.add_argument("--sampler", nargs="*", default=None)
    ap.add_argument("--steps", type=int, nargs="*", default=[20])
    ap.add_argument("--cfg", type=float, nargs="*", default=[4.0, 1.0])
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--form", default="canonical")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    pipe = load(args.path)
    step_file = Path(args.path) / "train_step.json"
    if step_file.exists():
        print("trained steps:", json.loads(step_file.read_text())["step"])
    samplers = args.sampler or [None]
    results = []
    for sampler in samplers:
        if sampler:
            set_sampler(pipe, sampler)
        for steps in args.steps:
            for cfg in args.cfg:
                r = adherence(pipe, steps, cfg, args.n, args.form)
                r.pop("images")
                r.update(sampler=sampler or type(pipe.scheduler).__name__, steps=steps, cfg=cfg)
                results.append(r)
                print(f"{r['sampler']:>16} steps {steps:>3} cfg {cfg:>4}: colour+shape "
                      f"{r['color_shape']:.3f}  background {r['background']:.3f}  all {r['all']:.3f}"
                      f"  {r['sec_per_image'] * 1000:.0f} ms/img", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
