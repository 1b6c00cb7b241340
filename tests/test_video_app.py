"""The Video tab served on 127.0.0.1 and driven through gradio_client (the `/video` endpoint)."""

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError

from conftest import TINY
from tiny_video import save_tiny_motion_adapter


@pytest.fixture(scope="module")
def served(engine, models_dir):
    from studio.app import build_app, launch_options

    if not (models_dir / "motion" / "tiny-adapter").exists():
        save_tiny_motion_adapter(models_dir / "motion" / "tiny-adapter")
    app = build_app(engine)
    app.queue()
    _, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True, **launch_options(engine))
    yield url
    app.close()


def video_args(mode="Text → video", prompt="a red circle", frames=4, fps=6, image=None):
    # mode, prompt, negative, base model, video model, image, frames, fps, motion, seed, sampler, steps, cfg,
    # noise augmentation, decode chunk, width, height, frame noise
    return [mode, prompt, "", TINY, "motion/tiny-adapter", image, frames, fps, 127, 3, "Euler", 2, 5.0, 0.02, 2,
            64, 64, "shared"]


def test_video_endpoint_returns_a_playable_mp4_downloads_and_frames(served):
    import imageio.v3 as iio

    player, files, frames, info = Client(served, verbose=False).predict(*video_args(), api_name="/video")
    path = player["video"] if isinstance(player, dict) else player
    assert path.endswith(".mp4") and iio.imread(path).shape == (4, 64, 64, 3)
    assert sorted(f.rsplit(".", 1)[1] for f in files) == ["gif", "json", "mp4"]
    assert len(frames) == 4
    assert info.startswith("a red circle\nMode: text to video, Steps: 2, Sampler: Euler") and "Frames: 4" in info


@pytest.mark.parametrize("args, message", [
    (video_args(frames=64), "greater than maximum value 32"),  # Gradio's own slider check
    (video_args(prompt=" "), "Text → video needs a prompt"),
    (video_args(mode="Image → video"), "Image → video needs an image"),
])
def test_video_bad_input_is_one_clear_message(served, args, message):
    with pytest.raises(AppError, match=message):
        Client(served, verbose=False).predict(*args, api_name="/video")
