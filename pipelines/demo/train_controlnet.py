"""Train the demo canny ControlNet for the demo base model on the shapes world.

    python -m pipelines.demo.train_controlnet                    # train (resumable, bounded by --minutes)
    python -m pipelines.demo.train_controlnet --resume           # continue (runs/controlnet, else assets/training/)
    python -m pipelines.demo.train_controlnet --stage evaluate   # edge match with vs without, on held-out scenes
    python -m pipelines.demo.train_controlnet --stage evaluate --publish   # ... and ship the EMA weights (fp16)
                                                                           # to assets/models/controlnet/shapes-canny

The pair: the canny map of a rendered scene (the studio's own `control_map(..., "canny")`, thresholds
100/200) -> the scene's latents, with its caption. The map fixes where and how big the shape is, the
prompt its colour. The ControlNet starts as a copy of the demo UNet's encoder (`ControlNetModel.from_unet`)
with a conditioning embedding that downsamples 64px maps by the VAE factor 4 to the 16x16 latents; the
UNet, text encoder and VAE stay frozen. Same noise schedule, v-prediction and min-SNR weighting as the
base; captions dropped 20% of the time so classifier-free guidance keeps working; EMA weights.

Checkpoints (safetensors, atomic) every --ckpt-every steps and at the end of the --minutes budget.
Uses CUDA when present; on 1 CPU thread 0.5-2.4 steps/s at batch 16, depending on what else the machine runs.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
os.environ.setdefault("HF_HUB_OFFLINE", "1")

import cv2  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
from safetensors.torch import load_file  # noqa: E402

from . import world  # noqa: E402
from ..preprocess import control_map  # noqa: E402
from .evaluate import generate, load as load_base  # noqa: E402
from .judge import judge  # noqa: E402
from .train import (ASSET_DIR as BASE_DIR, TRAINING_ASSET_DIR as BASE_TRAINING_DIR, CaptionBank, atomic_json,  # noqa: E402
                    atomic_save, load_vae, optimizer_step, pick_device, scheduler_config, to_tensor)

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_RUN_DIR = ROOT / "runs" / "controlnet"
ASSET_DIR = ROOT / "assets" / "models" / "controlnet" / "shapes-canny"
TRAINING_ASSET_DIR = ROOT / "assets" / "training" / "shapes-controlnet"
# three convs, two of stride 2: 64px maps -> 16x16, the VAE factor (the default four would give 8x8)
CONDITIONING_CHANNELS = (16, 32, 64)
CAPTION_DROPOUT = 0.2
LOW, HIGH = 100, 200  # the tab's default canny thresholds
EVAL_SEED = 90210     # held-out scenes: training data is drawn from --seed + 3


def canny_map(image: np.ndarray) -> np.ndarray:
    """The control map the studio makes for a 64px image with the default canny settings (uint8 HxW)."""
    return np.asarray(control_map(image, "canny", (image.shape[1], image.shape[0]), LOW, HIGH))[..., 0]


def make_controlnet(unet):
    """A ControlNet copied from the base UNet's encoder. from_unet does not carry the text-pooling
    head count of `addition_embed_type="text"`, so the config is rebuilt with the base's."""
    from diffusers import ControlNetModel
    copied = ControlNetModel.from_unet(unet, conditioning_embedding_out_channels=CONDITIONING_CHANNELS)
    heads = unet.config.get("addition_embed_type_num_heads", 64)
    model = ControlNetModel.from_config({**copied.config, "addition_embed_type_num_heads": heads})
    model.load_state_dict(copied.state_dict())
    return model


def make_dataset(n: int, seed: int, device) -> dict[str, torch.Tensor]:
    """n rendered scenes as (latents, canny maps, caption labels), on `device`."""
    vae = load_vae(BASE_TRAINING_DIR, device)
    sf = vae.config.scaling_factor
    rng = np.random.default_rng(seed)
    colors, shapes, bgs = list(world.COLORS), list(world.SHAPES), list(world.BACKGROUNDS)
    lat, maps, labels = [], [], []
    with torch.no_grad():
        for i in range(0, n, 256):
            imgs, scenes = world.sample_batch(rng, min(256, n - i))
            lat.append(vae.encode(to_tensor(imgs, device)).latent_dist.mean * sf)
            maps.append(torch.from_numpy(np.stack([canny_map(im) for im in imgs])).to(device))
            labels += [(colors.index(s.main.color), shapes.index(s.main.shape), bgs.index(s.background))
                       for s in scenes]
    return {"latents": torch.cat(lat), "maps": torch.cat(maps), "labels": torch.tensor(labels, device=device)}


def _save_ckpt(path: Path, controlnet, ema, opt, step: int, args) -> None:
    t = {f"controlnet.{k}": v.float() for k, v in controlnet.state_dict().items()}
    t.update({f"ema.{i}": p.float() for i, p in enumerate(ema)})
    for i, p in enumerate(opt.param_groups[0]["params"]):
        state = opt.state.get(p)
        if state:
            t[f"opt.{i}.m"], t[f"opt.{i}.v"] = state["exp_avg"].bfloat16(), state["exp_avg_sq"].bfloat16()
    atomic_save(t, path, {"step": step, "lr": args.lr, "batch": args.batch, "seed": args.seed})
    atomic_json({"step": step, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, path.with_suffix(".json"))


def _load_ckpt(path: Path, controlnet, ema, opt, device) -> int:
    t = load_file(str(path))
    step = int(json.loads(path.with_suffix(".json").read_text())["step"])
    controlnet.load_state_dict({k[11:]: v for k, v in t.items() if k.startswith("controlnet.")})
    with torch.no_grad():
        for i, p in enumerate(ema):
            p.copy_(t[f"ema.{i}"].to(device))
    for i, p in enumerate(opt.param_groups[0]["params"]):
        if f"opt.{i}.m" in t:
            opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": t[f"opt.{i}.m"].float().to(device),
                            "exp_avg_sq": t[f"opt.{i}.v"].float().to(device)}
    return step


def export(controlnet, ema, out_dir: Path, step: int) -> None:
    """The EMA weights as an fp16 diffusers ControlNet folder (atomically replaces out_dir)."""
    import copy
    model = copy.deepcopy(controlnet).cpu()
    with torch.no_grad():
        for p, e in zip(model.parameters(), ema):
            p.copy_(e.cpu())
    tmp = out_dir.with_name(out_dir.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    model.half().save_pretrained(str(tmp), safe_serialization=True)
    atomic_json({"step": step}, tmp / "train_step.json")
    shutil.rmtree(out_dir, ignore_errors=True)
    os.replace(tmp, out_dir)


def train(run_dir: Path, args, device) -> None:
    from diffusers import DDPMScheduler, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    unet = UNet2DConditionModel.from_pretrained(BASE_DIR, subfolder="unet", dtype=torch.float32).to(device).eval()
    te = CLIPTextModel.from_pretrained(BASE_DIR, subfolder="text_encoder", dtype=torch.float32).to(device).eval()
    tokenizer = CLIPTokenizer.from_pretrained(BASE_DIR, subfolder="tokenizer")
    unet.requires_grad_(False)
    te.requires_grad_(False)
    torch.manual_seed(args.seed)
    controlnet = make_controlnet(unet).to(device).train()
    params = list(controlnet.parameters())
    ema = [p.detach().clone() for p in params]
    opt = torch.optim.AdamW(params, lr=args.lr, weight_decay=0.0, betas=(0.9, 0.99))
    ckpt = run_dir / "ckpt.safetensors"
    src = ckpt if ckpt.exists() else (TRAINING_ASSET_DIR / ckpt.name if args.resume else None)
    step = 0
    if src is not None and src.exists():
        step = _load_ckpt(src, controlnet, ema, opt, device)
        print(f"[controlnet] resumed from {src} at step {step}", flush=True)
    t0 = time.time()
    data = make_dataset(args.scenes, args.seed + 3, device)
    print(f"[controlnet] {sum(p.numel() for p in params) / 1e6:.2f} M params, {args.scenes} scenes "
          f"({time.time() - t0:.0f}s), device {device}", flush=True)
    with torch.no_grad():  # every caption's text embedding, computed once (the text encoder is frozen)
        bank = CaptionBank(tokenizer, device)
        embeddings = torch.cat([te(bank.ids[i:i + 256])[0] for i in range(0, len(bank.ids), 256)])
    abar = DDPMScheduler(**scheduler_config()).alphas_cumprod.to(device)
    snr = abar / (1 - abar)
    weight = torch.clamp(snr, max=5.0) / (snr + 1)
    gen = torch.Generator().manual_seed(args.seed * 1000 + step)
    n, t0, losses = data["latents"].shape[0], time.time(), []
    while step < args.steps and time.time() - t0 < args.minutes * 60:
        idx = torch.randint(0, n, (args.batch,), generator=gen).to(device)
        x0 = data["latents"][idx]
        cond_map = data["maps"][idx].float().div(255).unsqueeze(1).expand(-1, 3, -1, -1)
        text = embeddings[bank.index(data["labels"][idx], gen, CAPTION_DROPOUT).to(device)]
        noise = torch.randn(x0.shape, generator=gen).to(device)
        t = torch.randint(0, 1000, (args.batch,), generator=gen).to(device)
        a, s = abar[t].sqrt().view(-1, 1, 1, 1), (1 - abar[t]).sqrt().view(-1, 1, 1, 1)
        xt = a * x0 + s * noise
        for g in opt.param_groups:
            g["lr"] = args.lr * min(1.0, (step + 1) / 200)
        down, mid = controlnet(xt, t, encoder_hidden_states=text, controlnet_cond=cond_map, return_dict=False)
        pred = unet(xt, t, encoder_hidden_states=text, down_block_additional_residuals=down,
                    mid_block_additional_residual=mid).sample
        loss = (weight[t] * ((pred - (a * noise - s * x0)) ** 2).mean(dim=(1, 2, 3))).mean()
        step += 1
        optimizer_step(opt, loss, params, ema, step, args.ema)
        losses.append(loss.item())
        if step % args.log_every == 0:
            print(f"[controlnet] step {step} loss {np.mean(losses[-args.log_every:]):.4f} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % args.ckpt_every == 0:
            _save_ckpt(ckpt, controlnet, ema, opt, step, args)
            export(controlnet, ema, run_dir / "export", step)
    _save_ckpt(ckpt, controlnet, ema, opt, step, args)
    export(controlnet, ema, run_dir / "export", step)
    print(f"[controlnet] stopped at step {step} after {time.time() - t0:.0f}s", flush=True)


# ----------------------------------------------------------------------------- evaluation
def held_out(n: int, seed: int = EVAL_SEED) -> list[tuple[world.Scene, np.ndarray]]:
    """n held-out scenes whose canny map has edges (a shape close in grey to its background has none)."""
    rng, cases = np.random.default_rng(seed), []
    while len(cases) < n:
        scene = world.sample_scene(rng)
        edges = canny_map(world.render(scene))
        if (edges > 0).sum() >= 20:
            cases.append((scene, edges))
    return cases


def edge_match(image: np.ndarray, control: np.ndarray) -> dict[str, float]:
    """How well the canny edges of `image` follow the `control` edges: symmetric mean chamfer distance
    (px; 32 when the image has no edges) and IoU of the edge maps dilated by one pixel."""
    edges = canny_map(image) > 0
    want = control > 0
    if not edges.any():
        return {"chamfer": 32.0, "iou": 0.0}
    to_want = cv2.distanceTransform((~want).astype(np.uint8), cv2.DIST_L2, 3)
    to_edges = cv2.distanceTransform((~edges).astype(np.uint8), cv2.DIST_L2, 3)
    chamfer = 0.5 * (float(to_want[edges].mean()) + float(to_edges[want].mean()))
    kernel = np.ones((3, 3), np.uint8)
    a, b = cv2.dilate(edges.astype(np.uint8), kernel) > 0, cv2.dilate(want.astype(np.uint8), kernel) > 0
    return {"chamfer": min(chamfer, 32.0), "iou": float((a & b).sum() / (a | b).sum())}


def evaluate(controlnet_dir: Path, n: int = 64, scale: float = 1.0, seed: int = EVAL_SEED, batch: int = 64) -> dict:
    """Generate each held-out scene's caption with (its canny map, demo sampler settings) and without
    the ControlNet, same seeds; mean edge match and colour judge for both."""
    from diffusers import ControlNetModel, StableDiffusionControlNetPipeline
    base = load_base(BASE_DIR)  # the demo card's sampler (UniPC)
    card = json.loads((BASE_DIR / "studio.json").read_text())
    steps, cfg = card["steps"], card["cfg_scale"]
    cn = ControlNetModel.from_pretrained(str(controlnet_dir), dtype=torch.float32, local_files_only=True)
    pipe = StableDiffusionControlNetPipeline.from_pipe(base, controlnet=cn)
    pipe.set_progress_bar_config(disable=True)
    cases = held_out(n, seed)
    prompts = [world.caption(s) for s, _ in cases]
    seeds = [seed + i for i in range(n)]
    maps = [control_map(e, "none", (64, 64)) for _, e in cases]
    plain = generate(base, prompts, seeds, steps, cfg, batch)
    guided = []
    for i in range(0, n, batch):
        guided += generate(pipe, prompts[i:i + batch], seeds[i:i + batch], steps, cfg, batch,
                           image=maps[i:i + batch], controlnet_conditioning_scale=scale)
    result = {"n": n, "sampler": card["sampler"], "steps": steps, "cfg": cfg, "scale": scale}
    for name, images in (("controlnet", guided), ("plain", plain)):
        matches = [edge_match(im, e) for im, (_, e) in zip(images, cases)]
        result[f"{name}_chamfer"] = round(float(np.mean([m["chamfer"] for m in matches])), 3)
        result[f"{name}_iou"] = round(float(np.mean([m["iou"] for m in matches])), 3)
        result[f"{name}_color"] = round(float(np.mean([judge(im).color == s.main.color
                                                        for im, (s, _) in zip(images, cases)])), 3)
    return result


def publish(run_dir: Path, metrics: dict) -> None:
    src = run_dir / "export"
    step = json.loads((src / "train_step.json").read_text())["step"]
    tmp = ASSET_DIR.with_name(ASSET_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src, tmp, ignore=shutil.ignore_patterns("train_step.json"))
    atomic_json({"name": "Shapes canny (demo)", "base": "Shapes demo (64px)", "preprocessor": "canny",
                 "trained_steps": step, "metrics": metrics}, tmp / "studio.json")
    shutil.rmtree(ASSET_DIR, ignore_errors=True)
    tmp.rename(ASSET_DIR)
    TRAINING_ASSET_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("ckpt.safetensors", "ckpt.json"):
        shutil.copy(run_dir / name, TRAINING_ASSET_DIR / name)
    size = sum(p.stat().st_size for p in ASSET_DIR.rglob("*") if p.is_file())
    print(f"published step {step} to {ASSET_DIR} ({size / 2**20:.1f} MiB)")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.train_controlnet")
    ap.add_argument("--stage", choices=["train", "evaluate"], default="train")
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--resume", action="store_true", help="continue from runs/ or, when absent, assets/training/")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--scenes", type=int, default=20000)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=50.0)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-4)
    ap.add_argument("--ema", type=float, default=0.999)
    ap.add_argument("--ckpt-every", type=int, default=500)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--model", type=Path, default=None, help="ControlNet folder to evaluate (default: the run's export)")
    ap.add_argument("--n", type=int, default=64)
    ap.add_argument("--scale", type=float, default=1.0)
    ap.add_argument("--publish", action="store_true", help="after evaluating, ship the export to assets/")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    args.run_dir.mkdir(parents=True, exist_ok=True)
    if args.stage == "train":
        train(args.run_dir, args, pick_device(args.device))
        return
    metrics = evaluate(args.model or args.run_dir / "export", args.n, args.scale)
    print(json.dumps(metrics), flush=True)
    atomic_json(metrics, args.run_dir / "eval.json")
    if args.publish:
        publish(args.run_dir, metrics)


if __name__ == "__main__":
    main()
