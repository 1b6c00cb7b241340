"""The denoising call every capability shares: seeded CPU noise, sampler, progress, Stop, OOM retry."""

from __future__ import annotations

import inspect
from types import SimpleNamespace

import numpy as np
import torch
from PIL import Image

from pipelines.errors import JobCancelled
from pipelines.runtime import decode_latents, run_with_oom_retry
from pipelines.samplers import build_scheduler, check_schedule


def denoise(pipe, manager, sampler: str, seeds: list[int], progress, **pipe_args) -> torch.Tensor:
    """Run `pipe` to latents for one batch (image i gets seed i); stop at the next step on cancel."""
    pipe.scheduler = build_scheduler(sampler, manager.base_scheduler_config, seed=seeds[0])
    check_schedule(pipe.scheduler, sampler, pipe_args["num_inference_steps"])

    def on_step(p, step, timestep, tensors):
        progress.report(step + 1, p.num_timesteps)
        if progress.cancelled:
            p._interrupt = True  # diffusers skips every remaining step
        return tensors

    args = dict(num_images_per_prompt=len(seeds), output_type="latent", callback_on_step_end=on_step,
                generator=[torch.Generator("cpu").manual_seed(seed) for seed in seeds], **pipe_args)
    size = (args.get("width"), args.get("height"))
    if size[0] is None and "image" in args:
        size = image_size(args["image"], getattr(pipe, "vae_scale_factor", 8))
        if "height" in inspect.signature(pipe.__call__).parameters:  # Flux would default to 1024 px
            args.update(width=size[0], height=size[1])
    with torch.inference_mode():
        latents = run_with_oom_retry(lambda: pipe(**args).images, pipe)
    if progress.cancelled:
        raise JobCancelled()
    if latents.ndim == 3 and hasattr(pipe, "_unpack_latents"):  # Flux packs 2x2 latent patches into tokens
        latents = pipe._unpack_latents(latents, size[1], size[0], pipe.vae_scale_factor)
    return latents


def image_size(image, latent_factor: int) -> tuple[int, int]:
    """(width, height) in pixels of a pipeline's `image` argument: PIL image(s) or a latent tensor."""
    first = image[0] if isinstance(image, (list, tuple)) else image
    if isinstance(first, torch.Tensor):
        height, width = first.shape[-2:]
        return int(width) * latent_factor, int(height) * latent_factor
    return first.size


def decode_to_pil(vae, latents: torch.Tensor) -> list[Image.Image]:
    """Decode to PIL images; an out-of-memory decode is retried once with sliced, tiled VAE decoding."""
    pixels = run_with_oom_retry(lambda: decode_latents(vae, latents), SimpleNamespace(vae=vae))
    return [Image.fromarray((p.permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)) for p in pixels]
