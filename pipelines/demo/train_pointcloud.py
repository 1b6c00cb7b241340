"""Train the demo point-cloud model on the 3D shapes world (resumable, CPU-friendly).

    OMP_NUM_THREADS=1 python -m pipelines.demo.train_pointcloud --minutes 25
    OMP_NUM_THREADS=1 python -m pipelines.demo.train_pointcloud --resume --minutes 10   # continue

Clouds are sampled fresh every step (the world is procedural, so there is no dataset to overfit).
The run folder keeps `ckpt.safetensors` (weights, EMA, optimiser state) and `export/`, an EMA
diffusers folder; `--publish` copies the export to assets/models/shapes-pointcloud with its card
and the resumable state to assets/training/shapes-pointcloud.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from pipelines.demo import world3d
from pipelines.demo.tokenizer import build_tokenizer, check_tokenizer
from pipelines.demo.train import optimizer_step
from pipelines.demo.world import COLORS
from pipelines.pointcloud_model import PointCloudDenoiser, PointCloudPipeline, to_channels

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = ROOT / "runs" / "shapes-pointcloud"
MODEL_DIR = ROOT / "assets" / "models" / "shapes-pointcloud"
TRAINING_DIR = ROOT / "assets" / "training" / "shapes-pointcloud"
CAPTION_DROPOUT = 0.1  # empty prompt this often, for classifier-free guidance
CARD = {"name": "Shapes point clouds (demo)", "task": "pointcloud", "sampler": "DPM++ 2M", "steps": 25,
        "cfg_scale": 1.0, "points": 256,
        "description": "built-in demo point-cloud model trained on coloured 3D primitives "
                       "(prompts like 'a red torus': sphere, cube, cylinder, cone, torus)"}


def denoiser_config() -> dict:
    return dict(width=96, num_layers=4, num_heads=4, cond_dim=64)


def text_config(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                num_attention_heads=4, max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, projection_dim=64)


def scheduler_config() -> dict:
    # v-prediction: with the cosine schedule the noisiest steps have alpha_bar ~ 1e-9, where an
    # epsilon model's error is amplified ~1e4× into its x0 estimate; a v model's is not.
    # "leading" spacing (as SD's configs) skips the last, alpha_bar ~ 1e-9 timesteps at sampling time, whose
    # sigma ~ 2e4 makes some samplers' float32 arithmetic produce NaN (Euler a's sigma_up/sigma_down).
    return dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type="v_prediction",
                clip_sample=False, timestep_spacing="leading", steps_offset=1)


def make_tokenizer():
    tokenizer = build_tokenizer(extra_words=world3d.SHAPES3D)
    check_tokenizer(tokenizer, world3d.SHAPES3D)
    return tokenizer


def make_models(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel

    return PointCloudDenoiser(**denoiser_config()), CLIPTextModel(CLIPTextConfig(**text_config(tokenizer)))


class Captions:
    """Token ids of every caption ("a red torus", "red torus") and of the empty prompt."""

    def __init__(self, tokenizer):
        self.colors, self.shapes = list(COLORS), list(world3d.SHAPES3D)
        texts = [world3d.prompt_for(c, s, f) for c in self.colors for s in self.shapes for f in ("short", "bare")]
        self.ids = tokenizer(texts + [""], padding="max_length", max_length=tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids
        self.empty = len(texts)

    def sample(self, rng: np.random.Generator, clouds) -> torch.Tensor:
        idx = [(self.colors.index(c.color) * len(self.shapes) + self.shapes.index(c.shape)) * 2 + int(rng.integers(2))
               for c in clouds]
        idx = [self.empty if rng.random() < CAPTION_DROPOUT else i for i in idx]
        return self.ids[idx]


def batch_of_clouds(rng: np.random.Generator, size: int, points: int):
    clouds = [world3d.sample_cloud(rng, n=points) for _ in range(size)]
    x0 = torch.from_numpy(np.stack([to_channels(c.points, c.colors) for c in clouds]))
    return x0, clouds


def export(denoiser, text_encoder, tokenizer, ema, out_dir: Path) -> None:
    """Save an fp16 diffusers folder with the EMA weights (atomically replaces out_dir)."""
    import copy

    from diffusers import DDPMScheduler

    den, te = copy.deepcopy(denoiser), copy.deepcopy(text_encoder)
    with torch.no_grad():
        for p, e in zip(list(den.parameters()) + list(te.parameters()), ema):
            p.copy_(e)
    pipe = PointCloudPipeline(den.half(), DDPMScheduler(**scheduler_config()), te.half(), tokenizer)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def save_checkpoint(path: Path, params, ema, opt, step: int, meta: dict) -> None:
    tensors = {f"param.{i}": p.detach().float() for i, p in enumerate(params)}
    tensors.update({f"ema.{i}": e.float() for i, e in enumerate(ema)})
    for i, p in enumerate(params):
        state = opt.state.get(p)
        if state:
            # bf16 optimiser moments: half the size, and plenty for resuming
            tensors[f"opt.{i}.exp_avg"] = state["exp_avg"].bfloat16()
            tensors[f"opt.{i}.exp_avg_sq"] = state["exp_avg_sq"].bfloat16()
    tmp = path.with_suffix(".tmp")
    save_file(tensors, str(tmp), metadata={k: str(v) for k, v in {**meta, "step": step}.items()})
    os.replace(tmp, path)


def load_checkpoint(path: Path, params, ema, opt) -> int:
    from safetensors import safe_open

    tensors = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        step = int((f.metadata() or {}).get("step", 0))
    with torch.no_grad():
        for i, p in enumerate(params):
            p.copy_(tensors[f"param.{i}"])
            ema[i].copy_(tensors[f"ema.{i}"])
            if f"opt.{i}.exp_avg" in tensors:
                opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": tensors[f"opt.{i}.exp_avg"].float(),
                                "exp_avg_sq": tensors[f"opt.{i}.exp_avg_sq"].float()}
    return step


def train(args) -> None:
    from diffusers import DDPMScheduler

    torch.set_num_threads(args.threads)
    run_dir = Path(args.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tokenizer = make_tokenizer()
    torch.manual_seed(args.seed)
    denoiser, text_encoder = make_models(tokenizer)
    params = list(denoiser.parameters()) + list(text_encoder.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ckpt = run_dir / "ckpt.safetensors"
    step = 0
    if args.resume:
        source = ckpt if ckpt.exists() else TRAINING_DIR / "ckpt.safetensors"
        if not source.exists():
            raise SystemExit(f"--resume: no checkpoint at {ckpt} or {source}")
        step = load_checkpoint(source, params, ema, opt)
        print(f"resumed from {source} at step {step}", flush=True)
    print(f"denoiser {sum(p.numel() for p in denoiser.parameters()) / 1e6:.2f} M params, text encoder "
          f"{sum(p.numel() for p in text_encoder.parameters()) / 1e6:.2f} M", flush=True)

    abar = DDPMScheduler(**scheduler_config()).alphas_cumprod
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=args.snr_gamma) / (snr + 1)  # min-SNR weighting for v-prediction
    captions = Captions(tokenizer)
    rng = np.random.default_rng(args.seed * 100_003 + step)
    gen = torch.Generator().manual_seed(args.seed * 100_003 + step)

    def lr_at(s: int) -> float:
        warm = min(1.0, (s + 1) / 200)
        return args.lr * warm * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, args.steps) / args.steps)))

    def checkpoint() -> None:
        save_checkpoint(ckpt, params, ema, opt, step, {"seed": args.seed, "lr": args.lr, "steps": args.steps})
        export(denoiser, text_encoder, tokenizer, ema, run_dir / "export")
        (run_dir / "export" / "train_step.json").write_text(json.dumps({"step": step}))

    deadline = time.time() + args.minutes * 60
    t0, losses = time.time(), []
    denoiser.train(); text_encoder.train()
    while step < args.steps and time.time() < deadline:
        x0, clouds = batch_of_clouds(rng, args.batch, args.points)
        ids = captions.sample(rng, clouds)
        noise = torch.randn(x0.shape, generator=gen)
        t = torch.randint(0, 1000, (args.batch,), generator=gen)
        a, s = abar[t].sqrt().view(-1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1)
        pred = denoiser(a * x0 + s * noise, t, text_encoder(ids)[0]).sample
        loss = (weight[t] * ((pred - (a * noise - s * x0)) ** 2).mean(dim=(1, 2))).mean()
        for group in opt.param_groups:
            group["lr"] = lr_at(step)
        step += 1
        optimizer_step(opt, loss, params, ema, step, args.ema)
        losses.append(loss.item())
        if step % args.log_every == 0:
            print(f"step {step} loss {np.mean(losses[-args.log_every:]):.4f} lr {lr_at(step):.2e} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % args.ckpt_every == 0:
            checkpoint()
    checkpoint()
    print(f"stopped at step {step} after {time.time() - t0:.0f}s", flush=True)


def publish(run_dir: Path, metrics: dict | None = None) -> None:
    """Copy the EMA export to assets/models (with its studio.json card) and the resumable state."""
    from diffusers import DDPMScheduler

    step = json.loads((run_dir / "export" / "train_step.json").read_text())["step"]
    tmp = MODEL_DIR.with_name(MODEL_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(run_dir / "export", tmp, ignore=shutil.ignore_patterns("train_step.json"))
    DDPMScheduler(**scheduler_config()).save_pretrained(tmp / "scheduler")  # this code's sampling settings
    card = {**CARD, "trained_steps": step, **({"metrics": metrics} if metrics else {})}
    (tmp / "studio.json").write_text(json.dumps(card, indent=2) + "\n")
    shutil.rmtree(MODEL_DIR, ignore_errors=True)
    os.replace(tmp, MODEL_DIR)
    TRAINING_DIR.mkdir(parents=True, exist_ok=True)
    from safetensors import safe_open

    with safe_open(str(run_dir / "ckpt.safetensors"), "pt") as f:
        meta = f.metadata()
    tensors = {k: v.bfloat16() if k.startswith("opt.") else v for k, v in load_file(str(run_dir / "ckpt.safetensors")).items()}
    save_file(tensors, str(TRAINING_DIR / "ckpt.safetensors"), metadata=meta)
    (TRAINING_DIR / "ckpt.json").write_text(json.dumps({"step": step}) + "\n")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.train_pointcloud")
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--resume", action="store_true", help="continue from the run dir's checkpoint "
                    "(or the committed one in assets/training/shapes-pointcloud)")
    ap.add_argument("--steps", type=int, default=4500, help="length of the learning-rate schedule")
    ap.add_argument("--minutes", type=float, default=25.0, help="stop (and checkpoint) after this long")
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--points", type=int, default=128, help="points per training cloud (sampling may use more)")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.998)
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--log-every", type=int, default=50)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--publish", action="store_true", help="only copy the run's export into assets/")
    args = ap.parse_args(argv)
    if args.publish:
        from pipelines.demo.evaluate3d import evaluate_folder

        torch.set_num_threads(args.threads)
        publish(args.run_dir, evaluate_folder(args.run_dir / "export", CARD))
    else:
        train(args)


if __name__ == "__main__":
    main()
