"""Text or image → coloured 3D point cloud: one request type, validated, run on the chosen model.

Text → 3D runs our point-cloud diffusion pipeline (the demo model, or any `PointCloudPipeline`
folder) or Shap-E where its weights are available; image → 3D back-projects a depth map (the
user's, or a transformers depth model's) with the image's colours.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

from pipelines import depth3d, metadata, shap_e
from pipelines.errors import JobCancelled, StudioError
from pipelines.models import ModelEntry, ModelManager, side_model_location
from pipelines.pointcloud_model import PointCloudPipeline, to_channels
from pipelines.samplers import build_scheduler
from pipelines.text2image import VERSION, resolve_seed, validate_sampling

MODES = ("text", "image")
MIN_POINTS, MAX_POINTS = 16, 16384
SHAP_E = ModelEntry(shap_e.HUB_ID, "hub", shap_e.HUB_ID, steps=64, cfg_scale=15.0, sampler="Heun",
                    description="Shap-E (OpenAI): text → mesh, sampled to points; needs its weights downloaded",
                    task="pointcloud")


@dataclass
class PointCloudRequest:
    mode: str = "text"  # "text" → 3D by diffusion, "image" → 3D by depth back-projection
    prompt: str = ""
    model: str = ""  # "" → the first point-cloud model (the demo)
    points: int = 256
    sampler: str | None = None  # None → the model's recommended settings
    steps: int | None = None
    guidance: float | None = None
    seed: int = -1
    upsample_to: int = 0  # > points: a second stage samples a denser cloud around the coarse one
    image: object | None = None  # image mode: the picture (its colours)
    depth: object | None = None  # image mode, optional: its depth map (brighter = nearer)


@dataclass
class GeneratedCloud:
    points: np.ndarray  # (N, 3) float32
    colors: np.ndarray  # (N, 3) uint8
    seed: int
    parameters: str


@dataclass
class PointCloudResult:
    clouds: list[GeneratedCloud]
    warnings: list[str] = field(default_factory=list)


def models(manager: ModelManager) -> list[ModelEntry]:
    return manager.catalog.entries("pointcloud") + [SHAP_E]


def model_names(manager: ModelManager) -> list[str]:
    return [e.name for e in models(manager)]


def resolve_model(manager: ModelManager, name: str) -> ModelEntry:
    name = (name or "").strip()
    available = models(manager)
    if not name:
        return available[0]
    for entry in available:
        if entry.name == name:
            return entry
    try:
        entry = manager.catalog.resolve(name)  # also a folder inside the models dir, given by path
    except StudioError:
        entry = None
    if entry is None or entry.task != "pointcloud":
        raise StudioError(f"Unknown point-cloud model '{name}'. Available: {', '.join(e.name for e in available)}.")
    return entry


def validate(request: PointCloudRequest) -> None:
    if request.mode not in MODES:
        raise StudioError(f"Unknown mode '{request.mode}': choose text or image.")
    if not isinstance(request.prompt, str):
        raise StudioError("The prompt must be text.")
    for label, value in (("Points", request.points), ("Upsampled points", request.upsample_to or MIN_POINTS)):
        if not MIN_POINTS <= int(value) <= MAX_POINTS:
            raise StudioError(f"{label} must be between {MIN_POINTS} and {MAX_POINTS} (got {int(value)}).")
    if request.upsample_to and int(request.upsample_to) <= int(request.points):
        raise StudioError(f"Upsampled points must be more than the coarse points ({int(request.points)}), "
                          "or 0 for no upsampling.")
    if request.mode == "image":
        if request.image is None:
            raise StudioError("Image → 3D needs an image: upload one (and optionally its depth map).")
    elif not request.prompt.strip():
        raise StudioError("Text → 3D needs a prompt, e.g. 'a red torus'.")


def run(manager: ModelManager, request: PointCloudRequest, progress) -> PointCloudResult:
    validate(request)
    seed = resolve_seed(request.seed)
    if request.mode == "image":
        return _from_image(request, seed)
    entry = resolve_model(manager, request.model)
    sampler = request.sampler or entry.sampler
    steps = entry.steps if request.steps is None else int(request.steps)
    guidance = entry.cfg_scale if request.guidance is None else float(request.guidance)
    validate_sampling(sampler if entry is not SHAP_E else "Heun", steps, guidance, seed)
    pipe = load(manager, entry)
    on_step = _step_callback(progress)
    if isinstance(pipe, PointCloudPipeline):
        points, colors = _diffuse(pipe, request, sampler, steps, guidance, seed, on_step, progress)
    else:
        latent = shap_e.latents(pipe, request.prompt, steps=steps, guidance=guidance, seed=seed, progress=progress)
        _check_cancel(progress)
        points, colors = shap_e.mesh_to_cloud(shap_e.decode_mesh(pipe, latent[0]), int(request.points), seed)
        sampler = "Heun"
    fields = {"Mode": "text", "Steps": steps, "Sampler": sampler, "CFG scale": f"{guidance:g}", "Seed": seed,
              "Points": len(points), "Model": entry.name, "Version": VERSION}
    return PointCloudResult([GeneratedCloud(points, colors, seed, metadata.format_parameters(
        request.prompt, "", fields))])


def _diffuse(pipe, request, sampler, steps, guidance, seed, on_step, progress):
    """The coarse cloud, then (optionally) a denser one sampled around it with the coarse points held."""
    def sample(count, known=None):
        pipe.scheduler = build_scheduler(sampler, pipe.base_scheduler_config, seed=seed)
        out = pipe(request.prompt, num_points=count, num_inference_steps=steps, guidance_scale=guidance,
                   generator=torch.Generator("cpu").manual_seed(seed), known=known, callback_on_step_end=on_step)
        _check_cancel(progress)
        return out.points[0], out.colors[0]

    with torch.inference_mode():
        points, colors = sample(int(request.points))
        if request.upsample_to:
            points, colors = sample(int(request.upsample_to), known=to_channels(points, colors))
    return points, colors


def load(manager: ModelManager, entry: ModelEntry):
    """The point-cloud pipeline for `entry`, loaded once and kept beside the image model."""
    return manager.side_pipeline(entry, lambda e: _load(manager, e))


def _load(manager: ModelManager, entry: ModelEntry):
    from diffusers import ShapEPipeline

    location = side_model_location(entry, "pick the demo point-cloud model")
    cls = ShapEPipeline if entry.source == "hub" or entry.pipeline_class == "ShapEPipeline" else PointCloudPipeline
    kwargs = dict(dtype=manager.dtype, use_safetensors=True,
                  local_files_only=entry.source != "hub" or location != entry.location)
    try:
        pipe = cls.from_pretrained(location, **kwargs)
    except Exception as error:  # noqa: BLE001 - every load failure becomes one clear message
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StudioError(f"Could not load point-cloud model '{entry.name}': {text}") from None
    if isinstance(pipe, PointCloudPipeline):
        pipe.base_scheduler_config = pipe.scheduler.config
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(manager.device)


def _step_callback(progress):
    def on_step(pipe, step, timestep, tensors):
        progress.report(step + 1, pipe.num_timesteps)
        if progress.cancelled:
            pipe._interrupt = True
        return tensors

    return on_step


def _check_cancel(progress) -> None:
    if progress.cancelled:
        raise JobCancelled()


def _from_image(request: PointCloudRequest, seed: int) -> PointCloudResult:
    depth = request.depth if request.depth is not None else depth3d.estimate_depth(request.image)
    points, colors = depth3d.backproject(request.image, depth, int(request.points), seed)
    source = "uploaded depth map" if request.depth is not None else depth3d.DEPTH_MODEL
    fields = {"Mode": "image", "Depth": source, "Seed": seed, "Points": len(points), "Version": VERSION}
    return PointCloudResult([GeneratedCloud(points, colors, seed,
                                            metadata.format_parameters(request.prompt, "", fields))])
