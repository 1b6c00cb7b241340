"""Inpainting and outpainting: dedicated 9-channel models, or blend mode on any loaded base model.

The mask is white where the image should change (as in A1111). Outside the (blurred) mask the result
is the input, pixel for pixel: the generated image is composited back through the mask at the end.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from PIL import Image, ImageFilter

from pipelines import metadata, networks
from pipelines.denoise import decode_to_pil, denoise
from pipelines.errors import StudioError
from pipelines.images import has_transparency, to_rgb
from pipelines.models import ModelEntry, ModelManager
from pipelines.text2image import (MAX_SIZE, MIN_SIZE, VERSION, GeneratedImage, Text2ImageResult, family_fields,
                                  negative_prompt_warnings, resolve_seed, validate_batch, validate_sampling,
                                  validate_strength)

FILLS = ("original", "fill")  # A1111's "masked content": keep the pixels, or fill from the surroundings
MAX_MASK_BLUR = 64
MAX_OUTPAINT = 1024


@dataclass
class InpaintRequest:
    image: Image.Image | None = None
    mask: Image.Image | None = None  # white (or opaque) = change; may be None when only outpainting
    prompt: str = ""
    negative_prompt: str = ""
    model: str = ""
    sampler: str | None = None
    steps: int | None = None
    cfg_scale: float | None = None
    seed: int = -1
    batch_size: int = 1
    strength: float = 1.0
    mask_blur: int = 4
    invert_mask: bool = False
    only_masked: bool = False
    only_masked_padding: int = 32
    fill: str = "original"
    outpaint_left: int = 0
    outpaint_right: int = 0
    outpaint_up: int = 0
    outpaint_down: int = 0


@dataclass
class Canvas:
    """The image to work on and its mask (L, 0 or 255), after outpainting extension."""

    image: Image.Image
    mask: Image.Image
    notes: list[str]


def prepare_canvas(request: InpaintRequest) -> Canvas:
    if request.image is None:
        raise StudioError("No image was given: upload the image to inpaint.")
    if has_transparency(request.image):
        raise StudioError("The image has transparent pixels: flatten it first, or paint those areas as the mask.")
    image = to_rgb(request.image, "image")
    notes: list[str] = []
    mask = user_mask(request, image.size, notes)
    pads = (request.outpaint_left, request.outpaint_up, request.outpaint_right, request.outpaint_down)
    if any(pads):
        image, mask = extend_canvas(image, mask, *pads)
    if mask is None or not np.asarray(mask).any():
        raise StudioError("The mask is empty: paint over the area to change (or outpaint in some direction).")
    for name, value in (("width", image.width), ("height", image.height)):
        if value > MAX_SIZE:
            raise StudioError(f"The image {name} would be {value} px; the limit is {MAX_SIZE}.")
    return Canvas(image, mask, notes)


def user_mask(request: InpaintRequest, size: tuple[int, int], notes: list[str]) -> Image.Image | None:
    if request.mask is None:
        return None
    mask = request.mask
    if mask.mode in ("RGBA", "LA") and mask.getchannel("A").getextrema()[0] < 255:
        mask = mask.getchannel("A")  # a painted layer: opaque strokes are the mask
    mask = mask.convert("L")
    if mask.size != size:
        notes.append(f"The mask was {mask.width}x{mask.height}; it was resized to the image's {size[0]}x{size[1]}.")
        mask = mask.resize(size, Image.NEAREST)
    binary = np.asarray(mask) > 127
    if request.invert_mask:
        binary = ~binary
    return Image.fromarray((binary * 255).astype(np.uint8))


def extend_canvas(image: Image.Image, mask: Image.Image | None, left: int, up: int, right: int, down: int):
    """Grow the canvas; the new area starts as the edge pixels smeared outward, and is masked."""
    for value in (left, up, right, down):
        if not 0 <= value <= MAX_OUTPAINT:
            raise StudioError(f"Outpaint amounts must be between 0 and {MAX_OUTPAINT} px (got {value}).")
    array = np.asarray(image)
    grown = cv2.copyMakeBorder(array, up, down, left, right, cv2.BORDER_REPLICATE)
    new_area = np.ones(grown.shape[:2], bool)
    new_area[up:up + array.shape[0], left:left + array.shape[1]] = False
    blurred = cv2.GaussianBlur(grown, (0, 0), sigmaX=max(4, max(left, up, right, down) / 4))
    grown[new_area] = blurred[new_area]
    old_mask = np.zeros(array.shape[:2], bool) if mask is None else np.asarray(mask) > 127
    full_mask = new_area.copy()
    full_mask[up:up + array.shape[0], left:left + array.shape[1]] |= old_mask
    return Image.fromarray(grown), Image.fromarray((full_mask * 255).astype(np.uint8))


def soft_mask(mask: Image.Image, blur: int) -> Image.Image:
    if not 0 <= blur <= MAX_MASK_BLUR:
        raise StudioError(f"Mask blur must be between 0 and {MAX_MASK_BLUR} (got {blur}).")
    return mask.filter(ImageFilter.GaussianBlur(blur)) if blur else mask


def work_region(mask: Image.Image, request: InpaintRequest, entry: ModelEntry) -> tuple[tuple[int, int, int, int],
                                                                                      tuple[int, int]]:
    """The box of the canvas to process and the size to generate it at (multiples of 8)."""
    width, height = mask.size
    if not request.only_masked:
        return (0, 0, width, height), (_to_multiple_of_8(width), _to_multiple_of_8(height))
    x0, y0, x1, y1 = mask.getbbox()
    pad = max(0, int(request.only_masked_padding))
    x0, y0, x1, y1 = max(0, x0 - pad), max(0, y0 - pad), min(width, x1 + pad), min(height, y1 + pad)
    # grow the box to the model's aspect ratio so the crop is not distorted when resized
    aspect = entry.width / entry.height
    box_w, box_h = x1 - x0, y1 - y0
    if box_w / box_h < aspect:
        box_w = min(width, round(box_h * aspect))
    else:
        box_h = min(height, round(box_w / aspect))
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    x0 = int(min(max(0, cx - box_w / 2), width - box_w))
    y0 = int(min(max(0, cy - box_h / 2), height - box_h))
    return (x0, y0, x0 + box_w, y0 + box_h), (entry.width, entry.height)


def _to_multiple_of_8(value: int) -> int:
    return max(MIN_SIZE, min(MAX_SIZE, (value + 7) // 8 * 8))


def fill_masked(image: Image.Image, mask: Image.Image) -> Image.Image:
    """A1111's 'fill': replace the masked pixels with colours flowed in from around them."""
    filled = cv2.inpaint(np.asarray(image), np.asarray(mask), 5, cv2.INPAINT_TELEA)
    return Image.fromarray(filled)


def run(manager: ModelManager, request: InpaintRequest, progress) -> Text2ImageResult:
    entry = manager.entry(request.model)
    sampler, steps = request.sampler or entry.sampler, entry.steps if request.steps is None else int(request.steps)
    cfg_scale = entry.cfg_scale if request.cfg_scale is None else float(request.cfg_scale)
    seed = resolve_seed(request.seed)
    validate_sampling(sampler, steps, cfg_scale, seed)
    family = entry.family_info
    family.check_sampler(sampler)
    validate_batch(request.batch_size)
    validate_strength(request.strength)
    if request.fill not in FILLS:
        raise StudioError(f"Unknown masked-content fill '{request.fill}': choose one of {', '.join(FILLS)}.")
    canvas = prepare_canvas(request)
    blend = soft_mask(canvas.mask, int(request.mask_blur))
    box, size = work_region(blend, request, entry)
    crop, crop_mask = canvas.image.crop(box), blend.crop(box)
    if request.fill == "fill":
        crop = fill_masked(crop, canvas.mask.crop(box))
    pipe = manager.pipeline(entry, "inpaint")
    prompt, negative, network_fields = networks.activate(pipe, manager.catalog.models_dir, request.prompt,
                                                         request.negative_prompt, entry.name)
    seeds = [seed + i for i in range(request.batch_size)]
    prompt_args = family.call_args(dict(prompt=prompt, negative_prompt=negative or None, guidance_scale=cfg_scale))
    latents = denoise(pipe, manager, sampler, seeds, progress, image=crop.resize(size, Image.LANCZOS),
                      mask_image=crop_mask.resize(size, Image.LANCZOS), width=size[0], height=size[1],
                      strength=request.strength, num_inference_steps=steps, **prompt_args)
    results = []
    for image_seed, generated in zip(seeds, decode_to_pil(pipe.vae, latents)):
        full = canvas.image.copy()
        full.paste(generated.resize(crop.size, Image.LANCZOS), box[:2])
        result = Image.composite(full, canvas.image, blend)  # outside the mask: the input, exactly
        fields = {"Steps": steps, "Sampler": sampler, **family_fields(entry, cfg_scale), "Seed": image_seed,
                  "Size": f"{result.width}x{result.height}", "Model": entry.name, "Family": family.key,
                  "Denoising strength": f"{request.strength:g}", "Mask blur": int(request.mask_blur),
                  "Inpaint area": "Only masked" if request.only_masked else None,
                  "Masked area padding": int(request.only_masked_padding) if request.only_masked else None,
                  "Masked content": request.fill, "Outpaint": _outpaint_text(request), **network_fields,
                  "Version": VERSION}
        recorded_negative = request.negative_prompt if family.negative_prompt else ""
        text = metadata.format_parameters(request.prompt, recorded_negative, fields)
        results.append(GeneratedImage(result, image_seed, text))
    return Text2ImageResult(results, canvas.notes + negative_prompt_warnings(entry, request.negative_prompt))


def _outpaint_text(request: InpaintRequest) -> str | None:
    pads = {"left": request.outpaint_left, "right": request.outpaint_right, "up": request.outpaint_up,
            "down": request.outpaint_down}
    return " ".join(f"{k} {v}" for k, v in pads.items() if v) or None
