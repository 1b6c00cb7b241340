"""The text-to-image tab (with image to image): prompt row, folded settings, gallery, Stop."""

from __future__ import annotations

import gradio as gr

from pipelines import hires, xygrid
from pipelines.models import UPSCALE
from pipelines.text2image import MAX_BATCH_COUNT, MAX_BATCH_SIZE, MAX_SIZE, MAX_STEPS, MIN_SIZE, Text2ImageRequest
from studio.jobs_ui import session_of
from studio.widgets import (GPU, as_int, finish, model_picker, network_picker, prompt_row, results_panel,
                            sampling_controls, settings_fields, wire_common)


def build(engine) -> dict:
    manager = engine.manager

    def hires_choices() -> list[str]:
        return [*hires.UPSCALERS, *manager.catalog.names(UPSCALE)]

    default = engine.ui_defaults()
    with gr.Tab("Text to image", id="txt2img"):
        row = prompt_row("txt2img")
        network_picker(manager, "txt2img", row)
        with gr.Row():
            with gr.Column(scale=2):
                model, refresh = model_picker(manager, "txt2img")
                family = manager.default_entry.family_info if manager.default_entry else None
                size_preset = gr.Dropdown(family.sizes if family else [], value=None, label="Size preset",
                                          info="the model family's native sizes", elem_id="txt2img_size_preset")
                with gr.Row():
                    width = gr.Slider(MIN_SIZE, MAX_SIZE, step=8, value=default["width"], label="Width",
                                      elem_id="txt2img_width")
                    height = gr.Slider(MIN_SIZE, MAX_SIZE, step=8, value=default["height"], label="Height",
                                       elem_id="txt2img_height")
                sampling = sampling_controls(engine, "txt2img", model, refresh)
                with gr.Accordion("Batch", open=False):
                    with gr.Row():
                        batch_count = gr.Slider(1, MAX_BATCH_COUNT, step=1, value=1, label="Batch count")
                        batch_size = gr.Slider(1, MAX_BATCH_SIZE, step=1, value=1, label="Batch size")
                with gr.Accordion("Hires fix", open=False):
                    enable_hr = gr.Checkbox(False, label="Upscale and refine (hires fix)", elem_id="txt2img_enable_hr")
                    with gr.Row():
                        hr_upscaler = gr.Dropdown(hires_choices(), value="Latent",
                                                  label="Upscaler", elem_id="txt2img_hr_upscaler")
                        hr_scale = gr.Slider(hires.MIN_SCALE, hires.MAX_SCALE, step=0.05, value=2.0,
                                             label="Upscale by", elem_id="txt2img_hr_scale")
                    with gr.Row():
                        hr_steps = gr.Slider(0, MAX_STEPS, step=1, value=0, label="Hires steps (0 = same)")
                        hr_strength = gr.Slider(0.0, 1.0, step=0.01, value=0.7, label="Denoising strength",
                                                elem_id="txt2img_hr_strength")
                with gr.Accordion("Image to image", open=False) as img2img_box:
                    init_image = gr.Image(label="Init image (optional)", type="pil", image_mode=None,
                                          sources=["upload", "clipboard"], elem_id="txt2img_init_image")
                    strength = gr.Slider(0.01, 1.0, step=0.01, value=0.75, label="Denoising strength")
                with gr.Accordion("X/Y grid", open=False):
                    axes = list(xygrid.AXES)
                    with gr.Row():
                        x_type = gr.Dropdown(axes[1:], value="Steps", label="X type", elem_id="txt2img_x_type")
                        x_values = gr.Textbox(label="X values", placeholder="10, 20, 30  or  10-30 (+10)",
                                              elem_id="txt2img_x_values")
                    with gr.Row():
                        y_type = gr.Dropdown(axes, value=xygrid.NOTHING, label="Y type", elem_id="txt2img_y_type")
                        y_values = gr.Textbox(label="Y values", placeholder="1, 4, 7  or  a red, a blue (Prompt S/R)",
                                              elem_id="txt2img_y_values")
                    grid_button = gr.Button("Generate grid", elem_id="txt2img_grid_generate")
            with gr.Column(scale=3):
                results = results_panel("txt2img")

    def request_from(prompt, negative, model, sampler, steps, cfg, width, height, seed, batch_count, batch_size,
                     init_image, strength, enable_hr, hr_upscaler, hr_scale, hr_steps, hr_strength):
        hires_on = bool(enable_hr) and init_image is None
        return Text2ImageRequest(
            prompt=prompt or "", negative_prompt=negative or "", model=model or "", sampler=sampler,
            steps=as_int(steps), cfg_scale=cfg, width=as_int(width), height=as_int(height),
            seed=-1 if seed is None else as_int(seed), batch_count=as_int(batch_count) or 1,
            batch_size=as_int(batch_size) or 1, init_image=init_image,
            strength=hr_strength if hires_on else strength, enable_hr=hires_on, hr_scale=hr_scale,
            hr_upscaler=hr_upscaler, hr_steps=as_int(hr_steps) or 0)

    def run(request: gr.Request, progress=gr.Progress(), *values):
        job = engine.submit_text2image(request_from(*values), owner=session_of(request))
        return finish(engine, job, progress)

    def run_grid(request: gr.Request, progress=gr.Progress(), *values):
        x_type, x_values, y_type, y_values = values[-4:]
        grid = xygrid.XYGridRequest(request_from(*values[:-4]), x_type, x_values or "", y_type, y_values or "")
        return finish(engine, engine.submit_xygrid(grid, owner=session_of(request)), progress)

    inputs = [row.prompt, row.negative, model, sampling.sampler, sampling.steps, sampling.cfg, width, height,
              sampling.seed, batch_count, batch_size, init_image, strength, enable_hr, hr_upscaler, hr_scale, hr_steps,
              hr_strength]
    outputs = [results.gallery, results.info, results.texts]
    row.generate.click(run, inputs, outputs, api_name="txt2img", concurrency_id=GPU, concurrency_limit=1)
    row.prompt.submit(run, inputs, outputs, api_visibility="private", concurrency_id=GPU, concurrency_limit=1)
    grid_button.click(run_grid, [*inputs, x_type, x_values, y_type, y_values], outputs, api_name="xy_grid",
                      concurrency_id=GPU, concurrency_limit=1)
    wire_common(engine, row, sampling, results, sizes=(width, height), stop_api="stop")
    wire_size_presets(manager, model, size_preset, width, height)
    refresh.click(lambda: gr.update(choices=hires_choices()), None, hr_upscaler, api_visibility="private")
    return {"results": results, "image": init_image, "reveal": img2img_box,
            "fields": settings_fields(row, sampling, width=width, height=height),
            "restore": [row.prompt, row.negative, model, sampling.sampler, sampling.steps, sampling.cfg,
                        sampling.seed, width, height, strength, enable_hr, hr_scale, hr_steps, hr_upscaler,
                        hr_strength, init_image],
            "defaults": [model, sampling.sampler, sampling.steps, sampling.cfg, width, height]}


def wire_size_presets(manager, model, preset, width, height) -> None:
    """The preset list follows the model's family; picking one sets width and height."""
    def presets_for(name):
        try:
            return gr.update(choices=manager.entry(name).family_info.sizes, value=None)
        except Exception:  # noqa: BLE001 - wire_common already warns about an unknown model
            return gr.update()

    def apply(value):
        if not value:
            return gr.update(), gr.update()
        w, h = (int(v) for v in value.split("x"))
        return w, h

    model.change(presets_for, model, preset, api_visibility="private")
    preset.input(apply, preset, [width, height], api_visibility="private")


RESTORED_KEYS = ["prompt", "negative_prompt", "model", "sampler", "steps", "cfg_scale", "seed", "width", "height",
                 "denoising_strength", "enable_hr", "hr_scale", "hr_steps", "hr_upscaler", "hr_strength",
                 "init_image"]
