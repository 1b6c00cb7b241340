"""Model families (SD 1.x, SD 2.x, SDXL and its refiner, SD3/3.5, Flux.1 dev/schnell): how to recognise
one from its folder or a single file's keys, and what differs per family — native size and size presets,
default steps/guidance/sampler, which samplers apply, whether a negative prompt works, which tabs have a
diffusers pipeline, which ControlNet class fits, and the precision and size that drive the memory plan.

The rest of the studio stays family-agnostic by asking the family.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from pipelines.errors import StudioError
from pipelines.samplers import FLOW_SAMPLERS, SAMPLERS

GiB = 1024**3
ALL_TABS = ("text2image", "img2img", "inpaint")
TAB_NAMES = {"text2image": "text to image", "img2img": "image to image", "inpaint": "inpainting"}
SQUARE_ISH_1024 = ((1024, 1024), (1152, 896), (896, 1152), (1216, 832), (832, 1216), (1344, 768), (768, 1344),
                   (1536, 640), (640, 1536))


@dataclass(frozen=True)
class Family:
    key: str  # recorded in metadata ("Family: sdxl") and catalog cards ("family": "sdxl")
    label: str
    width: int
    height: int
    size_presets: tuple[tuple[int, int], ...]
    steps: int
    cfg_scale: float
    sampler: str
    samplers: tuple[str, ...]
    negative_prompt: bool = True  # False: the prompt row hides it and the pipeline never gets one
    cfg_label: str = "CFG scale"  # what the guidance value means (Flux dev: distilled guidance)
    guidance_field: str = ""  # metadata name of the guidance value when it is not CFG (Flux)
    tabs: tuple[str, ...] = ALL_TABS  # tasks with a diffusers pipeline for this family
    controlnet_class: str = ""  # the ControlNet model class that fits; "" = none in diffusers
    controlnet_tabs: tuple[str, ...] = ()
    flow: bool = False  # flow matching (SD3, Flux): flow samplers only
    prefers_bf16: bool = False  # fp16 overflows in these (Flux, SD3.5): bf16 where the GPU has it
    typical_bytes: int = 2 * GiB  # half-precision size of the real checkpoints, for a plan before download
    single_file_class: str = "StableDiffusionPipeline"

    @property
    def sizes(self) -> list[str]:
        return [f"{w}x{h}" for w, h in self.size_presets]

    def defaults(self) -> dict:
        return dict(width=self.width, height=self.height, steps=self.steps, cfg_scale=self.cfg_scale,
                    sampler=self.sampler)

    def check_tab(self, task: str, model: str) -> None:
        """A clear refusal where diffusers has no pipeline for this family and tab."""
        if task not in self.tabs:
            usable = ", ".join(TAB_NAMES[t] for t in self.tabs) or "no image tab"
            raise StudioError(f"'{model}' is {self.label}: diffusers has no {TAB_NAMES.get(task, task)} pipeline for "
                              f"this family. Use it for {usable}, or pick another model.")

    def check_controlnet(self, task: str, model: str) -> None:
        if task not in self.controlnet_tabs:
            where = f" for {TAB_NAMES.get(task, task)}" if self.controlnet_tabs else ""
            raise StudioError(f"'{model}' is {self.label}: diffusers has no ControlNet pipeline{where} for this "
                              "family. Turn ControlNet off or pick another model.")

    def check_sampler(self, sampler: str) -> None:
        if sampler not in self.samplers:
            kind = "flow-matching" if self.flow else "noise-prediction"
            raise StudioError(f"Sampler '{sampler}' does not apply to {self.label} ({kind} model). Choose one of: "
                              f"{', '.join(self.samplers)}.")

    def call_args(self, args: dict) -> dict:
        """Pipeline arguments this family's pipelines take (e.g. Flux gets no negative prompt)."""
        if not self.negative_prompt:
            args = {k: v for k, v in args.items() if k != "negative_prompt"}
        return args


SD_SAMPLERS = tuple(SAMPLERS)
FLOW = tuple(FLOW_SAMPLERS)
SD_TABS_CN = ALL_TABS

FAMILIES: dict[str, Family] = {f.key: f for f in (
    Family("sd1", "SD 1.x", 512, 512, ((512, 512), (512, 768), (768, 512), (640, 448), (448, 640)), 25, 7.0,
           "DPM++ 2M Karras", SD_SAMPLERS, controlnet_class="ControlNetModel", controlnet_tabs=SD_TABS_CN,
           typical_bytes=2 * GiB),
    Family("sd2", "SD 2.x", 768, 768, ((768, 768), (512, 512), (768, 1024), (1024, 768)), 25, 7.0,
           "DPM++ 2M Karras", SD_SAMPLERS, controlnet_class="ControlNetModel", controlnet_tabs=SD_TABS_CN,
           typical_bytes=3 * GiB),
    Family("sdxl", "SDXL", 1024, 1024, SQUARE_ISH_1024, 30, 6.0, "DPM++ 2M Karras", SD_SAMPLERS,
           controlnet_class="ControlNetModel", controlnet_tabs=SD_TABS_CN, typical_bytes=int(6.5 * GiB),
           single_file_class="StableDiffusionXLPipeline"),
    Family("sdxl-refiner", "the SDXL refiner", 1024, 1024, SQUARE_ISH_1024, 20, 6.0, "DPM++ 2M Karras",
           SD_SAMPLERS, tabs=("img2img", "inpaint"), typical_bytes=int(5.8 * GiB),
           single_file_class="StableDiffusionXLImg2ImgPipeline"),
    Family("sd3", "SD3", 1024, 1024, SQUARE_ISH_1024, 28, 4.5, "Euler (flow)", FLOW,
           controlnet_class="SD3ControlNetModel", controlnet_tabs=("text2image",), flow=True,
           prefers_bf16=True, typical_bytes=16 * GiB, single_file_class="StableDiffusion3Pipeline"),
    Family("flux-dev", "Flux.1 [dev]", 1024, 1024, SQUARE_ISH_1024, 28, 3.5, "Euler (flow)", FLOW,
           negative_prompt=False, cfg_label="Distilled CFG Scale", guidance_field="Distilled CFG Scale",
           controlnet_class="FluxControlNetModel",
           controlnet_tabs=ALL_TABS, flow=True, prefers_bf16=True, typical_bytes=32 * GiB,
           single_file_class="FluxPipeline"),
    Family("flux-schnell", "Flux.1 [schnell]", 1024, 1024, SQUARE_ISH_1024, 4, 0.0, "Euler (flow)", FLOW,
           negative_prompt=False, cfg_label="Guidance (unused by schnell)", guidance_field="Distilled CFG Scale",
           controlnet_class="FluxControlNetModel",
           controlnet_tabs=ALL_TABS, flow=True, prefers_bf16=True, typical_bytes=32 * GiB,
           single_file_class="FluxPipeline"),
)}
SD1 = FAMILIES["sd1"]


def family(key: str | None) -> Family:
    """The family for a key ("" or None: SD 1.x, the studio's original and the demo models')."""
    if not key:
        return SD1
    if key not in FAMILIES:
        raise StudioError(f"Unknown model family '{key}'. Known: {', '.join(FAMILIES)}.")
    return FAMILIES[key]


def _config(path: Path) -> dict:
    try:
        return json.loads(path.read_text()) if path.is_file() else {}
    except (OSError, ValueError):
        return {}


def detect_folder(folder: Path) -> str:
    """The family key of a diffusers folder from its configs (no weights are read); "" = not an image model
    the families cover (upscalers, point-cloud models)."""
    folder = Path(folder)
    index = _config(folder / "model_index.json")
    name = str(index.get("_class_name", ""))
    if name.startswith("Flux"):
        guidance = _config(folder / "transformer" / "config.json").get("guidance_embeds", True)
        return "flux-dev" if guidance else "flux-schnell"
    if name.startswith("StableDiffusion3"):
        return "sd3"
    if name.startswith("StableDiffusionXL"):
        encoder = index.get("text_encoder")
        return "sdxl" if encoder and encoder[0] else "sdxl-refiner"
    if name.startswith("StableDiffusion") and "Upscale" not in name or not name:
        # SD 2.x: OpenCLIP-H text encoder (1024 wide, gelu) and linear-projection attention in the UNet
        unet = _config(folder / "unet" / "config.json")
        text = _config(folder / "text_encoder" / "config.json")
        if (unet.get("use_linear_projection") or unet.get("cross_attention_dim") == 1024
                or text.get("hidden_act") == "gelu"):
            return "sd2"
        return "sd1"
    return ""


# key names from diffusers' single_file_utils.CHECKPOINT_KEY_NAMES (original, non-diffusers layouts)
_FLUX_KEY = "double_blocks.0.img_attn.norm.key_norm.scale"
_FLUX_GUIDANCE_KEY = "guidance_in.in_layer.bias"
_SD3_KEY = "joint_blocks.0.context_block.adaLN_modulation.1.bias"
_XL_BASE_KEY = "conditioner.embedders.1.model.transformer.resblocks.9.mlp.c_proj.bias"
_XL_REFINER_KEY = "conditioner.embedders.0.model.transformer.resblocks.9.mlp.c_proj.bias"
_V2_KEY = "model.diffusion_model.input_blocks.2.1.transformer_blocks.0.attn2.to_k.weight"
_PREFIX = "model.diffusion_model."


def detect_keys(keys, shapes: dict | None = None) -> str:
    """The family key of a single-file checkpoint from its tensor names (and, for SD 2.x, a text width)."""
    keys = {k.removeprefix(_PREFIX) for k in keys}
    if _FLUX_KEY in keys:
        return "flux-dev" if _FLUX_GUIDANCE_KEY in keys else "flux-schnell"
    if _SD3_KEY in keys:
        return "sd3"
    if _XL_BASE_KEY in keys:
        return "sdxl"
    if _XL_REFINER_KEY in keys:
        return "sdxl-refiner"
    v2 = _V2_KEY.removeprefix(_PREFIX)
    if any(k.startswith("cond_stage_model.model.") for k in keys):  # OpenCLIP text encoder: SD 2.x
        return "sd2"
    if shapes and shapes.get(v2, [0, 0])[-1] == 1024:
        return "sd2"
    return "sd1"


def detect_single_file(path: Path) -> str:
    """A single .safetensors file's family: from its config folder when there is one, else from its keys."""
    from safetensors import safe_open

    from pipelines.models import CONFIG_SUFFIX

    config = Path(path).with_suffix(CONFIG_SUFFIX)
    if (config / "model_index.json").is_file():
        return detect_folder(config) or "sd1"
    try:
        with safe_open(str(path), framework="pt") as f:
            keys = list(f.keys())
            v2 = _V2_KEY
            shapes = {v2.removeprefix(_PREFIX): f.get_slice(v2).get_shape()} if v2 in keys else None
    except Exception:  # noqa: BLE001 - an unreadable file is reported clearly when it is loaded
        return "sd1"
    return detect_keys(keys, shapes)


def weights_bytes(location: str | Path, bytes_per_value: int = 2) -> int | None:
    """The model's size at `bytes_per_value` per weight, from the .safetensors headers (no tensors are read);
    None when there are no local weights (e.g. a hub model not yet downloaded)."""
    path = Path(location)
    files = [path] if path.suffix == ".safetensors" and path.is_file() else (
        list(path.rglob("*.safetensors")) if path.is_dir() else [])
    if not files:
        return None
    total = 0
    for file in files:
        try:
            with open(file, "rb") as f:
                header = json.loads(f.read(int.from_bytes(f.read(8), "little")))
        except (OSError, ValueError):
            continue
        for name, info in header.items():
            if name != "__metadata__":
                count = 1
                for dim in info.get("shape", []):
                    count *= dim
                total += count * bytes_per_value
    return total


def largest_component_bytes(location: str | Path, bytes_per_value: int = 2) -> int | None:
    """The biggest sub-model (the transformer, the T5 encoder…): what model CPU offload must fit at once."""
    path = Path(location)
    if not path.is_dir():
        return None
    sizes = [weights_bytes(sub, bytes_per_value) for sub in path.iterdir() if sub.is_dir()]
    sizes = [s for s in sizes if s]
    return max(sizes) if sizes else None
