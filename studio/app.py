"""Builds the studio's Gradio Blocks: a header with the active device and model, one tab per module."""

from __future__ import annotations

import gradio as gr

from studio.tabs import controlnet, history, inpaint, pnginfo, pointcloud, settings, text2image, upscale, video
from studio.widgets import SEND_TARGETS, Results

CSS = """
#txt2img_generate, #inpaint_generate, #controlnet_generate, #pointcloud_generate, #video_generate { min-height: 3.2em; }
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
            clips = video.build(engine)
            cloud = pointcloud.build(engine)
            info = pnginfo.build(engine)
            past = history.build(engine)
            settings.build(engine)
        receivers = {"img2img": txt2img, "inpaint": inpainting, "controlnet": control, "upscale": upscaling,
                     "pointcloud": cloud, "video": clips}
        for source in (txt2img, control, inpainting, clips):
            for target_id, button in source["results"].send.items():
                wire_send_to(tabs, source["results"], button, receivers[target_id], SEND_TARGETS[target_id][1])
        for target_id, button in info["send_image"].items():
            wire_send(tabs, button, [info["image"], info["settings"]], pnginfo.picked, receivers[target_id],
                      SEND_TARGETS[target_id][1])
        for source in (upscaling, past):  # a saved file: the upscaled result, the picked history image
            for target_id, button in source["send_image" if source is past else "send"].items():
                wire_send(tabs, button, [source["saved"]], saved_image, receivers[target_id],
                          SEND_TARGETS[target_id][1])
        for source in (info, past):
            wire_restore(tabs, source, "txt2img", txt2img["restore"], text2image.RESTORED_KEYS)
        app.load(lambda: defaults_for_page(engine), None, txt2img["defaults"], api_visibility="private")
    return app


def defaults_for_page(engine) -> list:
    """Each new page starts from the saved defaults (model, sampler, steps, CFG, size)."""
    default = engine.manager.default_entry
    values = engine.ui_defaults()
    return [default.name if default else None,
            *(values[k] for k in ("sampler", "steps", "cfg_scale", "width", "height"))]


def wire_send_to(tabs: gr.Tabs, source: Results, button: gr.Button, target: dict, tab_id: str) -> None:
    """`button` puts the selected gallery image into the target tab's input and fills its prompt, model
    and sampling controls from the image's own parameters (as A1111 does), then opens that tab."""
    def picked(items, index):
        if not items:
            raise gr.Error("Generate an image first.")
        path = items[min(index or 0, len(items) - 1)][0]
        return path, pnginfo.read_file(path)[2]

    wire_send(tabs, button, [source.gallery, source.selected], picked, target, tab_id)


def saved_image(path):
    """What a send-to button under a saved file carries: the file and the settings inside it."""
    if not path:
        raise gr.Error("Pick or make an image first.")
    return path, pnginfo.read_file(path)[2]


def wire_send(tabs: gr.Tabs, button: gr.Button, inputs: list, picked, target: dict, tab_id: str) -> None:
    """`button` sends `picked(*inputs)` = (image, its settings) to a tab: the image into its input, the
    settings into its controls, any fixed values (`set`, e.g. a mode) too, folded inputs opened."""
    image_box, fields, adapt = target["image"], target["fields"], target.get("adapt", {})
    reveal = [target["reveal"]] if "reveal" in target else []  # e.g. a folded accordion holding the input
    fixed = target.get("set", {})  # component → value

    def send(*values):
        image, settings = picked(*values)
        value = ({"background": image, "layers": [], "composite": image}
                 if isinstance(image_box, gr.ImageEditor) else image)
        settings = dict(settings)
        settings.update({key: change(settings[key]) for key, change in adapt.items() if key in settings})
        return [value, *(settings.get(key, gr.update()) for key in fields), *fixed.values(),
                *(gr.Accordion(open=True) for _ in reveal), gr.Tabs(selected=tab_id)]

    button.click(send, inputs, [image_box, *fields.values(), *fixed, *reveal, tabs], api_visibility="private")


def wire_restore(tabs: gr.Tabs, source: dict, tab_id: str, targets: list, keys: list[str]) -> None:
    """A button that fills a tab's controls from restored settings (missing ones stay as they are)."""
    def send(settings):
        if not settings:
            raise gr.Error("Drop an image that carries generation parameters first.")
        settings = {"init_image": None, "enable_hr": False, **settings}  # the whole recipe: nothing stale stays on
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
