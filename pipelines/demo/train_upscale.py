"""Train the demo ×4 upscaler (LDM super-resolution form) from scratch on the shapes world.

    python -m pipelines.demo.train_upscale                 # autoencoder, then the latent UNet
    python -m pipelines.demo.train_upscale --resume        # continue from the latest checkpoints
                                                           # (runs/upscale, else assets/training/)
    python -m pipelines.demo.train_upscale --publish       # export the EMA weights (fp16) to
                                                           # assets/models/shapes-upscaler

The pair: a 64x64 scene as rendered by the world (what the demo text-to-image model draws) and
the same scene rendered at 256x256; the low-res input is the area-downsampled high-res render.
Training uses aligned 64x64 / 16x16 crops (mostly around the shape's edges), so it is cheap and
the fully convolutional result upscales images of any size.

Stages (each checkpointed atomically, resumable, bounded in steps and wall minutes):
  1. VQModel 64x64x3 <-> 16x16x3 (factor 4) whose latent is the low-res picture itself, snapped
     to a fixed uniform-grid codebook (the codebook diffusers' VQ decode snaps to): the decoder
     learns to super-resolve that latent (MSE + L1), the encoder to downsample (MSE). The decoder
     uses spatial norms (norm_type "spatial"): each norm is modulated by the latent. A learned
     free latent was tried first: on 1 CPU thread it stayed far below Lanczos's PSNR in the time
     budget, while a pixel latent makes the decoder a direct, quick-to-train upscaler. The latent
     is jittered before snapping (per crop, noise std uniform in [0, --vq-jitter]) because the
     UNet delivers the low-res picture only up to a small error, which moves positions near a grid
     boundary to the neighbouring level.
  2. UNet2DModel over [latent, low-res image] (6 channels) with v-prediction (prediction_type
     "v_prediction"), cosine schedule, EMA weights. The clean latent it learns is the low-res picture
     (unsnapped: the VQ decode snaps). A first version predicted the clean latent directly
     ("sample"): through the UNet's final GroupNorm, which normalises each tile, absolute colours
     are hard to output, and 9.6% of the latent positions came out on another grid level than the
     input's. Predicting the noise ("epsilon") was tried next: its first-step estimate at t=999,
     (x - sqrt(1-a) eps) / sqrt(a) with a ~ 0, is garbage that the later steps never removed. With
     v the first steps predict the picture and the last ones the noise, and the result at the last
     DDIM step is x0 = 0.986 x_99 - 0.166 v: v's errors shrink six-fold. A third of the training
     timesteps are drawn at the card's last step (t=99), a third at its other DDIM steps.
Both stages train on aligned 16 px low-res crops, and the card runs the model on 16 px tiles (the
studio's tiling, overlap 4, cross-faded): the decoder's and the UNet's group norms see a tile as
they saw a crop.

Runs on 1 CPU thread (OMP_NUM_THREADS=1); seeded. Evaluate (the studio's own tiled path, held-out
scenes, against Lanczos and bicubic) with --stage evaluate; docs/demo-models.md has the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from . import world  # noqa: E402
from .train import atomic_json, atomic_save, optimizer_step, psnr  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = ROOT / "runs" / "upscale"
ASSET_DIR = ROOT / "assets" / "models" / "shapes-upscaler"
TRAINING_ASSET_DIR = ROOT / "assets" / "training" / "shapes-upscaler"
NAME = "Shapes upscaler (x4)"
SCALE = 4
HR_CROP = 64
# codebook = GRID_LEVELS**3 points of the cube [-1, 1]^3: 16 levels cost Lanczos on the snapped
# low-res picture 3.8 dB of PSNR, 32 levels 1.5 dB (diffusers' VQ lookup holds positions x codes
# distances, so a finer grid costs memory: the card's tile size keeps it bounded)
GRID_LEVELS = 32
# the UNet predicts v = sqrt(a) eps - sqrt(1-a) x0: at the last DDIM steps the absolute colours reach
# the result through the scheduler's arithmetic x0 = sqrt(a) x_t - sqrt(1-a) v instead of through the
# UNet's final GroupNorm (see train_unet)
PREDICTION = "v_prediction"
STEPS = 10  # the card's DDIM steps (trailing spacing: t = 999, 899, ..., 99)
TILE = HR_CROP // SCALE  # the card's tile (input px; overlap a quarter): the crops both stages train on


# ----------------------------------------------------------------------------- model configs
def vq_config() -> dict:
    return dict(in_channels=3, out_channels=3, down_block_types=("DownEncoderBlock2D",) * 3,
                up_block_types=("UpDecoderBlock2D",) * 3, block_out_channels=(32, 32, 64),
                layers_per_block=1, latent_channels=3, num_vq_embeddings=GRID_LEVELS ** 3, vq_embed_dim=3,
                norm_num_groups=16, sample_size=HR_CROP, mid_block_add_attention=False, scaling_factor=1.0,
                # every decoder norm is modulated by the (upsampled) latent, i.e. the low-res picture:
                # absolute colours reach the output directly instead of through group-normalised features
                norm_type="spatial")


def unet_config() -> dict:
    return dict(sample_size=HR_CROP // SCALE, in_channels=6, out_channels=3,
                down_block_types=("DownBlock2D",) * 3, up_block_types=("UpBlock2D",) * 3,
                block_out_channels=(32, 64, 64), layers_per_block=1, norm_num_groups=8)


def scheduler_config() -> dict:
    return dict(num_train_timesteps=1000, beta_schedule="squaredcos_cap_v2", prediction_type=PREDICTION,
                clip_sample=True, clip_sample_range=1.0, set_alpha_to_one=True, timestep_spacing="trailing")


def grid_codebook() -> torch.Tensor:
    levels = torch.linspace(-1, 1, GRID_LEVELS)
    return torch.cartesian_prod(levels, levels, levels)  # (levels^3, 3)


def grid_quantize(z: torch.Tensor) -> torch.Tensor:
    """Nearest grid point per position (= nearest codebook entry: the grid is a Cartesian product),
    with the straight-through gradient."""
    step = 2 / (GRID_LEVELS - 1)
    q = (torch.round((z.clamp(-1, 1) + 1) / step) * step - 1)
    return z + (q - z).detach()


def make_vq():
    from diffusers import VQModel

    vq = VQModel(**vq_config())
    with torch.no_grad():
        vq.quantize.embedding.weight.copy_(grid_codebook())
    vq.quantize.embedding.weight.requires_grad_(False)
    return vq


def make_unet():
    from diffusers import UNet2DModel

    return UNet2DModel(**unet_config())


def make_scheduler():
    from diffusers import DDIMScheduler

    return DDIMScheduler(**scheduler_config())


# ----------------------------------------------------------------------------- data
def low_res(high: np.ndarray) -> np.ndarray:
    """The input the upscaler sees for a high-res image: its area-downsampled copy."""
    h, w = high.shape[:2]
    return cv2.resize(high, (w // SCALE, h // SCALE), interpolation=cv2.INTER_AREA)


def render_pool(n: int, seed: int) -> tuple[np.ndarray, list[world.Scene]]:
    """n scenes rendered at SCALE x the world's size: (n, 256, 256, 3) uint8."""
    rng = np.random.default_rng(seed)
    scenes = [world.sample_scene(rng) for _ in range(n)]
    return np.stack([world.render(s, SCALE) for s in scenes]), scenes


def held_out_pairs(n: int, seed: int = 10_000) -> list[tuple[np.ndarray, np.ndarray]]:
    """(64x64 input, 256x256 truth) pairs from scenes no training run uses."""
    highs, _ = render_pool(n, seed)
    return [(low_res(h), h) for h in highs]


def crop_origins(scenes: list[world.Scene], idx: np.ndarray, rng: np.random.Generator, size: int) -> np.ndarray:
    """Top-left corners (high-res pixels, multiples of SCALE) of crops: 70% around the shape."""
    full = world.SIZE * SCALE
    out = np.empty((len(idx), 2), dtype=np.int64)
    for k, i in enumerate(idx):
        spec = scenes[i].main
        if rng.random() < 0.7:
            cx, cy = (np.array(spec.center) + rng.uniform(-1.2, 1.2, 2) * spec.radius) * SCALE
            x, y = cx - size / 2, cy - size / 2
        else:
            x, y = rng.uniform(0, full - size, 2)
        out[k] = [int(np.clip(round(v / SCALE) * SCALE, 0, full - size)) for v in (x, y)]
    return out


def to_tensor(images: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float() / 127.5 - 1.0


def batch_crops(highs: np.ndarray, scenes, rng, batch: int) -> tuple[np.ndarray, np.ndarray]:
    """A batch of aligned crops: (indices into the pool, top-left corners)."""
    idx = rng.integers(len(highs), size=batch)
    return idx, crop_origins(scenes, idx, rng, HR_CROP)


def cosine(progress: float) -> float:
    """Learning-rate factor: cosine from 1 to 0.1 over a stage (by steps or wall time, whichever is
    further along, so a time-bounded run still anneals)."""
    return 0.1 + 0.9 * 0.5 * (1 + np.cos(np.pi * min(1.0, progress)))


# ----------------------------------------------------------------------------- checkpoints
def save_state(path: Path, model, opt, step: int, seconds: float, ema: list[torch.Tensor] | None = None,
               extra: dict | None = None):
    """Model, optimiser (and EMA) state; the json beside it records the step and training seconds so
    far, so a resumed run continues the same learning-rate schedule and wall-time budget."""
    tensors = {f"model.{k}": v for k, v in model.state_dict().items()}
    for i, state in opt.state_dict()["state"].items():
        for name, value in state.items():
            value = value if torch.is_tensor(value) else torch.tensor(value)
            tensors[f"opt.{i}.{name}"] = value.bfloat16() if value.dim() else value  # moments: bf16 is plenty
    for i, e in enumerate(ema or []):
        tensors[f"ema.{i}"] = e
    atomic_save(tensors, path, {"step": step})
    atomic_json({"step": step, "seconds": round(seconds, 1), "time": time.strftime("%Y-%m-%d %H:%M:%S"),
                 **(extra or {})}, path.with_suffix(".json"))


def load_state(path: Path, model, opt, ema: list[torch.Tensor] | None = None) -> tuple[int, float]:
    tensors = load_file(str(path))
    weights = {k[6:]: v for k, v in tensors.items() if k.startswith("model.")}
    if "quantize.embedding.weight" in weights:  # the fixed grid: always the current one
        weights["quantize.embedding.weight"] = grid_codebook()
    model.load_state_dict(weights)
    state = opt.state_dict()
    for key, value in tensors.items():
        if key.startswith("opt."):
            _, i, name = key.split(".", 2)
            state["state"].setdefault(int(i), {})[name] = value.float()
    opt.load_state_dict(state)
    for i, e in enumerate(ema or []):
        e.copy_(tensors[f"ema.{i}"])
    info = json.loads(path.with_suffix(".json").read_text())
    return int(info["step"]), float(info.get("seconds", 0.0))


def resume_source(run_dir: Path, name: str, resume: bool) -> Path | None:
    for folder in (run_dir, TRAINING_ASSET_DIR if resume else None):
        if folder is not None and (folder / name).exists():
            return folder / name
    return None


# ----------------------------------------------------------------------------- stage 1: VQ autoencoder
def train_vq(run_dir: Path, args) -> None:
    vq = make_vq()
    params = [p for p in vq.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=args.vq_lr, weight_decay=0.0)
    path, step, seconds = run_dir / "vq.safetensors", 0, 0.0
    source = resume_source(run_dir, "vq.safetensors", args.resume)
    if source is not None:
        step, seconds = load_state(source, vq, opt)
        print(f"[vq] resumed from {source} at step {step}")
    if step >= args.vq_steps or seconds >= args.vq_minutes * 60:
        return
    highs, scenes = render_pool(args.pool, args.seed)
    lows = to_tensor(np.stack([low_res(h) for h in highs]))
    rng = np.random.default_rng(args.seed * 1000 + step)
    gen = torch.Generator().manual_seed(args.seed * 1000 + 3 + step)
    c = HR_CROP // SCALE
    start, last_save = time.time() - seconds, time.time()  # the budget counts the resumed seconds too
    vq.train()
    while step < args.vq_steps and time.time() - start < args.vq_minutes * 60:
        idx, origins = batch_crops(highs, scenes, rng, args.vq_batch)
        x = to_tensor(np.stack([highs[i, y:y + HR_CROP, xx:xx + HR_CROP] for i, (xx, y) in zip(idx, origins)]))
        low = torch.stack([lows[i, :, y // SCALE:y // SCALE + c, xx // SCALE:xx // SCALE + c]
                           for i, (xx, y) in zip(idx, origins)])
        lr = args.vq_lr * cosine(max(step / args.vq_steps, (time.time() - start) / (args.vq_minutes * 60)))
        for group in opt.param_groups:
            group["lr"] = lr
        # the latent the UNet delivers is the low-res picture up to a small error, which flips positions
        # near a grid boundary to the neighbouring level: decode jittered latents (per-crop noise level
        # uniform in [0, vq_jitter]) so the decoder does not rely on those flips
        jitter = torch.rand(len(idx), 1, 1, 1, generator=gen) * args.vq_jitter
        rec = vq.decode(grid_quantize(low + jitter * torch.randn(low.shape, generator=gen)),
                        force_not_quantize=True).sample
        loss = F.mse_loss(rec, x) + 0.5 * F.l1_loss(rec, x)
        if step % 4 == 0:  # the pipeline only decodes: the encoder needs far less training
            loss = loss + F.mse_loss(vq.encode(x).latents, low)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        step += 1
        if step % args.log_every == 0:
            print(f"[vq] step {step} loss {loss.item():.5f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
        if time.time() - last_save > 120:
            save_state(path, vq, opt, step, time.time() - start)
            last_save = time.time()
    save_state(path, vq, opt, step, time.time() - start, extra={"psnr_held_out": vq_psnr(vq)})
    print(f"[vq] saved step {step}: held-out reconstruction {vq_psnr(vq):.2f} dB", flush=True)


@torch.no_grad()
def vq_psnr(vq, n: int = 16) -> float:
    """PSNR of whole 256x256 held-out renders decoded (diffusers' own VQ decode) from their low-res
    latents: the upscaler's ceiling."""
    vq.eval()
    pairs = held_out_pairs(n)
    highs = np.stack([h for _, h in pairs])
    rec = vq.decode(to_tensor(np.stack([low for low, _ in pairs]))).sample
    out = ((rec.clamp(-1, 1) + 1) * 127.5).round().byte().permute(0, 2, 3, 1).numpy()
    vq.train()
    return psnr(highs, out)


def load_vq(run_dir: Path):
    vq = make_vq()
    source = resume_source(run_dir, "vq.safetensors", True)
    weights = {k[6:]: v for k, v in load_file(str(source)).items() if k.startswith("model.")}
    vq.load_state_dict({**weights, "quantize.embedding.weight": grid_codebook()})
    return vq.eval().requires_grad_(False)


# ----------------------------------------------------------------------------- stage 2: latent UNet
def train_unet(run_dir: Path, args) -> None:
    vq, unet, scheduler = load_vq(run_dir), make_unet(), make_scheduler()
    params = list(unet.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0)
    path, step, seconds = run_dir / "unet.safetensors", 0, 0.0
    source = resume_source(run_dir, "unet.safetensors", args.resume)
    if source is not None and json.loads(source.with_suffix(".json").read_text()).get("prediction") != PREDICTION:
        print(f"[unet] {source} predicts another target than {PREDICTION!r}: starting afresh")
        source = None
    if source is not None:
        step, seconds = load_state(source, unet, opt, ema)
        print(f"[unet] resumed from {source} at step {step}")
    if step >= args.steps or seconds >= args.minutes * 60:
        return
    highs, scenes = render_pool(args.pool, args.seed + 1)
    lows = to_tensor(np.stack([low_res(h) for h in highs]))
    alphas = scheduler.alphas_cumprod
    # a third of the draws uniform, a third at the card's last DDIM step (its prediction alone sets the
    # result: x0 = 0.986 x_99 - 0.166 v), a third at the card's other steps
    grid = torch.arange(STEPS) * (1000 // STEPS) + 1000 // STEPS - 1
    rng = np.random.default_rng(args.seed * 1000 + 7 + step)
    gen = torch.Generator().manual_seed(args.seed + step)
    c = HR_CROP // SCALE
    start, last_save = time.time() - seconds, time.time()  # the budget counts the resumed seconds too
    unet.train()
    while step < args.steps and time.time() - start < args.minutes * 60:
        idx, origins = batch_crops(highs, scenes, rng, args.batch)
        sl = [(i, y // SCALE, x // SCALE) for i, (x, y) in zip(idx, origins)]
        cond = torch.stack([lows[i, :, y:y + c, x:x + c] for i, y, x in sl])
        # the clean latent is the low-res picture itself, not yet snapped: the VQ decode snaps the
        # result, and the noise target stays a smooth function of the inputs
        z0 = cond
        draw = torch.rand(len(idx), generator=gen)
        t = torch.where(draw < 1 / 3, torch.randint(0, 1000, (len(idx),), generator=gen),
                        torch.where(draw < 2 / 3, grid[0], grid[torch.randint(0, STEPS, (len(idx),), generator=gen)]))
        noise = torch.randn(z0.shape, generator=gen)
        a = alphas[t].view(-1, 1, 1, 1)
        zt = a.sqrt() * z0 + (1 - a).sqrt() * noise
        lr = args.lr * cosine(max(step / args.steps, (time.time() - start) / (args.minutes * 60)))
        for group in opt.param_groups:
            group["lr"] = lr
        pred = unet(torch.cat([zt, cond], 1), t).sample
        loss = F.mse_loss(pred, scheduler.get_velocity(z0, noise, t))
        step += 1
        optimizer_step(opt, loss, params, ema, step, args.ema)
        if step % args.log_every == 0:
            print(f"[unet] step {step} loss {loss.item():.5f} lr {lr:.2e} {time.time() - start:.0f}s", flush=True)
        if time.time() - last_save > 120:
            save_state(path, unet, opt, step, time.time() - start, ema, extra={"prediction": PREDICTION})
            last_save = time.time()
    save_state(path, unet, opt, step, time.time() - start, ema, extra={"prediction": PREDICTION})
    export(run_dir, unet, ema, vq, step)


def export_checkpoint(run_dir: Path) -> Path:
    unet = make_unet()
    ema = [p.detach().clone() for p in unet.parameters()]
    opt = torch.optim.AdamW(unet.parameters())
    step, _ = load_state(resume_source(run_dir, "unet.safetensors", True), unet, opt, ema)
    return export(run_dir, unet, ema, load_vq(run_dir), step)


def export(run_dir: Path, unet, ema: list[torch.Tensor], vq, step: int) -> Path:
    """An fp16 LDMSuperResolutionPipeline folder of the EMA weights: runs/upscale/export."""
    from diffusers import LDMSuperResolutionPipeline

    ema_unet = make_unet()
    ema_unet.load_state_dict(unet.state_dict())
    with torch.no_grad():
        for p, e in zip(ema_unet.parameters(), ema):
            p.copy_(e)
    out = run_dir / "export"
    tmp = out.with_name("export.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    pipe = LDMSuperResolutionPipeline(vqvae=vq, unet=ema_unet, scheduler=make_scheduler())
    pipe.to(torch.float16).save_pretrained(tmp, safe_serialization=True)
    atomic_json({"step": step}, tmp / "train_step.json")
    shutil.rmtree(out, ignore_errors=True)
    tmp.rename(out)
    print(f"[unet] exported step {step} to {out}", flush=True)
    return out


# ----------------------------------------------------------------------------- evaluation
def sharpness(image: np.ndarray, truth: np.ndarray) -> float:
    """Mean gradient magnitude on the true image's edges, relative to the truth's (1 = as sharp)."""
    def grad(a):
        g = cv2.cvtColor(a, cv2.COLOR_RGB2GRAY).astype(np.float32)
        return np.hypot(cv2.Sobel(g, cv2.CV_32F, 1, 0), cv2.Sobel(g, cv2.CV_32F, 0, 1))

    true_grad = grad(truth)
    edges = true_grad > 0.5 * true_grad.max()
    return float(grad(image)[edges].mean() / true_grad[edges].mean())


def seam_ratio(image: np.ndarray, truth: np.ndarray, tile: int, overlap: int) -> float:
    """How much the error (image - truth) jumps between neighbouring pixels where tiles meet (their
    cross-faded bands and edges), over how much it jumps elsewhere: about 1 when no seam shows."""
    from ..upscale import axis_tiles

    err = image.astype(np.float64) - truth.astype(np.float64)
    at, rest = [], []
    for axis in (0, 1):
        band = np.zeros(image.shape[axis], bool)
        for start, size, weights in axis_tiles(image.shape[axis] // SCALE, tile, overlap, SCALE):
            span = slice(start * SCALE, (start + size) * SCALE)
            band[span] |= (weights > 0) & (weights < 1)
            band[[span.start, span.stop - 1]] = True
        band[[0, -1]] = False
        jumps = np.abs(np.diff(err, axis=axis)).mean(axis=tuple(a for a in range(3) if a != axis))
        shared = band[:-1] | band[1:]
        at.append(jumps[shared])
        rest.append(jumps[~shared])
    return float(np.concatenate(at).mean() / np.concatenate(rest).mean())


def evaluate(folder: Path, n: int = 16, steps: int = STEPS, tile: int = TILE, overlap: int = TILE // 4) -> dict:
    """PSNR / edge sharpness of the model (run tile by tile as the studio runs it), Lanczos and
    bicubic on held-out scenes, and how close the output downscaled back is to the input."""
    from diffusers import LDMSuperResolutionPipeline
    from PIL import Image

    from ..jobs import Progress
    from ..upscale import TileProgress, UpscaleRequest, diffusion_tile_fn, upscale_tiled

    pipe = LDMSuperResolutionPipeline.from_pretrained(folder, local_files_only=True, dtype=torch.float32)
    pipe.set_progress_bar_config(disable=True)
    scores = {k: [] for k in ("psnr", "psnr_lanczos", "psnr_bicubic", "sharpness", "sharpness_lanczos",
                              "sharpness_bicubic", "psnr_downscaled", "seam", "seam_lanczos")}
    for k, (low, high) in enumerate(held_out_pairs(n)):
        tiles = TileProgress(Progress())
        upscale_tile = diffusion_tile_fn(pipe, UpscaleRequest(), steps, 0.0, k, SCALE, tiles)
        out = upscale_tiled(low / 255.0, upscale_tile, SCALE, tile, overlap, tiles.start)
        up = (np.clip(out, 0, 1) * 255).round().astype(np.uint8)
        lanczos = np.asarray(Image.fromarray(low).resize(high.shape[1::-1], Image.LANCZOS))
        bicubic = np.asarray(Image.fromarray(low).resize(high.shape[1::-1], Image.BICUBIC))
        for suffix, image in (("", up), ("_lanczos", lanczos), ("_bicubic", bicubic)):
            scores["psnr" + suffix].append(psnr(high, image))
            scores["sharpness" + suffix].append(sharpness(image, high))
        scores["psnr_downscaled"].append(psnr(low, low_res(up)))
        scores["seam"].append(seam_ratio(up, high, tile, overlap))
        scores["seam_lanczos"].append(seam_ratio(lanczos, high, tile, overlap))  # no tiles: the reference
    return {k: round(float(np.mean(v)), 3) for k, v in scores.items()} | {"n": n, "steps": steps, "tile": tile,
                                                                         "overlap": overlap}


def publish(run_dir: Path, metrics: dict) -> None:
    src = run_dir / "export"
    trained = json.loads((src / "train_step.json").read_text())["step"]
    tmp = ASSET_DIR.with_name(ASSET_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("train_step.json"))
    card = {"name": NAME, "task": "upscale", "scale": SCALE, "steps": STEPS, "tile_size": TILE,
            "description": "built-in demo x4 upscaler (LDM super-resolution) trained on the procedural "
                           "shapes world (64 px pictures to 256 px)",
            "trained_steps": {"vq": json.loads((run_dir / "vq.json").read_text())["step"], "unet": trained},
            "metrics": metrics}
    atomic_json(card, tmp / "studio.json")
    shutil.rmtree(ASSET_DIR, ignore_errors=True)
    tmp.rename(ASSET_DIR)
    TRAINING_ASSET_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("vq.safetensors", "vq.json", "unet.safetensors", "unet.json"):
        shutil.copy(run_dir / name, TRAINING_ASSET_DIR / name)
    size = sum(p.stat().st_size for p in ASSET_DIR.rglob("*") if p.is_file())
    print(f"published step {trained} to {ASSET_DIR} ({size / 2**20:.1f} MiB): {card}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.train_upscale")
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--resume", action="store_true", help="continue from runs/upscale, else assets/training")
    ap.add_argument("--stage", choices=["all", "vq", "unet", "export", "evaluate"], default="all",
                    help="export: the UNet checkpoint's EMA weights with the current VQ (after more VQ training)")
    ap.add_argument("--publish", action="store_true", help="evaluate the export and copy it to assets/models")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--pool", type=int, default=1500, help="scenes rendered for each stage")
    ap.add_argument("--vq-steps", type=int, default=100_000)
    ap.add_argument("--vq-minutes", type=float, default=72.0)
    ap.add_argument("--vq-batch", type=int, default=8)
    ap.add_argument("--vq-lr", type=float, default=1.5e-3)
    ap.add_argument("--vq-jitter", type=float, default=0.02,
                    help="largest std of the noise added to the decoder's latent before snapping ([-1, 1] units)")
    ap.add_argument("--steps", type=int, default=100_000)
    ap.add_argument("--minutes", type=float, default=20.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--ema", type=float, default=0.995)
    ap.add_argument("--log-every", type=int, default=50)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.stage in ("all", "vq"):
        train_vq(args.run_dir, args)
    if args.stage in ("all", "unet"):
        train_unet(args.run_dir, args)
    if args.stage == "export":
        export_checkpoint(args.run_dir)
    if args.publish or args.stage == "evaluate":
        metrics = evaluate(args.run_dir / "export")
        print(json.dumps(metrics), flush=True)
        if args.publish:
            publish(args.run_dir, metrics)


if __name__ == "__main__":
    main()
