"""Fine-tune the demo text-to-image model into a dedicated 9-channel inpainting model.

    python -m pipelines.demo.train_inpaint                # from assets/models/shapes-sd
    python -m pipelines.demo.train_inpaint --resume       # continue from runs/inpaint (else assets/training)

As the SD inpainting checkpoints were made: the UNet's first convolution grows from 4 to 9 input
channels (noisy latents, mask, masked-image latents), the new channels start at zero so step 0 is
the text-to-image model, and the UNet is trained on scenes with masks while the VAE and the text
encoder stay frozen. Masks: a box around the shape (the model learns to draw the prompted shape
inside the hole), a random box (fill with background), a strip at one edge (outpainting), and
the whole image (plain text to image). Checkpoints every --ckpt-every steps, with an fp16
StableDiffusionInpaintPipeline export of the EMA weights.
"""
from __future__ import annotations

import argparse
import copy
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file

from . import world
from .train import (ROOT, CAPTION_DROPOUT, CaptionBank, atomic_json, atomic_save, pick_device, scheduler_config,
                    to_tensor)

BASE_DIR = ROOT / "assets" / "models" / "shapes-sd"
DEFAULT_RUN_DIR = ROOT / "runs" / "inpaint"
TRAINING_ASSET_DIR = ROOT / "assets" / "training" / "shapes-sd-inpaint"
MASK_KINDS = {"around_shape": 0.5, "random_box": 0.2, "edge_strip": 0.15, "everything": 0.15}


def load_base(device):
    from diffusers import StableDiffusionPipeline
    pipe = StableDiffusionPipeline.from_pretrained(BASE_DIR, dtype=torch.float32)
    return pipe.to(device)


def widen_conv_in(unet):
    """A copy of `unet` whose conv_in takes 9 channels; the 5 new ones start at zero."""
    from diffusers import UNet2DConditionModel
    config = dict(unet.config)
    config["in_channels"] = 9
    wide = UNet2DConditionModel.from_config(config)
    state = unet.state_dict()
    weight = state["conv_in.weight"]
    grown = torch.zeros(weight.shape[0], 9, *weight.shape[2:])
    grown[:, :4] = weight
    state["conv_in.weight"] = grown
    wide.load_state_dict(state)
    return wide


def sample_masks(rng: np.random.Generator, scenes: list, size: int = 64) -> np.ndarray:
    """One 0/1 mask (1 = repaint) per scene, of a kind drawn from MASK_KINDS."""
    kinds = rng.choice(list(MASK_KINDS), size=len(scenes), p=list(MASK_KINDS.values()))
    masks = np.zeros((len(scenes), size, size), np.float32)
    for m, kind, scene in zip(masks, kinds, scenes):
        if kind == "everything":
            m[:] = 1
        elif kind == "around_shape":
            (cx, cy), r = scene.main.center, scene.main.radius
            half = r + rng.uniform(2, 14)
            x0, x1 = int(max(0, cx - half)), int(min(size, np.ceil(cx + half)))
            y0, y1 = int(max(0, cy - half)), int(min(size, np.ceil(cy + half)))
            m[y0:y1, x0:x1] = 1
        elif kind == "random_box":
            w, h = rng.integers(12, 48, size=2)
            x0, y0 = rng.integers(0, size - w), rng.integers(0, size - h)
            m[y0:y0 + h, x0:x0 + w] = 1
        else:
            depth = int(rng.integers(8, 33))
            side = rng.integers(4)
            (m[:, :depth] if side == 0 else m[:, -depth:] if side == 1 else m[:depth] if side == 2
             else m[-depth:])[...] = 1
    return masks


def batch(rng, vae, n: int, device):
    """Latents, mask at latent size and masked-image latents for `n` fresh scenes, and their labels."""
    images, scenes = world.sample_batch(rng, n)
    masks = torch.from_numpy(sample_masks(rng, scenes)).unsqueeze(1).to(device)
    pixels = to_tensor(images, device)
    sf = vae.config.scaling_factor
    with torch.no_grad():
        latents = vae.encode(pixels).latent_dist.sample() * sf
        masked = vae.encode(pixels * (masks < 0.5)).latent_dist.sample() * sf
    small = F.interpolate(masks, size=latents.shape[-2:])
    colors, shapes, bgs = list(world.COLORS), list(world.SHAPES), list(world.BACKGROUNDS)
    labels = torch.tensor([(colors.index(s.main.color), shapes.index(s.main.shape), bgs.index(s.background))
                           for s in scenes])
    return latents, small, masked, labels


def export(base, unet, out_dir: Path, step: int) -> None:
    from diffusers import DDIMScheduler, StableDiffusionInpaintPipeline
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionInpaintPipeline(
        vae=copy.deepcopy(base.vae).cpu().half(), text_encoder=copy.deepcopy(base.text_encoder).cpu().half(),
        tokenizer=base.tokenizer, unet=copy.deepcopy(unet).cpu().half(),
        scheduler=DDIMScheduler(**scheduler_config()), safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    atomic_json({"step": step}, tmp / "train_step.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def train(args) -> None:
    from diffusers import DDPMScheduler
    device = pick_device(args.device)
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    base = load_base(device)
    base.vae.requires_grad_(False)
    base.text_encoder.requires_grad_(False)
    unet = widen_conv_in(base.unet).to(device)
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    ckpt = run_dir / "ckpt.safetensors"
    source = ckpt if ckpt.exists() else TRAINING_ASSET_DIR / "ckpt.safetensors"
    step = 0
    if args.resume and source.exists():
        saved = load_file(str(source))
        unet.load_state_dict({k[5:]: v for k, v in saved.items() if k.startswith("unet.")})
        for i, p in enumerate(ema):
            p.copy_(saved[f"ema.{i}"])
        step = int(saved["step"].item())
        print(f"[inpaint] resumed from {source} at step {step}", flush=True)
    abar = DDPMScheduler(**scheduler_config()).alphas_cumprod.to(device)
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=5.0) / (snr + 1)  # min-SNR for v-prediction, as the base model
    bank = CaptionBank(base.tokenizer, device)
    with torch.no_grad():
        embeddings = base.text_encoder(bank.ids)[0]  # frozen: every caption's embedding, once
    rng = np.random.default_rng(args.seed * 7919 + step)
    gen = torch.Generator().manual_seed(args.seed * 1000 + step)

    def save(step):
        tensors = {f"unet.{k}": v.float() for k, v in unet.state_dict().items()}
        tensors.update({f"ema.{i}": p.float() for i, p in enumerate(ema)})
        tensors["step"] = torch.tensor(step)
        atomic_save(tensors, ckpt, {"step": step})
        ema_unet = copy.deepcopy(unet).cpu()
        with torch.no_grad():
            for p, e in zip(ema_unet.parameters(), ema):
                p.copy_(e.cpu())
        export(base, ema_unet, run_dir / "export", step)

    unet.train()
    t0, losses = time.time(), []
    while step < args.steps:
        x0, mask, masked, labels = batch(rng, base.vae, args.batch, device)
        cond = embeddings[bank.index(labels, gen, CAPTION_DROPOUT).to(device)]
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
        a, s = abar[t].sqrt().view(-1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
        xt = a * x0 + s * noise
        lr = args.lr * min(1.0, (step + 1) / 100)
        for g in opt.param_groups:
            g["lr"] = lr
        pred = unet(torch.cat([xt, mask, masked], dim=1), t, encoder_hidden_states=cond).sample
        loss = (weight[t] * ((pred - (a * noise - s * x0)) ** 2).mean(dim=(1, 2, 3))).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        with torch.no_grad():
            torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - min(args.ema, (1 + step) / (10 + step)))
        losses.append(loss.item())
        if step % args.log_every == 0:
            print(f"[inpaint] step {step} loss {np.mean(losses[-args.log_every:]):.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % args.ckpt_every == 0 or step == args.steps:
            save(step)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.train_inpaint")
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=3e-4)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    train(args)


if __name__ == "__main__":
    main()
