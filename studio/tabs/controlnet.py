"""The ControlNet tab: input image → preprocessor → control map (shown, replaceable) → guided generation."""

from __future__ import annotations

import gradio as gr

from pipelines.controlnet import MAX_SCALE, ControlUnit, controlnet_names, fitting_controlnet
from pipelines.errors import StudioError
from pipelines.preprocess import PREPROCESSORS, control_map
from pipelines.text2image import MAX_SIZE, MIN_SIZE, Text2ImageRequest
from studio.jobs_ui import session_of
from studio.widgets import (GPU, as_int, finish, model_picker, network_picker, prompt_row, results_panel,
                            sampling_controls, settings_fields, wire_common)

UNITS = 2  # units shown in the tab (the pipeline takes up to three)


def unit_controls(index: int, names: list[str], default: str | None) -> list:
    with gr.Accordion(f"ControlNet unit {index}", open=index == 0):
        enabled = gr.Checkbox(index == 0, label="Enable", elem_id=f"cn{index}_enabled")
        with gr.Row():
            image = gr.Image(label="Input image", type="pil", image_mode=None, sources=["upload", "clipboard"],
                             height=220, elem_id=f"cn{index}_image")
            preview = gr.Image(label="Control map (upload one here to use it as is)", type="pil", height=220,
                               sources=["upload", "clipboard"], elem_id=f"cn{index}_map")
        with gr.Row():
            model = gr.Dropdown(names, value=default, label="ControlNet model",
                                allow_custom_value=True, elem_id=f"cn{index}_model")
            preprocessor = gr.Dropdown(list(PREPROCESSORS), value="canny", label="Preprocessor",
                                       elem_id=f"cn{index}_preprocessor")
        with gr.Row():
            low = gr.Slider(0, 500, step=1, value=100, label="Canny low threshold")
            high = gr.Slider(0, 500, step=1, value=200, label="Canny high threshold")
        with gr.Row():
            scale = gr.Slider(0, MAX_SCALE, step=0.05, value=1.0, label="Conditioning scale")
            start = gr.Slider(0, 1, step=0.01, value=0.0, label="Guidance start")
            end = gr.Slider(0, 1, step=0.01, value=1.0, label="Guidance end")
        show = gr.Button("Preview map", size="sm", elem_id=f"cn{index}_preview")
    return [enabled, image, preview, model, preprocessor, low, high, scale, start, end, show]


def units_from(values: list) -> list[ControlUnit]:
    """ControlUnits from the flat widget values; a map in the preview box is used as it is."""
    units = []
    for i in range(UNITS):
        enabled, image, preview, model, preprocessor, low, high, scale, start, end = values[i * 10:(i + 1) * 10]
        if not enabled:
            continue
        source, module = (preview, "none") if preview is not None else (image, preprocessor)
        units.append(ControlUnit(model or "", source, module, as_int(low), as_int(high), scale, start, end))
    return units


def build(engine) -> dict:
    manager = engine.manager
    default = engine.ui_defaults()
    names = controlnet_names(manager.catalog.models_dir)

    def is_demo(name) -> bool:
        try:
            return manager.entry(name).source == "demo"
        except StudioError:
            return False

    first = fitting_controlnet(names, is_demo(None))  # the built-in one on the demo base model
    with gr.Tab("ControlNet", id="controlnet"):
        row = prompt_row("controlnet")
        network_picker(manager, "controlnet", row)
        with gr.Row():
            with gr.Column(scale=3):
                units = [unit_controls(i, names, first) for i in range(UNITS)]
            with gr.Column(scale=2):
                results = results_panel("controlnet")
                model, refresh = model_picker(manager, "controlnet")
                with gr.Row():
                    width = gr.Slider(MIN_SIZE, MAX_SIZE, step=8, value=default["width"], label="Width")
                    height = gr.Slider(MIN_SIZE, MAX_SIZE, step=8, value=default["height"], label="Height")
                sampling = sampling_controls(engine, "controlnet", model, refresh)

    def preview(image, preprocessor, low, high, width, height):
        if image is None:
            raise gr.Error("Upload an input image first.")
        try:
            return control_map(image, preprocessor, (as_int(width), as_int(height)), as_int(low), as_int(high))
        except StudioError as error:
            raise gr.Error(str(error)) from None

    for enabled, image, map_box, _model, preprocessor, low, high, *_rest, show in units:
        show.click(preview, [image, preprocessor, low, high, width, height], map_box, api_visibility="private")
        image.change(lambda: None, None, map_box, api_visibility="private")  # a new input needs a new map

    unit_models = [unit[3] for unit in units]

    def fit(base, *current):  # a base model of the other kind gets a ControlNet of its own kind
        names = controlnet_names(manager.catalog.models_dir)
        return [fitting_controlnet(names, is_demo(base), name) for name in current]

    model.change(fit, [model, *unit_models], unit_models, queue=False,
                 api_visibility="private")  # instant, and never waits behind (or delays) queued events
    # the model list's ↻ also finds ControlNets added to models/controlnet since the studio started
    refresh.click(lambda: [gr.update(choices=controlnet_names(manager.catalog.models_dir))] * UNITS, None,
                  unit_models, api_visibility="private")

    unit_inputs = [widget for unit in units for widget in unit[:10]]
    settings = [row.prompt, row.negative, model, sampling.sampler, sampling.steps, sampling.cfg, width, height,
                sampling.seed]

    def run(request: gr.Request, progress=gr.Progress(), *values):
        # gr.Request and gr.Progress come first: Gradio cannot inject keyword-only arguments after *values
        prompt, negative, model, sampler, steps, cfg, width, height, seed = values[:len(settings)]
        chosen = units_from(list(values[len(settings):]))
        if not chosen:
            raise gr.Error("Enable at least one ControlNet unit.")
        job = engine.submit_text2image(Text2ImageRequest(
            prompt=prompt or "", negative_prompt=negative or "", model=model or "", sampler=sampler,
            steps=as_int(steps), cfg_scale=cfg, width=as_int(width), height=as_int(height),
            seed=-1 if seed is None else as_int(seed), controlnets=chosen), owner=session_of(request))
        return finish(engine, job, progress)

    row.generate.click(run, [*settings, *unit_inputs], [results.gallery, results.info, results.texts],
                       api_name="controlnet", concurrency_id=GPU, concurrency_limit=1)
    wire_common(engine, row, sampling, results, sizes=(width, height))
    return {"results": results, "image": units[0][1], "fields": settings_fields(row, sampling, width=width, height=height)}
