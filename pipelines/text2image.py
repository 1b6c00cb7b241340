"""Text to image and image to image: one request type, validated, run on the loaded model."""

from __future__ import annotations

import random
from dataclasses import dataclass, field

import numpy as np
from PIL import Image

from pipelines import controlnet, hires, metadata, networks
from pipelines.denoise import decode_to_pil, denoise
from pipelines.errors import StudioError
from pipelines.images import to_rgb
from pipelines.jobs import StageProgress
from pipelines.models import UPSCALE, ModelEntry, ModelManager
from pipelines.samplers import FLOW_SAMPLERS, SAMPLERS

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
    strength: float = 0.75  # image to image, and the hires fix's second pass
    enable_hr: bool = False  # hires fix: upscale the first pass and refine it (text to image only)
    hr_scale: float = 2.0
    hr_upscaler: str = "Latent"
    hr_steps: int = 0  # 0 → as many as the first pass
    controlnets: list[controlnet.ControlUnit] = field(default_factory=list)


@dataclass
class GeneratedImage:
    image: Image.Image
    seed: int
    parameters: str
    kind: str | None = None  # output subfolder when not the job's own (e.g. "txt2img-grids")


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
    hires_size: tuple[int, int] | None = None
    prompt: str = ""  # as the model reads it: LoRA tags taken out (networks.activate)
    negative_prompt: str = ""
    networks: dict = field(default_factory=dict)  # LoRA / embedding metadata fields


def resolve_settings(request: Text2ImageRequest, entry: ModelEntry, hr_models: list[str] = ()) -> Settings:
    """`hr_models`: the catalog's super-resolution models, which the hires fix may use too."""
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
        seed=resolve_seed(request.seed),
        init_image=init,
    )
    validate(request, settings)
    entry.family_info.check_sampler(settings.sampler)
    if request.enable_hr:
        if init is not None:
            raise StudioError("Hires fix is for text to image: remove the init image or turn hires fix off.")
        hires.validate(request.hr_upscaler, int(request.hr_steps), request.strength, MAX_STEPS, hr_models)
        settings.hires_size = hires.final_size(settings.width, settings.height, request.hr_scale, MAX_SIZE)
    return settings


def validate(request: Text2ImageRequest, s: Settings) -> None:
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        raise StudioError("The prompt and negative prompt must be text.")
    validate_size(s.width, s.height)
    validate_sampling(s.sampler, s.steps, s.cfg_scale, s.seed)
    validate_batch(request.batch_size, request.batch_count)
    if s.init_image is not None:
        validate_strength(request.strength)
        if int(s.steps * request.strength) < 1:
            raise StudioError(f"Denoising strength {request.strength:g} × {s.steps} steps leaves no step to run: "
                              "raise the steps or the strength.")


def validate_size(width: int, height: int) -> None:
    for name, value in (("Width", width), ("Height", height)):
        if value % 8 or not MIN_SIZE <= value <= MAX_SIZE:
            raise StudioError(f"{name} must be a multiple of 8 between {MIN_SIZE} and {MAX_SIZE} (got {value}).")


def validate_sampling(sampler: str, steps: int, cfg_scale: float, seed: int) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise StudioError(f"Steps must be between 1 and {MAX_STEPS} (got {steps}).")
    if not 0 <= cfg_scale <= MAX_CFG or np.isnan(cfg_scale):
        raise StudioError(f"CFG scale must be between 0 and {MAX_CFG:g} (got {cfg_scale:g}).")
    if sampler not in SAMPLERS and sampler not in FLOW_SAMPLERS:
        raise StudioError(f"Unknown sampler '{sampler}'. Choose one of: {', '.join([*SAMPLERS, *FLOW_SAMPLERS])}.")
    if not 0 <= seed <= MAX_SEED:
        raise StudioError(f"Seed must be -1 (random) or between 0 and {MAX_SEED} (got {seed}).")


def validate_batch(batch_size: int, batch_count: int = 1) -> None:
    if not 1 <= batch_size <= MAX_BATCH_SIZE:
        raise StudioError(f"Batch size must be between 1 and {MAX_BATCH_SIZE} (got {batch_size}).")
    if not 1 <= batch_count <= MAX_BATCH_COUNT:
        raise StudioError(f"Batch count must be between 1 and {MAX_BATCH_COUNT} (got {batch_count}).")


def validate_strength(strength: float) -> None:
    if not 0 < strength <= 1:
        raise StudioError(f"Denoising strength must be above 0 and at most 1 (got {strength:g}).")


def resolve_seed(seed: int | None) -> int:
    return random.randint(0, MAX_SEED) if seed is None or int(seed) == -1 else int(seed)


def run(manager: ModelManager, request: Text2ImageRequest, progress) -> Text2ImageResult:
    """Generate batch_count × batch_size images; image i uses seed + i, noise from a CPU generator."""
    entry = manager.entry(request.model)
    s = resolve_settings(request, entry, manager.catalog.names(UPSCALE))
    task = "img2img" if s.init_image is not None else "text2image"
    pipe, control_args = manager.pipeline(entry, task), {}
    s.prompt, s.negative_prompt, s.networks = networks.activate(
        pipe, manager.catalog.models_dir, request.prompt, request.negative_prompt, entry.name)
    if request.controlnets:
        pipe, control_args, _maps = controlnet.prepare(manager, entry, task, request.controlnets, (s.width, s.height))
    warnings = prompt_warnings(pipe, s.prompt) + prompt_warnings(pipe, s.negative_prompt)
    warnings += negative_prompt_warnings(entry, request.negative_prompt)
    images: list[GeneratedImage] = []
    passes = 2 if s.hires_size else 1
    for batch in range(request.batch_count):
        seeds = [s.seed + batch * request.batch_size + i for i in range(request.batch_size)]
        stage = StageProgress(progress, batch * passes, request.batch_count * passes)
        latents = denoise(pipe, manager, s.sampler, seeds, stage, **pipeline_args(request, s), **control_args)
        if s.hires_size:
            pictures = hires.upscale_and_refine(
                manager, entry, latents, seeds, s.hires_size, upscaler=request.hr_upscaler,
                steps=int(request.hr_steps) or s.steps, strength=request.strength, sampler=s.sampler,
                prompt_args=prompt_args(request, s),
                progress=StageProgress(progress, batch * passes + 1, request.batch_count * passes))
        else:
            pictures = decode_to_pil(pipe.vae, latents)
        for seed, image in zip(seeds, pictures):
            images.append(GeneratedImage(image, seed, parameters_text(request, s, seed)))
    return Text2ImageResult(images, warnings)


def prompt_args(request: Text2ImageRequest, s: Settings) -> dict:
    """Prompt and guidance as the model's family takes them (Flux: no negative prompt; distilled guidance)."""
    return s.entry.family_info.call_args(dict(prompt=s.prompt, negative_prompt=s.negative_prompt or None,
                                              guidance_scale=s.cfg_scale))


def pipeline_args(request: Text2ImageRequest, s: Settings) -> dict:
    args = dict(prompt_args(request, s), num_inference_steps=s.steps)
    if s.init_image is not None:
        return dict(args, image=s.init_image.resize((s.width, s.height), Image.LANCZOS), strength=request.strength)
    return dict(args, width=s.width, height=s.height)


def negative_prompt_warnings(entry: ModelEntry, negative_prompt: str) -> list[str]:
    family = entry.family_info
    if negative_prompt and negative_prompt.strip() and not family.negative_prompt:
        return [f"{family.label} takes no negative prompt: it was ignored (and is not recorded)."]
    return []


def family_fields(entry: ModelEntry, cfg_scale: float) -> dict:
    """The guidance fields as the family means them, and the family itself (A1111 Forge's names for Flux)."""
    family = entry.family_info
    if family.guidance_field:  # Flux: the value is distilled guidance; real CFG is off
        return {"CFG scale": 1, family.guidance_field: f"{cfg_scale:g}"}
    return {"CFG scale": f"{cfg_scale:g}"}


def parameters_text(request: Text2ImageRequest, s: Settings, seed: int) -> str:
    family = s.entry.family_info
    fields = {
        "Steps": s.steps, "Sampler": s.sampler, **family_fields(s.entry, s.cfg_scale), "Seed": seed,
        "Size": f"{s.width}x{s.height}", "Model": s.entry.name, "Family": family.key,
        "Denoising strength": f"{request.strength:g}" if s.init_image is not None or s.hires_size else None,
        "Hires upscale": f"{request.hr_scale:g}" if s.hires_size else None,
        "Hires steps": int(request.hr_steps) if s.hires_size and request.hr_steps else None,
        "Hires upscaler": request.hr_upscaler if s.hires_size else None,
        **controlnet.parameters(request.controlnets),
        **s.networks,
        "Version": VERSION,
    }
    negative = request.negative_prompt if family.negative_prompt else ""
    return metadata.format_parameters(request.prompt, negative, fields)


def prompt_warnings(pipe, prompt: str) -> list[str]:
    # the text encoder that reads furthest counts (SD3/Flux: T5 beside CLIP's 77; the SDXL refiner: tokenizer_2)
    tokenizers = [getattr(pipe, name, None) for name in ("tokenizer", "tokenizer_2", "tokenizer_3")]
    tokenizers = [t for t in tokenizers if t is not None]
    tokenizer = max(tokenizers, key=lambda t: t.model_max_length, default=None)
    if tokenizer is None or not prompt:
        return []
    count = len(tokenizer(prompt, truncation=False).input_ids)
    limit = tokenizer.model_max_length
    if count > limit:
        return [f"The prompt is {count} tokens long; only the first {limit} are used (the rest is ignored)."]
    return []

