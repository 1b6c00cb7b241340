"""First use of a hub model: download what the pipeline needs, showing bytes done in the job's progress.

Only the components named in `model_index.json` are fetched (not the safety checker, which the
studio does not use), and of their weights only the full-precision .safetensors (no fp16/EMA
variants, no pickle files, no single-file checkpoint at the repo root). A stopped or failed
download resumes where it left off next time (the hub cache keeps partial files).
"""

from __future__ import annotations

import io
import json
from fnmatch import fnmatch
from pathlib import Path

from tqdm.auto import tqdm

from pipelines.errors import JobCancelled, StudioError
from pipelines.jobs import running_job

FILE_PATTERNS = ("*.json", "*.txt", "*.model", "*.safetensors")
SKIPPED = ("*.fp16.*", "*.bf16.*", "*non_ema*", "*.ema.*")
UNUSED_COMPONENTS = {"safety_checker"}


def components(model_index: dict) -> list[str]:
    """The component folders a pipeline loads: entries with a library and class."""
    return [name for name, value in model_index.items()
            if not name.startswith("_") and name not in UNUSED_COMPONENTS
            and isinstance(value, list) and len(value) == 2 and value[1]]


def wanted(filename: str, folders: list[str]) -> bool:
    folder, _, name = filename.partition("/")
    return (folder in folders and "/" not in name and any(fnmatch(name, p) for p in FILE_PATTERNS)
            and not any(fnmatch(name, p) for p in SKIPPED))


def human(size: float) -> str:
    for unit in ("B", "kB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return ""


def fetch(repo_id: str, progress=None) -> str:
    """Download `repo_id` into the hub cache, reporting bytes to `progress` (default: the running job);
    the snapshot folder."""
    from huggingface_hub import HfApi, hf_hub_download

    progress = progress or running_job()
    info = HfApi().model_info(repo_id, files_metadata=True)
    sizes = {s.rfilename: s.size or 0 for s in info.siblings or []}
    if "model_index.json" not in sizes:
        raise StudioError(f"'{repo_id}' on the hub is not a diffusers pipeline (it has no model_index.json).")
    index = hf_hub_download(repo_id, "model_index.json", revision=info.sha)
    with open(index, encoding="utf-8") as f:
        folders = components(json.load(f))
    files = sorted(name for name in sizes if wanted(name, folders))
    total, done = sum(sizes[name] for name in files), 0
    try:
        for name in files:
            hf_hub_download(repo_id, name, revision=info.sha, tqdm_class=reporting_bar(progress, repo_id, done, total))
            done += sizes[name]
            report(progress, repo_id, done, total)
    finally:
        if progress is not None:
            progress.note = ""
    return str(Path(index).parent)


def report(progress, repo_id: str, done: int, total: int) -> None:
    if progress is None:
        return
    if progress.cancelled:
        raise JobCancelled(f"Download of {repo_id} stopped at {human(done)} of {human(total)}; it resumes there.")
    progress.note = f"Downloading {repo_id}: {human(done)} of {human(total)}"
    progress.report(done, total)


def reporting_bar(progress, repo_id: str, before: int, total: int):
    """A tqdm class for one file's download that reports the bytes of the whole model so far."""
    class Bar(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs.pop("name", None)
            super().__init__(*args, **{**kwargs, "file": io.StringIO()})  # the UI shows it, not the console

        def update(self, n=1):
            super().update(n)
            report(progress, repo_id, before + self.n, total)

    return Bar
