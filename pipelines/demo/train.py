"""Train the demo models from scratch on the procedural shapes world.

    python -m pipelines.demo.train text2image            # VAE -> latents -> UNet + text encoder
    python -m pipelines.demo.train text2image --resume   # continue from the latest checkpoint
                                                         # (runs/, else assets/training/)

Stages (each is skipped when its output already exists under --run-dir):
  1. AutoencoderKL 64x64x3 <-> 16x16x4 on freshly rendered scenes (MSE + tiny KL);
     scaling_factor = 1 / std of the latents.
  2. Pre-encode a fixed set of scenes to latents (posterior mean) with their labels.
  3. UNet2DConditionModel + CLIPTextModel jointly: cosine noise schedule, v-prediction,
     min-SNR-5 weighting, caption dropout (10% empty prompts, for classifier-free guidance),
     the three caption forms mixed, EMA weights. Checkpoints (safetensors, atomic) every
     --ckpt-every steps and an fp16 StableDiffusionPipeline export of the EMA weights.

Seeded; uses CUDA when present. Run time on 2 CPU cores: VAE ~6 min, latents ~2 min,
UNet ~2.5 steps/s at batch 32 (8000 steps ~ 55 min).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

# OpenMP threads sleep instead of spinning when they wait: on a shared 2-core machine a busy
# neighbour otherwise makes a 2-thread step several times slower (must precede importing torch)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
import torch.nn.functional as F
from safetensors.torch import load_file, save_file
from tqdm.auto import tqdm

from . import world
from .tokenizer import build_tokenizer

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = ROOT / "runs" / "text2image"
ASSET_DIR = ROOT / "assets" / "models" / "shapes-sd"
TRAINING_ASSET_DIR = ROOT / "assets" / "training" / "shapes-sd"

CAPTION_FORM_PROBS = {"canonical": 0.6, "short": 0.2, "bare": 0.2}
CAPTION_DROPOUT = 0.1


# ----------------------------------------------------------------------------- model configs
def vae_config() -> dict:
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(16, 32, 64),
                layers_per_block=1, latent_channels=4, norm_num_groups=16, sample_size=64,
                mid_block_add_attention=False)


def text_config(tokenizer) -> dict:
    return dict(vocab_size=len(tokenizer), hidden_size=64, intermediate_size=128,
                num_hidden_layers=2, num_attention_heads=4,
                max_position_embeddings=tokenizer.model_max_length,
                bos_token_id=tokenizer.bos_token_id, eos_token_id=tokenizer.eos_token_id,
                pad_token_id=tokenizer.pad_token_id, projection_dim=64)


def unet_config() -> dict:
    return dict(sample_size=16, in_channels=4, out_channels=4,
                down_block_types=("DownBlock2D", "CrossAttnDownBlock2D", "CrossAttnDownBlock2D"),
                up_block_types=("CrossAttnUpBlock2D", "CrossAttnUpBlock2D", "UpBlock2D"),
                block_out_channels=(32, 64, 64), layers_per_block=1, cross_attention_dim=64,
                attention_head_dim=8, norm_num_groups=8,
                # attention-pooled text embedding added to the timestep embedding: global
                # conditioning (background, colour) reaches every resnet, incl. 16x16
                addition_embed_type="text", addition_embed_type_num_heads=4)


def scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2",
                prediction_type="v_prediction", timestep_spacing="trailing", clip_sample=False,
                steps_offset=1)


# ----------------------------------------------------------------------------- utilities
def pick_device(name: str = "auto") -> torch.device:
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def atomic_save(tensors: dict[str, torch.Tensor], path: Path, metadata: dict | None = None) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    save_file({k: v.detach().contiguous().cpu() for k, v in tensors.items()}, str(tmp),
              metadata={k: str(v) for k, v in (metadata or {}).items()})
    os.replace(tmp, path)


def atomic_json(obj, path: Path) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, indent=2))
    os.replace(tmp, path)


def optimizer_step(opt, loss, params: list, ema: list, step: int, ema_max: float) -> None:
    """Backward, clip to norm 1, step, and move the EMA weights (warming up as (1+n)/(10+n))
    for the update that makes `step` (1-based)."""
    opt.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, 1.0)
    opt.step()
    with torch.no_grad():
        torch._foreach_lerp_(ema, [p.detach() for p in params], 1 - min(ema_max, (1 + step) / (10 + step)))


def to_tensor(images: np.ndarray, device) -> torch.Tensor:
    x = torch.from_numpy(images).to(device).permute(0, 3, 1, 2).float()
    return x / 127.5 - 1.0


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0 ** 2 / max(mse, 1e-10)))


@torch.no_grad()
def decode_to_uint8(vae, latents: torch.Tensor) -> np.ndarray:
    x = vae.decode(latents).sample
    return ((x.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).cpu().numpy()


# ----------------------------------------------------------------------------- stage 1: VAE
def make_vae():
    from diffusers import AutoencoderKL
    return AutoencoderKL(**vae_config())


@torch.no_grad()
def vae_psnr(vae, n: int = 256, seed: int = 777, device="cpu") -> float:
    rng = np.random.default_rng(seed)
    imgs, _ = world.sample_batch(rng, n)
    out = []
    for i in range(0, n, 64):
        z = vae.encode(to_tensor(imgs[i:i + 64], device)).latent_dist.mean
        out.append(decode_to_uint8(vae, z))
    return psnr(imgs, np.concatenate(out))


def train_vae(run_dir: Path, steps: int, batch: int, lr: float, seed: int, device,
              minutes: float | None = None, decoder_only: bool = False) -> Path:
    """Train the autoencoder for `steps` steps or `minutes` of wall time, whichever ends first
    (the learning rate follows a cosine over that budget, so a busy machine still ends cleanly).
    decoder_only: fine-tune the decoder of the saved VAE, keeping the encoder (and so the
    pre-encoded latents) fixed; runs alongside the UNet training."""
    path = run_dir / "vae.safetensors"
    if path.exists() and not decoder_only:
        print(f"[vae] {path} exists, skipping")
        return path
    torch.manual_seed(seed + (17 if decoder_only else 0))
    vae = make_vae().to(device)
    if decoder_only:
        vae.load_state_dict(load_file(str(path)))
        info = json.loads((run_dir / "vae.json").read_text())
        for p in list(vae.encoder.parameters()) + list(vae.quant_conv.parameters()):
            p.requires_grad_(False)
    params = [p for p in vae.parameters() if p.requires_grad]
    print(f"[vae] {sum(p.numel() for p in params) / 1e6:.2f} M trained params, {steps} steps"
          f"{f' or {minutes} min' if minutes else ''}{' (decoder only)' if decoder_only else ''}", flush=True)
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    warm = 0 if decoder_only else max(1, min(100, steps // 10))
    rng = np.random.default_rng(seed + (1000 if decoder_only else 0))
    t0 = time.time()
    budget = minutes * 60 if minutes else None

    def frac(step):
        f = step / steps
        if budget:
            f = max(f, (time.time() - t0) / budget)
        return min(f, 1.0)

    bar = tqdm(range(steps), desc="vae-decoder" if decoder_only else "vae", mininterval=10)
    recs = []
    for step in bar:
        f = frac(step)
        if f >= 1.0:
            break
        for g in opt.param_groups:
            g["lr"] = lr * min(1.0, (step + 1) / warm if warm else 1.0) * (
                0.03 + 0.97 * 0.5 * (1 + math.cos(math.pi * f)))
        x = to_tensor(world.sample_batch(rng, batch)[0], device)
        # near-deterministic autoencoder: the UNet trains on latent means; a little noise
        # (relative to the latents' own scale) keeps the decoder robust to sampling error
        if decoder_only:
            with torch.no_grad():
                z = vae.encode(x).latent_dist.mean
        else:
            z = vae.encode(x).latent_dist.mean
        z = z + 0.05 * z.detach().std() * torch.randn_like(z)
        y = vae.decode(z).sample
        rec = F.mse_loss(y, x) + 0.1 * F.l1_loss(y, x)
        loss = rec + (0.0 if decoder_only else 1e-4 * z.pow(2).mean())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        recs.append(rec.item())
        if step % 20 == 0:
            bar.set_postfix(rec=f"{np.mean(recs[-50:]):.5f}", lr=f"{opt.param_groups[0]['lr']:.1e}")
        if step % 200 == 0:
            print(f"[vae] step {step} rec {np.mean(recs[-50:]):.5f} {time.time() - t0:.0f}s", flush=True)
    vae.eval()
    p = vae_psnr(vae, device=device)
    if decoder_only:
        scale = info["scaling_factor"]
        if p <= info["psnr"]:
            print(f"[vae] decoder fine-tune reached {p:.2f} dB, not better than {info['psnr']:.2f}; kept old")
            return path
    else:
        rng = np.random.default_rng(seed + 1)
        with torch.no_grad():
            z = vae.encode(to_tensor(world.sample_batch(rng, 512)[0], device)).latent_dist.mean
        scale = float(1.0 / z.std())
        print(f"[vae] latent std {z.std().item():.4f} -> scaling {scale:.4f}")
    print(f"[vae] held-out PSNR {p:.2f} dB after {step} steps, {time.time() - t0:.0f}s", flush=True)
    atomic_save(vae.state_dict(), path, {"psnr": f"{p:.3f}", "scaling_factor": f"{scale:.6f}"})
    atomic_json({"psnr": p, "scaling_factor": scale, "steps": step,
                 "decoder_finetuned": decoder_only}, run_dir / "vae.json")
    return path


def load_vae(run_dir: Path, device="cpu"):
    vae = make_vae()
    vae.load_state_dict(load_file(str(run_dir / "vae.safetensors")))
    info = json.loads((run_dir / "vae.json").read_text())
    vae.register_to_config(scaling_factor=info["scaling_factor"])
    return vae.to(device).eval()


# ----------------------------------------------------------------------------- stage 2: latents
LABEL_KEYS = ("color", "shape", "background")


def encode_latents(run_dir: Path, n: int, seed: int, device) -> Path:
    path = run_dir / "latents.safetensors"
    if path.exists():
        print(f"[latents] {path} exists, skipping")
        return path
    vae = load_vae(run_dir, device)
    sf = vae.config.scaling_factor
    rng = np.random.default_rng(seed + 2)
    lat, labels = [], []
    colors, shapes, bgs = list(world.COLORS), list(world.SHAPES), list(world.BACKGROUNDS)
    with torch.no_grad():
        for _ in tqdm(range(0, n, 256), desc="latents", mininterval=5):
            imgs, scenes = world.sample_batch(rng, 256)
            z = vae.encode(to_tensor(imgs, device)).latent_dist.mean * sf
            lat.append(z.half().cpu())
            labels += [(colors.index(s.main.color), shapes.index(s.main.shape),
                        bgs.index(s.background)) for s in scenes]
    atomic_save({"latents": torch.cat(lat)[:n], "labels": torch.tensor(labels[:n], dtype=torch.int16)},
                path, {"seed": seed + 2})
    return path


# ----------------------------------------------------------------------------- stage 3: UNet
class CaptionBank:
    """Token ids for every (colour, shape, background, form) caption, plus the empty prompt."""

    def __init__(self, tokenizer, device):
        self.colors, self.shapes, self.bgs = list(world.COLORS), list(world.SHAPES), list(world.BACKGROUNDS)
        self.forms = list(CAPTION_FORM_PROBS)
        texts = []
        for c in self.colors:
            for s in self.shapes:
                for b in self.bgs:
                    for f in self.forms:
                        texts.append(world.prompt_for(c, s, b, f))
        texts.append("")
        ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                        truncation=True, return_tensors="pt").input_ids
        self.ids = ids.to(device)
        self.empty = len(texts) - 1
        self.form_p = torch.tensor(list(CAPTION_FORM_PROBS.values()))

    def index(self, labels: torch.Tensor, gen: torch.Generator, dropout: float) -> torch.Tensor:
        b = labels.shape[0]
        forms = torch.multinomial(self.form_p, b, replacement=True, generator=gen)
        c, s, g = labels[:, 0].long().cpu(), labels[:, 1].long().cpu(), labels[:, 2].long().cpu()
        idx = ((c * len(self.shapes) + s) * len(self.bgs) + g) * len(self.forms) + forms
        drop = torch.rand(b, generator=gen) < dropout
        idx[drop] = self.empty
        return idx


def make_text_encoder(tokenizer):
    from transformers import CLIPTextConfig, CLIPTextModel
    return CLIPTextModel(CLIPTextConfig(**text_config(tokenizer)))


def make_unet():
    from diffusers import UNet2DConditionModel
    return UNet2DConditionModel(**unet_config())


def export_pipeline(unet, text_encoder, vae, tokenizer, out_dir: Path, studio: dict | None = None) -> None:
    """Save an fp16 StableDiffusionPipeline folder (atomically replaces out_dir)."""
    import copy
    from diffusers import DDIMScheduler, StableDiffusionPipeline
    out_dir = Path(out_dir)
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = StableDiffusionPipeline(
        vae=copy.deepcopy(vae).cpu().half(), text_encoder=copy.deepcopy(text_encoder).cpu().half(),
        tokenizer=tokenizer, unet=copy.deepcopy(unet).cpu().half(),
        scheduler=DDIMScheduler(**scheduler_config()), safety_checker=None,
        feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(str(tmp), safe_serialization=True)
    old_studio = out_dir / "studio.json"
    if studio is not None:
        atomic_json(studio, tmp / "studio.json")
    elif old_studio.exists():
        shutil.copy(old_studio, tmp / "studio.json")
    if out_dir.exists():
        shutil.rmtree(out_dir)
    os.replace(tmp, out_dir)


def _ckpt_tensors(unet, te, ema, opt, step) -> dict[str, torch.Tensor]:
    t = {}
    for k, v in unet.state_dict().items():
        t[f"unet.{k}"] = v.float()
    for k, v in te.state_dict().items():
        t[f"text_encoder.{k}"] = v.float()
    for i, p in enumerate(ema):
        t[f"ema.{i}"] = p.float()
    for i, p in enumerate(opt.param_groups[0]["params"]):
        st = opt.state.get(p)
        if st:
            t[f"opt.{i}.exp_avg"] = st["exp_avg"].bfloat16()
            t[f"opt.{i}.exp_avg_sq"] = st["exp_avg_sq"].bfloat16()
    return t


def _load_ckpt(path: Path, unet, te, ema, opt, device) -> int:
    from safetensors import safe_open
    t = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    unet.load_state_dict({k[5:]: v for k, v in t.items() if k.startswith("unet.")})
    te.load_state_dict({k[13:]: v for k, v in t.items() if k.startswith("text_encoder.")}, strict=False)
    for i, p in enumerate(ema):
        p.copy_(t[f"ema.{i}"].to(device))
    step = int(meta.get("step", 0))
    for i, p in enumerate(opt.param_groups[0]["params"]):
        if f"opt.{i}.exp_avg" in t:
            opt.state[p] = {"step": torch.tensor(float(step)),
                            "exp_avg": t[f"opt.{i}.exp_avg"].float().to(device),
                            "exp_avg_sq": t[f"opt.{i}.exp_avg_sq"].float().to(device)}
    return step


def train_unet(run_dir: Path, args, device) -> None:
    from diffusers import DDPMScheduler
    tokenizer = build_tokenizer()
    data = load_file(str(run_dir / "latents.safetensors"))
    latents, labels = data["latents"].to(device), data["labels"].to(device)
    n = latents.shape[0]
    torch.manual_seed(args.seed)
    unet, te = make_unet().to(device), make_text_encoder(tokenizer).to(device)
    params = list(unet.parameters()) + list(te.parameters())
    ema = [p.detach().clone() for p in params]
    print(f"[unet] {sum(p.numel() for p in unet.parameters()) / 1e6:.2f} M params, text encoder "
          f"{sum(p.numel() for p in te.parameters()) / 1e6:.2f} M, {n} latents")
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.01, betas=(0.9, 0.99))
    total, warm = args.steps, 500

    def lr_at(s):
        return args.lr * min(1.0, (s + 1) / warm) * (
            args.min_lr_frac + (1 - args.min_lr_frac) * 0.5 * (1 + math.cos(math.pi * min(s, total) / total)))

    ckpt = run_dir / "ckpt.safetensors"
    step = 0
    src = ckpt if ckpt.exists() else (TRAINING_ASSET_DIR / "ckpt.safetensors" if args.resume else None)
    if args.resume and src is not None and src.exists():
        step = _load_ckpt(src, unet, te, ema, opt, device)
        print(f"[unet] resumed from {src} at step {step}")
    elif ckpt.exists():
        step = _load_ckpt(ckpt, unet, te, ema, opt, device)
        print(f"[unet] resumed from {ckpt} at step {step}")

    sched = DDPMScheduler(**scheduler_config())
    abar = sched.alphas_cumprod.to(device)
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=args.snr_gamma) / (snr + 1)  # min-SNR for v-prediction
    bank = CaptionBank(tokenizer, device)
    gen = torch.Generator().manual_seed(args.seed * 1000 + step)
    torch.manual_seed(args.seed * 1000 + step)

    def save(step):
        atomic_save(_ckpt_tensors(unet, te, ema, opt, step), ckpt,
                    {"step": step, "lr": args.lr, "steps": total, "seed": args.seed})
        atomic_json({"step": step, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, run_dir / "ckpt.json")
        # EMA export
        ema_unet, ema_te = make_unet(), make_text_encoder(tokenizer)
        ema_params = list(ema_unet.parameters()) + list(ema_te.parameters())
        ema_unet.load_state_dict(unet.state_dict()); ema_te.load_state_dict(te.state_dict())
        with torch.no_grad():
            for p, e in zip(ema_params, ema):
                p.copy_(e.cpu())
        # reload: the decoder may have been fine-tuned meanwhile (encoder and latents unchanged)
        export_pipeline(ema_unet, ema_te, load_vae(run_dir, "cpu"), tokenizer, run_dir / "export")
        atomic_json({"step": step}, run_dir / "export" / "train_step.json")

    unet.train(); te.train()
    bar = tqdm(total=total, initial=step, desc="unet", mininterval=10)
    t0, losses = time.time(), []
    while step < total:
        idx = torch.randint(0, n, (args.batch,), generator=gen).to(device)
        x0 = latents[idx].float()
        lab = labels[idx]
        ids = bank.ids[bank.index(lab, gen, CAPTION_DROPOUT).to(device)]
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
        a = abar[t].sqrt().view(-1, 1, 1, 1)
        s = (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
        xt = a * x0 + s * noise
        v = a * noise - s * x0
        for g in opt.param_groups:
            g["lr"] = lr_at(step)
        cond = te(ids)[0]
        pred = unet(xt, t, encoder_hidden_states=cond).sample
        loss = (weight[t] * ((pred.float() - v) ** 2).mean(dim=(1, 2, 3))).mean()
        step += 1
        optimizer_step(opt, loss, params, ema, step, args.ema)
        losses.append(loss.item())
        bar.update(1)
        if step % 50 == 0:
            bar.set_postfix(loss=f"{np.mean(losses[-200:]):.4f}", lr=f"{lr_at(step):.2e}")
        if step % args.log_every == 0:
            print(f"[unet] step {step} loss {np.mean(losses[-args.log_every:]):.4f} "
                  f"lr {lr_at(step):.2e} {(time.time() - t0):.0f}s", flush=True)
        if step % args.ckpt_every == 0 or step == total:
            save(step)
    bar.close()


def publish_training_state(run_dir: Path) -> None:
    """Copy what --resume needs into assets/training/ (committed)."""
    TRAINING_ASSET_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("vae.safetensors", "vae.json", "ckpt.safetensors", "ckpt.json"):
        shutil.copy(run_dir / name, TRAINING_ASSET_DIR / name)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.train")
    ap.add_argument("task", choices=["text2image"])
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--resume", action="store_true",
                    help="continue from runs/ or, when absent, from assets/training/")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--vae-steps", type=int, default=2000)
    ap.add_argument("--vae-minutes", type=float, default=9.0)
    ap.add_argument("--vae-batch", type=int, default=8)
    ap.add_argument("--decoder-minutes", type=float, default=20.0)
    ap.add_argument("--vae-lr", type=float, default=2e-3)
    ap.add_argument("--latents", type=int, default=60000)
    ap.add_argument("--steps", type=int, default=5000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--min-lr-frac", type=float, default=0.05)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--snr-gamma", type=float, default=5.0)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--stage", choices=["all", "vae", "latents", "unet", "vae-decoder"], default="all")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    if args.resume and not (run_dir / "vae.safetensors").exists() and \
            (TRAINING_ASSET_DIR / "vae.safetensors").exists():
        for name in ("vae.safetensors", "vae.json"):
            shutil.copy(TRAINING_ASSET_DIR / name, run_dir / name)
    print(f"[train] device {device}, run dir {run_dir}", flush=True)
    if args.stage in ("all", "vae"):
        train_vae(run_dir, args.vae_steps, args.vae_batch, args.vae_lr, args.seed, device,
                  minutes=args.vae_minutes)
    if args.stage in ("all", "latents"):
        encode_latents(run_dir, args.latents, args.seed, device)
    if args.stage == "vae-decoder":
        train_vae(run_dir, 100000, args.vae_batch, args.vae_lr / 2, args.seed, device,
                  minutes=args.decoder_minutes, decoder_only=True)
    if args.stage in ("all", "unet"):
        train_unet(run_dir, args, device)


if __name__ == "__main__":
    main()
