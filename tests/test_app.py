"""The real app served on 127.0.0.1, driven through gradio_client as a script or another app would."""

import subprocess
import sys
import time

import pytest
from gradio_client import Client
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import ROOT, TINY, serve_studio
from pipelines import metadata


@pytest.fixture(scope="module")
def served(engine):
    with serve_studio(engine) as url:
        yield url


def txt2img_args(prompt="a red circle", steps=3, width=64, height=64, seed=11, batch_size=1):
    # prompt, negative, model, sampler, steps, cfg, width, height, seed, batch count, batch size, init, strength
    return [prompt, "", TINY, "Euler a", steps, 7, width, height, seed, 1, batch_size, None, 0.75]


def test_server_listens_on_loopback_only(served):
    assert served.startswith("http://127.0.0.1:")


def test_txt2img_endpoint_returns_png_with_metadata(served):
    gallery, info = Client(served, verbose=False).predict(*txt2img_args(batch_size=2), api_name="/txt2img")
    assert len(gallery) == 2
    image = Image.open(gallery[1]["image"])
    assert image.format == "PNG" and image.size == (64, 64)
    params = metadata.parse_parameters(metadata.read_parameters(image))
    assert params["Prompt"] == "a red circle" and params["Seed"] == "12" and params["Sampler"] == "Euler a"
    assert info.startswith("a red circle\nSteps: 3, Sampler: Euler a")


def test_stop_ends_a_long_job_within_two_steps_and_the_next_job_runs(served, engine):
    steps_seen = []
    pipe = engine.manager.pipeline(engine.manager.entry(TINY), "text2image")
    hook = pipe.unet.register_forward_hook(lambda *args: steps_seen.append(time.monotonic()))
    try:
        client = Client(served, verbose=False)
        long_job = client.submit(*txt2img_args(steps=200, width=128, height=128), api_name="/txt2img")
        deadline = time.monotonic() + 60
        while len(steps_seen) < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(steps_seen) >= 5, "the long job never started"
        client.predict(api_name="/stop")
        at_stop = len(steps_seen)
        with pytest.raises(AppError, match="Stopped"):
            long_job.result(timeout=60)
        assert len(steps_seen) - at_stop <= 2, f"{len(steps_seen) - at_stop} steps ran after Stop"
        assert len(steps_seen) < 200
    finally:
        hook.remove()
    gallery, _ = client.predict(*txt2img_args(steps=2), api_name="/txt2img")
    assert len(gallery) == 1


@pytest.mark.parametrize("args,message", [
    (dict(width=100), "multiple of 8"),
    (dict(steps=0), "minimum value 1|Steps must be"),
])
def test_bad_input_comes_back_as_a_clear_error(served, args, message):
    with pytest.raises(AppError, match=message):
        Client(served, verbose=False).predict(*txt2img_args(**args), api_name="/txt2img")


def test_unknown_model_and_pickle_checkpoint_are_refused_through_the_ui(served):
    client = Client(served, verbose=False)
    for model, message in (("nope-model", "Unknown model"), ("evil.ckpt", "pickle")):
        args = txt2img_args()
        args[2] = model
        with pytest.raises(AppError, match=message):
            client.predict(*args, api_name="/txt2img")


def test_launch_help_documents_every_flag():
    out = subprocess.run([sys.executable, "launch.py", "--help"], cwd=ROOT, capture_output=True, text=True,
                         timeout=60).stdout
    for flag in ("--host", "--port", "--listen", "--auth", "--device", "--precision", "--attention-slicing",
                 "--models-dir", "--outputs-dir", "--help"):
        assert flag in out
    assert "default 127.0.0.1" in out


def test_listen_binds_all_interfaces_and_warns_without_auth():
    import launch

    assert launch.bind_host(launch.parse_args([])) == ("127.0.0.1", None)
    host, warning = launch.bind_host(launch.parse_args(["--listen"]))
    assert host == "0.0.0.0" and "without --auth" in warning
    assert launch.bind_host(launch.parse_args(["--listen", "--auth", "me:secret"])) == ("0.0.0.0", None)
    with pytest.raises(SystemExit):
        launch.parse_args(["--auth", "no-colon"])


def test_launch_py_serves_on_127_0_0_1_by_default(models_dir, tmp_path):
    import psutil
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([sys.executable, "launch.py", "--port", str(port), "--models-dir", str(models_dir),
                             "--outputs-dir", str(tmp_path / "out")], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline, listening = time.monotonic() + 120, []
        while not listening and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.5)
            listening = [c.laddr for c in psutil.Process(proc.pid).net_connections("inet")
                         if c.status == psutil.CONN_LISTEN and c.laddr.port == port]
        assert listening, "launch.py did not start listening"
        assert [a.ip for a in listening] == ["127.0.0.1"]
        assert "Diffusion Studio" in __import__("httpx").get(f"http://127.0.0.1:{port}/", timeout=30).text
    finally:
        proc.terminate()
        proc.wait(30)


def pointcloud_args(points=128, mode="Text → 3D", prompt="a blue cube"):
    # mode, prompt, model, points, guidance, steps, seed, sampler, upsample to, image, depth map
    return [mode, prompt, "", points, 3, 4, 7, "DDIM", 0, None, None]


def test_pointcloud_endpoint_returns_the_viewer_file_and_ply_glb_downloads(served):
    import plyfile

    viewer, files, info = Client(served, verbose=False).predict(*pointcloud_args(), api_name="/pointcloud")
    assert viewer.endswith(".ply") and sorted(f.rsplit(".", 1)[1] for f in files) == ["glb", "ply"]
    cloud = plyfile.PlyData.read(viewer)
    assert len(cloud["vertex"].data) == 128 and cloud.comments[0] == "a blue cube"
    assert info.startswith("a blue cube\nMode: text, Steps: 4, Sampler: DDIM") and "Seed: 7" in info


@pytest.mark.parametrize("args, message", [
    (pointcloud_args(points=100_000), "greater than maximum value 16384"),  # Gradio's own slider check
    (pointcloud_args(prompt=" "), "Text → 3D needs a prompt"),
    (pointcloud_args(mode="Image → 3D"), "Image → 3D needs an image"),
])
def test_pointcloud_bad_input_is_one_clear_message(served, args, message):
    with pytest.raises(AppError, match=message):
        Client(served, verbose=False).predict(*args, api_name="/pointcloud")
