"""Super-resolution: diffusion upscalers (SD x4, LDM x4, the demo upscaler) and pixel baselines.

A diffusion upscaler runs tile by tile: the input is cut into overlapping tiles, each tile is
upscaled on its own (memory stays bounded whatever the image size), and the results are blended
with linear ramps across the overlaps, so no seam shows. The output is exactly scale x input.
Transparency is upscaled separately (Lanczos) and put back; greyscale stays greyscale.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import torch
from PIL import Image, ImageOps

from pipelines import hires, metadata
from pipelines.errors import JobCancelled, StudioError
from pipelines.images import to_rgb
from pipelines.jobs import StageProgress
from pipelines.models import UPSCALE, ModelManager
from pipelines.runtime import run_with_oom_retry
from pipelines.text2image import MAX_CFG, MAX_STEPS, VERSION, GeneratedImage, Text2ImageResult, resolve_seed

BASELINES = {"Lanczos": hires.PIXEL_UPSCALERS["Lanczos"], "Bicubic": Image.BICUBIC}
BASELINE_SCALES = (2, 3, 4)
MAX_OUTPUT_PIXELS = 4096 * 4096
MIN_TILE, MAX_TILE = 16, 1024
DEFAULT_TILE = 128
DEFAULT_NOISE_LEVEL = 20
PROMPTED_CLASSES = ("StableDiffusionUpscalePipeline",)  # take a prompt, CFG and a noise level
VAE_TILING_FROM = 1024  # SD x4 decodes with a tiled VAE from this output side on


@dataclass
class UpscaleRequest:
    image: Image.Image | None = None
    model: str = "Lanczos"  # a baseline, or an upscaler from the catalog
    scale: int = 4
    prompt: str = ""  # SD x4 only
    negative_prompt: str = ""
    noise_level: int = DEFAULT_NOISE_LEVEL  # SD x4 only: noise added to the input (0-350)
    cfg_scale: float | None = None  # SD x4 only; None → the model's default
    steps: int | None = None  # None → the model's default
    seed: int = -1
    tile_size: int | None = None  # input px; None → the model's own, 0 → the whole image at once
    tile_overlap: int | None = None  # input px; None → a quarter of the tile
    source_parameters: str | None = None  # the input's generation parameters; None → read from the image
    notes: list[str] = field(default_factory=list)


# ----------------------------------------------------------------------------- tiling (pure)
def tile_starts(length: int, tile: int, overlap: int) -> list[int]:
    """Start offsets of tiles covering [0, length): evenly spread, neighbours overlapping ≥ overlap."""
    if length <= tile:
        return [0]
    count = math.ceil((length - overlap) / (tile - overlap))
    return [round(i * (length - tile) / (count - 1)) for i in range(count)]


def rising(x: np.ndarray, low: float, width: float) -> np.ndarray:
    """0 before `low`, 1 after `low + width`, linear between (a step when width is 0)."""
    return np.clip((x - low) / width, 0, 1) if width else (x >= low).astype(np.float64)


def axis_tiles(length: int, tile: int, overlap: int, scale: int) -> list[tuple[int, int, np.ndarray]]:
    """(input start, input size, output-pixel weights) per tile along one axis.

    Neighbouring tiles cross-fade linearly over `overlap` px centred in their shared band (narrower
    where bands crowd each other), so at every pixel at most two weights are non-zero and they sum
    to exactly 1: the blend is a partition of unity."""
    starts = tile_starts(length, tile, overlap)
    size = min(tile, length)
    middles = [(nxt + start + size) / 2 for start, nxt in zip(starts, starts[1:])]
    widths = []
    for i, middle in enumerate(middles):
        room = [overlap, starts[i] + size - starts[i + 1]]
        room += [middle - middles[i - 1]] if i > 0 else []
        room += [middles[i + 1] - middle] if i + 1 < len(middles) else []
        widths.append(min(room) * scale)
    tiles = []
    for i, start in enumerate(starts):
        x = start * scale + np.arange(size * scale) + 0.5  # output pixel centres
        weights = np.ones(size * scale)
        if i > 0:
            weights = np.minimum(weights, rising(x, middles[i - 1] * scale - widths[i - 1] / 2, widths[i - 1]))
        if i + 1 < len(starts):
            weights = np.minimum(weights, 1 - rising(x, middles[i] * scale - widths[i] / 2, widths[i]))
        tiles.append((start, size, weights))
    return tiles


def upscale_tiled(image: np.ndarray, upscale_tile, scale: int, tile: int, overlap: int,
                  on_tile=None) -> np.ndarray:
    """Upscale an HxWxC float image tile by tile with `upscale_tile(tile) -> (h*scale, w*scale, C)`,
    feather-blending the overlaps; tile=0 upscales the whole image at once. `on_tile(index, count)`
    is called before each tile."""
    height, width = image.shape[:2]
    if not tile:
        return upscale_tile(image)
    rows, cols = axis_tiles(height, tile, overlap, scale), axis_tiles(width, tile, overlap, scale)
    out = np.zeros((height * scale, width * scale, image.shape[2]), np.float64)
    total = np.zeros((height * scale, width * scale, 1), np.float64)
    for r, (y, h, wy) in enumerate(rows):
        for c, (x, w, wx) in enumerate(cols):
            if on_tile is not None:
                on_tile(r * len(cols) + c, len(rows) * len(cols))
            result = upscale_tile(image[y:y + h, x:x + w])
            weight = (wy[:, None] * wx[None, :])[..., None]
            out[y * scale:(y + h) * scale, x * scale:(x + w) * scale] += result * weight
            total[y * scale:(y + h) * scale, x * scale:(x + w) * scale] += weight
    return out / total


@dataclass
class TileProgress:
    """Which tile is running, so step reports cover the whole image."""

    parent: object
    tile: object = None

    def start(self, index: int, count: int) -> None:
        self.tile = StageProgress(self.parent, index, count)


# ----------------------------------------------------------------------------- validation
def check_image(image) -> Image.Image:
    if image is None:
        raise StudioError("No image was given: upload the image to upscale.")
    return image


def check_scale(scale: int, allowed: tuple[int, ...], what: str) -> int:
    if scale not in allowed:
        raise StudioError(f"{what} upscales by {' or '.join(map(str, allowed))} only (got {scale:g}): choose "
                          f"{'that' if len(allowed) == 1 else 'one of those'}, or the Lanczos baseline for "
                          f"{', '.join(map(str, BASELINE_SCALES))}.")
    return int(scale)


def check_output_size(width: int, height: int, scale: int) -> None:
    if width * scale * height * scale > MAX_OUTPUT_PIXELS:
        raise StudioError(f"The result would be {width * scale}x{height * scale} pixels; the limit is "
                          f"{MAX_OUTPUT_PIXELS // 2**20} megapixels: upscale a smaller image (or crop it) "
                          f"or use a smaller scale.")


def check_tiling(tile: int, overlap: int) -> None:
    if tile and not MIN_TILE <= tile <= MAX_TILE:
        raise StudioError(f"Tile size must be 0 (no tiling) or between {MIN_TILE} and {MAX_TILE} px (got {tile}).")
    if tile and not 0 <= overlap <= tile // 2:
        raise StudioError(f"Tile overlap must be between 0 and half the tile size ({tile // 2} px; got {overlap}).")


# ----------------------------------------------------------------------------- models
def model_scale(pipe) -> int:
    """How much the pipeline enlarges: its autoencoder's upsampling factor."""
    autoencoder = getattr(pipe, "vae", None) or pipe.vqvae
    return 2 ** (len(autoencoder.config.block_out_channels) - 1)


def size_multiple(pipe) -> int:
    """Input sides must be multiples of this: the UNet halves the size in each down block but the last,
    and SD x4's image processor resizes inputs to multiples of its VAE factor."""
    return max(2 ** (len(pipe.unet.config.block_out_channels) - 1), getattr(pipe, "vae_scale_factor", 1))


def takes_prompt(pipe) -> bool:
    return type(pipe).__name__ in PROMPTED_CLASSES


def pad_to_multiple(tile: np.ndarray, multiple: int) -> np.ndarray:
    h, w = tile.shape[:2]
    pad = ((0, -h % multiple), (0, -w % multiple), (0, 0))
    mode = "reflect" if h > pad[0][1] and w > pad[1][1] else "edge"  # reflect needs a big enough tile
    return np.pad(tile, pad, mode=mode)


def diffusion_tile_fn(pipe, request: UpscaleRequest, steps: int, cfg_scale: float, seed: int, scale: int,
                      progress: TileProgress):
    """`tile (h, w, 3) in [0, 1]` → `(h*scale, w*scale, 3)` through the diffusion upscaler."""
    multiple = size_multiple(pipe)

    def run_tile(tile: np.ndarray) -> np.ndarray:
        h, w = tile.shape[:2]
        pixels = torch.from_numpy(pad_to_multiple(tile, multiple)).permute(2, 0, 1)[None].float()
        generator = torch.Generator("cpu").manual_seed(seed)
        if takes_prompt(pipe):
            if pipe.vae.config.sample_size and max(h, w) * scale >= VAE_TILING_FROM:
                pipe.vae.enable_tiling()
            call = lambda: pipe(prompt=request.prompt, negative_prompt=request.negative_prompt or None,  # noqa: E731
                                image=pixels, num_inference_steps=steps, guidance_scale=cfg_scale,
                                noise_level=int(request.noise_level), generator=generator, output_type="np").images
        else:  # LDM: the pipeline takes tensors in [-1, 1]
            call = lambda: pipe(image=pixels * 2 - 1, num_inference_steps=steps, eta=0.0,  # noqa: E731
                                generator=generator, output_type="np").images
        with step_reports(pipe, progress, steps), torch.inference_mode():
            result = run_with_oom_retry(call, pipe)[0]
        return np.asarray(result, np.float64)[:h * scale, :w * scale]

    return run_tile


class step_reports:
    """Report each UNet call as a step of the current tile, and stop at the next step on cancel."""

    def __init__(self, pipe, progress: TileProgress, steps: int):
        self.unet, self.progress, self.steps, self.count = pipe.unet, progress, steps, 0

    def __enter__(self):
        def before_step(module, args):
            stage = self.progress.tile or self.progress.parent
            if stage.cancelled:
                raise JobCancelled()
            self.count += 1
            stage.report(min(self.count, self.steps), self.steps)

        self.handle = self.unet.register_forward_pre_hook(before_step)
        return self

    def __exit__(self, *exc):
        self.handle.remove()
        return False


# ----------------------------------------------------------------------------- channels
def split_channels(image) -> tuple[Image.Image, Image.Image | None, str]:
    """(RGB picture, alpha or None, output mode): greyscale comes back greyscale, alpha is kept."""
    if not isinstance(image, Image.Image):
        return to_rgb(image, "image"), None, "RGB"  # arrays: converted (or refused) as every tab does
    rgb = to_rgb(image, "image")  # checks the size, applies EXIF rotation, flattens alpha
    image = ImageOps.exif_transpose(image)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    alpha = image.convert("RGBA").getchannel("A") if has_alpha else None
    grey = image.mode in ("L", "LA", "1", "I", "I;16", "I;16B", "I;16L", "F")
    return rgb, alpha, ("LA" if alpha else "L") if grey else ("RGBA" if alpha else "RGB")


def join_channels(rgb: Image.Image, alpha: Image.Image | None, mode: str) -> Image.Image:
    if alpha is not None:
        rgb = rgb.copy()
        rgb.putalpha(alpha.resize(rgb.size, Image.LANCZOS))
    return rgb.convert(mode)


# ----------------------------------------------------------------------------- run
def run(manager: ModelManager, request: UpscaleRequest, progress) -> Text2ImageResult:
    image = check_image(request.image)
    picture, alpha, mode = split_channels(image)
    source = request.source_parameters
    if source is None and isinstance(image, Image.Image):
        source = metadata.read_parameters(image)
    seed = resolve_seed(request.seed)
    if request.model in BASELINES:
        scale = check_scale(request.scale, BASELINE_SCALES, request.model)
        check_output_size(*picture.size, scale)
        result = picture.resize((picture.width * scale, picture.height * scale), BASELINES[request.model])
        fields = {"Upscaler": request.model}
    else:
        check_output_size(*picture.size, int(request.scale))
        result, scale, fields = model_upscale(manager, upscaler_entry(manager, request.model), picture, request,
                                              seed, progress)
    result = join_channels(result, alpha, mode)
    fields = {"Upscale by": scale, **fields, "Upscaled size": f"{result.width}x{result.height}"}
    return Text2ImageResult([GeneratedImage(result, seed, append_step(source, fields))], list(request.notes))


def upscaler_entry(manager: ModelManager, name: str):
    entry = manager.entry(name)
    if entry.task != UPSCALE:
        raise StudioError(f"'{entry.name}' is not an upscaler: choose one of "
                          f"{', '.join([*BASELINES, *manager.catalog.names(UPSCALE)])}.")
    return entry


def model_upscale(manager: ModelManager, entry, picture: Image.Image, request: UpscaleRequest, seed: int,
                  progress) -> tuple[Image.Image, int, dict]:
    """An RGB picture through a diffusion upscaler, tile by tile: (result, scale, metadata fields).
    `request.scale` 0 takes the model's own scale."""
    steps = entry.steps if request.steps is None else int(request.steps)
    cfg_scale = entry.cfg_scale if request.cfg_scale is None else float(request.cfg_scale)
    tile = (entry.tile_size or DEFAULT_TILE) if request.tile_size is None else int(request.tile_size)
    overlap = tile // 4 if request.tile_overlap is None else int(request.tile_overlap)
    check_sampling(steps, cfg_scale)
    check_tiling(tile, overlap)
    pipe = manager.upscaler(entry)
    scale = check_scale(request.scale or model_scale(pipe), (model_scale(pipe),), f"'{entry.name}'")
    prompted = takes_prompt(pipe)
    if prompted:
        check_noise_level(request.noise_level, pipe.config.max_noise_level)
    array = np.asarray(picture, np.float64) / 255
    tiles = TileProgress(progress)
    tile_fn = diffusion_tile_fn(pipe, request, steps, cfg_scale, seed, scale, tiles)
    upscaled = upscale_tiled(array, tile_fn, scale, tile, overlap, tiles.start)
    result = Image.fromarray((np.clip(upscaled, 0, 1) * 255).round().astype(np.uint8))
    fields = {"Upscaler": entry.name, "Upscale steps": steps, "Upscale seed": seed,
              "Upscale prompt": request.prompt if prompted else None,
              "Upscale CFG scale": f"{cfg_scale:g}" if prompted else None,
              "Upscale noise level": int(request.noise_level) if prompted else None,
              "Upscale tile": f"{tile} overlap {overlap}" if tile else "none"}
    return result, scale, fields


def enlarge(manager: ModelManager, name: str, picture: Image.Image, size: tuple[int, int], seed: int,
            prompt: str, progress) -> Image.Image:
    """The hires fix's upscale with a super-resolution model, as A1111 does with its upscalers: the
    model's own scale, repeated while the picture is smaller than `size`, then Lanczos to exactly `size`."""
    entry = upscaler_entry(manager, name)
    request = UpscaleRequest(model=name, scale=0, prompt=prompt)
    scale = model_scale(manager.upscaler(entry))
    rounds = max(1, math.ceil(math.log(max(size[0] / picture.width, size[1] / picture.height), scale) - 1e-9))
    for index in range(rounds):
        check_output_size(*picture.size, scale)
        picture, _, _ = model_upscale(manager, entry, picture, request, seed, StageProgress(progress, index, rounds))
    return picture.resize(size, Image.LANCZOS)


def check_sampling(steps: int, cfg_scale: float) -> None:
    if not 1 <= steps <= MAX_STEPS:
        raise StudioError(f"Steps must be between 1 and {MAX_STEPS} (got {steps}).")
    if not 0 <= cfg_scale <= MAX_CFG or np.isnan(cfg_scale):
        raise StudioError(f"CFG scale must be between 0 and {MAX_CFG:g} (got {cfg_scale:g}).")


def check_noise_level(level: int, highest: int) -> None:
    if not 0 <= int(level) <= highest:
        raise StudioError(f"Noise level must be between 0 and {highest} (got {level}).")


def append_step(source: str | None, fields: dict) -> str:
    """The source image's parameters with this upscale step added (ours alone when it had none)."""
    return metadata.append_fields(source, {**fields, "Version": None if source else VERSION})
