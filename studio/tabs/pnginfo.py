"""The PNG info tab: drop an image, read the settings it was made with, send them to a tab."""

from __future__ import annotations

import gradio as gr
from PIL import Image

from pipelines import metadata
from pipelines.images import MAX_INPUT_PIXELS
from studio.widgets import send_buttons


def read_file(path: str) -> tuple[str, dict, dict]:
    """Parameters text, parsed fields and restorable settings of an image file on disk."""
    with Image.open(path) as image:
        return read(image)


def read(image) -> tuple[str, dict, dict]:
    if image is None:
        return "", {}, {}
    if image.width * image.height > MAX_INPUT_PIXELS:
        raise gr.Error("The image is too large to read.")
    text = metadata.read_parameters(image)
    if not text:
        return "This image carries no generation parameters.", {}, {}
    parsed = metadata.parse_parameters(text)
    return text, parsed, metadata.settings_from_parameters(parsed)


def build(engine) -> dict:
    with gr.Tab("PNG info", id="pnginfo"):
        with gr.Row():
            with gr.Column():
                image = gr.Image(label="Image (PNG, JPEG or WebP)", type="pil", sources=["upload", "clipboard"],
                                 elem_id="pnginfo_image")
            with gr.Column():
                text = gr.Textbox(label="Parameters", lines=6, interactive=False, buttons=["copy"],
                                  elem_id="pnginfo_text")
                fields = gr.JSON(label="Fields", elem_id="pnginfo_fields")
                send = gr.Button("Send to text to image", size="sm", elem_id="restore_to_txt2img")
                send_image = send_buttons("pnginfo")  # the image itself too, with its settings
        settings = gr.State({})
    image.change(read, image, [text, fields, settings], api_name="png_info")
    return {"settings": settings, "send": send, "image": image, "send_image": send_image}


def picked(image, settings: dict):
    """What a send-to button of this tab carries: the dropped image and its settings."""
    if image is None:
        raise gr.Error("Drop an image first.")
    return image, settings or {}
