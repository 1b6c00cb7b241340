"""Hires fix: the two-pass cascade of A1111 — generate small, upscale, refine as image to image.

Upscaling happens in latent space (interpolation, A1111's "Latent (…)" upscalers), on pixels
(Lanczos, Nearest) or through any model of the super-resolution tab; the second pass re-noises the
upscaled result by the denoising strength and denoises it at the final size, which restores the
detail a plain enlargement lacks.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from PIL import Image

from pipelines.denoise import decode_to_pil, denoise
from pipelines.errors import StudioError
from pipelines.jobs import StageProgress

LATENT_UPSCALERS = {  # name: (torch interpolation mode, antialias)
    "Latent": ("bilinear", False),
    "Latent (antialiased)": ("bilinear", True),
    "Latent (bicubic)": ("bicubic", False),
    "Latent (bicubic antialiased)": ("bicubic", True),
    "Latent (nearest)": ("nearest", False),
    "Latent (nearest-exact)": ("nearest-exact", False),
}
PIXEL_UPSCALERS = {"Lanczos": Image.LANCZOS, "Nearest": Image.NEAREST}
UPSCALERS = [*LATENT_UPSCALERS, *PIXEL_UPSCALERS]
MIN_SCALE, MAX_SCALE = 1.0, 4.0


def final_size(width: int, height: int, scale: float, max_size: int) -> tuple[int, int]:
    """The second pass's size: scale × first pass, rounded to multiples of 8, within the size limit."""
    if not MIN_SCALE <= scale <= MAX_SCALE:
        raise StudioError(f"Hires upscale must be between {MIN_SCALE:g} and {MAX_SCALE:g} (got {scale:g}).")
    size = (int(round(width * scale / 8)) * 8, int(round(height * scale / 8)) * 8)
    if max(size) > max_size:
        raise StudioError(f"Hires fix would make a {size[0]}x{size[1]} image; the limit is {max_size} px a side.")
    return size


def validate(upscaler: str, steps: int, strength: float, max_steps: int, models: list[str] = ()) -> None:
    """`models`: the super-resolution models of the catalog, upscalers too."""
    if upscaler not in UPSCALERS and upscaler not in models:
        raise StudioError(f"Unknown hires upscaler '{upscaler}'. Choose one of: {', '.join([*UPSCALERS, *models])}.")
    if not 0 <= steps <= max_steps:
        raise StudioError(f"Hires steps must be between 0 (same as the first pass) and {max_steps} (got {steps}).")
    if not 0 <= strength <= 1:
        raise StudioError(f"Denoising strength must be between 0 and 1 (got {strength:g}).")


def upscale_and_refine(manager, entry, latents: torch.Tensor, seeds: list[int], size: tuple[int, int], *,
                       upscaler: str, steps: int, strength: float, sampler: str, prompt_args: dict,
                       progress: StageProgress) -> list[Image.Image]:
    """Second pass on first-pass `latents`; strength 0 returns the upscaled first pass as it is."""
    vae = manager.pipeline(entry, "text2image").vae
    if upscaler in LATENT_UPSCALERS:
        mode, antialias = LATENT_UPSCALERS[upscaler]
        factor = 2 ** (len(vae.config.block_out_channels) - 1)
        upscaled = F.interpolate(latents, size=(size[1] // factor, size[0] // factor), mode=mode,
                                 antialias=antialias and mode in ("bilinear", "bicubic"))
        if strength == 0:
            return decode_to_pil(vae, upscaled)
        start = upscaled
    elif upscaler in PIXEL_UPSCALERS:
        start = [image.resize(size, PIXEL_UPSCALERS[upscaler]) for image in decode_to_pil(vae, latents)]
    else:
        from pipelines import upscale  # imported here: the super-resolution module builds on this one

        first = decode_to_pil(vae, latents)
        start = [upscale.enlarge(manager, upscaler, image, size, seed, prompt_args["prompt"],
                                 StageProgress(StageProgress(progress, 0, 2), index, len(first)))
                 for index, (seed, image) in enumerate(zip(seeds, first))]
        progress = StageProgress(progress, 1, 2)
    if upscaler not in LATENT_UPSCALERS and strength == 0:
        return start
    img2img = manager.pipeline(entry, "img2img")
    refined = denoise(img2img, manager, sampler, seeds, progress, image=start, strength=strength,
                      num_inference_steps=steps, **prompt_args)
    return decode_to_pil(img2img.vae, refined)
