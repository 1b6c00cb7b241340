"""Hostile input and faults against the served app: bad uploads, decompression bombs, oversized
uploads, auth on every route, a client that goes away, and the visible queue position."""

import base64
import io
import json
import struct
import threading
import time
import zlib

import httpx
import pytest
from gradio_client import Client, handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from conftest import TINY, serve_studio
from pipelines.jobs import JobQueue


@pytest.fixture(scope="module")
def served(engine):
    with serve_studio(engine) as url:
        yield url


def png_bomb(width=40_000, height=40_000) -> bytes:
    """A tiny PNG whose header claims a huge image (a decompression bomb)."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")


def png_bytes(size=(64, 64)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, "red").save(out, "PNG")
    return out.getvalue()


BAD_UPLOADS = {
    "zero-byte.png": b"",
    "not-an-image.png": b"hello, I am text",
    "truncated.png": png_bytes()[:60],
    "bomb.png": png_bomb(),
}


def outputs(engine) -> set:
    return {p for p in engine.store.root.rglob("*") if p.is_file()}


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_uploads_to_the_ui_are_one_clear_error_and_nothing_is_written(served, engine, tmp_path, name):
    path = tmp_path / name
    path.write_bytes(BAD_UPLOADS[name])
    before = outputs(engine)
    client = Client(served, verbose=False)
    args = ["a red circle", "", TINY, "Euler a", 2, 7, 64, 64, 1, 1, 1, handle_file(str(path)), 0.75]
    with pytest.raises(AppError) as raised:
        client.predict(*args, api_name="/txt2img")
    message = str(raised.value)
    assert "Traceback" not in message and len(message) < 400
    assert outputs(engine) == before
    client.predict("a red circle", "", TINY, "Euler a", 1, 7, 64, 64, 1, 1, 1, None, 0.75, api_name="/txt2img")


@pytest.mark.parametrize("name", list(BAD_UPLOADS))
def test_bad_images_to_the_rest_api_are_a_422(served, name):
    body = {"prompt": "a red circle", "steps": 1, "width": 64, "height": 64,
            "init_images": [base64.b64encode(BAD_UPLOADS[name]).decode()]}
    response = httpx.post(f"{served}sdapi/v1/img2img", json=body, timeout=60)
    assert response.status_code == 422 and "image" in response.text.lower()


def test_uploads_beyond_the_size_limit_are_refused(served):
    big = io.BytesIO(b"\0" * (51 * 1024 * 1024))
    response = httpx.post(f"{served}gradio_api/upload", files={"files": ("big.png", big, "image/png")}, timeout=60)
    assert response.status_code == 413


def test_a_client_that_goes_away_loses_nothing_and_the_worker_goes_on(served, engine):
    before = outputs(engine)
    body = {"prompt": "a client that leaves", "steps": 40, "width": 64, "height": 64, "save_images": True,
            "override_settings": {"sd_model_checkpoint": TINY}}
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{served}sdapi/v1/txt2img", json=body, timeout=0.5)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not (outputs(engine) - before):
        time.sleep(0.2)
    written = outputs(engine) - before
    assert written, "the finished image of a departed client was not saved"
    for path in written:
        Image.open(path).verify()  # complete, not partial
    again = httpx.post(f"{served}sdapi/v1/txt2img", json={**body, "steps": 1}, timeout=120)
    assert again.status_code == 200 and again.json()["images"]


def test_unicode_prompts_round_trip_through_the_rest_api(served):
    prompt = "ünïcødé 🌈 circle, 日本語"
    body = {"prompt": prompt, "negative_prompt": "ネガティブ", "steps": 1, "width": 64, "height": 64,
            "override_settings": {"sd_model_checkpoint": TINY}}
    response = httpx.post(f"{served}sdapi/v1/txt2img", json=body, timeout=120)
    assert response.status_code == 200
    info = json.loads(response.json()["info"])
    assert info["prompt"] == prompt and info["infotexts"][0].startswith(prompt)


def test_queue_position_is_visible_while_waiting():
    queue, release = JobQueue(), threading.Event()
    first = queue.submit(lambda job: release.wait(10))
    second, third = queue.submit(lambda job: None), queue.submit(lambda job: None)
    deadline = time.monotonic() + 5
    while queue.current is None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert (queue.position(first), queue.position(second), queue.position(third)) == (0, 1, 2)
    release.set()
    third.outcome()
    assert queue.position(third) == 0


def test_auth_covers_the_ui_the_gradio_api_and_rest(engine):
    with serve_studio(engine, auth=("me", "secret")) as url:
        assert httpx.get(f"{url}config").status_code in (401, 403)
        assert httpx.get(f"{url}gradio_api/info").status_code in (401, 403)
        assert httpx.get(f"{url}sdapi/v1/samplers").status_code == 401
        with pytest.raises(Exception):
            Client(url, verbose=False).predict(api_name="/stop")
        assert Client(url, auth=("me", "secret"), verbose=False).view_api(return_format="dict")
