"""Builds the studio's Gradio Blocks: a header with the active device and model, one tab per module."""

from __future__ import annotations

import gradio as gr

from studio.tabs import text2image

CSS = """
#txt2img_generate { min-height: 3.2em; }
footer { visibility: hidden; }
"""


def build_app(engine) -> gr.Blocks:
    manager = engine.manager
    with gr.Blocks(title="Diffusion Studio") as app:
        gr.Markdown(f"## Diffusion Studio\n{runtime_summary(manager)}", elem_id="studio_header")
        with gr.Tabs():
            text2image.build(engine)
    return app


def runtime_summary(manager) -> str:
    precision = str(manager.dtype).removeprefix("torch.")
    default = manager.default_entry.name if manager.default_entry else "none"
    return (f"Device **{manager.device.type}** · precision **{precision}** · "
            f"default model **{default}** ({manager.default_reason})")


def launch_options(engine) -> dict:
    """Arguments for `Blocks.launch` that every launcher (CLI, tests) needs."""
    return dict(theme=gr.themes.Soft(), css=CSS, allowed_paths=[str(engine.store.root)],
                max_file_size="50mb")
