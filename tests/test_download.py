"""Hub models download on first use with byte progress, through the real huggingface_hub/diffusers code
against a local stand-in for the hub."""

import shutil
from pathlib import Path

import huggingface_hub.constants as hub_constants
import pytest

from fake_hub import FakeHub
from pipelines import download
from pipelines.engine import Engine
from pipelines.errors import StudioError
from pipelines.text2image import Text2ImageRequest

REPO = "studio-test/tiny-sd"


@pytest.fixture
def hub(models_dir, tmp_path, monkeypatch):
    repo = tmp_path / "repo"
    shutil.copytree(models_dir / "tiny-sd", repo)
    unet = repo / "unet" / "diffusion_pytorch_model.safetensors"
    shutil.copy(unet, unet.with_name("diffusion_pytorch_model.fp16.safetensors"))  # a variant: not needed
    shutil.copy(unet, repo / "v1-pruned.safetensors")  # a single-file copy at the root: not needed
    (repo / "unet" / "diffusion_pytorch_model.bin").write_bytes(b"pickle")  # never fetched
    server = FakeHub({REPO: repo})
    monkeypatch.setattr(hub_constants, "ENDPOINT", server.url)  # what HF_ENDPOINT sets at import
    monkeypatch.setattr(hub_constants, "HUGGINGFACE_CO_URL_TEMPLATE", server.url + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setattr(hub_constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(hub_constants, "HF_HUB_CACHE", str(tmp_path / "cache"))
    yield server
    server.close()


def test_a_hub_model_downloads_on_first_use_with_byte_progress_then_generates(hub, tmp_path):
    engine = Engine(tmp_path / "models", tmp_path / "outputs")
    seen = []
    job = engine.submit_text2image(Text2ImageRequest("a red circle", model=REPO, steps=2, width=64, height=64))
    while not job.wait(0.001):
        if job.note:
            seen.append((job.note, job.step, job.total))
    saved, _ = job.outcome()
    assert saved[0].path.is_file()
    assert seen and seen[-1][0].startswith(f"Downloading {REPO}:")  # the UI shows this line and the bar
    components = sum(hub.files(REPO)[name].stat().st_size for name in hub.served if name != "model_index.json")
    assert {total for _, _, total in seen} == {components}  # the bar's total: every component file
    assert "unet/diffusion_pytorch_model.safetensors" in hub.served and "model_index.json" in hub.served
    for skipped in ("unet/diffusion_pytorch_model.fp16.safetensors", "v1-pruned.safetensors",
                    "unet/diffusion_pytorch_model.bin"):
        assert skipped not in hub.served
    assert job.note == ""
    # second use: from the cache, nothing fetched again
    count = len(hub.served)
    engine.manager.unload()
    engine.submit_text2image(Text2ImageRequest("a red circle", model=REPO, steps=2, width=64, height=64)).outcome()
    assert len(hub.served) == count


def test_the_byte_count_rises_to_the_total(hub):
    from pipelines.jobs import Progress

    class Recorder(Progress):
        reports = []

        def report(self, step, total):
            super().report(step, total)
            self.reports.append((step, total))

    progress = Recorder()
    folder = download.fetch(REPO, progress)
    steps = [step for step, _ in progress.reports]
    total = progress.reports[0][1]
    assert steps == sorted(steps) and steps[-1] == total and len(steps) > 3  # per chunk, never backwards
    assert (Path(folder) / "model_index.json").is_file() and progress.note == ""


def test_a_missing_hub_repo_is_a_clear_error(hub, tmp_path):
    engine = Engine(tmp_path / "models", tmp_path / "outputs")
    job = engine.submit_text2image(Text2ImageRequest("a red circle", model="studio-test/nope", steps=2))
    with pytest.raises(StudioError, match="studio-test/nope"):
        job.outcome()


def test_component_and_file_selection():
    index = {"_class_name": "StableDiffusionPipeline", "unet": ["diffusers", "UNet2DConditionModel"],
             "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"], "image_encoder": [None, None],
             "tokenizer": ["transformers", "CLIPTokenizer"]}
    folders = download.components(index)
    assert folders == ["unet", "tokenizer"]
    assert download.wanted("unet/diffusion_pytorch_model.safetensors", folders)
    assert download.wanted("tokenizer/merges.txt", folders)
    assert not download.wanted("unet/diffusion_pytorch_model.non_ema.safetensors", folders)
    assert not download.wanted("safety_checker/model.safetensors", folders)
    assert not download.wanted("unet/sub/x.safetensors", folders)


def test_stop_during_a_download_ends_it_with_a_resumable_note():
    from pipelines.errors import JobCancelled
    from pipelines.jobs import Progress

    progress = Progress()
    download.report(progress, REPO, 1_500_000, 4_000_000)
    assert progress.note == f"Downloading {REPO}: 1.5 MB of 4.0 MB"
    assert (progress.step, progress.total) == (1_500_000, 4_000_000)
    progress.cancel()
    with pytest.raises(JobCancelled, match="resumes there"):
        download.report(progress, REPO, 2_000_000, 4_000_000)
