"""Text → video (AnimateDiff: a motion adapter on the loaded image model) and image → video (Stable Video
Diffusion): one request type, validated, run on the chosen models, frames out.

Text → video builds its motion UNet from the loaded base UNet's own modules and the adapter's motion
modules (`pipelines.motion_unet`): the base weights are never loaded or copied a second time, and
the AnimateDiff pipeline shares the base's VAE, text encoder and tokenizer. Image → video loads an
SVD pipeline into the manager's "video" side slot. Both decode the VAE in chunks of frames, report
progress per step and stop at the next step on cancel.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from pipelines import metadata
from pipelines.errors import JobCancelled, StudioError
from pipelines.images import to_rgb
from pipelines.models import (HUB_ID, ModelEntry, ModelManager, entry_for_folder, hub_model_is_cached,
                              side_model_location)
from pipelines.runtime import run_with_oom_retry
from pipelines.samplers import build_scheduler, check_schedule
from pipelines.text2image import (MAX_CFG, VERSION, prompt_warnings, resolve_seed, validate_sampling,
                                  validate_size)

TASK = "video"
MODES = ("text", "image")
MIN_FRAMES, MAX_FRAMES = 2, 32
MIN_FPS, MAX_FPS = 1, 30
MAX_MOTION_BUCKET = 255
MAX_NOISE_AUG = 1.0
# text → video: each frame starts from its own noise, or all from the same one (ComfyUI's
# AnimateDiff "constant" noise); a motion adapter's card says which it was trained for
FRAME_NOISES = ("independent", "shared")
ADAPTER, SVD = "MotionAdapter", "StableVideoDiffusionPipeline"
SUBFOLDER = "motion"  # local motion adapters live in <models dir>/motion/<name>/ (config.json + weights)
HUB_ADAPTER = ModelEntry("guoyww/animatediff-motion-adapter-v1-5-3", "hub", "guoyww/animatediff-motion-adapter-v1-5-3",
                         steps=25, cfg_scale=7.5, sampler="DDIM", task=TASK, pipeline_class=ADAPTER,
                         description="AnimateDiff v1.5.3 motion adapter (SD 1.5 base models); needs a download")
HUB_SVD = ModelEntry("stabilityai/stable-video-diffusion-img2vid-xt", "hub",
                     "stabilityai/stable-video-diffusion-img2vid-xt", width=1024, height=576, steps=25,
                     cfg_scale=3.0, sampler="Euler", task=TASK, pipeline_class=SVD,
                     description="Stable Video Diffusion XT (image → 25 frames); needs a download")


@dataclass
class VideoRequest:
    mode: str = "text"  # "text" → AnimateDiff on the base model, "image" → Stable Video Diffusion
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""  # the video model: a motion adapter (text) or an SVD pipeline (image); "" → the first fitting
    base_model: str = ""  # text → video: the image model the adapter animates; "" → the studio's default
    image: Image.Image | None = None  # image → video: the first frame
    frames: int | None = None  # None → the video model's recommended settings
    fps: int | None = None
    sampler: str | None = None  # text → video only (SVD keeps its own Euler schedule)
    steps: int | None = None
    cfg_scale: float | None = None  # SVD: the guidance at the last frame (it ramps up from 1)
    width: int | None = None
    height: int | None = None
    seed: int = -1
    motion_bucket: int = 127  # image → video: how much motion (SVD's motion bucket id)
    noise_aug: float = 0.02  # image → video: noise added to the conditioning image
    decode_chunk: int = 8  # frames decoded by the VAE at once (fewer = less memory)
    frame_noise: str | None = None  # text → video: FRAME_NOISES; None → the adapter's card, else independent


@dataclass
class GeneratedVideo:
    frames: np.ndarray  # (F, H, W, 3) uint8
    fps: int
    seed: int
    parameters: str
    info: dict  # prompt, seed, frames, fps, model… (saved as JSON beside the files)


@dataclass
class VideoResult:
    videos: list[GeneratedVideo]
    warnings: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- catalog
def local_adapters(models_dir: Path) -> list[ModelEntry]:
    folder = Path(models_dir) / SUBFOLDER
    if not folder.is_dir():
        return []
    found = []
    for config in sorted(folder.glob("*/config.json")):
        try:
            if json.loads(config.read_text()).get("_class_name") == ADAPTER:
                found.append(adapter_entry(config.parent, "local", config.parent.relative_to(models_dir).as_posix()))
        except (OSError, ValueError):
            continue
    return found


def adapter_entry(path: Path, source: str, name: str | None = None) -> ModelEntry:
    return replace(entry_for_folder(path, source, name), task=TASK, pipeline_class=ADAPTER)


def _classified(entry: ModelEntry) -> ModelEntry:
    """Catalog video entries (a card with task "video") know their pipeline class from model_index.json;
    a motion adapter folder has none: its config.json names the class."""
    if entry.pipeline_class or entry.source == "hub":
        return entry
    try:
        name = json.loads((Path(entry.location) / "config.json").read_text()).get("_class_name")
    except (OSError, ValueError):
        return entry
    return replace(entry, pipeline_class=ADAPTER) if name == ADAPTER else entry


def models(manager: ModelManager, mode: str | None = None) -> list[ModelEntry]:
    """The video models (motion adapters for text, SVD pipelines for image), demo and local first."""
    catalog = manager.catalog
    found = [_classified(e) for e in catalog.entries(TASK)] + local_adapters(catalog.models_dir) + [HUB_ADAPTER, HUB_SVD]
    if mode == "text":
        return [e for e in found if e.pipeline_class == ADAPTER]
    if mode == "image":
        return [e for e in found if e.pipeline_class == SVD]
    return found


def model_names(manager: ModelManager, mode: str | None = None) -> list[str]:
    return [e.name for e in models(manager, mode)]


def resolve_model(manager: ModelManager, name: str, mode: str) -> ModelEntry:
    name = (name or "").strip()
    available = models(manager, mode)
    what = "motion adapter" if mode == "text" else "image-to-video (SVD) model"
    if not name:
        usable = [e for e in available if e.source != "hub" or hub_model_is_cached(e.location)]
        if not usable:
            raise StudioError(f"No {what} is available: put one in {manager.catalog.models_dir / (SUBFOLDER if mode == 'text' else '')}"
                              f" or download {available[-1].name if available else 'one'} once.")
        return usable[0]
    for entry in models(manager):
        if entry.name == name:
            return _check_mode(entry, mode)
    models_dir = manager.catalog.models_dir
    path = (models_dir / name).resolve()
    if path.exists() and ".." not in name:
        if not path.is_relative_to(models_dir):
            raise StudioError(f"Video model path '{name}' is outside the models dir.")
        if (path / "config.json").is_file() and json.loads((path / "config.json").read_text()).get("_class_name") == ADAPTER:
            return _check_mode(adapter_entry(path, "local", name), mode)
        if (path / "model_index.json").is_file():
            entry = entry_for_folder(path, "local", name)
            if entry.pipeline_class == SVD:
                return _check_mode(entry, mode)
        raise StudioError(f"'{name}' is neither a motion adapter nor a Stable Video Diffusion folder.")
    if HUB_ID.match(name) and ".." not in name:
        return _check_mode(ModelEntry(name, "hub", name, task=TASK, pipeline_class=ADAPTER if mode == "text" else SVD),
                           mode)
    raise StudioError(f"Unknown {what} '{name}'. Available: {', '.join(e.name for e in available) or 'none'}.")


def _check_mode(entry: ModelEntry, mode: str) -> ModelEntry:
    if mode == "text" and entry.pipeline_class != ADAPTER:
        raise StudioError(f"'{entry.name}' is an image-to-video model: switch the mode to image → video, "
                          "or pick a motion adapter for text → video.")
    if mode == "image" and entry.pipeline_class != SVD:
        raise StudioError(f"'{entry.name}' is a motion adapter (text → video): switch the mode to text → video, "
                          "or pick a Stable Video Diffusion model for image → video.")
    return entry


def card_frame_noise(info: dict) -> str:
    """The frame noise a motion adapter's card (`card(entry)`) asks for; independent when it says none."""
    return info.get("frame_noise", FRAME_NOISES[0])


def card(entry: ModelEntry) -> dict:
    """The studio.json beside a demo/local video model (frames, fps…), {} when none."""
    path = Path(entry.location) / "studio.json"
    try:
        return json.loads(path.read_text()) if entry.source != "hub" and path.is_file() else {}
    except (OSError, ValueError):
        return {}


# ----------------------------------------------------------------------------- validation
@dataclass
class Settings:
    entry: ModelEntry
    base: ModelEntry | None
    frames: int
    fps: int
    sampler: str
    steps: int
    cfg_scale: float
    width: int
    height: int
    seed: int
    image: Image.Image | None
    frame_noise: str = FRAME_NOISES[0]


def resolve_settings(manager: ModelManager, request: VideoRequest) -> Settings:
    if request.mode not in MODES:
        raise StudioError(f"Unknown mode '{request.mode}': choose text or image.")
    if not isinstance(request.prompt, str) or not isinstance(request.negative_prompt, str):
        raise StudioError("The prompt and negative prompt must be text.")
    image = None
    if request.mode == "image":
        if request.image is None:
            raise StudioError("Image → video needs an image: upload one, or send one from a gallery.")
        image = to_rgb(request.image, "image")
    elif not request.prompt.strip():
        raise StudioError("Text → video needs a prompt, e.g. 'a red circle moving right'.")
    entry = resolve_model(manager, request.model, request.mode)
    info = card(entry)
    base = manager.entry(request.base_model) if request.mode == "text" else None
    defaults = base if base is not None else entry
    frames = int(request.frames if request.frames is not None else info.get("frames", 16 if request.mode == "text" else 14))
    fps = int(request.fps if request.fps is not None else info.get("fps", 8 if request.mode == "text" else 7))
    width = request.width or (info.get("width") if request.mode == "text" and info.get("width") else defaults.width)
    height = request.height or (info.get("height") if request.mode == "text" and info.get("height") else defaults.height)
    s = Settings(entry=entry, base=base, frames=frames, fps=fps,
                 sampler=request.sampler or (info.get("sampler") or defaults.sampler if request.mode == "text" else entry.sampler),
                 steps=int(request.steps if request.steps is not None else info.get("steps", defaults.steps)),
                 cfg_scale=float(request.cfg_scale if request.cfg_scale is not None else info.get("cfg_scale", defaults.cfg_scale)),
                 width=int(width), height=int(height), seed=resolve_seed(request.seed), image=image,
                 frame_noise=request.frame_noise or card_frame_noise(info))
    validate(request, s)
    return s


def validate(request: VideoRequest, s: Settings) -> None:
    if not MIN_FRAMES <= s.frames <= MAX_FRAMES:
        raise StudioError(f"Frames must be between {MIN_FRAMES} and {MAX_FRAMES} (got {s.frames}).")
    if not MIN_FPS <= s.fps <= MAX_FPS:
        raise StudioError(f"FPS must be between {MIN_FPS} and {MAX_FPS} (got {s.fps}).")
    validate_size(s.width, s.height)
    validate_sampling(s.sampler if request.mode == "text" else "Euler", s.steps, s.cfg_scale, s.seed)
    if request.mode == "image":
        if not 1 <= int(request.motion_bucket) <= MAX_MOTION_BUCKET:
            raise StudioError(f"Motion must be between 1 and {MAX_MOTION_BUCKET} (got {request.motion_bucket}).")
        if not 0 <= float(request.noise_aug) <= MAX_NOISE_AUG:
            raise StudioError(f"Noise augmentation must be between 0 and {MAX_NOISE_AUG:g} (got {request.noise_aug:g}).")
        if s.cfg_scale < 1:
            raise StudioError(f"Image → video guidance must be at least 1 (got {s.cfg_scale:g}).")
    if s.frame_noise not in FRAME_NOISES:
        raise StudioError(f"Frame noise must be one of {', '.join(FRAME_NOISES)} (got {s.frame_noise!r}).")
    if not 1 <= int(request.decode_chunk) <= MAX_FRAMES:
        raise StudioError(f"Decode chunk must be between 1 and {MAX_FRAMES} frames (got {request.decode_chunk}).")


# ----------------------------------------------------------------------------- loading
def load_adapter(manager: ModelManager, entry: ModelEntry):
    """The MotionAdapter for `entry`, loaded once (kept beside the base; in the device's dtype)."""
    from diffusers import MotionAdapter

    key = f"motion-adapter:{entry.name}"
    cache = manager.extras
    if key not in cache:
        if entry.source == "hub" and not _hub_file_cached(entry.location, "config.json"):
            raise StudioError(f"Motion adapter '{entry.name}' is not downloaded and the hub cannot be reached: "
                              "connect once to download it, or pick a local or demo adapter.")
        try:
            adapter = MotionAdapter.from_pretrained(entry.location, torch_dtype=manager.dtype, use_safetensors=True,
                                                    local_files_only=entry.source != "hub")
        except Exception as error:  # noqa: BLE001 - every load failure becomes one clear message
            text = str(error).splitlines()[0] if str(error) else type(error).__name__
            raise StudioError(f"Could not load motion adapter '{entry.name}': {text}") from None
        cache[key] = adapter.to(manager.device).eval()
    return cache[key]


def text_pipeline(manager: ModelManager, s: Settings):
    """AnimateDiff on the loaded base: the motion UNet shares the base UNet's modules (built once per base)."""
    from diffusers import AnimateDiffPipeline

    from pipelines.motion_unet import build_motion_unet, use_spatial_lora

    base_pipe = manager.pipeline(s.base, "text2image")
    adapter = load_adapter(manager, s.entry)
    # the adapter's own LoRA for the base UNet on, any LoRA of an earlier image job off
    use_spatial_lora(base_pipe.unet, None if s.entry.source == "hub" else Path(s.entry.location), s.entry.name,
                     base_pipe.text_encoder)
    key = f"motion-unet:{s.entry.name}"
    if key not in manager.extras:
        manager.extras[key] = build_motion_unet(base_pipe.unet, adapter, s.base.name, s.entry.name)
    motion_unet = manager.extras[key]
    limit = adapter.config.motion_max_seq_length
    if s.frames > limit:
        raise StudioError(f"Motion adapter '{s.entry.name}' handles at most {limit} frames (got {s.frames}).")
    pipe = AnimateDiffPipeline(vae=base_pipe.vae, text_encoder=base_pipe.text_encoder, tokenizer=base_pipe.tokenizer,
                               unet=motion_unet, motion_adapter=adapter,
                               scheduler=build_scheduler(s.sampler, manager.base_scheduler_config, seed=s.seed))
    pipe.set_progress_bar_config(disable=True)
    return pipe


def image_pipeline(manager: ModelManager, entry: ModelEntry):
    return manager.side_pipeline(entry, lambda e: _load_svd(manager, e))


def _load_svd(manager: ModelManager, entry: ModelEntry):
    from diffusers import StableVideoDiffusionPipeline

    location = side_model_location(entry, "put a Stable Video Diffusion folder in the models dir")
    try:
        pipe = StableVideoDiffusionPipeline.from_pretrained(location, torch_dtype=manager.dtype,
                                                            use_safetensors=True,
                                                            local_files_only=entry.source != "hub"
                                                            or location != entry.location)
    except Exception as error:  # noqa: BLE001 - every load failure becomes one clear message
        text = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise StudioError(f"Could not load image-to-video model '{entry.name}': {text}") from None
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(manager.device)


# ----------------------------------------------------------------------------- running
def run(manager: ModelManager, request: VideoRequest, progress) -> VideoResult:
    s = resolve_settings(manager, request)
    on_step = _step_callback(progress)
    generator = torch.Generator("cpu").manual_seed(s.seed)
    chunk = int(request.decode_chunk)
    warnings: list[str] = []
    if request.mode == "text":
        pipe = text_pipeline(manager, s)
        check_schedule(pipe.scheduler, s.sampler, s.steps)
        warnings += prompt_warnings(pipe, request.prompt) + prompt_warnings(pipe, request.negative_prompt)
        args = dict(prompt=request.prompt, negative_prompt=request.negative_prompt or None, num_frames=s.frames,
                    height=s.height, width=s.width, num_inference_steps=s.steps, guidance_scale=s.cfg_scale,
                    generator=generator, output_type="np", callback_on_step_end=on_step, decode_chunk_size=chunk,
                    latents=shared_noise(pipe, s.frames, s.height, s.width, generator)
                    if s.frame_noise == "shared" else None)
    else:
        pipe = image_pipeline(manager, s.entry)
        image = s.image.resize((s.width, s.height), Image.LANCZOS)
        args = dict(image=image, height=s.height, width=s.width, num_frames=s.frames, num_inference_steps=s.steps,
                    min_guidance_scale=1.0, max_guidance_scale=s.cfg_scale, fps=s.fps,
                    motion_bucket_id=int(request.motion_bucket), noise_aug_strength=float(request.noise_aug),
                    decode_chunk_size=chunk, generator=generator, output_type="np", callback_on_step_end=on_step)
    with torch.inference_mode():
        frames = run_with_oom_retry(lambda: pipe(**args).frames, pipe)
    if progress.cancelled:
        raise JobCancelled()
    clip = np.asarray(frames[0])
    if clip.dtype != np.uint8:
        clip = (np.clip(np.nan_to_num(clip.astype(np.float32)), 0, 1) * 255 + 0.5).astype(np.uint8)
    parameters, info = describe(request, s)
    return VideoResult([GeneratedVideo(clip, s.fps, s.seed, parameters, info)], warnings)


def shared_noise(pipe, frames: int, height: int, width: int, generator: torch.Generator) -> torch.Tensor:
    """The starting latents of a clip whose frames all start from the same noise (seeded like the
    image tabs: on the CPU, so a seed gives the same clip on any device)."""
    factor = pipe.vae_scale_factor
    shape = (1, pipe.unet.config.in_channels, 1, height // factor, width // factor)
    noise = torch.randn(shape, generator=generator, dtype=torch.float32)
    return noise.expand(-1, -1, frames, -1, -1).contiguous().to(pipe.unet.device, pipe.unet.dtype)


def describe(request: VideoRequest, s: Settings) -> tuple[str, dict]:
    """The A1111-style parameters line (PNG frames, MP4 comment) and the JSON saved beside the files."""
    text_mode = request.mode == "text"
    fields = {"Mode": f"{request.mode} to video", "Steps": s.steps, "Sampler": s.sampler if text_mode else "Euler",
              "CFG scale": f"{s.cfg_scale:g}", "Seed": s.seed, "Size": f"{s.width}x{s.height}",
              "Model": s.base.name if text_mode else s.entry.name,
              "Motion adapter": s.entry.name if text_mode else None, "Frames": s.frames, "FPS": s.fps,
              "Frame noise": s.frame_noise if text_mode else None,
              "Motion bucket": None if text_mode else int(request.motion_bucket),
              "Noise augmentation": None if text_mode else f"{float(request.noise_aug):g}", "Version": VERSION}
    parameters = metadata.format_parameters(request.prompt, request.negative_prompt, fields)
    info = {"mode": request.mode, "prompt": request.prompt, "negative_prompt": request.negative_prompt,
            "seed": s.seed, "frames": s.frames, "fps": s.fps, "width": s.width, "height": s.height,
            "steps": s.steps, "cfg_scale": s.cfg_scale, "sampler": fields["Sampler"],
            "model": fields["Model"], "motion_adapter": fields["Motion adapter"],
            "motion_bucket": fields["Motion bucket"], "noise_aug": None if text_mode else float(request.noise_aug),
            "frame_noise": fields["Frame noise"],
            "version": VERSION}
    return parameters, info


def _hub_file_cached(repo_id: str, filename: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, filename), str)


def _step_callback(progress):
    def on_step(pipe, step, timestep, tensors):
        progress.report(step + 1, pipe.num_timesteps)
        if progress.cancelled:  # SVD's loop has no interrupt flag: leave it from here, at this step
            raise JobCancelled()
        return tensors

    return on_step


__all__ = ["VideoRequest", "VideoResult", "GeneratedVideo", "run", "models", "model_names", "resolve_model",
           "MIN_FRAMES", "MAX_FRAMES", "MIN_FPS", "MAX_FPS", "MAX_MOTION_BUCKET", "MAX_CFG"]
