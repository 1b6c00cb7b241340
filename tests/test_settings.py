"""Defaults saved in Models & settings survive a restart of the app."""

from gradio_client import Client

from conftest import TINY
from pipelines.engine import Engine
from pipelines.settings import FILE_NAME, StudioSettings


def serve(engine):
    from studio.app import build_app, launch_options

    app = build_app(engine)
    app.queue()
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **launch_options(engine))
    return app, url


def test_settings_persist_across_a_restart_and_apply(models_dir, tmp_path):
    app, url = serve(Engine(models_dir, tmp_path))
    try:
        Client(url, verbose=False).predict(TINY, "DDIM", "webp", 6, 4.5, 72, 80, api_name="/save_settings")
    finally:
        app.close()
    assert (tmp_path / FILE_NAME).is_file()  # inside the outputs dir, the only place the studio writes

    restarted = Engine(models_dir, tmp_path)
    assert restarted.settings == StudioSettings(TINY, "DDIM", 6, 4.5, 72, 80, "webp")
    assert restarted.manager.default_entry.name == TINY
    assert restarted.ui_defaults() == {"sampler": "DDIM", "steps": 6, "cfg_scale": 4.5, "width": 72, "height": 80}
    from pipelines.text2image import Text2ImageRequest

    saved, _ = restarted.submit_text2image(Text2ImageRequest("x", steps=2, width=64, height=64, seed=1)).outcome()
    assert saved[0].path.suffix == ".webp"


def test_a_corrupt_or_stale_settings_file_does_not_stop_the_studio(models_dir, tmp_path):
    (tmp_path / FILE_NAME).write_text('{"default_model": "deleted-model", "steps": 5}')
    engine = Engine(models_dir, tmp_path)
    assert engine.manager.default_entry is not None and engine.manager.default_entry.name != "deleted-model"
    (tmp_path / FILE_NAME).write_text("{not json")
    assert Engine(models_dir, tmp_path).settings == StudioSettings()


def test_unload_frees_the_loaded_model(engine):
    from pipelines.text2image import Text2ImageRequest

    engine.submit_text2image(Text2ImageRequest("x", model=TINY, steps=1, width=64, height=64), save=False).outcome()
    assert engine.manager.loaded is not None and engine.status()["loaded model"] == TINY
    engine.manager.unload()
    assert engine.manager.loaded is None and engine.status()["loaded model"] is None
