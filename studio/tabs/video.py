"""The Video tab: text → video (a motion adapter on the image model) or image → video (Stable Video
Diffusion); a player, MP4/GIF/JSON downloads, and the frames in a gallery that sends a frame to other tabs."""

from __future__ import annotations

import gradio as gr

from pipelines.video import (FRAME_NOISES, MAX_FPS, MAX_FRAMES, MAX_MOTION_BUCKET, MIN_FPS, MIN_FRAMES, VideoRequest,
                             card, card_frame_noise, model_names, models)
from studio.jobs_ui import session_of, wait_for
from studio.widgets import GPU, as_int, model_picker, prompt_row, results_panel, sampling_controls, wire_common

MODES = {"Text → video": "text", "Image → video": "image"}


def request_from_inputs(mode_label, prompt, negative, base_model, video_model, image, frames, fps, motion, seed,
                        sampler, steps, cfg, noise_aug, decode_chunk, width, height, frame_noise=None) -> VideoRequest:
    """The tab's controls as a request (also used by tests and the API). Sampler, steps and CFG of the image
    model do not apply to image → video, which keeps the SVD model's own defaults unless set here."""
    mode = MODES.get(mode_label, mode_label)
    return VideoRequest(
        mode=mode, prompt=prompt or "", negative_prompt=negative or "", model=video_model or "",
        base_model=base_model or "", image=image if mode == "image" else None,
        frames=as_int(frames), fps=as_int(fps), motion_bucket=as_int(motion) or 0,
        seed=-1 if seed is None else as_int(seed), sampler=sampler if mode == "text" else None,
        steps=as_int(steps) if mode == "text" else None, cfg_scale=cfg if mode == "text" else None,
        noise_aug=0.02 if noise_aug is None else float(noise_aug), decode_chunk=as_int(decode_chunk) or 8,
        width=as_int(width) or None, height=as_int(height) or None,
        frame_noise=frame_noise if mode == "text" and frame_noise else None)


def build(engine) -> dict:
    manager = engine.manager
    text_models = model_names(manager, "text")
    first = models(manager, "text")[0] if text_models else None
    first_card = card(first) if first else {}
    with gr.Tab("Video", id="video"):
        mode = gr.Radio(list(MODES), value="Text → video", label="Mode", elem_id="video_mode")
        row = prompt_row("video", placeholder="a red circle moving right")
        with gr.Row():
            with gr.Column(scale=2):
                base, refresh = model_picker(manager, "video")
                video_model = gr.Dropdown(text_models, value=text_models[0] if text_models else None,
                                          label="Video model (motion adapter)", allow_custom_value=True,
                                          elem_id="video_motion_model")
                image = gr.Image(label="First frame (image → video)", type="pil", sources=["upload", "clipboard"],
                                 elem_id="video_image", height=200)
                with gr.Row():
                    frames = gr.Slider(MIN_FRAMES, MAX_FRAMES, step=1, value=first_card.get("frames", 16),
                                       label="Frames", elem_id="video_frames")
                    fps = gr.Slider(MIN_FPS, MAX_FPS, step=1, value=first_card.get("fps", 8), label="FPS",
                                    elem_id="video_fps")
                motion = gr.Slider(1, MAX_MOTION_BUCKET, step=1, value=127, label="Motion (image → video)",
                                   info="SVD's motion bucket: higher = more movement", elem_id="video_motion")
                sampling = sampling_controls(engine, "video", base, refresh)
                with gr.Accordion("Video options", open=False):
                    noise_aug = gr.Slider(0, 1, step=0.01, value=0.02, label="Noise augmentation (image → video)",
                                          elem_id="video_noise_aug")
                    frame_noise = gr.Radio(list(FRAME_NOISES), value=card_frame_noise(first_card),
                                           label="Frame noise (text → video)",
                                           info="shared: every frame starts from the same noise; the motion adapter's "
                                                "card sets what it was trained for", elem_id="video_frame_noise")
                    decode_chunk = gr.Slider(1, MAX_FRAMES, step=1, value=8, label="VAE decode chunk (frames)",
                                             info="fewer frames at once = less memory", elem_id="video_decode_chunk")
                    with gr.Row():
                        width = gr.Slider(0, 1024, step=8, value=0, label="Width (0 = model default)",
                                          elem_id="video_width")
                        height = gr.Slider(0, 1024, step=8, value=0, label="Height (0 = model default)",
                                           elem_id="video_height")
            with gr.Column(scale=3):
                player = gr.Video(label="Video", autoplay=True, loop=True, interactive=False, elem_id="video_player",
                                  height=360)
                files = gr.File(label="Downloads (MP4, GIF, parameters JSON)", file_count="multiple",
                                interactive=False, elem_id="video_files")
                results = results_panel("video")
                results.gallery.label = "Frames (PNG with parameters; select one to send it)"

    def run(mode_label, prompt, negative, base_model, video_model, image, frames, fps, motion, seed, sampler, steps,
            cfg, noise_aug, decode_chunk, width, height, frame_noise, request: gr.Request, progress=gr.Progress()):
        job = engine.submit_video(request_from_inputs(
            mode_label, prompt, negative, base_model, video_model, image, frames, fps, motion, seed, sampler, steps,
            cfg, noise_aug, decode_chunk, width, height, frame_noise), owner=session_of(request))
        saved, warnings = wait_for(engine, job, progress)
        for warning in warnings:
            gr.Warning(warning)
        clip = saved[0]
        out = clip.files
        texts = [clip.generated.parameters] * len(out.frames)
        gallery = [(str(p), f"frame {i + 1}") for i, p in enumerate(out.frames)]
        return str(out.mp4), [str(out.mp4), str(out.gif), str(out.info)], gallery, clip.generated.parameters, texts

    def on_mode(label):
        names = model_names(manager, MODES.get(label, "text"))
        label_text = "Video model (motion adapter)" if MODES.get(label) == "text" else "Video model (Stable Video Diffusion)"
        return gr.update(choices=names, value=names[0] if names else None, label=label_text)

    def on_image(picture, label):
        # an image arriving (upload, or "send to video" from a gallery) means image → video
        return "Image → video" if picture is not None else label

    def on_video_model(name, label):
        entry = next((e for e in models(manager, MODES.get(label, "text")) if e.name == name), None)
        info = card(entry) if entry else {}
        return (info.get("frames", gr.update()), info.get("fps", gr.update()),
                card_frame_noise(info) if entry else gr.update())

    inputs = [mode, row.prompt, row.negative, base, video_model, image, frames, fps, motion, sampling.seed,
              sampling.sampler, sampling.steps, sampling.cfg, noise_aug, decode_chunk, width, height, frame_noise]
    outputs = [player, files, results.gallery, results.info, results.texts]
    row.generate.click(run, inputs, outputs, api_name="video", concurrency_id=GPU, concurrency_limit=1)
    mode.change(on_mode, mode, video_model, api_visibility="private")
    image.change(on_image, [image, mode], mode, api_visibility="private")
    video_model.input(on_video_model, [video_model, mode], [frames, fps, frame_noise], api_visibility="private")
    wire_common(engine, row, sampling, results)
    return {"results": results, "image": image, "mode": mode,
            "fields": {"prompt": row.prompt, "negative_prompt": row.negative, "seed": sampling.seed}}
