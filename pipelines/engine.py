"""The studio's back end in one object: model manager, GPU job queue and output store.

The UI and the REST API both submit work here, so there is one way through (DESIGN §2).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines import inpaint, text2image
from pipelines.export import OutputStore
from pipelines.jobs import Job, JobQueue
from pipelines.models import Catalog, ModelManager
from pipelines.runtime import RuntimeOptions


@dataclass
class SavedImage:
    path: Path | None
    generated: text2image.GeneratedImage


class Engine:
    def __init__(self, models_dir: str | Path = "models", outputs_dir: str | Path = "outputs",
                 options: RuntimeOptions | None = None):
        self.manager = ModelManager(Catalog(Path(models_dir)), options)
        self.jobs = JobQueue()
        self.store = OutputStore(outputs_dir)

    def submit_text2image(self, request: text2image.Text2ImageRequest, owner: str | None = None,
                          save: bool = True) -> Job:
        kind = "img2img" if request.init_image is not None else "txt2img"
        return self._submit(text2image.run, request, kind, owner, save)

    def submit_inpaint(self, request: inpaint.InpaintRequest, owner: str | None = None, save: bool = True) -> Job:
        return self._submit(inpaint.run, request, "inpaint", owner, save)

    def _submit(self, run, request, kind: str, owner: str | None, save: bool) -> Job:
        """Queue `run(manager, request, job)`; finished images are saved inside the job, so a client
        that goes away loses nothing."""
        def work(job: Job):
            result = run(self.manager, request, job)
            saved = [SavedImage(self.save(g, kind) if save else None, g) for g in result.images]
            return saved, result.warnings

        return self.jobs.submit(work, owner=owner, label=kind)

    def save(self, generated: text2image.GeneratedImage, kind: str) -> Path:
        return self.store.save_image(generated.image, generated.parameters, kind, str(generated.seed))
