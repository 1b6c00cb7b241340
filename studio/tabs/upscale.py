"""The super-resolution tab: an image in, a model (or a pixel baseline), a before/after slider out."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from pipelines.errors import StudioError
from pipelines.models import UPSCALE
from pipelines.text2image import MAX_CFG, MAX_STEPS
from pipelines.upscale import (BASELINE_SCALES, BASELINES, DEFAULT_NOISE_LEVEL, DEFAULT_TILE, MAX_TILE,
                               PROMPTED_CLASSES, UpscaleRequest)
from studio.jobs_ui import session_of, wait_for
from studio.widgets import GPU, as_int, send_buttons


def model_choices(manager) -> list[str]:
    return [*manager.catalog.names(UPSCALE), *BASELINES]


def default_model(manager) -> str:
    """The tab's first choice: the built-in demo upscaler where it ships, else the Lanczos baseline."""
    demos = [e.name for e in manager.catalog.entries(UPSCALE) if e.source == "demo"]
    return demos[0] if demos else "Lanczos"


def model_controls(manager, name: str) -> dict:
    """What the chosen model takes: its scales, and for a diffusion model its defaults and options."""
    if name in BASELINES:
        return dict(scales=list(BASELINE_SCALES), diffusion=False, prompted=False)
    try:
        entry = manager.entry(name)
    except StudioError:
        return dict(scales=[4], diffusion=True, prompted=False)  # the error shows when Upscale is pressed
    tile = entry.tile_size or DEFAULT_TILE
    return dict(scales=[4], diffusion=True, prompted=entry.pipeline_class in PROMPTED_CLASSES, steps=entry.steps,
                cfg=entry.cfg_scale, tile=tile, overlap=tile // 4)


def request_from_inputs(image_path, model, scale, prompt, negative, noise_level, steps, cfg, seed, tile,
                        overlap) -> UpscaleRequest:
    """The tab's controls as a request. The image is opened from its file so its mode (alpha, grey)
    and its generation parameters come along."""
    image = None
    if image_path:
        with Image.open(image_path) as opened:
            opened.load()
            image = opened
    baseline = model in BASELINES
    return UpscaleRequest(
        image=image, model=model or "", scale=as_int(scale) or 4, prompt=prompt or "",
        negative_prompt=negative or "", noise_level=as_int(noise_level) or 0,
        steps=None if baseline else as_int(steps), cfg_scale=None if baseline else cfg,
        seed=-1 if seed is None else as_int(seed), tile_size=as_int(tile),
        tile_overlap=as_int(overlap))


def build(engine) -> dict:
    manager = engine.manager
    choices = model_choices(manager)
    initial = default_model(manager)
    first = model_controls(manager, initial)
    with gr.Tab("Super-resolution", id="upscale"):
        with gr.Row():
            with gr.Column(scale=2):
                source = gr.Image(label="Image to upscale", type="filepath", image_mode=None, height=300,
                                  sources=["upload", "clipboard"], elem_id="upscale_image")
                with gr.Row(equal_height=True):
                    model = gr.Dropdown(choices, value=initial, label="Upscaler", allow_custom_value=True,
                                        elem_id="upscale_model", scale=4)
                    scale = gr.Dropdown(first["scales"], value=first["scales"][-1], label="Scale",
                                        elem_id="upscale_scale", scale=1, min_width=90)
                with gr.Group(visible=first["prompted"]) as prompted_box:
                    prompt = gr.Textbox(label="Prompt (what the picture shows)", lines=2, elem_id="upscale_prompt")
                    negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="upscale_negative")
                with gr.Row():
                    upscale_button = gr.Button("Upscale", variant="primary", elem_id="upscale_generate")
                    stop = gr.Button("Stop", variant="stop", elem_id="upscale_stop")
                with gr.Accordion("Advanced", open=False, visible=first["diffusion"]) as advanced:
                    with gr.Row():
                        steps = gr.Slider(1, MAX_STEPS, step=1, value=first.get("steps", 20), label="Steps",
                                          elem_id="upscale_steps")
                        seed = gr.Number(-1, label="Seed (-1 = random)", precision=0, elem_id="upscale_seed")
                    with gr.Row(visible=first["prompted"]) as prompted_row:
                        cfg = gr.Slider(0, MAX_CFG, step=0.5, value=first.get("cfg", 9.0), label="CFG scale")
                        noise = gr.Slider(0, 350, step=1, value=DEFAULT_NOISE_LEVEL, label="Noise level")
                    with gr.Row():
                        tile = gr.Slider(0, MAX_TILE, step=8, value=first.get("tile", DEFAULT_TILE),
                                         label="Tile size (input px, 0 = whole image)", elem_id="upscale_tile")
                        overlap = gr.Slider(0, MAX_TILE // 2, step=1, value=first.get("overlap", DEFAULT_TILE // 4),
                                            label="Tile overlap (px)", elem_id="upscale_overlap")
            with gr.Column(scale=3):
                compare = gr.ImageSlider(label="Before / after", type="filepath", format="png", interactive=False,
                                         elem_id="upscale_compare", buttons=["fullscreen"], max_height=640)
                download = gr.File(label="Download (PNG with parameters)", interactive=False, elem_id="upscale_file")
                info = gr.Textbox(label="Parameters", lines=3, interactive=False, buttons=["copy"],
                                  elem_id="upscale_info")
                send = send_buttons("upscale", exclude="upscale")

    def on_model(name):
        controls = model_controls(manager, name)
        scales = controls["scales"]
        updates = [gr.update(choices=scales, value=scales[-1]), gr.update(visible=controls["prompted"]),
                   gr.update(visible=controls["prompted"]), gr.update(visible=controls["diffusion"])]
        if not controls["diffusion"] or "steps" not in controls:
            return updates + [gr.update()] * 4
        return updates + [controls["steps"], controls["cfg"], controls["tile"], controls["overlap"]]

    def run(image_path, model, scale, prompt, negative, noise_level, steps, cfg, seed, tile, overlap,
            request: gr.Request, progress=gr.Progress()):
        upscale_request = request_from_inputs(image_path, model, scale, prompt, negative, noise_level, steps, cfg,
                                              seed, tile, overlap)
        job = engine.submit_upscale(upscale_request, owner=session_of(request))
        saved, warnings = wait_for(engine, job, progress)
        for warning in warnings:
            gr.Warning(warning)
        result = saved[0]
        before = upscale_request.image.convert("RGBA").resize(result.generated.image.size, Image.NEAREST)
        return (before, str(result.path)), str(result.path), result.generated.parameters

    def stop_jobs(request: gr.Request):
        engine.jobs.cancel(owner=session_of(request))

    model.change(on_model, model, [scale, prompted_box, prompted_row, advanced, steps, cfg, tile, overlap],
                 api_visibility="private")
    inputs = [source, model, scale, prompt, negative, noise, steps, cfg, seed, tile, overlap]
    upscale_button.click(run, inputs, [compare, download, info], api_name="upscale", concurrency_id=GPU,
                         concurrency_limit=1)
    stop.click(stop_jobs, None, None, queue=False, api_visibility="private")
    return {"image": source, "fields": {"prompt": prompt, "negative_prompt": negative}, "saved": download,
            "send": send}
