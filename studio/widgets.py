"""Pieces every generation tab shares: prompt row, model picker, sampler settings, results panel."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from pipelines import networks
from pipelines.samplers import sampler_names
from pipelines.text2image import MAX_CFG, MAX_STEPS
from studio.jobs_ui import session_of, wait_for

GPU = "gpu"  # every generation event shares this concurrency group (limit 1)


@dataclass
class PromptRow:
    prompt: gr.Textbox
    negative: gr.Textbox
    generate: gr.Button
    stop: gr.Button


@dataclass
class Sampling:
    model: gr.Dropdown
    refresh: gr.Button
    sampler: gr.Dropdown
    steps: gr.Slider
    cfg: gr.Slider
    seed: gr.Number


@dataclass
class Results:
    gallery: gr.Gallery
    info: gr.Textbox
    texts: gr.State
    selected: gr.State  # index of the gallery image the send-to buttons carry
    send: dict  # target id → its "Send to" button


# Tabs that take an image, by target id: (button label, tab id). Every gallery can send to each.
SEND_TARGETS = {"img2img": ("image to image", "txt2img"), "inpaint": ("inpaint", "inpaint"),
                "controlnet": ("ControlNet", "controlnet"), "upscale": ("super-resolution", "upscale"),
                "pointcloud": ("3D", "pointcloud"), "video": ("video", "video")}


def prompt_row(prefix: str, placeholder: str = "a red circle on a blue background") -> PromptRow:
    with gr.Row(equal_height=True):
        with gr.Column(scale=5):
            prompt = gr.Textbox(label="Prompt", lines=3, placeholder=placeholder, elem_id=f"{prefix}_prompt")
            negative = gr.Textbox(label="Negative prompt", lines=1, elem_id=f"{prefix}_negative")
        with gr.Column(scale=1, min_width=140):
            generate = gr.Button("Generate", variant="primary", elem_id=f"{prefix}_generate")
            stop = gr.Button("Stop", variant="stop", elem_id=f"{prefix}_stop")
    return PromptRow(prompt, negative, generate, stop)


def network_picker(manager, prefix: str, row: PromptRow) -> None:
    """LoRAs and embeddings of the models dir, added to the prompt in A1111's syntax (`<lora:name:w>`,
    an embedding's name), where the user sees and can edit them."""
    models_dir = manager.catalog.models_dir
    with gr.Accordion("LoRA & embeddings", open=False):
        with gr.Row(equal_height=True):
            lora = gr.Dropdown(networks.lora_names(models_dir), value=None, label="LoRA", scale=3,
                               elem_id=f"{prefix}_lora", info=f"from {models_dir / networks.LORA_DIR}")
            weight = gr.Slider(-2, 2, step=0.05, value=1.0, label="Weight", scale=2, elem_id=f"{prefix}_lora_weight")
            add_lora = gr.Button("Add to prompt", scale=1, elem_id=f"{prefix}_add_lora")
        with gr.Row(equal_height=True):
            embedding = gr.Dropdown(networks.embedding_names(models_dir), value=None, label="Embedding", scale=3,
                                    elem_id=f"{prefix}_embedding", info=f"from {models_dir / networks.EMBEDDINGS_DIR}")
            add_positive = gr.Button("Add to prompt", scale=1, elem_id=f"{prefix}_add_embedding")
            add_negative = gr.Button("Add to negative", scale=1, elem_id=f"{prefix}_add_negative_embedding")
            refresh = gr.Button("↻", scale=0, min_width=44, elem_id=f"{prefix}_refresh_networks")

    def appended(text: str, addition: str | None) -> str:
        text = (text or "").rstrip()
        return f"{text}, {addition}" if text and addition else (text or addition or "")

    add_lora.click(lambda text, name, w: appended(text, name and f"<lora:{name}:{w:g}>"), [row.prompt, lora, weight],
                   row.prompt, api_visibility="private")
    add_positive.click(appended, [row.prompt, embedding], row.prompt, api_visibility="private")
    add_negative.click(appended, [row.negative, embedding], row.negative, api_visibility="private")
    refresh.click(lambda: (gr.update(choices=networks.lora_names(models_dir)),
                           gr.update(choices=networks.embedding_names(models_dir))), None, [lora, embedding],
                  api_visibility="private")


def model_picker(manager, prefix: str, task: str = "text2image") -> tuple[gr.Dropdown, gr.Button]:
    default = manager.default_entry.name if manager.default_entry else None
    if task == "inpaint":
        default = manager.catalog.inpainting_choice(default)
    with gr.Row(equal_height=True):
        model = gr.Dropdown(manager.catalog.names(task), value=default, label="Model",
                            allow_custom_value=True, elem_id=f"{prefix}_model", info=manager.default_reason, scale=5)
        refresh = gr.Button("↻", scale=0, min_width=44, elem_id=f"{prefix}_refresh_models")
    return model, refresh


def sampling_controls(engine, prefix: str, model: gr.Dropdown, refresh: gr.Button) -> Sampling:
    """Seed in view; sampler, steps and CFG folded away (saved defaults, else the model's recommended)."""
    default = engine.ui_defaults()
    entry = engine.manager.default_entry
    family = entry.family_info if entry is not None else None  # its samplers and what its guidance means
    seed = gr.Number(-1, label="Seed (-1 = random)", precision=0, elem_id=f"{prefix}_seed")
    with gr.Accordion("Advanced", open=False):
        # choices follow the model's family; any family's sampler is accepted here and checked against the model
        sampler = gr.Dropdown(list(family.samplers) if family else sampler_names(), value=default["sampler"],
                              label="Sampler", elem_id=f"{prefix}_sampler", allow_custom_value=True)
        steps = gr.Slider(1, MAX_STEPS, step=1, value=default["steps"], label="Steps", elem_id=f"{prefix}_steps")
        cfg = gr.Slider(0, MAX_CFG, step=0.5, value=default["cfg_scale"], label=family.cfg_label if family else
                        "CFG scale", elem_id=f"{prefix}_cfg")
    return Sampling(model, refresh, sampler, steps, cfg, seed)


def settings_fields(row, sampling: Sampling, **extra) -> dict:
    """The controls that "send to" fills from an image's parameters, by settings key."""
    return {"prompt": row.prompt, "negative_prompt": row.negative, "model": sampling.model,
            "sampler": sampling.sampler, "steps": sampling.steps, "cfg_scale": sampling.cfg, "seed": sampling.seed,
            **extra}


def results_panel(prefix: str) -> Results:
    gallery = gr.Gallery(label="Results", columns=2, format="png", elem_id=f"{prefix}_gallery",
                         buttons=["download", "fullscreen"])
    info = gr.Textbox(label="Generation info", lines=4, interactive=False, buttons=["copy"], elem_id=f"{prefix}_info")
    return Results(gallery, info, gr.State([]), gr.State(0), send_buttons(prefix))


def send_buttons(prefix: str, exclude: str | None = None) -> dict:
    """A row of "Send to …" buttons, one per tab that takes an image (but `exclude`), by target id."""
    with gr.Row():
        return {target: gr.Button(f"Send to {label}", size="sm", elem_id=f"{prefix}_send_to_{target}", min_width=80)
                for target, (label, _tab) in SEND_TARGETS.items() if target != exclude}


def finish(engine, job, progress):
    """Wait for a generation job and turn its saved images into (gallery items, first info, all infos)."""
    saved, warnings = wait_for(engine, job, progress)
    for warning in warnings:
        gr.Warning(warning)
    texts = [s.generated.parameters for s in saved]
    return [(str(s.path), f"seed {s.generated.seed}") for s in saved], (texts[0] if texts else ""), texts


def wire_common(engine, row: PromptRow, sampling: Sampling, results: Results, sizes=(), stop_api: str | None = None,
                task: str = "text2image"):
    """Stop, model refresh, model defaults and gallery selection — the same in every tab."""
    manager = engine.manager

    def stop_jobs(request: gr.Request):
        engine.jobs.cancel(owner=session_of(request))

    def use_model_defaults(name):
        try:
            entry = manager.entry(name)
        except Exception as error:  # noqa: BLE001 - the same error is shown when Generate is pressed
            gr.Warning(str(error))
            return [gr.update()] * (3 + len(sizes))
        return [entry.sampler, entry.steps, entry.cfg_scale, entry.width, entry.height][:3 + len(sizes)]

    def follow_family(name):
        """The model's family decides the sampler list, what the guidance means and whether a negative prompt
        works; values stay as they are (restored settings must not be reset)."""
        try:
            family = manager.entry(name).family_info
        except Exception:  # noqa: BLE001 - use_model_defaults / Generate report it
            return [gr.update()] * 3
        return [gr.update(choices=list(family.samplers)), gr.update(label=family.cfg_label),
                gr.update(visible=family.negative_prompt)]

    def show_info(texts, evt: gr.SelectData):
        return (texts[evt.index] if evt.index < len(texts) else ""), evt.index

    row.stop.click(stop_jobs, None, None, queue=False, api_name=stop_api,
                   api_visibility="public" if stop_api else "private")
    sampling.refresh.click(lambda: gr.update(choices=manager.catalog.names(task)), None, sampling.model,
                           api_visibility="private")
    # .input, not .change: restoring settings (PNG info) sets the model without resetting the rest
    sampling.model.input(use_model_defaults, sampling.model, [sampling.sampler, sampling.steps, sampling.cfg, *sizes],
                          api_visibility="private")
    sampling.model.change(follow_family, sampling.model, [sampling.sampler, sampling.cfg, row.negative],
                          api_visibility="private")
    results.gallery.select(show_info, [results.texts], [results.info, results.selected], api_visibility="private")


def as_int(value):
    return None if value is None else int(value)
