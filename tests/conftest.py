import os

os.environ["HF_HUB_OFFLINE"] = "1"  # the hub is unreachable here and in CI: never try it
os.environ["TOKENIZERS_PARALLELISM"] = "false"
os.environ.setdefault("GRADIO_ANALYTICS_ENABLED", "False")

import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "tests"))

from tiny_models import save_tiny_sd  # noqa: E402

TINY = "tiny-sd"


@pytest.fixture(scope="session")
def models_dir(tmp_path_factory) -> Path:
    """A models dir holding a tiny random SD 1.x-style diffusers folder named `tiny-sd`."""
    folder = tmp_path_factory.mktemp("models")
    save_tiny_sd(folder / TINY)
    return folder


@pytest.fixture(scope="session")
def engine(models_dir, tmp_path_factory):
    from pipelines.engine import Engine

    return Engine(models_dir, tmp_path_factory.mktemp("outputs"))


@pytest.fixture(scope="module")
def demo_engine(tmp_path_factory):
    """An engine with an empty models dir: its default is the built-in demo model."""
    from pipelines.engine import Engine

    engine = Engine(tmp_path_factory.mktemp("models"), tmp_path_factory.mktemp("outputs"))
    assert engine.manager.default_entry.source == "demo"
    return engine


@contextmanager
def serve_studio(engine, auth: tuple[str, str] | None = None):
    """The studio app with its REST API, served on 127.0.0.1 as launch.py serves it; yields the URL."""
    from studio.api import register_api
    from studio.app import build_app, launch_options

    app = build_app(engine)
    app.queue()
    server, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, auth=auth,
                                **launch_options(engine))
    register_api(server, engine, auth)
    try:
        yield url
    finally:
        app.close()
