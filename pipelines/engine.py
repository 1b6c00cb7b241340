"""The studio's back end in one object: model manager, GPU job queue and output store.

The UI and the REST API both submit work here, so there is one way through (DESIGN §2).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from pipelines import inpaint, pointcloud, settings, text2image, upscale, video, xygrid
from pipelines.errors import StudioError
from pipelines.export import OutputStore
from pipelines.jobs import Job, JobQueue
from pipelines.models import Catalog, ModelManager
from pipelines.runtime import RuntimeOptions


log = logging.getLogger(__name__)


@dataclass
class SavedImage:
    path: Path | None
    generated: text2image.GeneratedImage


@dataclass
class SavedCloud:
    ply: Path | None
    glb: Path | None
    generated: pointcloud.GeneratedCloud


@dataclass
class SavedVideo:
    files: object | None  # export.SavedVideoFiles: mp4, gif, frames (PNGs), info (JSON)
    generated: video.GeneratedVideo


class Engine:
    def __init__(self, models_dir: str | Path = "models", outputs_dir: str | Path = "outputs",
                 options: RuntimeOptions | None = None):
        self.manager = ModelManager(Catalog(Path(models_dir)), options)
        self.jobs = JobQueue()
        self.store = OutputStore(outputs_dir)
        self.settings = settings.StudioSettings()
        try:
            self.apply_settings(settings.load(self.store.root))
        except StudioError as error:  # e.g. the saved default model was deleted: start anyway
            log.warning("Saved settings not applied: %s", error)

    def apply_settings(self, new: settings.StudioSettings) -> None:
        """Use `new` from now on (the default model, output format) and keep it for the next start."""
        new.validate()
        if new.default_model:
            self.manager.set_default(new.default_model)
        if new.memory_policy != "auto" or not self.manager.options.cpu_offload:
            self.manager.memory_policy = new.memory_policy  # takes effect at the next model load
        self.settings = new

    def ui_defaults(self) -> dict:
        """Initial control values: the user's saved defaults, else the default model's recommendations."""
        entry, chosen = self.manager.default_entry, self.settings
        base = dict(sampler="Euler a", steps=25, cfg_scale=7.0, width=512, height=512)
        if entry is not None:
            base = dict(sampler=entry.sampler, steps=entry.steps, cfg_scale=entry.cfg_scale, width=entry.width,
                        height=entry.height)
        return {key: getattr(chosen, key) or value for key, value in base.items()}

    def status(self) -> dict:
        """What is running where, for the Models & settings tab."""
        manager, options = self.manager, self.manager.options
        loaded = manager.loaded
        info = {"device": manager.device.type, "precision": str(manager.dtype).removeprefix("torch."),
                "attention slicing": options.attention_slicing, "VAE tiling": options.vae_tiling,
                "CPU offload": options.cpu_offload, "loaded model": loaded.name if loaded else None,
                "loaded model family": loaded.family_info.label if loaded else None,
                "memory policy": manager.memory_policy,
                "memory plan": manager.memory_plan.summary if manager.memory_plan and loaded else None,
                **{f"loaded {task} model": getattr(manager.loaded_side(task), "name", None)
                   for task in ("upscale", "pointcloud", "video")},
                "default model": manager.default_entry.name if manager.default_entry else None,
                "jobs waiting or running": self.jobs.pending()}
        vram = vram_in_use(manager.device)
        if vram is not None:
            info["VRAM in use (GiB)"] = round(vram / 2**30, 2)
        return info

    def save_settings(self, new: settings.StudioSettings) -> None:
        self.apply_settings(new)
        settings.save(self.store.root, new)

    def submit_text2image(self, request: text2image.Text2ImageRequest, owner: str | None = None,
                          save: bool = True) -> Job:
        kind = "img2img" if request.init_image is not None else "txt2img"
        return self._submit(text2image.run, request, kind, owner, save)

    def submit_xygrid(self, request: xygrid.XYGridRequest, owner: str | None = None, save: bool = True) -> Job:
        return self._submit(xygrid.run, request, "txt2img", owner, save)

    def submit_inpaint(self, request: inpaint.InpaintRequest, owner: str | None = None, save: bool = True) -> Job:
        return self._submit(inpaint.run, request, "inpaint", owner, save)

    def submit_pointcloud(self, request: pointcloud.PointCloudRequest, owner: str | None = None,
                          save: bool = True) -> Job:
        """Queue a text/image → 3D job; each cloud is saved as a PLY and a GLB."""
        def keep(result):
            return [SavedCloud(*(self.store.save_pointcloud(c.points, c.colors, c.parameters, "pointcloud", str(c.seed))
                                 if save else (None, None)), c) for c in result.clouds]

        return self._queue(pointcloud.run, request, "pointcloud", owner, keep)

    def submit_video(self, request: video.VideoRequest, owner: str | None = None, save: bool = True) -> Job:
        """Queue a text/image → video job; each clip is saved as MP4, GIF, PNG frames and a JSON."""
        def keep(result):
            return [SavedVideo(self.store.save_video(v.frames, v.fps, v.parameters, v.info, "video", str(v.seed))
                               if save else None, v) for v in result.videos]

        return self._queue(video.run, request, "video", owner, keep)

    def submit_upscale(self, request: upscale.UpscaleRequest, owner: str | None = None, save: bool = True) -> Job:
        return self._submit(upscale.run, request, "upscale", owner, save)

    def _submit(self, run, request, kind: str, owner: str | None, save: bool) -> Job:
        """Queue an image job; each finished image is saved (under its own kind, else `kind`)."""
        return self._queue(run, request, kind, owner, lambda result: [
            SavedImage(self.save(g, g.kind or kind) if save else None, g) for g in result.images])

    def _queue(self, run, request, label: str, owner: str | None, keep) -> Job:
        """Queue `run(manager, request, job)`; `keep(result)` saves what it made inside the job, so a
        client that goes away loses nothing."""
        def work(job: Job):
            result = run(self.manager, request, job)
            return keep(result), result.warnings

        return self.jobs.submit(work, owner=owner, label=label)

    def save(self, generated: text2image.GeneratedImage, kind: str) -> Path:
        return self.store.save_image(generated.image, generated.parameters, kind, str(generated.seed),
                                     fmt=self.settings.output_format)


def vram_in_use(device) -> int | None:
    import torch

    return torch.cuda.memory_allocated(device) if device.type == "cuda" else None
