"""Train the demo motion adapter (AnimateDiff MotionAdapter) on clips of moving shapes.

    python -m pipelines.demo.train_motion --minutes 6             # data -> train -> export -> evaluate
    python -m pipelines.demo.train_motion --resume --minutes 6    # continue (runs/, else assets/training/)
    python -m pipelines.demo.train_motion --stage evaluate --publish

The base is the committed demo text-to-image model (assets/models/shapes-sd), frozen: its UNet
and the adapter's temporal modules form one motion UNet (`pipelines.motion_unet`, the same code
the Video tab runs). Trained: the adapter's motion modules (their output projections start at
zero, so step 0 is exactly the image model), a spatial LoRA on the base UNet and text encoder
(video only), and the embedding of the new word "moving" (tokenizer.MOTION_WORDS, appended after
the existing ids: every existing prompt keeps its exact embedding); the direction words' rows are
fixed and orthogonal. Captions: "a red circle moving right", with and without "on a blue
background", 10% empty (for classifier-free guidance). Clips: 8 frames of one shape moving 28-44 px
in a straight line, encoded once by the demo VAE (--shared-noise: a share noised with the same
noise in every frame; 0 by default). v-prediction on the base model's cosine schedule, plain v loss
plus a loss on the part of the error that changes across frames, plus (training only) the loss of
linear probes that read the prompted direction from every motion module's input (DirectionProbes),
EMA weights, resumable checkpoints.
Evaluation: for "a {color} {shape} moving {direction}" on held-out seeds, the judge's centroid of
the shape must move the prompted way from the first to the last frame, and the shape's colour
and shape must be judged right in the first and the last frame.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import torch
from safetensors.torch import load_file

from . import world
from .judge import judge
from .tokenizer import MOTION_WORDS, build_tokenizer, check_tokenizer
from .train import (atomic_json, atomic_save, decode_to_uint8, optimizer_step, pick_device, scheduler_config,
                    to_tensor)
from ..motion_unet import SPATIAL_LORA, SPATIAL_LORA_FILE
from ..video import FRAME_NOISES, shared_noise

ROOT = Path(__file__).resolve().parents[2]
BASE_DIR = ROOT / "assets" / "models" / "shapes-sd"
ASSET_DIR = ROOT / "assets" / "models" / "shapes-motion"
TRAINING_ASSET_DIR = ROOT / "assets" / "training" / "shapes-motion"
DEFAULT_RUN_DIR = ROOT / "runs" / "motion"
FRAMES = 8
OLD_VOCAB = 599            # the text-to-image model's vocabulary; motion words get ids from here on
CAPTION_FORM_PROBS = {"canonical": 0.4, "short": 0.4, "bare": 0.2}
CAPTION_DROPOUT = 0.1
NAME = "Shapes motion demo (8 frames)"
LORA_RANK = 8
FRAME_NOISE = "independent"  # how the Video tab starts this adapter's clips (its card's frame_noise)
DIRECTION_NORM = 5.0      # length of the fixed direction-word embedding rows
PROBE_LR = 1e-2           # DirectionProbes' own Adam (linear heads: they keep up with the features they read)


def adapter_config() -> dict:
    return dict(block_out_channels=(32, 64, 64), motion_layers_per_block=1,
                motion_num_attention_heads=4, motion_norm_num_groups=8, motion_max_seq_length=32,
                use_motion_mid_block=True)


def make_adapter():
    from diffusers import MotionAdapter
    adapter = MotionAdapter(**adapter_config())
    with torch.no_grad():  # AnimateDiff zero-initialises each motion module's output projection
        for name, p in adapter.named_parameters():
            if "proj_out" in name:
                p.zero_()
    return adapter


def load_base(base_dir: Path = BASE_DIR, device="cpu"):
    """(vae, unet, text_encoder grown to the motion vocabulary, tokenizer), fp32, frozen."""
    from diffusers import AutoencoderKL, UNet2DConditionModel
    from transformers import CLIPTextModel
    tokenizer = build_tokenizer(appended_words=MOTION_WORDS)
    check_tokenizer(tokenizer, appended_words=MOTION_WORDS)
    vae = AutoencoderKL.from_pretrained(base_dir / "vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(base_dir / "unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(base_dir / "text_encoder", dtype=torch.float32)
    grow_text_encoder(te, len(tokenizer))
    for m in (vae, unet, te):
        m.requires_grad_(False)
        m.to(device).eval()
    return vae, unet, te, tokenizer


def grow_text_encoder(te, vocab_size: int, seed: int = 0) -> None:
    """Append embedding rows for new token ids (existing rows untouched)."""
    emb = te.get_input_embeddings()
    old = emb.weight.shape[0]
    if old >= vocab_size:
        return
    w = emb.weight.data
    gen = torch.Generator().manual_seed(seed)
    new = torch.randn(vocab_size - old, w.shape[1], generator=gen) * w[:old].std().item()
    grown = torch.nn.Embedding(vocab_size, w.shape[1], dtype=w.dtype)
    grown.weight.data[:old] = w
    grown.weight.data[old:] = new.to(w.dtype)
    te.set_input_embeddings(grown)
    te.config.vocab_size = vocab_size


# ----------------------------------------------------------------------------- data
def _render_clips(args):
    seed, n = args
    rng = np.random.default_rng(seed)
    clips, labels = [], []
    colors, shapes, bgs, dirs = list(world.COLORS), list(world.SHAPES), list(world.BACKGROUNDS), list(world.DIRECTIONS)
    for _ in range(n):
        scenes, d = world.sample_motion(rng, FRAMES)
        clips.append(world.render_clip(scenes))
        s = scenes[0]
        labels.append((colors.index(s.main.color), shapes.index(s.main.shape), bgs.index(s.background), dirs.index(d)))
    return np.stack(clips), labels


def encode_clips(run_dir: Path, n: int, seed: int, vae, device) -> Path:
    path = run_dir / "clips.safetensors"
    if path.exists():
        print(f"[clips] {path} exists, skipping", flush=True)
        return path
    t0 = time.time()
    chunks = [(seed * 100003 + 7 + i, 250) for i in range((n + 249) // 250)]
    workers = max(1, min(len(chunks), (os.cpu_count() or 2) - 1))
    if workers > 2:
        from multiprocessing import get_context
        with get_context("spawn").Pool(workers) as pool:
            parts = pool.map(_render_clips, chunks)
    else:
        parts = [_render_clips(c) for c in chunks]
    sf = vae.config.scaling_factor
    lat, labels = [], []
    with torch.no_grad():
        for clips, lab in parts:
            x = to_tensor(clips.reshape(-1, 64, 64, 3), device)
            z = vae.encode(x).latent_dist.mean * sf
            lat.append(z.reshape(clips.shape[0], FRAMES, 4, 16, 16).half().cpu())
            labels += lab
    atomic_save({"latents": torch.cat(lat)[:n], "labels": torch.tensor(labels[:n], dtype=torch.int16)}, path,
                {"seed": seed, "frames": FRAMES})
    print(f"[clips] {n} clips encoded in {time.time() - t0:.0f}s", flush=True)
    return path


class MotionCaptionBank:
    """Token ids for every (colour, shape, background, direction, form) caption plus the empty one."""

    def __init__(self, tokenizer, device):
        self.colors, self.shapes, self.bgs = list(world.COLORS), list(world.SHAPES), list(world.BACKGROUNDS)
        self.dirs, self.forms = list(world.DIRECTIONS), list(CAPTION_FORM_PROBS)
        texts = [world.motion_caption(c, s, d, b, f) for c in self.colors for s in self.shapes
                 for b in self.bgs for d in self.dirs for f in self.forms]
        texts.append("")
        self.ids = tokenizer(texts, padding="max_length", max_length=tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        self.empty = len(texts) - 1
        self.form_p = torch.tensor(list(CAPTION_FORM_PROBS.values()))

    def index(self, labels: torch.Tensor, gen: torch.Generator, dropout: float) -> torch.Tensor:
        b = labels.shape[0]
        forms = torch.multinomial(self.form_p, b, replacement=True, generator=gen)
        c, s, g, d = (labels[:, i].long().cpu() for i in range(4))
        idx = (((c * len(self.shapes) + s) * len(self.bgs) + g) * len(self.dirs) + d) * len(self.forms) + forms
        idx[torch.rand(b, generator=gen) < dropout] = self.empty
        return idx


# ----------------------------------------------------------------------------- training
def trainable_names(adapter) -> list[str]:
    """The adapter weights that train: every motion module (down, mid and up blocks)."""
    return [n for n, _ in adapter.named_parameters()]


def spatial_lora_targets(unet) -> list[str]:
    """Every linear and convolution layer of the base UNet (a LoCon-style LoRA).

    The image model is (but for its zero padding) translation-equivariant, and AnimateDiff's motion
    modules see one spatial position at a time: neither knows where in the frame it is. At the
    highest noise levels, where the sampler's first steps lay out the clip, the best prediction for
    "moving right" is the shape on the left in the first frame and on the right in the last, an
    absolute layout. A LoRA on the convolutions can learn where it is from the padding (and on the
    cross-attention and pooled text embedding, what the prompt's direction says); one on the
    attention alone could not, and never moved a clip the prompted way (docs/demo-models.md)."""
    return [n for n, m in unet.named_modules() if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))]


def add_spatial_lora(unet, text_encoder=None) -> dict[str, torch.nn.Parameter]:
    """A LoRA on the base UNet, and on its text encoder when given, for video only (the video path
    switches it on, text to image never sees it): the frozen image model commits each frame's
    layout to its own noise, and its frozen text encoder barely tells the motion words apart
    (measured: its output at the direction word differs 4% between "moving left" and "moving
    right", between two colours 66%), so without it nothing tells the motion modules which way to
    move. The text encoder's parameters are keyed "text_encoder.<name>"."""
    from peft import LoraConfig

    def config(targets):
        return LoraConfig(r=LORA_RANK, lora_alpha=LORA_RANK, init_lora_weights=True, target_modules=targets)

    unet.add_adapter(config(spatial_lora_targets(unet)), adapter_name=SPATIAL_LORA)
    named = {n: p for n, p in unet.named_parameters() if "lora_" in n}
    if text_encoder is not None:
        from peft import inject_adapter_in_model  # transformers' add_adapter wants a newer peft

        inject_adapter_in_model(config(["q_proj", "k_proj", "v_proj", "out_proj", "fc1", "fc2"]), text_encoder,
                                adapter_name=SPATIAL_LORA)
        named |= {f"text_encoder.{n}": p for n, p in text_encoder.named_parameters() if "lora_" in n}
    for p in named.values():
        p.requires_grad_(True)
    return named


def save_spatial_lora(unet, folder: Path, text_encoder=None) -> Path:
    """The spatial LoRA (fp16, diffusers LoRA format: "unet." and "text_encoder." keys) as
    `SPATIAL_LORA_FILE` in `folder`."""
    from diffusers import StableDiffusionPipeline
    from peft.utils import get_peft_model_state_dict

    def state(model):
        # PEFT's own key names (diffusers' convert_state_dict_to_diffusers would rename the pooling's
        # q/k/v_proj to an old text-encoder layout that load_lora_adapter no longer reads)
        return {k: v.detach().cpu().half().clone()
                for k, v in get_peft_model_state_dict(model, adapter_name=SPATIAL_LORA).items()}

    StableDiffusionPipeline.save_lora_weights(
        str(folder), unet_lora_layers=state(unet),
        text_encoder_lora_layers=state(text_encoder) if text_encoder is not None else None,
        weight_name=SPATIAL_LORA_FILE, safe_serialization=True)
    return Path(folder) / SPATIAL_LORA_FILE


def without_lora(text_encoder):
    """A copy of the text encoder with its base weights only (save_pretrained of a model with a PEFT
    adapter would save the adapter alone)."""
    from transformers import CLIPTextModel

    copy = CLIPTextModel(text_encoder.config)
    base = {k.replace(".base_layer", ""): v for k, v in text_encoder.state_dict().items() if "lora_" not in k}
    copy.load_state_dict(base)
    return copy


def _trainables(adapter, lora: dict, te) -> tuple[list[str], list[torch.nn.Parameter]]:
    """(names, parameters) of everything that trains; the motion words' embedding table comes last."""
    named = dict(adapter.named_parameters())
    names = [f"adapter.{n}" for n in trainable_names(adapter)] + [f"lora.{n}" for n in lora] + ["motion_words"]
    params = [named[n] for n in trainable_names(adapter)] + list(lora.values()) + [te.get_input_embeddings().weight]
    return names, params


def _save_ckpt(path: Path, names: list[str], params, ema, opt, step: int, extra: dict) -> None:
    """Weights, EMA and AdamW moments by name (the embedding table: only the motion words' rows)."""
    t = {}
    for name, p, e in zip(names, params, ema):
        rows = slice(OLD_VOCAB, None) if name == "motion_words" else slice(None)
        t[f"w.{name}"], t[f"ema.{name}"] = p.detach()[rows].float(), e[rows].float()
        st = opt.state.get(p)
        if st:
            t[f"opt.{name}.exp_avg"] = st["exp_avg"][rows].bfloat16()
            t[f"opt.{name}.exp_avg_sq"] = st["exp_avg_sq"][rows].bfloat16()
    atomic_save(t, path, {"step": step, "layout": "named", **extra})


def _load_ckpt(path: Path, adapter, names: list[str], params, ema, opt, device) -> int:
    """Load a checkpoint (also the first, positional layout, which had no LoRA: those start fresh)."""
    from safetensors import safe_open
    t = load_file(str(path))
    with safe_open(str(path), "pt") as f:
        meta = f.metadata() or {}
    step = int(meta.get("step", 0))
    if meta.get("layout") != "named":  # adapter state dict + positional EMA/moments of [adapter..., words]
        adapter.load_state_dict({k[8:]: v for k, v in t.items() if k.startswith("adapter.")})
        old = [n for n in names if n.startswith("adapter.")] + ["motion_words"]
        t = {**{f"w.{n}": t[f"adapter.{n[8:]}"] for n in old[:-1]}, "w.motion_words": t["motion_words"],
             **{f"ema.{n}": t[f"ema.{i}"] for i, n in enumerate(old)},
             **{f"opt.{n}.{m}": t[f"opt.{i}.{m}"] for i, n in enumerate(old)
                for m in ("exp_avg", "exp_avg_sq") if f"opt.{i}.{m}" in t}}
    with torch.no_grad():
        for name, p, e in zip(names, params, ema):
            if f"w.{name}" not in t:
                e.copy_(p.detach())
                continue
            rows = slice(OLD_VOCAB, None) if name == "motion_words" else slice(None)
            p[rows] = t[f"w.{name}"].to(device)
            e.copy_(p.detach())
            e[rows] = t[f"ema.{name}"].to(device)
            if f"opt.{name}.exp_avg" in t:
                a, b = torch.zeros_like(p), torch.zeros_like(p)
                a[rows], b[rows] = t[f"opt.{name}.exp_avg"].float().to(device), t[f"opt.{name}.exp_avg_sq"].float().to(device)
                opt.state[p] = {"step": torch.tensor(float(step)), "exp_avg": a, "exp_avg_sq": b}
    return step


def clip_noise(shape, shared: float, gen: torch.Generator) -> torch.Tensor:
    """Noise for (B, C, F, H, W) clips: a `shared` share of the clips get the same noise in every
    frame (what the Video tab's "shared" frame noise samples from), the others independent noise.
    With independent noise each frame's noise sets where the frozen image model puts the shape, and
    the motion modules learned to join those places into a path whose way was the noise's; with the
    same noise in every frame, only the frame's position and the prompt can tell the frames apart."""
    noise = torch.randn(shape, generator=gen)
    same = torch.rand(shape[0], generator=gen) < shared
    noise[same] = noise[same][:, :, :1].expand(-1, -1, shape[2], -1, -1)
    return noise


def direction_embeddings(tokenizer, width: int, norm: float = DIRECTION_NORM) -> dict[int, torch.Tensor]:
    """Fixed embedding rows for the direction words: orthogonal, `norm` long (the other rows are
    ~0.16). Trained, the four rows had collapsed onto one "motion" vector (cosine 0.93-0.96), and
    the frozen text encoder's output at the word then differed 5% between "left" and "right"; with
    these it differs 84%, so what reaches the UNet says which way."""
    ids = []
    for word in world.DIRECTIONS:
        token = tokenizer(word).input_ids[1:-1]
        if len(token) != 1:
            raise ValueError(f"direction word {word!r} is not one token: {token}")
        ids.append(token[0])
    gen = torch.Generator().manual_seed(0)
    return {i: q * norm for i, q in zip(ids, torch.linalg.qr(torch.randn(width, len(ids), generator=gen))[0].T)}


def fix_direction_words(tokenizer, emb: torch.nn.Parameter, ema: torch.Tensor, mask: torch.Tensor, opt) -> None:
    """Set the direction words' rows (weights and EMA) to `direction_embeddings` and keep them there:
    no gradient, no AdamW moments left over from a resumed checkpoint."""
    rows = direction_embeddings(tokenizer, emb.shape[1])
    ids = list(rows)
    with torch.no_grad():
        for i, v in rows.items():
            emb[i] = v.to(emb.dtype)
            ema[i] = v.to(ema.dtype)
    mask[ids] = 0.0
    state = opt.state.get(emb)
    if state:
        state["exp_avg"][ids] = 0
        state["exp_avg_sq"][ids] = 0


def clip_loss(error: torch.Tensor, motion_weight: float) -> torch.Tensor:
    """Per-clip loss of a (B, C, F, H, W) prediction error: the mean square, plus `motion_weight`
    times the mean square of its part that changes across frames (the error minus its mean over
    the frames; MotionDirector's appearance-debiased temporal loss). Background, colour and size
    are the same in every frame and dominate the plain loss; which way the shape moves is ~4% of
    it but ~28% of the part that changes (measured on the training clips), so this term is what
    makes the prompted direction worth learning."""
    loss = (error ** 2).mean(dim=(1, 2, 3, 4))
    if motion_weight:
        moving = error - error.mean(dim=2, keepdim=True)
        loss = loss + motion_weight * (moving ** 2).mean(dim=(1, 2, 3, 4))
    return loss


class DirectionProbes(torch.nn.Module):
    """Training-only linear read-outs of the prompted direction from every motion module's input
    (averaged over frames and positions), whose loss trains the layers below them.

    The motion modules cannot see the prompt, only what the spatial layers put in their input, and
    there the direction was 6-9% of the change a colour makes, buried under the noise at the high
    noise levels where a clip's layout is set: trained on one caption family whose clips differ
    only in direction, they never used it (loss with the right and the wrong direction word the
    same to 0.1%), while frame-dependent motion with one direction was learned in 200 steps. Nothing
    pushed the spatial LoRA to make the direction plain, because nothing used it yet. These probes
    do, and they are not part of the adapter."""

    def __init__(self, model, n_directions: int):
        from diffusers.models.unets.unet_motion_model import AnimateDiffTransformer3D

        super().__init__()
        modules = [m for m in model.modules() if isinstance(m, AnimateDiffTransformer3D)]
        self.heads = torch.nn.ModuleList(torch.nn.Linear(m.in_channels, n_directions) for m in modules)
        self.seen: dict[int, torch.Tensor] = {}
        self.hooks = [m.register_forward_pre_hook(lambda _m, args, i=i: self.seen.__setitem__(i, args[0]))
                      for i, m in enumerate(modules)]

    def loss(self, directions: torch.Tensor, said: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over the modules for the clips whose caption `said` their direction;
        forgets what the last forward pass showed."""
        seen, self.seen = self.seen, {}
        if not said.any():
            return torch.zeros(())
        b = directions.shape[0]
        losses = [torch.nn.functional.cross_entropy(
                      head(x.float().reshape(b, -1, *x.shape[1:]).mean(dim=(1, 3, 4))[said]), directions[said])
                  for head, x in zip(self.heads, (seen[i] for i in range(len(self.heads))))]
        return torch.stack(losses).mean()


def train(run_dir: Path, args, device) -> None:
    from diffusers import DDPMScheduler
    from ..motion_unet import build_motion_unet

    vae, unet, te, tokenizer = load_base(args.base, device)
    encode_clips(run_dir, args.clips, args.seed, vae, device)
    data = load_file(str(run_dir / "clips.safetensors"))
    latents, labels = data["latents"].to(device), data["labels"].to(device)
    n = latents.shape[0]
    torch.manual_seed(args.seed)
    adapter = make_adapter().to(device)
    lora = add_spatial_lora(unet, te)
    model = build_motion_unet(unet, adapter)
    adapter.requires_grad_(True)  # every motion module trains (trainable_names)
    emb = te.get_input_embeddings().weight
    emb.requires_grad_(True)
    mask = torch.zeros(emb.shape[0], 1, device=device)
    mask[OLD_VOCAB:] = 1.0
    emb.register_hook(lambda g: g * mask)  # only the motion words' rows learn
    names, params = _trainables(adapter, lora, te)
    ema = [p.detach().clone() for p in params]
    n_adapter = len(params) - len(lora) - 1
    opt = torch.optim.AdamW([{"params": params[:n_adapter], "weight_decay": 0.01},
                             {"params": params[n_adapter:-1], "weight_decay": 0.0},
                             {"params": params[-1:], "weight_decay": 0.0}], lr=args.lr, betas=(0.9, 0.99))
    print(f"[motion] adapter {sum(p.numel() for p in adapter.parameters()) / 1e6:.2f} M params, spatial LoRA "
          f"{sum(p.numel() for p in lora.values()) / 1e3:.1f} k, {len(tokenizer) - OLD_VOCAB} new token rows, "
          f"{n} clips of {FRAMES} frames", flush=True)
    ckpt = run_dir / "ckpt.safetensors"
    step = 0
    src = ckpt if ckpt.exists() else (TRAINING_ASSET_DIR / "ckpt.safetensors" if args.resume else None)
    if src is not None and src.exists():
        step = _load_ckpt(src, adapter, names, params, ema, opt, device)
        print(f"[motion] resumed from {src} at step {step}", flush=True)
    fix_direction_words(tokenizer, emb, ema[-1], mask, opt)
    fresh = [n for n, p in zip(names, params) if p not in opt.state]
    if fresh and step:
        print(f"[motion] starting {len(fresh)} tensors fresh (e.g. {fresh[0]})", flush=True)
    start_step, total = step, args.steps
    sched = DDPMScheduler(**scheduler_config())
    abar = sched.alphas_cumprod.to(device)
    snr = abar / (1 - abar)
    # min-SNR-γ for v-prediction; γ = 0: plain v loss, which keeps the highest noise levels weighted
    # (min-SNR gives them ~0, yet that is where a clip's motion, and so its direction, is decided)
    weight = torch.clamp(snr, max=args.snr_gamma) / (snr + 1) if args.snr_gamma > 0 else torch.ones_like(snr)
    bank = MotionCaptionBank(tokenizer, device)
    probes = DirectionProbes(model, len(world.DIRECTIONS)).to(device) if args.direction_probe else None
    probe_opt = torch.optim.Adam(probes.parameters(), lr=PROBE_LR) if probes is not None else None
    gen = torch.Generator().manual_seed(args.seed * 1000 + step)
    t0, losses, probe_losses = time.time(), [], []
    budget = args.minutes * 60 if args.minutes else None
    warm = 100
    warm_from = start_step if fresh else 0  # tensors without AdamW moments warm up again

    start_frac = start_step / total

    def lr_at(s):
        f = s / total
        if budget:  # the cosine follows whichever budget ends first, continuing where a resume left it
            f = max(f, start_frac + (1 - start_frac) * (time.time() - t0) / budget)
        return (args.lr * min(1.0, (s - warm_from + 1) / warm)
                * (0.05 + 0.95 * 0.5 * (1 + math.cos(math.pi * min(f, 1.0)))))

    def save(step):
        _save_ckpt(ckpt, names, params, ema, opt, step, {"lr": args.lr, "steps": total, "seed": args.seed})
        atomic_json({"step": step, "time": time.strftime("%Y-%m-%d %H:%M:%S")}, run_dir / "ckpt.json")
        export(run_dir, adapter, unet, lora, te, ema, tokenizer, step)

    adapter.train()
    while step < total and not (budget and time.time() - t0 > budget):
        idx = torch.randint(0, n, (args.batch,), generator=gen).to(device)
        x0 = latents[idx].float().permute(0, 2, 1, 3, 4)          # B C F H W
        lab = labels[idx]
        caption = bank.index(lab, gen, CAPTION_DROPOUT).to(device)
        ids = bank.ids[caption]
        noise = clip_noise(x0.shape, args.shared_noise, gen).to(device)
        # a share of the clips at high noise, where a sample's layout, and so the motion, is decided
        t = torch.where(torch.rand(args.batch, generator=gen) < args.high_noise,
                        torch.randint(args.high_noise_from, 1000, (args.batch,), generator=gen),
                        torch.randint(0, 1000, (args.batch,), generator=gen)).to(device)
        a = abar[t].sqrt().view(-1, 1, 1, 1, 1)
        s = (1 - abar[t]).sqrt().view(-1, 1, 1, 1, 1)
        xt = a * x0 + s * noise
        v = a * noise - s * x0
        for group, scale in zip(opt.param_groups, (1.0, args.lora_lr_scale, args.word_lr_scale)):
            group["lr"] = lr_at(step) * scale
        cond = te(ids)[0].repeat_interleave(FRAMES, dim=0)
        pred = model(xt, t, encoder_hidden_states=cond).sample
        loss = (weight[t] * clip_loss(pred.float() - v, args.motion_loss)).mean()
        if probes is not None:
            probe_loss = probes.loss(lab[:, 3].long(), caption != bank.empty)
            loss = loss + args.direction_probe * probe_loss
            probe_losses.append(probe_loss.item())
        step += 1
        optimizer_step(opt, loss, params, ema, step, args.ema)
        if probes is not None:
            probe_opt.step()
            probe_opt.zero_grad(set_to_none=True)
        losses.append(loss.item())
        if step % args.log_every == 0:
            probe = f" probe {np.mean(probe_losses[-args.log_every:]):.3f}" if probes is not None else ""
            print(f"[motion] step {step} loss {np.mean(losses[-args.log_every:]):.4f}{probe} lr {lr_at(step):.2e} "
                  f"{time.time() - t0:.0f}s", flush=True)
        if step % args.ckpt_every == 0:
            save(step)
    save(step)
    print(f"[motion] stopped at step {step} after {time.time() - t0:.0f}s", flush=True)


def export(run_dir: Path, adapter, unet, lora: dict, te, ema, tokenizer, step: int) -> None:
    """fp16 MotionAdapter of the EMA weights with its spatial LoRA beside it (diffusers LoRA format),
    and the base's text encoder + tokenizer with the motion words (EMA rows), under run_dir/export."""
    import copy

    out = run_dir / "export"
    tmp = run_dir / "export.tmp"
    shutil.rmtree(tmp, ignore_errors=True)
    a = copy.deepcopy(adapter).cpu().float()
    t = without_lora(te).cpu().float()
    named = dict(a.named_parameters())
    n_adapter = len(trainable_names(a))
    with torch.no_grad():
        for n, e in zip(trainable_names(a), ema[:n_adapter]):
            named[n].copy_(e.cpu())
        t.get_input_embeddings().weight[OLD_VOCAB:] = ema[-1][OLD_VOCAB:].cpu()
        live = [p.detach().clone() for p in lora.values()]
        for p, e in zip(lora.values(), ema[n_adapter:-1]):
            p.copy_(e)
        save_spatial_lora(unet, tmp / "motion_adapter", te)
        for p, w in zip(lora.values(), live):
            p.copy_(w)
    a.half().save_pretrained(str(tmp / "motion_adapter"), safe_serialization=True)
    t.half().save_pretrained(str(tmp / "text_encoder"), safe_serialization=True)
    tokenizer.save_pretrained(str(tmp / "tokenizer"))
    atomic_json({"step": step}, tmp / "train_step.json")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)


# ----------------------------------------------------------------------------- evaluation
def motion_verdict(frames: np.ndarray, color: str, shape: str, direction: str, min_travel: float = 3.0) -> dict:
    """Judge a clip ((F, H, W, 3) uint8 or float in 0-1): does the shape's centroid move the
    prompted way from the first to the last frame where a shape is found, by at least
    `min_travel` judge pixels (of 64) and more than it moves across; and are its colour and shape
    right in the first and the last frame."""
    verdicts = [judge(f) for f in frames]
    found = [v for v in verdicts if v.found and v.centroid is not None]
    ok_dir, travel = False, 0.0
    if len(found) >= 2:
        dx = found[-1].centroid[0] - found[0].centroid[0]
        dy = found[-1].centroid[1] - found[0].centroid[1]
        ex, ey = world.DIRECTIONS[direction]
        travel = dx * ex + dy * ey
        across = abs(dx * ey) + abs(dy * ex)
        ok_dir = travel >= min_travel and travel > across
    first, last = verdicts[0], verdicts[-1]
    return {"direction": bool(ok_dir), "travel": float(travel),
            "first": first.matches(color, shape), "last": last.matches(color, shape),
            "hold": bool(first.matches(color, shape) and last.matches(color, shape))}


def eval_prompts(limit: int | None = None) -> list[tuple[str, str, str]]:
    """Every (colour, shape, direction): 84 prompts; `limit` takes an even spread of them."""
    allp = [(c, s, d) for c in world.COLORS for s in world.SHAPES for d in world.DIRECTIONS]
    if limit and limit < len(allp):
        allp = [allp[round(i * len(allp) / limit)] for i in range(limit)]
    return allp


def build_eval_pipeline(base_dir: Path, adapter_dir: Path, device, sampler: str = "UniPC"):
    from diffusers import AutoencoderKL, AnimateDiffPipeline, MotionAdapter, UNet2DConditionModel
    from transformers import CLIPTextModel, CLIPTokenizer
    from ..motion_unet import build_motion_unet, use_spatial_lora
    from ..samplers import build_scheduler
    from diffusers import DDIMScheduler
    te_dir = base_dir / "text_encoder"
    tok_dir = base_dir / "tokenizer"
    if (adapter_dir.parent / "text_encoder").is_dir():  # an export: its motion words are what publish installs
        te_dir, tok_dir = adapter_dir.parent / "text_encoder", adapter_dir.parent / "tokenizer"
    vae = AutoencoderKL.from_pretrained(base_dir / "vae", torch_dtype=torch.float32)
    unet = UNet2DConditionModel.from_pretrained(base_dir / "unet", torch_dtype=torch.float32)
    te = CLIPTextModel.from_pretrained(te_dir, dtype=torch.float32)
    tok = CLIPTokenizer.from_pretrained(tok_dir)
    adapter = MotionAdapter.from_pretrained(adapter_dir, torch_dtype=torch.float32)
    use_spatial_lora(unet, adapter_dir, "demo", te)
    model = build_motion_unet(unet, adapter)
    base_sched = DDIMScheduler.from_pretrained(base_dir / "scheduler")
    pipe = AnimateDiffPipeline(vae=vae, text_encoder=te, tokenizer=tok, unet=model, motion_adapter=adapter,
                               scheduler=build_scheduler(sampler, base_sched.config))
    return pipe.to(device)


@torch.no_grad()
def evaluate(pipe, seeds: list[int], steps: int = 20, cfg: float = 4.0, frames: int = FRAMES,
             prompts: list[tuple[str, str, str]] | None = None, batch: int = 32, device="cpu",
             frame_noise: str = FRAME_NOISE) -> dict:
    prompts = prompts or eval_prompts()
    jobs = [(c, s, d, seed) for (c, s, d) in prompts for seed in seeds]
    res = []
    for i in range(0, len(jobs), batch):
        chunk = jobs[i:i + batch]
        gens = [torch.Generator("cpu").manual_seed(seed) for *_, seed in chunk]
        latents = None
        if frame_noise == "shared":  # as the Video tab starts a clip
            latents = torch.cat([shared_noise(pipe, frames, 64, 64, g) for g in gens])
        out = pipe(prompt=[world.motion_caption(c, s, d) for c, s, d, _ in chunk], num_frames=frames,
                   height=64, width=64, num_inference_steps=steps, guidance_scale=cfg, generator=gens,
                   latents=latents, output_type="np").frames
        for (c, s, d, _), clip in zip(chunk, out):
            res.append(motion_verdict(np.asarray(clip), c, s, d))
    n = len(res)
    return {"direction": sum(r["direction"] for r in res) / n, "hold": sum(r["hold"] for r in res) / n,
            "first": sum(r["first"] for r in res) / n, "last": sum(r["last"] for r in res) / n,
            "both": sum(r["direction"] and r["hold"] for r in res) / n,
            "mean_travel_px": float(np.mean([r["travel"] for r in res])), "n": n,
            "steps": steps, "cfg": cfg, "frames": frames, "frame_noise": frame_noise}


@torch.no_grad()
def first_step_travel(pipe, n: int = 8, cfg: float = 4.0, seed: int = 1) -> dict[str, tuple[float, float]]:
    """Where the sampler's first step (t = 999, pure noise) puts a red circle: for each prompted
    direction, the mean (dx, dy) in pixels from the first to the last frame of the clean clip it
    predicts, over `n` noises shared by every direction. A model that follows the prompt moves
    these the prompted way; one whose layout comes from the noise gives the same numbers for all."""
    unet, vae = pipe.unet, pipe.vae
    abar = pipe.scheduler.alphas_cumprod[999]
    x = torch.randn(n, 4, FRAMES, 16, 16, generator=torch.Generator().manual_seed(seed)).to(unet.device)
    t = torch.full((n,), 999, device=unet.device)
    ys, xs = np.mgrid[0:64, 0:64]
    out = {}
    for direction in world.DIRECTIONS:
        cond, empty = pipe.encode_prompt(f"a red circle moving {direction} on a blue background", unet.device,
                                         n * FRAMES, True, "")
        v_empty = unet(x, t, encoder_hidden_states=empty).sample
        v = v_empty + cfg * (unet(x, t, encoder_hidden_states=cond).sample - v_empty)
        x0 = abar.sqrt() * x - (1 - abar).sqrt() * v
        frames = decode_to_uint8(vae, x0.permute(0, 2, 1, 3, 4).reshape(-1, 4, 16, 16) / vae.config.scaling_factor)
        red = np.clip(frames[..., 0].astype(np.float64) - frames[..., 2], 0, None).reshape(n, FRAMES, 64, 64)
        w = red / np.maximum(red.sum(axis=(2, 3), keepdims=True), 1e-6)     # red over the blue background
        cx, cy = (w * xs).sum((2, 3)), (w * ys).sum((2, 3))
        out[direction] = (float((cx[:, -1] - cx[:, 0]).mean()), float((cy[:, -1] - cy[:, 0]).mean()))
    return out


@torch.no_grad()
def direction_sensitivity(pipe, t: int = 999, seed: int = 0) -> dict[str, dict[str, float]]:
    """How far a prompt's direction reaches: the relative change between "a red circle moving left"
    and "... moving right" (and, for scale, "a blue circle moving left") of the text encoder's output,
    of the mid block's motion-module input, and of the motion UNet's output, on one noised batch at
    step `t`. The motion modules can only follow what reaches their input."""
    unet = pipe.unet
    seen = {}
    hook = unet.mid_block.motion_modules[0].register_forward_pre_hook(
        lambda module, args: seen.__setitem__("motion_input", args[0].clone()))
    x = torch.randn(2, 4, FRAMES, 16, 16, generator=torch.Generator().manual_seed(seed)).to(unet.device)
    out = {}
    try:
        for prompt in ("a red circle moving left", "a red circle moving right", "a blue circle moving left"):
            states, _ = pipe.encode_prompt(prompt, unet.device, 2 * FRAMES, False)
            sample = unet(x, torch.full((2,), t, device=unet.device), encoder_hidden_states=states).sample
            out[prompt] = {"text": states, "motion_input": seen["motion_input"], "output": sample}
    finally:
        hook.remove()
    left, right, blue = out.values()
    return {name: {part: round(float((a[part] - b[part]).norm() / a[part].norm()), 4) for part in left}
            for name, (a, b) in {"direction": (left, right), "colour": (left, blue)}.items()}


def publish(run_dir: Path, metrics: dict | None) -> None:
    """export -> assets/models/shapes-motion (adapter + studio.json); the grown text encoder and
    tokenizer -> assets/models/shapes-sd (existing rows unchanged); the checkpoint -> assets/training."""
    src = run_dir / "export"
    step = json.loads((src / "train_step.json").read_text())["step"]
    tmp = ASSET_DIR.with_name(ASSET_DIR.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    shutil.copytree(src / "motion_adapter", tmp)
    studio = {"name": NAME, "task": "video", "kind": "motion_adapter", "base": "shapes-sd",
              "sampler": "UniPC", "steps": 20, "cfg_scale": 4.0, "frames": FRAMES, "fps": 8,
              "frame_noise": FRAME_NOISE,
              "width": 64, "height": 64, "trained_steps": step,
              "description": "demo motion adapter trained on moving shapes "
                             "(prompts like 'a red circle moving right')"}
    if metrics:
        studio["metrics"] = metrics
    atomic_json(studio, tmp / "studio.json")
    shutil.rmtree(ASSET_DIR, ignore_errors=True)
    tmp.rename(ASSET_DIR)
    for sub in ("text_encoder", "tokenizer"):
        shutil.rmtree(BASE_DIR / sub)
        shutil.copytree(src / sub, BASE_DIR / sub)
    TRAINING_ASSET_DIR.mkdir(parents=True, exist_ok=True)
    for name in ("ckpt.safetensors", "ckpt.json"):
        shutil.copy(run_dir / name, TRAINING_ASSET_DIR / name)
    print(f"published step {step} to {ASSET_DIR}: {studio}", flush=True)


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.train_motion")
    ap.add_argument("--run-dir", type=Path, default=DEFAULT_RUN_DIR)
    ap.add_argument("--base", type=Path, default=BASE_DIR)
    ap.add_argument("--resume", action="store_true")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--clips", type=int, default=4000)
    ap.add_argument("--steps", type=int, default=20000)
    ap.add_argument("--minutes", type=float, default=None)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--lr", type=float, default=1.2e-3)
    ap.add_argument("--word-lr-scale", type=float, default=3.0,
                    help="learning rate of the motion words' embeddings, relative to --lr")
    ap.add_argument("--lora-lr-scale", type=float, default=2.0,
                    help="learning rate of the spatial LoRA, relative to --lr")
    ap.add_argument("--ema", type=float, default=0.99)
    ap.add_argument("--high-noise", type=float, default=0.5, help="share of clips drawn at t >= --high-noise-from")
    ap.add_argument("--high-noise-from", type=int, default=850)
    ap.add_argument("--snr-gamma", type=float, default=0.0, help="min-SNR-γ loss weighting; 0: plain v loss")
    ap.add_argument("--motion-loss", type=float, default=4.0,
                    help="weight of the loss on the part of the error that changes across frames (0: off)")
    ap.add_argument("--shared-noise", type=float, default=0.0,
                    help="share of clips noised with the same noise in every frame")
    ap.add_argument("--direction-probe", type=float, default=1.0,
                    help="weight of the DirectionProbes loss (0: none)")
    ap.add_argument("--ckpt-every", type=int, default=250)
    ap.add_argument("--log-every", type=int, default=100)
    ap.add_argument("--eval-seeds", type=int, default=2, help="seeds per prompt (84 prompts)")
    ap.add_argument("--eval-prompts", type=int, default=None, help="fewer than the 84 prompts (smoke runs)")
    ap.add_argument("--eval-steps", type=int, default=20)
    ap.add_argument("--eval-cfg", type=float, default=4.0)
    ap.add_argument("--eval-frame-noise", choices=FRAME_NOISES, default=FRAME_NOISE)
    ap.add_argument("--stage", choices=["all", "train", "evaluate"], default="all")
    ap.add_argument("--publish", action="store_true", help="after evaluating, publish to assets/")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    device = pick_device(args.device)
    if device.type == "cuda":
        torch.backends.cuda.matmul.allow_tf32 = True
        torch.backends.cudnn.allow_tf32 = True
    run_dir = args.run_dir
    run_dir.mkdir(parents=True, exist_ok=True)
    print(f"[motion] device {device}, run dir {run_dir}", flush=True)
    if args.stage in ("all", "train"):
        train(run_dir, args, device)
    if args.stage in ("all", "evaluate"):
        t0 = time.time()
        pipe = build_eval_pipeline(args.base, run_dir / "export" / "motion_adapter", device)
        seeds = list(range(10_000, 10_000 + args.eval_seeds))   # held out: never used for training clips
        metrics = evaluate(pipe, seeds, args.eval_steps, args.eval_cfg,
                           prompts=eval_prompts(args.eval_prompts), device=device, frame_noise=args.eval_frame_noise)
        metrics["trained_steps"] = json.loads((run_dir / "export" / "train_step.json").read_text())["step"]
        metrics["first_step_travel_px"] = first_step_travel(pipe, cfg=args.eval_cfg)
        metrics["sensitivity"] = direction_sensitivity(pipe)
        print(f"[motion] eval {metrics} in {time.time() - t0:.0f}s", flush=True)
        atomic_json(metrics, run_dir / "export" / "metrics.json")
        if args.publish:
            publish(run_dir, metrics)


if __name__ == "__main__":
    main()
