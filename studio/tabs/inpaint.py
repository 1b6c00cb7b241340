"""The inpaint/outpaint tab: paint the mask on the image, or extend the canvas in chosen directions."""

from __future__ import annotations

import gradio as gr
import numpy as np
from PIL import Image

from pipelines.inpaint import MAX_MASK_BLUR, MAX_OUTPAINT, InpaintRequest
from pipelines.text2image import MAX_BATCH_SIZE
from studio.jobs_ui import session_of
from studio.widgets import (GPU, as_int, finish, model_picker, network_picker, prompt_row, results_panel,
                            sampling_controls, settings_fields, wire_common)


def editor_image_and_mask(value) -> tuple[Image.Image | None, Image.Image | None]:
    """The uploaded picture and the painted mask (union of the layers' alpha) from an ImageEditor value."""
    if not value or value.get("background") is None:
        return None, None
    background = value["background"]
    painted = np.zeros((background.height, background.width), bool)
    for layer in value.get("layers") or []:
        alpha = np.asarray(layer.convert("RGBA").getchannel("A").resize(background.size))
        painted |= alpha > 0
    return background, Image.fromarray((painted * 255).astype(np.uint8))


def build(engine) -> dict:
    manager = engine.manager
    with gr.Tab("Inpaint", id="inpaint"):
        row = prompt_row("inpaint", placeholder="a yellow triangle")
        network_picker(manager, "inpaint", row)
        with gr.Row():
            with gr.Column(scale=2):
                editor = gr.ImageEditor(label="Image — paint over what should change", type="pil",
                                        brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=12),
                                        sources=["upload", "clipboard"], elem_id="inpaint_editor", height=420)
                with gr.Accordion("Mask options", open=False):
                    uploaded_mask = gr.Image(label="Or upload a mask (white = change)", type="pil",
                                             image_mode="L", sources=["upload"], height=160)
                    with gr.Row():
                        mask_blur = gr.Slider(0, MAX_MASK_BLUR, step=1, value=4, label="Mask blur")
                        invert = gr.Checkbox(False, label="Invert mask")
                    with gr.Row():
                        area = gr.Radio(["Whole picture", "Only masked"], value="Whole picture", label="Inpaint area")
                        padding = gr.Slider(0, 256, step=4, value=32, label="Only masked padding (px)")
                    fill = gr.Radio(["original", "fill"], value="original", label="Masked content")
                with gr.Accordion("Outpaint", open=False):
                    with gr.Row():
                        out_left = gr.Slider(0, MAX_OUTPAINT, step=8, value=0, label="Left")
                        out_right = gr.Slider(0, MAX_OUTPAINT, step=8, value=0, label="Right")
                    with gr.Row():
                        out_up = gr.Slider(0, MAX_OUTPAINT, step=8, value=0, label="Up")
                        out_down = gr.Slider(0, MAX_OUTPAINT, step=8, value=0, label="Down")
                model, refresh = model_picker(manager, "inpaint", task="inpaint")
                strength = gr.Slider(0.01, 1.0, step=0.01, value=1.0, label="Denoising strength")
                sampling = sampling_controls(engine, "inpaint", model, refresh)
                batch_size = gr.Slider(1, MAX_BATCH_SIZE, step=1, value=1, label="Batch size")
            with gr.Column(scale=3):
                results = results_panel("inpaint")
                mask_preview = gr.Image(label="Mask used", type="pil", interactive=False, height=200)

    def run(editor_value, mask_image, prompt, negative, model, sampler, steps, cfg, seed, batch_size, strength,
            mask_blur, invert, area, padding, fill, left, right, up, down, request: gr.Request,
            progress=gr.Progress()):
        image, painted = editor_image_and_mask(editor_value)
        mask = mask_image if mask_image is not None else painted
        job = engine.submit_inpaint(InpaintRequest(
            image=image, mask=mask, prompt=prompt or "", negative_prompt=negative or "", model=model or "",
            sampler=sampler, steps=as_int(steps), cfg_scale=cfg, seed=-1 if seed is None else as_int(seed),
            batch_size=as_int(batch_size) or 1, strength=strength, mask_blur=as_int(mask_blur) or 0,
            invert_mask=bool(invert), only_masked=area == "Only masked", only_masked_padding=as_int(padding) or 0,
            fill=fill, outpaint_left=as_int(left) or 0, outpaint_right=as_int(right) or 0,
            outpaint_up=as_int(up) or 0, outpaint_down=as_int(down) or 0,
        ), owner=session_of(request))
        items, info, texts = finish(engine, job, progress)
        return items, info, texts, mask

    inputs = [editor, uploaded_mask, row.prompt, row.negative, model, sampling.sampler, sampling.steps, sampling.cfg,
              sampling.seed, batch_size, strength, mask_blur, invert, area, padding, fill, out_left, out_right,
              out_up, out_down]
    outputs = [results.gallery, results.info, results.texts, mask_preview]
    row.generate.click(run, inputs, outputs, api_name="inpaint", concurrency_id=GPU, concurrency_limit=1)
    wire_common(engine, row, sampling, results, task="inpaint")
    # an image sent here from another tab is inpainted with its model's dedicated inpainting variant, if any
    return {"results": results, "image": editor, "fields": settings_fields(row, sampling),
            "adapt": {"model": manager.catalog.inpainting_choice}}
