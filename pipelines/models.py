"""The model catalog (demo | hub | local) and the manager that loads a model once and shares it.

A catalog name is what the UI, the REST API and metadata use. Local models are files and folders
inside the models dir, named by their path relative to it; nothing outside that dir is ever read.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from dataclasses import dataclass, field
from pathlib import Path

from pipelines import families
from pipelines.errors import JobCancelled, StudioError
from pipelines.memory import MemoryPlan, plan_memory
from pipelines.runtime import (RuntimeOptions, apply_memory_options, free_memory, free_vram_bytes, resolve_device,
                               resolve_dtype)

log = logging.getLogger(__name__)

ASSETS_MODELS = Path(__file__).resolve().parent.parent / "assets" / "models"
PICKLE_SUFFIXES = (".ckpt", ".pt", ".pth", ".bin", ".pkl", ".pickle")
CONFIG_SUFFIX = ".config"  # `model.safetensors` + `model.config/` = its diffusers config, for offline loading
HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
GENERATE, UPSCALE = "text2image", "upscale"
# diffusers pipeline classes (model_index.json `_class_name`) that make a folder an upscaler
UPSCALE_CLASSES = ("StableDiffusionUpscalePipeline", "LDMSuperResolutionPipeline")


@dataclass(frozen=True)
class ModelEntry:
    name: str
    source: str  # "demo" | "hub" | "local"
    location: str  # folder, .safetensors file, or hub id
    width: int = 512
    height: int = 512
    steps: int = 25
    cfg_scale: float = 7.0
    sampler: str = "DPM++ 2M Karras"
    description: str = ""
    task: str = GENERATE  # or "inpaint" (9-channel inpainting), "pointcloud" (3D tab), UPSCALE (super-resolution)
    inpainting_model: str = ""  # name of this model's dedicated inpainting variant, if it has one
    pipeline_class: str = ""  # model_index.json's `_class_name` where known before loading
    tile_size: int = 0  # upscalers: the input tile (px) that fits memory comfortably; 0 = whole image
    family: str = ""  # pipelines.families key ("" = SD 1.x); detected from the folder or the file's keys

    @property
    def is_single_file(self) -> bool:
        return self.location.endswith(".safetensors")

    @property
    def family_info(self) -> families.Family:
        return families.family(self.family)


SD15_DEFAULTS = dict(width=512, height=512, steps=25, cfg_scale=7.0, sampler="DPM++ 2M Karras")
SD15_INPAINTING = "stable-diffusion-v1-5/stable-diffusion-inpainting"
HUB_MODELS = [
    ModelEntry("stable-diffusion-v1-5/stable-diffusion-v1-5", "hub",
               "stable-diffusion-v1-5/stable-diffusion-v1-5", description="Stable Diffusion 1.5",
               inpainting_model=SD15_INPAINTING, **SD15_DEFAULTS),
    ModelEntry(SD15_INPAINTING, "hub", SD15_INPAINTING, description="Stable Diffusion 1.5 inpainting (9-channel UNet)",
               task="inpaint", **SD15_DEFAULTS),
    ModelEntry("stabilityai/stable-diffusion-x4-upscaler", "hub", "stabilityai/stable-diffusion-x4-upscaler",
               steps=50, cfg_scale=9.0, description="Stable Diffusion x4 upscaler (prompt, noise level)",
               task=UPSCALE, pipeline_class="StableDiffusionUpscalePipeline", tile_size=128),
    ModelEntry("CompVis/ldm-super-resolution-4x-openimages", "hub", "CompVis/ldm-super-resolution-4x-openimages",
               steps=100, cfg_scale=0.0, description="LDM x4 super-resolution", task=UPSCALE,
               pipeline_class="LDMSuperResolutionPipeline", tile_size=128),
]


def _hub(repo: str, family: str, description: str, **overrides) -> ModelEntry:
    """A well-known hub model of a family, with the family's defaults (loaded on first use when online)."""
    return ModelEntry(repo, "hub", repo, description=description, family=family,
                      **{**families.family(family).defaults(), **overrides})


HUB_MODELS += [
    _hub("stabilityai/stable-diffusion-2-1", "sd2", "Stable Diffusion 2.1 (768, v-prediction)"),
    _hub("stabilityai/stable-diffusion-2-1-base", "sd2", "Stable Diffusion 2.1 base (512)", width=512, height=512),
    _hub("stabilityai/stable-diffusion-xl-base-1.0", "sdxl", "SDXL 1.0 base"),
    _hub("stabilityai/stable-diffusion-xl-refiner-1.0", "sdxl-refiner", "SDXL 1.0 refiner (image to image, inpaint)"),
    _hub("stabilityai/stable-diffusion-3-medium-diffusers", "sd3", "Stable Diffusion 3 medium", cfg_scale=7.0),
    _hub("stabilityai/stable-diffusion-3.5-medium", "sd3", "Stable Diffusion 3.5 medium", steps=40, cfg_scale=4.5),
    _hub("stabilityai/stable-diffusion-3.5-large", "sd3", "Stable Diffusion 3.5 large", steps=28, cfg_scale=3.5),
    _hub("black-forest-labs/FLUX.1-dev", "flux-dev", "Flux.1 [dev] (distilled guidance)"),
    _hub("black-forest-labs/FLUX.1-schnell", "flux-schnell", "Flux.1 [schnell] (4 steps)"),
]


def demo_entries(folder: Path = ASSETS_MODELS) -> list[ModelEntry]:
    """Demo models shipped under assets/models, each described by its studio.json."""
    return [entry_for_folder(card.parent, "demo") for card in sorted(folder.glob("*/studio.json"))]


POINTCLOUD_PIPELINES = ("PointCloudPipeline", "ShapEPipeline")
VIDEO_PIPELINES = ("StableVideoDiffusionPipeline",)  # motion adapters: a card with task "video"
IMAGE_TASKS = ("text2image", "inpaint")
TASK_HOMES = {UPSCALE: ("an upscaler", "Super-resolution"), "pointcloud": ("a point-cloud model", "3D point cloud"),
              "video": ("a video model", "Video")}
# card-less defaults where SD 1.5's do not fit (point-cloud models: cosine schedules, low guidance)
TASK_DEFAULTS = {"pointcloud": dict(steps=25, cfg_scale=3.0, sampler="DPM++ 2M")}
# which models a tab can use: text-to-image models also inpaint (blend mode)
USABLE_FOR = {"inpaint": IMAGE_TASKS, "image": IMAGE_TASKS}


def entry_for_folder(path: Path, source: str, name: str | None = None) -> ModelEntry:
    """A catalog entry for a model folder or file; a studio.json beside the weights sets its defaults."""
    card = (path.with_suffix(CONFIG_SUFFIX) if path.suffix == ".safetensors" else path) / "studio.json"
    info = json.loads(card.read_text()) if card.is_file() else {}
    pipeline_class = folder_pipeline_class(path)
    task = folder_task(path, info, pipeline_class)
    family = info.get("family") or (families.detect_single_file(path) if path.suffix == ".safetensors"
                                    else families.detect_folder(path) if task in IMAGE_TASKS else "")
    base = {**families.family(family).defaults(), **TASK_DEFAULTS.get(task, {})}
    settings = {**base, **{k: info[k] for k in base if k in info}}
    return ModelEntry(name or info.get("name", path.name), source, str(path),
                      description=info.get("description", "built-in demo model" if source == "demo" else ""),
                      task=task, inpainting_model=info.get("inpainting_model", ""),
                      pipeline_class=pipeline_class, tile_size=int(info.get("tile_size", 0)), family=family,
                      **settings)


def folder_pipeline_class(path: Path) -> str:
    """The diffusers pipeline class a model folder declares ("" when unknown)."""
    index = path / "model_index.json"
    if not index.is_file():
        return ""
    try:
        return str(json.loads(index.read_text()).get("_class_name", ""))
    except ValueError:
        return ""  # a broken index is reported clearly when the model is loaded


def folder_task(path: Path, info: dict, pipeline_class: str) -> str:
    """Which tab a model serves: its card says so, else its pipeline class or its UNet's input channels
    (read from the configs; no weights are loaded)."""
    if info.get("task"):
        return info["task"]
    if pipeline_class in POINTCLOUD_PIPELINES:
        return "pointcloud"
    if pipeline_class in UPSCALE_CLASSES:
        return UPSCALE
    if pipeline_class in VIDEO_PIPELINES:
        return "video"
    try:
        unet = path / "unet" / "config.json"
        if unet.is_file() and json.loads(unet.read_text()).get("in_channels") == 9:
            return "inpaint"
    except (OSError, ValueError):
        pass
    return "text2image"


@dataclass
class Catalog:
    models_dir: Path
    demo_dir: Path = ASSETS_MODELS
    hub_models: list[ModelEntry] = field(default_factory=lambda: list(HUB_MODELS))

    def __post_init__(self):
        self.models_dir = Path(self.models_dir).resolve()

    def local_entries(self) -> list[ModelEntry]:
        if not self.models_dir.is_dir():
            return []
        found = [p.parent for p in self.models_dir.glob("*/model_index.json") if p.parent.suffix != CONFIG_SUFFIX]
        found += [p for p in self.models_dir.glob("*.safetensors")]
        return [entry_for_folder(p, "local", p.relative_to(self.models_dir).as_posix()) for p in sorted(found)]

    def entries(self, task: str | None = None) -> list[ModelEntry]:
        """Every model, or those a tab for `task` can use ("image": the image tabs' models)."""
        every = demo_entries(self.demo_dir) + self.local_entries() + self.hub_models
        usable = USABLE_FOR.get(task, (task,))
        return every if task is None else [e for e in every if e.task in usable]

    def names(self, task: str | None = "text2image") -> list[str]:
        return [e.name for e in self.entries(task)]

    def inpainting_choice(self, name: str | None) -> str | None:
        """The model the Inpaint tab should use for `name`: its dedicated inpainting variant when it has one
        that loads without a download (a hub variant counts once it is in the local cache)."""
        try:
            wanted = self.resolve(name).inpainting_model if name else ""
            variant = self.resolve(wanted) if wanted else None
        except StudioError:
            return name
        if variant is None or (variant.source == "hub" and not hub_model_is_cached(variant.location)):
            return name
        return variant.name

    def default(self, cuda: bool) -> tuple[ModelEntry, str]:
        """The model to start on, and why (shown in the UI)."""
        entries = [e for e in self.entries("text2image") if "text2image" in e.family_info.tabs]
        if cuda:
            for entry in entries:
                if entry.source == "hub" and hub_model_is_cached(entry.location):
                    return entry, "a CUDA GPU is present and this hub model is downloaded"
        demos = [e for e in entries if e.source == "demo"]
        if demos:
            return demos[0], "built-in demo model (no GPU or no downloaded hub model)"
        local = [e for e in entries if e.source == "local"]
        if local:
            return local[0], "first model found in the models dir"
        raise StudioError("No model is available: the demo models are missing from assets/models "
                          "and the models dir is empty.")

    def resolve(self, name: str) -> ModelEntry:
        """The entry for a catalog name, a path inside the models dir, or a hub id."""
        name = (name or "").strip()
        for entry in self.entries():
            if entry.name == name:
                return entry
        if name.lower().endswith(PICKLE_SUFFIXES):
            raise StudioError(f"'{name}' is a pickle checkpoint, which can run arbitrary code when loaded: "
                              "convert it to .safetensors first.")
        if name.endswith(".safetensors") or "\\" in name or name.startswith((".", "/")) or ".." in name:
            return self._local_path(name)
        if HUB_ID.match(name):
            family = hub_model_family(name)
            return ModelEntry(name, "hub", name, family=family, **families.family(family).defaults())
        raise StudioError(f"Unknown model '{name}'. Available: {', '.join(self.names(None)) or 'none'}.")

    def _local_path(self, name: str) -> ModelEntry:
        path = (self.models_dir / name).resolve()
        if not path.is_relative_to(self.models_dir):
            raise StudioError(f"Model path '{name}' is outside the models dir ({self.models_dir}).")
        if not path.exists():
            raise StudioError(f"Model file '{name}' was not found in the models dir ({self.models_dir}).")
        return entry_for_folder(path, "local", path.relative_to(self.models_dir).as_posix())


def hub_model_is_cached(repo_id: str) -> bool:
    from huggingface_hub import try_to_load_from_cache

    return isinstance(try_to_load_from_cache(repo_id, "model_index.json"), str)


def hub_model_family(repo_id: str) -> str:
    """The family of a hub model outside the catalog, from its downloaded configs ("" = not downloaded: SD 1.x
    defaults until it is)."""
    from huggingface_hub import try_to_load_from_cache

    index = try_to_load_from_cache(repo_id, "model_index.json")
    return families.detect_folder(Path(index).parent) if isinstance(index, str) else ""


def side_model_location(entry: ModelEntry, alternative: str) -> str:
    """Where a side model (point cloud, video) loads from: a local folder as it is; a hub model
    downloaded with progress first when online, the cache offline, or a clear error when neither."""
    from huggingface_hub import is_offline_mode

    if entry.source != "hub":
        return entry.location
    if is_offline_mode() and not hub_model_is_cached(entry.location):
        raise StudioError(f"'{entry.name}' is not downloaded and the hub cannot be reached: connect once to "
                          f"download it, or {alternative}.")
    return download_if_online(entry.location)


def download_if_online(repo_id: str) -> str:
    """Fetch what is missing of a hub model, with progress: its local folder. Offline (or with the hub
    unreachable but the model cached) the repo id, which diffusers resolves from the cache."""
    from huggingface_hub import is_offline_mode

    from pipelines import download

    if is_offline_mode():
        return repo_id
    try:
        return download.fetch(repo_id)
    except (StudioError, JobCancelled):
        raise
    except Exception as error:  # noqa: BLE001 - hub unreachable or refusing: a cached copy still loads
        if not hub_model_is_cached(repo_id):
            first_line = (str(error).splitlines() or [type(error).__name__])[0][:160]
            raise StudioError(f"Hub model '{repo_id}' could not be downloaded ({first_line}): check the name and "
                              f"the connection, or pick a demo or local model.") from None
        log.warning("Hub check for %s failed (%s); loading the cached copy", repo_id, error)
        return repo_id


def check_safetensors(path: Path) -> list[str]:
    """Read a .safetensors header; a corrupt or truncated file is a clear error, not a crash later.
    Returns the tensor names."""
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
    except Exception as error:  # noqa: BLE001 - any parse failure means the file is unusable
        raise StudioError(f"'{path.name}' is not a valid .safetensors file ({error}).") from None
    if not keys:
        raise StudioError(f"'{path.name}' holds no tensors.")
    return keys


# Task → the diffusers auto class that builds that task's pipeline on the loaded components.
AUTO_PIPELINES = {
    "text2image": "AutoPipelineForText2Image",
    "img2img": "AutoPipelineForImage2Image",
    "inpaint": "AutoPipelineForInpainting",
}


class ModelManager:
    """Loads one base model at a time and derives every task's pipeline from it with `from_pipe`."""

    def __init__(self, catalog: Catalog, options: RuntimeOptions | None = None):
        self.catalog = catalog
        self.options = options or RuntimeOptions()
        self.device = resolve_device(self.options.device)
        self.dtype = resolve_dtype(self.options.precision, self.device)
        self._lock = threading.RLock()
        self._entry: ModelEntry | None = None
        self._pipes: dict[str, object] = {}
        # models used on their own (an upscaler, a point-cloud model), one per task: kept across base switches
        self._side: dict[str, tuple[ModelEntry, object]] = {}
        self.extras: dict[str, object] = {}  # add-on models (ControlNets) loaded for this base
        self.base_scheduler_config = None
        # memory: "auto" plans from free VRAM and model size (pipelines.memory); the plan of the loaded model
        self.memory_policy = "model offload" if self.options.cpu_offload else "auto"
        self.memory_plan: MemoryPlan | None = None
        self.vram_probe = free_vram_bytes  # (device) → free bytes or None; tests simulate a budget here
        self.default_entry, self.default_reason = None, ""
        try:
            self.default_entry, self.default_reason = catalog.default(self.device.type == "cuda")
        except StudioError as error:
            self.default_reason = str(error)

    def set_default(self, name: str) -> None:
        entry = self.catalog.resolve(name)
        if entry.task != GENERATE:
            raise StudioError(f"'{entry.name}' is a {entry.task} model: it cannot be the default image model.")
        self.default_entry, self.default_reason = entry, "chosen in Models & settings"

    @property
    def loaded(self) -> ModelEntry | None:
        return self._entry

    def loaded_side(self, task: str) -> ModelEntry | None:
        held = self._side.get(task)
        return held[0] if held else None

    def entry(self, name: str | None) -> ModelEntry:
        if not name:
            if self.default_entry is None:
                raise StudioError(self.default_reason)
            return self.default_entry
        return self.catalog.resolve(name)

    def pipeline(self, entry: ModelEntry, task: str = "text2image"):
        """The pipeline for `task` on `entry`'s weights, loading the model only if it is not loaded."""
        if entry.task not in IMAGE_TASKS:
            what, tab = TASK_HOMES.get(entry.task, (f"a {entry.task} model", entry.task))
            raise StudioError(f"'{entry.name}' is {what}: use it in the {tab} tab.")
        entry.family_info.check_tab(task, entry.name)
        with self._lock:
            if self._entry != entry:
                self.unload(side=False)
                self._pipes["base"] = self._load(entry)
                self.base_scheduler_config = self._pipes["base"].scheduler.config
                self._entry = entry
            base = self._pipes["base"]
            if task != "inpaint" and is_inpainting_model(base):
                raise StudioError(f"'{entry.name}' is a dedicated inpainting model: use it in the Inpaint tab.")
            if task not in self._pipes:
                self._pipes[task] = _auto_class(task).from_pipe(base)
                self._pipes[task].set_progress_bar_config(disable=True)
            return self._pipes[task]

    def controlnet_pipeline(self, task: str, controlnet):
        """`task`'s ControlNet pipeline on the loaded base: shares every base component (`from_pipe`)."""
        with self._lock:
            pipe = _auto_class(task).from_pipe(self._pipes["base"], controlnet=controlnet)
            pipe.set_progress_bar_config(disable=True)
            return pipe

    def side_pipeline(self, entry: ModelEntry, load=None):
        """The pipeline of a model used on its own beside the base model (its `entry.task` names the slot):
        loaded once with `load(entry)` (default: the studio's loader) and kept until another takes the slot."""
        with self._lock:
            held = self._side.get(entry.task)
            if held is None or held[0] != entry:
                self._side.pop(entry.task, None)
                free_memory()
                self._side[entry.task] = (entry, (load or self._load)(entry))
            return self._side[entry.task][1]

    def upscaler(self, entry: ModelEntry):
        """The loaded upscaling pipeline for `entry` (SD x4 upscaler or LDM super-resolution)."""
        pipe = self.side_pipeline(entry)
        if type(pipe).__name__ not in UPSCALE_CLASSES:
            raise StudioError(f"'{entry.name}' is not an upscaler ({type(pipe).__name__}): choose one of "
                              f"{', '.join(self.catalog.names(UPSCALE))}, or a baseline.")
        return pipe

    def unload(self, side: bool = True) -> None:
        with self._lock:
            base = self._pipes.get("base")
            if base is not None and hasattr(base, "remove_all_hooks"):
                base.remove_all_hooks()  # CPU-offload hooks hold the weights: let them go with the model
            self._pipes.clear()
            self.extras.clear()
            self._entry = None
            if side:
                self._side.clear()
            free_memory()

    def plan_for(self, entry: ModelEntry, free_bytes: int | None = None, device: str | None = None) -> MemoryPlan:
        """The memory plan for loading `entry` now (free VRAM measured unless given; a simulated budget in tests)."""
        import torch

        device = device or self.device.type
        if free_bytes is None and device == "cuda":
            free_bytes = self.vram_probe(self.device)
        fam = entry.family_info
        local = entry.source != "hub"
        size = families.weights_bytes(entry.location) if local else None
        part = families.largest_component_bytes(entry.location) if local else None
        bf16 = not torch.cuda.is_available() or torch.cuda.is_bf16_supported()
        return plan_memory(free_bytes, size or fam.typical_bytes, device, override=self.memory_policy,
                           precision=self.options.precision, prefers_bf16=fam.prefers_bf16, bf16_supported=bf16,
                           largest_component_bytes=part, label=f"{entry.name} ({fam.label})")

    def _load(self, entry: ModelEntry):
        log.info("Loading model %s from %s (%s)", entry.name, entry.location, entry.source)
        plan = self.plan_for(entry) if entry.task in IMAGE_TASKS else None
        if plan is not None:
            self.dtype = resolve_dtype(plan.precision, self.device)
            log.info("Memory plan for %s: %s", entry.name, plan.summary)
        try:
            pipe = self._from_source(entry)
        except StudioError:
            raise
        except Exception as error:  # noqa: BLE001 - every load failure becomes one clear message
            log.exception("Loading %s failed", entry.name)
            raise StudioError(_load_failure_message(entry, error)) from None
        pipe.set_progress_bar_config(disable=True)
        if plan is not None:
            self.memory_plan = plan
        return self.place(pipe, plan)

    def place(self, pipe, plan: MemoryPlan | None):
        """Move a loaded pipeline to the device as `plan` says (offload, VAE tiling) with the memory options."""
        offload = plan.offload if plan is not None else "model" if self.options.cpu_offload else "none"
        offload = offload if self.device.type == "cuda" else "none"
        if offload == "model":
            pipe.enable_model_cpu_offload(device=self.device)
        elif offload == "sequential":
            pipe.enable_sequential_cpu_offload(device=self.device)
        else:
            pipe.to(self.device)
        apply_memory_options(pipe, self.options, self.device)
        vae = getattr(pipe, "vae", None)
        if plan is not None and plan.vae_tiling and vae is not None and hasattr(vae, "enable_tiling"):
            vae.enable_tiling()
        return pipe

    def _from_source(self, entry: ModelEntry):
        import diffusers

        common = {"dtype": self.dtype}
        if entry.is_single_file:
            path = Path(entry.location)
            check_safetensors(path)
            config = path.with_suffix(CONFIG_SUFFIX)
            extra = {"config": str(config), "local_files_only": True} if config.is_dir() else {}
            cls = getattr(diffusers, entry.family_info.single_file_class)
            return cls.from_single_file(str(path), **common, **extra)
        kwargs = dict(common, use_safetensors=True)
        if entry.source != "hub":
            kwargs["local_files_only"] = True
            if not Path(entry.location, "model_index.json").is_file():
                raise StudioError(f"'{entry.name}' is not a diffusers folder (no model_index.json).")
        if _has_safety_checker(entry):
            kwargs.update(safety_checker=None, requires_safety_checker=False)
        location = download_if_online(entry.location) if entry.source == "hub" else entry.location
        if location != entry.location:
            kwargs["local_files_only"] = True  # exactly what was just downloaded
        return diffusers.DiffusionPipeline.from_pretrained(location, **kwargs)


def is_inpainting_model(pipe) -> bool:
    """A 9-channel UNet (latents + mask + masked-image latents), as in the SD inpainting checkpoints."""
    unet = getattr(pipe, "unet", None)
    return unet is not None and unet.config.in_channels == 9


def _auto_class(task: str):
    import diffusers

    if task not in AUTO_PIPELINES:
        raise StudioError(f"Unknown task '{task}'.")
    return getattr(diffusers, AUTO_PIPELINES[task])


def _has_safety_checker(entry: ModelEntry) -> bool:
    index = Path(entry.location, "model_index.json")
    if entry.task not in IMAGE_TASKS:
        return False
    if entry.source == "hub":
        return True  # hub SD checkpoints ship one; the studio does not run it (as A1111)
    return index.is_file() and "safety_checker" in json.loads(index.read_text())


def _load_failure_message(entry: ModelEntry, error: Exception) -> str:
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if entry.source == "hub" and ("offline" in text.lower() or "connect" in text.lower()
                                  or "cannot find" in text.lower() or "local_files_only" in text.lower()):
        return (f"Hub model '{entry.name}' is not downloaded and the hub cannot be reached: connect once to "
                "download it, or pick a demo or local model.")
    if entry.is_single_file and not Path(entry.location).with_suffix(CONFIG_SUFFIX).is_dir():
        return (f"Could not load '{entry.name}': a single-file checkpoint needs its model config, which comes from "
                f"the hub on first use. Offline, put a diffusers config folder beside it named "
                f"'{Path(entry.location).with_suffix(CONFIG_SUFFIX).name}'. ({text})")
    if "safetensors" in text.lower() and "not found" in text.lower():
        return f"'{entry.name}' has no .safetensors weights (pickle weights are refused): convert it first."
    return f"Could not load model '{entry.name}': {text}"

