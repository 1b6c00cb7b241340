"""20 clients at once, gradio_client and A1111 REST mixed: all served, in order, one job at a time."""

import threading

import httpx
import pytest
from gradio_client import Client

from conftest import TINY


@pytest.fixture(scope="module")
def server(engine):
    from studio.api import register_api
    from studio.app import build_app, launch_options

    app = build_app(engine)
    app.queue(max_size=64)
    fastapi_app, url, _ = app.launch(server_name="127.0.0.1", prevent_thread_lock=True, quiet=True,
                                     **launch_options(engine))
    register_api(fastapi_app, engine)
    yield url.rstrip("/")
    app.close()


def test_twenty_mixed_clients_all_complete_once_one_job_at_a_time(server, engine):
    running, overlap, lock = [0], [False], threading.Lock()
    original_run = engine.jobs._run

    def watched(job):
        with lock:
            running[0] += 1
            overlap[0] |= running[0] > 1
        try:
            original_run(job)
        finally:
            with lock:
                running[0] -= 1

    engine.jobs._run = watched
    results, errors = {}, []

    def via_gradio(i):
        try:
            _, info = Client(server, verbose=False).predict(
                f"client {i}", "", TINY, "Euler a", 2, 7, 64, 64, 1000 + i, 1, 1, None, 0.75, api_name="/txt2img")
            results[i] = info
        except Exception as error:  # noqa: BLE001 - collected and asserted on below
            errors.append((i, repr(error)))

    def via_rest(i):
        try:
            body = httpx.post(f"{server}/sdapi/v1/txt2img", timeout=300, json={
                "prompt": f"client {i}", "steps": 2, "width": 64, "height": 64, "seed": 1000 + i,
                "sampler_name": "Euler a", "override_settings": {"sd_model_checkpoint": TINY}}).json()
            results[i] = __import__("json").loads(body["info"])["infotexts"][0]
        except Exception as error:  # noqa: BLE001
            errors.append((i, repr(error)))

    before = engine.jobs.completed
    threads = [threading.Thread(target=via_gradio if i % 2 else via_rest, args=(i,)) for i in range(20)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(300)
    finally:
        engine.jobs._run = original_run
    assert errors == []
    assert sorted(results) == list(range(20))
    for i, info in results.items():  # each client got its own image, not someone else's
        assert info.startswith(f"client {i}\n") and f"Seed: {1000 + i}," in info
    assert engine.jobs.completed - before == 20  # none lost, none run twice
    assert not overlap[0], "two jobs ran on the GPU worker at once"
