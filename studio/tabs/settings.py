"""The Models & settings tab: what is loaded where, the catalog, unload/free, and saved defaults."""

from __future__ import annotations

import gradio as gr

from pipelines.errors import StudioError
from pipelines.export import IMAGE_FORMATS
from pipelines.memory import POLICIES
from pipelines.samplers import FLOW_SAMPLERS, sampler_names
from pipelines.settings import StudioSettings
from pipelines.text2image import MAX_CFG, MAX_SIZE, MAX_STEPS

CATALOG_COLUMNS = ["name", "task", "family", "source", "location", "size", "steps", "CFG", "sampler"]


def catalog_rows(engine) -> list[list]:
    loaded = engine.manager.loaded
    return [[("● " if loaded and e.name == loaded.name else "") + e.name, e.task,
             e.family_info.label if e.task in ("text2image", "inpaint") else "", e.source, e.location,
             f"{e.width}x{e.height}", e.steps, e.cfg_scale, e.sampler] for e in engine.manager.catalog.entries()]


def build(engine) -> None:
    saved = engine.settings
    with gr.Tab("Models & settings", id="settings"):
        with gr.Row():
            status = gr.JSON(engine.status(), label="Runtime", elem_id="settings_status")
            with gr.Column():
                unload = gr.Button("Unload model and free memory", elem_id="settings_unload")
                refresh = gr.Button("Refresh", elem_id="settings_refresh")
        catalog = gr.Dataframe(catalog_rows(engine), headers=CATALOG_COLUMNS, label="Models (● = loaded)",
                               interactive=False, elem_id="settings_catalog")
        with gr.Accordion("Defaults (kept across restarts; 0 or empty = the model's own)", open=True):
            with gr.Row():
                model = gr.Dropdown(["", *engine.manager.catalog.names("text2image")], value=saved.default_model,
                                    label="Default model", allow_custom_value=True, elem_id="settings_model")
                sampler = gr.Dropdown(["", *sampler_names(), *FLOW_SAMPLERS], value=saved.sampler, label="Sampler",
                                      elem_id="settings_sampler")
                fmt = gr.Radio(list(IMAGE_FORMATS), value=saved.output_format, label="Output format",
                               elem_id="settings_format")
                memory = gr.Dropdown(list(POLICIES), value=saved.memory_policy, label="Memory policy",
                                     info="auto: precision and CPU offload from free VRAM and the model's size "
                                          "(the plan shows under Runtime); applies at the next model load",
                                     elem_id="settings_memory")
            with gr.Row():
                steps = gr.Number(saved.steps, label="Steps", precision=0, minimum=0, maximum=MAX_STEPS,
                                  elem_id="settings_steps")
                cfg = gr.Number(saved.cfg_scale, label="CFG scale", minimum=0, maximum=MAX_CFG, elem_id="settings_cfg")
                width = gr.Number(saved.width, label="Width", precision=0, minimum=0, maximum=MAX_SIZE)
                height = gr.Number(saved.height, label="Height", precision=0, minimum=0, maximum=MAX_SIZE)
            save = gr.Button("Save defaults", variant="primary", elem_id="settings_save")
            message = gr.Markdown(elem_id="settings_message")

    def do_unload():
        engine.manager.unload()
        return engine.status(), catalog_rows(engine)

    def do_save(model, sampler, fmt, steps, cfg, width, height, memory_policy="auto"):
        new = StudioSettings(default_model=model or "", sampler=sampler or "", output_format=fmt,
                             steps=int(steps or 0), cfg_scale=float(cfg or 0), width=int(width or 0),
                             height=int(height or 0), memory_policy=memory_policy or "auto")
        try:
            engine.save_settings(new)
        except StudioError as error:
            raise gr.Error(str(error)) from None
        return "Saved. New pages (reload this one) start from these defaults.", engine.status()

    unload.click(do_unload, None, [status, catalog], api_name="unload", concurrency_id="gpu", concurrency_limit=1)
    refresh.click(lambda: (engine.status(), catalog_rows(engine)), None, [status, catalog], api_visibility="private")
    save.click(do_save, [model, sampler, fmt, steps, cfg, width, height, memory], [message, status],
               api_name="save_settings")
