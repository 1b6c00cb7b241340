"""Device, precision and memory options, applied the same way to every diffusers pipeline."""

from __future__ import annotations

import gc
import logging
from dataclasses import dataclass

import torch

from pipelines.errors import StudioError

log = logging.getLogger(__name__)

DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
SLICING_MODES = ("auto", "on", "off")
_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}
# Below this much free VRAM, `auto` attention slicing turns on: with SDPA slicing costs speed,
# so it is only worth it when memory is actually short (DESIGN §4, §7).
AUTO_SLICING_FREE_BYTES = 6 * 1024**3


@dataclass
class RuntimeOptions:
    device: str = "auto"
    precision: str = "auto"
    attention_slicing: str = "auto"
    vae_slicing: bool = False
    vae_tiling: bool = False
    cpu_offload: bool = False

    def __post_init__(self):
        for value, allowed, name in (
            (self.device, DEVICES, "device"),
            (self.precision, PRECISIONS, "precision"),
            (self.attention_slicing, SLICING_MODES, "attention slicing"),
        ):
            if value not in allowed:
                raise StudioError(f"Unknown {name} '{value}': choose one of {', '.join(allowed)}.")


def resolve_device(name: str = "auto") -> torch.device:
    """The torch device for a --device choice; a device that is not there is a clear error."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise StudioError("--device cuda was asked for, but no CUDA GPU is visible to torch.")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise StudioError("--device mps was asked for, but Apple MPS is not available.")
    return torch.device(name)


def resolve_dtype(precision: str, device: torch.device) -> torch.dtype:
    """fp16 on CUDA/MPS, fp32 on CPU unless the user chose otherwise (fp16 on CPU is refused)."""
    if precision == "auto":
        return torch.float16 if device.type in ("cuda", "mps") else torch.float32
    if precision == "fp16" and device.type == "cpu":
        raise StudioError("fp16 is not supported on the CPU: use --precision fp32 or bf16.")
    return _DTYPES[precision]


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def free_vram_bytes(device: torch.device) -> int | None:
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return free


def wants_attention_slicing(mode: str, device: torch.device) -> bool:
    if mode == "on":
        return True
    if mode == "off":
        return False
    free = free_vram_bytes(device)
    return free is not None and free < AUTO_SLICING_FREE_BYTES


def apply_memory_options(pipe, options: RuntimeOptions, device: torch.device) -> None:
    if hasattr(pipe, "enable_attention_slicing"):
        if wants_attention_slicing(options.attention_slicing, device):
            pipe.enable_attention_slicing()
        else:
            pipe.disable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        _toggle(vae, "slicing", options.vae_slicing)
        _toggle(vae, "tiling", options.vae_tiling)


def _toggle(vae, feature: str, on: bool) -> None:
    method = getattr(vae, f"{'enable' if on else 'disable'}_{feature}", None)
    if method is not None:
        method()


def is_out_of_memory(error: BaseException) -> bool:
    if isinstance(error, torch.OutOfMemoryError):
        return True
    return isinstance(error, RuntimeError) and "out of memory" in str(error).lower()


def run_with_oom_retry(fn, pipe):
    """Run `fn()`; on out-of-memory free the cache, turn on slicing and tiled VAE, and retry once."""
    try:
        return fn()
    except Exception as error:  # noqa: BLE001 - re-raised unless it is an OOM
        if not is_out_of_memory(error):
            raise
        log.warning("Out of memory; retrying once with attention slicing and tiled VAE decode")
    free_memory()
    if hasattr(pipe, "enable_attention_slicing"):
        pipe.enable_attention_slicing()
    vae = getattr(pipe, "vae", None)
    if vae is not None:
        vae.enable_slicing()
        vae.enable_tiling()
    try:
        return fn()
    except Exception as error:  # noqa: BLE001
        if not is_out_of_memory(error):
            raise
        free_memory()
        raise StudioError(
            "Out of memory even with attention slicing and tiled VAE decode: "
            "lower the size or batch size, or enable CPU offload in settings."
        ) from None


def decode_latents(vae, latents: torch.Tensor) -> torch.Tensor:
    """Decode latents to images in [0, 1]; if a half-precision VAE gives NaNs, upcast and decode again."""
    images = _decode(vae, latents)
    if torch.isnan(images).any() and vae.dtype != torch.float32:
        log.warning("VAE produced NaNs in %s; upcasting the VAE to fp32 and decoding again", vae.dtype)
        vae.to(torch.float32)
        images = _decode(vae, latents)
    if torch.isnan(images).any():
        raise StudioError("The model produced NaNs (an all-black image): try another seed, sampler or fp32.")
    return images


def _decode(vae, latents: torch.Tensor) -> torch.Tensor:
    scaled = latents.to(device=vae.device, dtype=vae.dtype) / vae.config.scaling_factor
    shift = getattr(vae.config, "shift_factor", None)
    if shift:
        scaled = scaled + shift
    with torch.no_grad():
        decoded = vae.decode(scaled, return_dict=False)[0]
    return (decoded.float() / 2 + 0.5).clamp(0, 1)
