"""The memory plan for loading a model: precision, CPU offload and VAE tiling from the free VRAM and the
model's size, with the reason in words (shown in Models & settings). A pure function, so any budget can be
simulated; the model manager applies the plan when it loads on CUDA.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.errors import StudioError

GiB = 1024**3
# what a model needs on top of its weights while it runs (activations, attention, VAE decode at 1024 px)
HEADROOM_BYTES = int(1.5 * GiB)
HEADROOM_FRACTION = 0.1
# "auto" decides; the others force a plan (Models & settings → Memory policy)
POLICIES = ("auto", "gpu", "model offload", "sequential offload")


@dataclass(frozen=True)
class MemoryPlan:
    precision: str  # "fp16" | "bf16" | "fp32"
    offload: str  # "none" | "model" | "sequential"
    vae_tiling: bool
    reason: str
    device: str = "cuda"

    @property
    def summary(self) -> str:
        whole = "whole model on the GPU" if self.device == "cuda" else f"on the {self.device.upper()}"
        offload = {"none": whole, "model": "model CPU offload",
                   "sequential": "sequential CPU offload"}[self.offload]
        return f"{self.precision}, {offload}{', VAE tiling' if self.vae_tiling else ''}: {self.reason}"


def needed_bytes(model_bytes: int, whole: bool = True) -> int:
    """Weights plus room to run: a share of the weights for a whole model (its buffers, text encoders' work),
    a fixed working set for one component at a time."""
    return int(model_bytes * (1 + HEADROOM_FRACTION if whole else 1)) + HEADROOM_BYTES


def plan_memory(free_bytes: int | None, model_bytes: int | None, device: str = "cuda", *, override: str = "auto",
                precision: str = "auto", prefers_bf16: bool = False, bf16_supported: bool = True,
                largest_component_bytes: int | None = None, label: str = "the model") -> MemoryPlan:
    """Choose precision and offload for a model of `model_bytes` (at half precision) with `free_bytes` of VRAM.

    - fits with headroom → the whole model on the GPU;
    - its biggest component fits → model CPU offload (one component on the GPU at a time);
    - else → sequential CPU offload (layer by layer: slow, but it runs);
    VAE tiling goes on whenever the model does not fit whole. `override` forces the offload choice.
    """
    if override not in POLICIES:
        raise StudioError(f"Unknown memory policy '{override}': choose one of {', '.join(POLICIES)}.")
    if device != "cuda":
        chosen = "fp32" if precision == "auto" else precision
        return MemoryPlan(chosen, "none", False, "no CUDA GPU, nothing to offload", device)
    if precision != "auto":
        chosen, why_precision = precision, f"{precision} as set"
    elif prefers_bf16 and bf16_supported:
        chosen, why_precision = "bf16", f"bf16 ({label} overflows in fp16)"
    else:
        chosen = "fp16"
        why_precision = "fp16 (this GPU has no bf16)" if prefers_bf16 else "fp16"
    scale = 2 if chosen == "fp32" else 1
    size = None if model_bytes is None else model_bytes * scale
    part = None if largest_component_bytes is None else largest_component_bytes * scale
    gib = lambda n: f"{n / GiB:.1f} GiB"  # noqa: E731
    sized = f"{label} needs ~{gib(size)} in {chosen}" if size else f"{label}'s size is unknown"
    free = f"{gib(free_bytes)} VRAM free" if free_bytes is not None else "free VRAM unknown"
    if override != "auto":
        offload = {"gpu": "none", "model offload": "model", "sequential offload": "sequential"}[override]
        return MemoryPlan(chosen, offload, offload != "none", f"{override} chosen in settings; {sized}, {free}; "
                                                              f"{why_precision}")
    if size is None or free_bytes is None or free_bytes >= needed_bytes(size):
        return MemoryPlan(chosen, "none", False, f"{sized}, {free}: it fits; {why_precision}")
    if part is None or free_bytes >= needed_bytes(part, whole=False):
        return MemoryPlan(chosen, "model", True, f"{sized} but {free}: each component moves to the GPU when used; "
                                                 f"{why_precision}")
    return MemoryPlan(chosen, "sequential", True, f"{sized} and even its largest part ({gib(part)}) does not fit "
                                                  f"in {free}: layers stream to the GPU (slow); {why_precision}")
