"""ControlNet conditioning on the loaded base model: one or several ControlNets, each with its own map,
scale and guidance window, built with `from_pipe` so the base weights are never loaded twice."""

from __future__ import annotations

import inspect
import json
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from pipelines.errors import StudioError
from pipelines.models import ASSETS_MODELS, CONFIG_SUFFIX, HUB_ID, check_safetensors
from pipelines.preprocess import control_map

SUBFOLDER = "controlnet"  # local ControlNets live in <models dir>/controlnet/
DEMO_DIR = ASSETS_MODELS / SUBFOLDER  # built-in ControlNets for the demo base model (diffusers folders)
DEMO_PREFIX = "demo/"  # their names: "demo/<folder>", apart from local ("controlnet/...") and hub names
HUB_CONTROLNETS = ["lllyasviel/control_v11p_sd15_canny", "lllyasviel/control_v11p_sd15_lineart",
                   "lllyasviel/control_v11p_sd15_scribble", "lllyasviel/control_v11p_sd15_softedge",
                   "lllyasviel/control_v11f1p_sd15_depth"]
MAX_UNITS = 3
MAX_SCALE = 2.0
CONTROLNET_CLASSES = ("ControlNetModel", "FluxControlNetModel", "SD3ControlNetModel")


@dataclass
class ControlUnit:
    model: str
    image: Image.Image | None
    preprocessor: str = "canny"  # "none": the image already is the control map
    low_threshold: int = 100
    high_threshold: int = 200
    scale: float = 1.0
    start: float = 0.0
    end: float = 1.0

    def validate(self, index: int) -> None:
        if not 0 <= self.scale <= MAX_SCALE:
            raise StudioError(f"ControlNet {index}: scale must be between 0 and {MAX_SCALE:g} (got {self.scale:g}).")
        if not 0 <= self.start < self.end <= 1:
            raise StudioError(f"ControlNet {index}: guidance start must be below end, both in 0–1 "
                              f"(got {self.start:g}–{self.end:g}).")


def demo_controlnets(folder: Path = DEMO_DIR) -> dict[str, Path]:
    """The built-in ControlNets by name."""
    return {DEMO_PREFIX + p.parent.name: p.parent for p in sorted(Path(folder).glob("*/config.json"))}


def controlnet_names(models_dir: Path) -> list[str]:
    folder = Path(models_dir) / SUBFOLDER
    local = []
    if folder.is_dir():
        local = sorted(p.relative_to(models_dir).as_posix() for p in folder.iterdir()
                       if (p / "config.json").is_file() or p.suffix == ".safetensors")
    return list(demo_controlnets()) + local + HUB_CONTROLNETS


def fitting_controlnet(names: list[str], base_is_demo: bool, current: str | None = None) -> str | None:
    """The ControlNet to offer for a base model: `current` if it is of the base's kind (built-in ones go
    with the demo base, the others with real models), else the first name of that kind."""
    def is_demo(name):
        return name.startswith(DEMO_PREFIX)

    if current and is_demo(current) == base_is_demo:
        return current
    kind = [n for n in names if is_demo(n) == base_is_demo]
    return kind[0] if kind else current or (names[0] if names else None)


def model_class(path: Path, family):
    """The ControlNet model class a local folder declares, else the one the base model's family uses."""
    import diffusers

    declared = ""
    if (path / "config.json").is_file():
        try:
            declared = json.loads((path / "config.json").read_text()).get("_class_name", "")
        except ValueError:
            declared = ""
    name = declared if declared in CONTROLNET_CLASSES else family.controlnet_class or "ControlNetModel"
    return getattr(diffusers, name)


def load(manager, name: str):
    """The ControlNet model for a name (local path under the models dir, or hub id), loaded once."""
    loaded = manager.loaded
    family = loaded.family_info if loaded is not None else None
    cache = manager.extras
    if name in cache:
        return cache[name]
    models_dir = manager.catalog.models_dir
    path = (models_dir / name).resolve()
    demo = demo_controlnets().get(name)  # built-in, under assets/
    inside = path.is_relative_to(models_dir)
    cls = model_class(demo or (path if inside else models_dir / SUBFOLDER / "-"), family or _sd1())  # never read outside
    try:
        if name.lower().endswith((".ckpt", ".pt", ".pth", ".bin")):
            raise StudioError(f"'{name}' is a pickle checkpoint: convert it to .safetensors first.")
        if demo is not None:
            model = cls.from_pretrained(demo, dtype=manager.dtype, use_safetensors=True, local_files_only=True)
        elif path.exists():
            if not path.is_relative_to(models_dir):
                raise StudioError(f"ControlNet path '{name}' is outside the models dir.")
            if path.suffix == ".safetensors":
                check_safetensors(path)
                config = path.with_suffix(CONFIG_SUFFIX)
                extra = {"config": str(config), "local_files_only": True} if config.is_dir() else {}
                model = cls.from_single_file(str(path), dtype=manager.dtype, **extra)
            else:
                model = cls.from_pretrained(path, dtype=manager.dtype, use_safetensors=True, local_files_only=True)
        elif HUB_ID.match(name) and ".." not in name and not name.startswith(SUBFOLDER + "/"):
            model = cls.from_pretrained(name, dtype=manager.dtype, use_safetensors=True)
        else:
            raise StudioError(f"Unknown ControlNet '{name}'. Put it in {models_dir / SUBFOLDER} or give a hub id.")
    except StudioError:
        raise
    except Exception as error:  # noqa: BLE001 - one clear line for any load failure
        raise StudioError(f"Could not load ControlNet '{name}': {str(error).splitlines()[0]}") from None
    cache[name] = model.to(manager.device)
    return cache[name]


def _sd1():
    from pipelines.families import SD1

    return SD1


def check_fits(model, base_pipe, name: str, family=None) -> None:
    """A ControlNet adds residuals to the denoiser's blocks: its class and widths must match the base's."""
    family = family or _sd1()
    kind = type(model).__name__
    if kind != family.controlnet_class:
        raise StudioError(f"ControlNet '{name}' ({kind}) was made for another base model family; the loaded model "
                          f"is {family.label}, which takes a {family.controlnet_class or 'ControlNet of its own'}.")
    denoiser = getattr(base_pipe, "unet", None)
    if denoiser is None:  # transformer families (SD3, Flux): text width and attention width must match
        cn, base = model.config, base_pipe.transformer.config
        widths = ("joint_attention_dim", "num_attention_heads", "attention_head_dim")
        if any(cn.get(k) != base.get(k) for k in widths):
            raise StudioError(f"ControlNet '{name}' was made for another base model family ("
                              f"{', '.join(f'{k} {cn.get(k)}' for k in widths)}; the loaded model has "
                              f"{', '.join(f'{k} {base.get(k)}' for k in widths)}).")
        return
    cn, base = model.config, denoiser.config
    if cn.cross_attention_dim != base.cross_attention_dim or list(cn.block_out_channels) != list(
            base.block_out_channels):
        raise StudioError(f"ControlNet '{name}' was made for another base model family (text width "
                          f"{cn.cross_attention_dim}, blocks {list(cn.block_out_channels)}; the loaded model has "
                          f"{base.cross_attention_dim}, {list(base.block_out_channels)}).")


def prepare(manager, entry, task: str, units: list[ControlUnit], size: tuple[int, int]):
    """The ControlNet pipeline for `task` on the loaded base, and its call arguments."""
    if not 1 <= len(units) <= MAX_UNITS:
        raise StudioError(f"Use between 1 and {MAX_UNITS} ControlNets at once (got {len(units)}).")
    for index, unit in enumerate(units):
        unit.validate(index)
    family = entry.family_info
    family.check_controlnet(task, entry.name)
    maps = [control_map(u.image, u.preprocessor, size, u.low_threshold, u.high_threshold) for u in units]
    base = manager.pipeline(entry, task)
    models = [load(manager, u.model) for u in units]
    for unit, model in zip(units, models):
        check_fits(model, base, unit.model, family)
    controlnet = models[0] if len(models) == 1 else _multi(family, models)
    pipe = manager.controlnet_pipeline(task, controlnet)
    one = len(units) == 1
    # the map's argument: `control_image` where the pipeline has one (img2img, Flux), else `image`
    key = "control_image" if "control_image" in inspect.signature(pipe.__call__).parameters else "image"
    args = {key: maps[0] if one else maps,
            "controlnet_conditioning_scale": float(units[0].scale) if one else [float(u.scale) for u in units],
            "control_guidance_start": float(units[0].start) if one else [float(u.start) for u in units],
            "control_guidance_end": float(units[0].end) if one else [float(u.end) for u in units]}
    return pipe, args, maps


def _multi(family, models):
    import diffusers

    multi = {"FluxControlNetModel": "FluxMultiControlNetModel", "SD3ControlNetModel": "SD3MultiControlNetModel"}
    return getattr(diffusers, multi.get(family.controlnet_class, "MultiControlNetModel"))(models)


def parameters(units: list[ControlUnit]) -> dict:
    """Metadata fields in the A1111 ControlNet extension's style, one per unit."""
    return {f"ControlNet {i}": (f"Module: {u.preprocessor}, Model: {u.model}, Weight: {u.scale:g}, "
                                f"Threshold A: {u.low_threshold}, Threshold B: {u.high_threshold}, "
                                f"Guidance Start: {u.start:g}, Guidance End: {u.end:g}")
            for i, u in enumerate(units)}
