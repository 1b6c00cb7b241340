"""Text to image and image to image: one request type, validated, run on the loaded model."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image

from pipelines import metadata
from pipelines.errors import JobCancelled, StudioError
from pipelines.images import to_rgb
from pipelines.models import ModelEntry, ModelManager
from pipelines.runtime import decode_latents, run_with_oom_retry
from pipelines.samplers import SAMPLERS, build_scheduler

VERSION = "Diffusion Studio 0.1"
MIN_SIZE, MAX_SIZE = 64, 2048
MAX_STEPS = 500
MAX_CFG = 30.0
MAX_BATCH_SIZE, MAX_BATCH_COUNT = 8, 100
MAX_SEED = 2**32 - 1


@dataclass
class Text2ImageRequest:
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""  # "" → the studio's default model
    sampler: str | None = None  # None → the model's recommended settings
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    seed: int = -1  # -1 → random, and the drawn seed is recorded
    batch_count: int = 1
    batch_size: int = 1
    init_image: Image.Image | None = None  # set → image to image
    strength: float = 0.75


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    parameters: str


@dataclass
class Text2ImageResult:
    images: list[GeneratedImage]
    warnings: list[str] = field(default_factory=list)


@dataclass
class Settings:
    """A request with every default filled in from the model entry, validated."""

    entry: ModelEntry
    sampler: str
    steps: int
    cfg_scale: float
    width: int
    height: int
    seed: int
    init_image: Image.Image | None


def resolve_settings(request: Text2ImageRequest, entry: ModelEntry) -> Settings:
    init = to_rgb(request.init_image, "init image") if request.init_image is not None else None
    width, height = request.width, request.height
    if init is not None and width is None and height is None:
        width, height = (max(MIN_SIZE, min(MAX_SIZE, v // 8 * 8)) for v in init.size)
    settings = Settings(
        entry=entry,
        sampler=request.sampler or entry.sampler,
        steps=entry.steps if request.steps is None else int(request.steps),
        cfg_scale=entry.cfg_scale if request.cfg_scale is None else float(request.cfg_scale),
        width=entry.width if width is None else int(width),
        height=entry.height if height is None else int(height),
        seed=random.randint(0, MAX_SEED) if request.seed is None or int(request.seed) == -1 else int(request.seed),
        init_image=init,
    )
    validate(request, settings)
    return settings


def validate(request: Text2ImageRequest, s: Settings) -> None:
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        raise StudioError("The prompt and negative prompt must be text.")
    for name, value in (("Width", s.width), ("Height", s.height)):
        if value % 8 or not MIN_SIZE <= value <= MAX_SIZE:
            raise StudioError(f"{name} must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE} (got {value}).")
    if not 1 <= s.steps <= MAX_STEPS:
        raise StudioError(f"Steps must be between 1 and {MAX_STEPS} (got {s.steps}).")
    if not 0 <= s.cfg_scale <= MAX_CFG or np.isnan(s.cfg_scale):
        raise StudioError(f"CFG scale must be between 0 and {MAX_CFG:g} (got {s.cfg_scale:g}).")
    if s.sampler not in SAMPLERS:
        raise StudioError(f"Unknown sampler '{s.sampler}'. Choose one of: {', '.join(SAMPLERS)}.")
    if not 0 <= s.seed <= MAX_SEED:
        raise StudioError(f"Seed must be -1 (random) or between 0 and {MAX_SEED} (got {s.seed}).")
    if not 1 <= request.batch_size <= MAX_BATCH_SIZE:
        raise StudioError(f"Batch size must be between 1 and {MAX_BATCH_SIZE} (got {request.batch_size}).")
    if not 1 <= request.batch_count <= MAX_BATCH_COUNT:
        raise StudioError(f"Batch count must be between 1 and {MAX_BATCH_COUNT} (got {request.batch_count}).")
    if s.init_image is not None and not 0 < request.strength <= 1:
        raise StudioError(f"Denoising strength must be above 0 and at most 1 (got {request.strength:g}).")


def run(manager: ModelManager, request: Text2ImageRequest, progress) -> Text2ImageResult:
    """Generate batch_count × batch_size images; image i uses seed + i, noise from a CPU generator."""
    entry = manager.entry(request.model)
    s = resolve_settings(request, entry)
    pipe = manager.pipeline(entry, "img2img" if s.init_image is not None else "text2image")
    warnings = prompt_warnings(pipe, request.prompt) + prompt_warnings(pipe, request.negative_prompt)
    images: list[GeneratedImage] = []
    for batch in range(request.batch_count):
        seeds = [s.seed + batch * request.batch_size + i for i in range(request.batch_size)]
        latents = _denoise(pipe, request, s, seeds, manager, progress, batch)
        pixels = decode_latents(pipe.vae, latents)
        for seed, array in zip(seeds, pixels):
            images.append(GeneratedImage(_to_pil(array), seed, parameters_text(request, s, seed)))
    return Text2ImageResult(images, warnings)


def _denoise(pipe, request: Text2ImageRequest, s: Settings, seeds, manager, progress, batch: int):
    pipe.scheduler = build_scheduler(s.sampler, manager.base_scheduler_config, seed=seeds[0])

    def on_step(p, step, timestep, tensors):
        per_batch = p.num_timesteps
        progress.report(batch * per_batch + step + 1, request.batch_count * per_batch)
        if progress.cancelled:
            p._interrupt = True  # diffusers skips every remaining step
        return tensors

    args = dict(
        prompt=request.prompt, negative_prompt=request.negative_prompt or None,
        num_inference_steps=s.steps, guidance_scale=s.cfg_scale, num_images_per_prompt=len(seeds),
        generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds],
        output_type="latent", callback_on_step_end=on_step,
    )
    if s.init_image is not None:
        args.update(image=s.init_image.resize((s.width, s.height), Image.LANCZOS), strength=request.strength)
    else:
        args.update(width=s.width, height=s.height)
    with torch.inference_mode():
        latents = run_with_oom_retry(lambda: pipe(**args).images, pipe)
    if progress.cancelled:
        raise JobCancelled()
    return latents


def parameters_text(request: Text2ImageRequest, s: Settings, seed: int) -> str:
    fields = {
        "Steps": s.steps, "Sampler": s.sampler, "CFG scale": f"{s.cfg_scale:g}", "Seed": seed,
        "Size": f"{s.width}x{s.height}", "Model": s.entry.name,
        "Denoising strength": f"{request.strength:g}" if s.init_image is not None else None,
        "Version": VERSION,
    }
    return metadata.format_parameters(request.prompt, request.negative_prompt, fields)


def prompt_warnings(pipe, prompt: str) -> list[str]:
    tokenizer = getattr(pipe, "tokenizer", None)
    if tokenizer is None or not prompt:
        return []
    count = len(tokenizer(prompt, truncation=False).input_ids)
    limit = tokenizer.model_max_length
    if count > limit:
        return [f"The prompt is {count} tokens long; only the first {limit} are used (the rest is ignored)."]
    return []


def _to_pil(array: torch.Tensor) -> Image.Image:
    return Image.fromarray((array.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8))
