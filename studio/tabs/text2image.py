"""The text-to-image tab (with image to image): prompt row, folded settings, gallery, Stop."""

from __future__ import annotations

import gradio as gr

from pipelines.samplers import sampler_names
from pipelines.text2image import (MAX_BATCH_COUNT, MAX_BATCH_SIZE, MAX_CFG, MAX_SIZE, MAX_STEPS, MIN_SIZE,
                                  Text2ImageRequest)
from studio.jobs_ui import session_of, wait_for

GPU = "gpu"  # every generation event shares this concurrency group (limit 1)


def build(engine) -> None:
    manager = engine.manager
    default = manager.default_entry
    with gr.Tab("Text to image", id="txt2img"):
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                prompt = gr.Textbox(label="Prompt", lines=3, placeholder="a red circle on a blue background",
                                    elem_id="txt2img_prompt")
                negative = gr.Textbox(label="Negative prompt", lines=1, elem_id="txt2img_negative")
            with gr.Column(scale=1, min_width=140):
                generate = gr.Button("Generate", variant="primary", elem_id="txt2img_generate")
                stop = gr.Button("Stop", variant="stop", elem_id="txt2img_stop")
        with gr.Row():
            with gr.Column(scale=2):
                with gr.Row(equal_height=True):
                    model = gr.Dropdown(manager.catalog.names(), value=default.name if default else None,
                                        label="Model", allow_custom_value=True, elem_id="txt2img_model",
                                        info=manager.default_reason, scale=5)
                    refresh = gr.Button("↻", scale=0, min_width=44, elem_id="txt2img_refresh_models")
                with gr.Row():
                    width = gr.Slider(MIN_SIZE, MAX_SIZE, step=8, value=default.width if default else 512,
                                      label="Width", elem_id="txt2img_width")
                    height = gr.Slider(MIN_SIZE, MAX_SIZE, step=8, value=default.height if default else 512,
                                       label="Height", elem_id="txt2img_height")
                seed = gr.Number(-1, label="Seed (-1 = random)", precision=0, elem_id="txt2img_seed")
                with gr.Accordion("Advanced", open=False):
                    sampler = gr.Dropdown(sampler_names(), value=default.sampler if default else "Euler a",
                                          label="Sampler")
                    steps = gr.Slider(1, MAX_STEPS, step=1, value=default.steps if default else 25, label="Steps")
                    cfg = gr.Slider(0, MAX_CFG, step=0.5, value=default.cfg_scale if default else 7.0,
                                    label="CFG scale")
                    with gr.Row():
                        batch_count = gr.Slider(1, MAX_BATCH_COUNT, step=1, value=1, label="Batch count")
                        batch_size = gr.Slider(1, MAX_BATCH_SIZE, step=1, value=1, label="Batch size")
                with gr.Accordion("Image to image", open=False):
                    init_image = gr.Image(label="Init image (optional)", type="pil", image_mode=None,
                                          sources=["upload", "clipboard"])
                    strength = gr.Slider(0.01, 1.0, step=0.01, value=0.75, label="Denoising strength")
            with gr.Column(scale=3):
                gallery = gr.Gallery(label="Results", columns=2, format="png", elem_id="txt2img_gallery",
                                     buttons=["download", "fullscreen"])
                info = gr.Textbox(label="Generation info", lines=4, interactive=False, buttons=["copy"],
                                  elem_id="txt2img_info")
        infos = gr.State([])

    def run(prompt, negative, model, sampler, steps, cfg, width, height, seed, batch_count, batch_size,
            init_image, strength, request: gr.Request, progress=gr.Progress()):
        job = engine.submit_text2image(Text2ImageRequest(
            prompt=prompt or "", negative_prompt=negative or "", model=model or "", sampler=sampler,
            steps=_int(steps), cfg_scale=cfg, width=_int(width), height=_int(height),
            seed=-1 if seed is None else _int(seed), batch_count=_int(batch_count) or 1,
            batch_size=_int(batch_size) or 1, init_image=init_image, strength=strength,
        ), owner=session_of(request))
        saved, warnings = wait_for(engine, job, progress)
        for warning in warnings:
            gr.Warning(warning)
        texts = [s.generated.parameters for s in saved]
        items = [(str(s.path), f"seed {s.generated.seed}") for s in saved]
        return items, texts[0] if texts else "", texts

    def use_model_defaults(name):
        try:
            entry = manager.entry(name)
        except Exception as error:  # noqa: BLE001 - shown when Generate is pressed
            gr.Warning(str(error))
            return [gr.update()] * 5
        return entry.sampler, entry.steps, entry.cfg_scale, entry.width, entry.height

    inputs = [prompt, negative, model, sampler, steps, cfg, width, height, seed, batch_count, batch_size,
              init_image, strength]
    generate.click(run, inputs, [gallery, info, infos], api_name="txt2img",
                           concurrency_id=GPU, concurrency_limit=1)
    prompt.submit(run, inputs, [gallery, info, infos], api_visibility="private", concurrency_id=GPU,
                  concurrency_limit=1)
    def stop_jobs(request: gr.Request):
        engine.jobs.cancel(owner=session_of(request))

    def show_info(texts, evt: gr.SelectData):
        return texts[evt.index] if evt.index < len(texts) else ""

    stop.click(stop_jobs, None, None, api_name="stop", queue=False)
    refresh.click(lambda: gr.update(choices=manager.catalog.names()), None, model, api_visibility="private")
    model.change(use_model_defaults, model, [sampler, steps, cfg, width, height], api_visibility="private")
    gallery.select(show_info, [infos], info, api_visibility="private")


def _int(value):
    return None if value is None else int(value)
