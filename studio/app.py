"""Builds the studio's Gradio Blocks: a header with the active device and model, one tab per module."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from pipelines import metadata
from studio.tabs import controlnet, inpaint, pnginfo, settings, text2image, upscale

CSS = """
#txt2img_generate, #inpaint_generate, #controlnet_generate { min-height: 3.2em; }
footer { visibility: hidden; }
"""


def build_app(engine) -> gr.Blocks:
    manager = engine.manager
    with gr.Blocks(title="Diffusion Studio") as app:
        gr.Markdown(f"## Diffusion Studio\n{runtime_summary(manager)}", elem_id="studio_header")
        with gr.Tabs() as tabs:
            txt2img = text2image.build(engine)
            control = controlnet.build(engine)
            inpainting = inpaint.build(engine)
            upscaling = upscale.build(engine)
            info = pnginfo.build(engine)
            settings.build(engine)
        wire_send_to(tabs, txt2img, "inpaint", inpainting)
        wire_send_to(tabs, txt2img, "controlnet", control)
        wire_send_to(tabs, txt2img, "upscale", upscaling)
        wire_restore(tabs, info, "txt2img", txt2img["restore"], text2image.RESTORED_KEYS)
        app.load(lambda: defaults_for_page(engine), None, txt2img["defaults"], api_visibility="private")
    return app


def defaults_for_page(engine) -> list:
    """Each new page starts from the saved defaults (model, sampler, steps, CFG, size)."""
    default = engine.manager.default_entry
    values = engine.ui_defaults()
    return [default.name if default else None,
            *(values[k] for k in ("sampler", "steps", "cfg_scale", "width", "height"))]


def wire_send_to(tabs: gr.Tabs, source: dict, tab_id: str, target: dict) -> None:
    """`source`'s send button for `tab_id` puts the selected gallery image into the target tab's input
    and fills its prompt, model and sampling controls from the image's own parameters (as A1111 does)."""
    image_box, fields = target["image"], target["fields"]

    def send(items, index):
        if not items:
            raise gr.Error("Generate an image first.")
        path = items[min(index or 0, len(items) - 1)][0]
        value = ({"background": path, "layers": [], "composite": path}
                 if isinstance(image_box, gr.ImageEditor) else path)
        settings = settings_of_image(path)
        return [value, *(settings.get(key, gr.update()) for key in fields), gr.Tabs(selected=tab_id)]

    source["send"][tab_id].click(send, [source["gallery"], source["selected"]],
                                 [image_box, *fields.values(), tabs], api_visibility="private")


def settings_of_image(path: str) -> dict:
    with Image.open(path) as image:
        text = metadata.read_parameters(image)
    return metadata.settings_from_parameters(metadata.parse_parameters(text)) if text else {}


def wire_restore(tabs: gr.Tabs, source: dict, tab_id: str, targets: list, keys: list[str]) -> None:
    """A button that fills a tab's controls from restored settings (missing ones stay as they are)."""
    def send(settings):
        if not settings:
            raise gr.Error("Drop an image that carries generation parameters first.")
        return [settings.get(key, gr.update()) for key in keys] + [gr.Tabs(selected=tab_id)]

    source["send"].click(send, source["settings"], [*targets, tabs], api_visibility="private")


def runtime_summary(manager) -> str:
    precision = str(manager.dtype).removeprefix("torch.")
    default = manager.default_entry.name if manager.default_entry else "none"
    return (f"Device **{manager.device.type}** · precision **{precision}** · "
            f"default model **{default}** ({manager.default_reason})")


def launch_options(engine) -> dict:
    """Arguments for `Blocks.launch` that every launcher (CLI, tests) needs."""
    return dict(theme=gr.themes.Soft(), css=CSS, allowed_paths=[str(engine.store.root)],
                max_file_size="50mb")
