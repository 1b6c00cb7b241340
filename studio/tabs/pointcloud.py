"""The 3D tab: text or image → coloured point cloud, shown in a 3D viewer, downloadable as PLY and GLB."""

from __future__ import annotations

import gradio as gr

from pipelines.pointcloud import MAX_POINTS, MIN_POINTS, PointCloudRequest, model_names, models
from pipelines.samplers import sampler_names
from pipelines.text2image import MAX_CFG, MAX_STEPS
from studio.jobs_ui import session_of, wait_for
from studio.widgets import GPU, as_int

MODES = {"Text → 3D": "text", "Image → 3D": "image"}


def build(engine) -> dict:
    manager = engine.manager
    default = models(manager)[0]
    with gr.Tab("3D point cloud", id="pointcloud"):
        with gr.Row(equal_height=True):
            with gr.Column(scale=5):
                mode = gr.Radio(list(MODES), value="Text → 3D", label="Mode", elem_id="pointcloud_mode")
                prompt = gr.Textbox(label="Prompt", lines=2, placeholder="a red torus", elem_id="pointcloud_prompt")
            with gr.Column(scale=1, min_width=140):
                generate = gr.Button("Generate", variant="primary", elem_id="pointcloud_generate")
                stop = gr.Button("Stop", variant="stop", elem_id="pointcloud_stop")
        with gr.Row():
            with gr.Column(scale=2):
                model = gr.Dropdown(model_names(manager), value=default.name, label="Model",
                                    allow_custom_value=True, elem_id="pointcloud_model")
                points = gr.Slider(MIN_POINTS, MAX_POINTS, step=16, value=256, label="Points",
                                   elem_id="pointcloud_points")
                with gr.Row():
                    guidance = gr.Slider(0, MAX_CFG, step=0.5, value=default.cfg_scale, label="Guidance",
                                         elem_id="pointcloud_guidance")
                    steps = gr.Slider(1, MAX_STEPS, step=1, value=default.steps, label="Steps",
                                      elem_id="pointcloud_steps")
                seed = gr.Number(-1, label="Seed (-1 = random)", precision=0, elem_id="pointcloud_seed")
                with gr.Accordion("Advanced", open=False):
                    sampler = gr.Dropdown(sampler_names(), value=default.sampler, label="Sampler")
                    upsample = gr.Slider(0, MAX_POINTS, step=16, value=0, label="Upsample to (0 = off)",
                                         info="a second stage adds points around the coarse cloud")
                with gr.Group(visible=False) as image_inputs:
                    image = gr.Image(label="Image", type="pil", sources=["upload", "clipboard"],
                                     elem_id="pointcloud_image", height=200)
                    depth = gr.Image(label="Depth map (optional; brighter = nearer)", type="pil", image_mode=None,
                                     sources=["upload", "clipboard"], elem_id="pointcloud_depth", height=200)
            with gr.Column(scale=3):
                viewer = gr.Model3D(label="Point cloud", clear_color=(0.12, 0.12, 0.14, 1.0), height=420,
                                    elem_id="pointcloud_viewer")
                files = gr.File(label="Downloads (PLY, GLB)", file_count="multiple", interactive=False,
                                elem_id="pointcloud_files")
                info = gr.Textbox(label="Generation info", lines=3, interactive=False, buttons=["copy"],
                                  elem_id="pointcloud_info")

    def run(mode_label, prompt, model, points, guidance, steps, seed, sampler, upsample, image, depth,
            request: gr.Request, progress=gr.Progress()):
        job = engine.submit_pointcloud(PointCloudRequest(
            mode=MODES.get(mode_label, mode_label), prompt=prompt or "", model=model or "",
            points=as_int(points) or 0, sampler=sampler, steps=as_int(steps), guidance=guidance,
            seed=-1 if seed is None else as_int(seed), upsample_to=as_int(upsample) or 0, image=image, depth=depth,
        ), owner=session_of(request))
        saved, warnings = wait_for(engine, job, progress)
        for warning in warnings:
            gr.Warning(warning)
        cloud = saved[0]
        return str(cloud.ply), [str(cloud.ply), str(cloud.glb)], cloud.generated.parameters

    def use_model_defaults(name):
        entry = next((e for e in models(manager) if e.name == name), None)
        if entry is None:
            return gr.update(), gr.update(), gr.update()
        return entry.cfg_scale, entry.steps, entry.sampler

    inputs = [mode, prompt, model, points, guidance, steps, seed, sampler, upsample, image, depth]
    generate.click(run, inputs, [viewer, files, info], api_name="pointcloud", concurrency_id=GPU,
                   concurrency_limit=1)
    def stop_jobs(request: gr.Request):
        engine.jobs.cancel(owner=session_of(request))

    stop.click(stop_jobs, None, None, queue=False, api_visibility="private")
    mode.change(lambda m: gr.Group(visible=MODES.get(m) == "image"), mode, image_inputs, api_visibility="private")
    model.input(use_model_defaults, model, [guidance, steps, sampler], api_visibility="private")
    return {"viewer": viewer, "files": files, "image": image, "fields": {},
            "set": {mode: "Image → 3D", image_inputs: gr.update(visible=True)}}
