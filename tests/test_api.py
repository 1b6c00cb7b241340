"""A client written against AUTOMATIC1111's documented /sdapi/v1 schema, against the studio."""

import base64
import io
import json
import threading
import time

import httpx
import pytest
from PIL import Image

from conftest import TINY, serve_studio
from pipelines import metadata


@pytest.fixture(scope="module")
def api(engine):
    with serve_studio(engine) as url, httpx.Client(base_url=url.rstrip("/"), timeout=120) as client:
        yield client


def b64png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


A1111_TXT2IMG = {  # as A1111 clients send it, including fields this studio ignores
    "prompt": "a red circle", "negative_prompt": "blurry", "seed": 42, "sampler_name": "DPM++ 2M",
    "scheduler": "Karras", "batch_size": 2, "n_iter": 1, "steps": 3, "cfg_scale": 7, "width": 64, "height": 64,
    "restore_faces": False, "tiling": False, "styles": [], "override_settings": {"sd_model_checkpoint": TINY},
    "send_images": True, "save_images": False, "alwayson_scripts": {},
}


def test_txt2img_returns_images_and_info(api):
    response = api.post("/sdapi/v1/txt2img", json=A1111_TXT2IMG)
    assert response.status_code == 200, response.text
    body = response.json()
    assert len(body["images"]) == 2 and body["parameters"]["prompt"] == "a red circle"
    info = json.loads(body["info"])
    assert info["all_seeds"] == [42, 43] and info["seed"] == 42
    assert info["sampler_name"] == "DPM++ 2M Karras" and info["steps"] == 3 and info["width"] == 64
    image = decode(body["images"][1])
    assert image.size == (64, 64)
    assert metadata.read_parameters(image) == info["infotexts"][1]
    assert "Seed: 43," in info["infotexts"][1] and "Negative prompt: blurry" in info["infotexts"][1]


def test_img2img_and_png_info_round_trip(api):
    source = Image.new("RGB", (64, 64), (10, 200, 30))
    body = api.post("/sdapi/v1/img2img", json={**A1111_TXT2IMG, "batch_size": 1, "init_images": [b64png(source)],
                                               "denoising_strength": 0.4}).json()
    info = json.loads(body["info"])
    assert "Denoising strength: 0.4" in info["infotexts"][0]
    read = api.post("/sdapi/v1/png-info", json={"image": body["images"][0]}).json()
    assert read["info"] == info["infotexts"][0]
    assert read["items"]["Seed"] == "42" and read["items"]["Prompt"] == "a red circle"


def test_txt2img_with_a1111_hires_fields(api):
    body = api.post("/sdapi/v1/txt2img", json={**A1111_TXT2IMG, "batch_size": 1, "enable_hr": True, "hr_scale": 1.5,
                                               "hr_upscaler": "Lanczos", "hr_second_pass_steps": 2,
                                               "denoising_strength": 0.5}).json()
    assert decode(body["images"][0]).size == (96, 96)
    text = json.loads(body["info"])["infotexts"][0]
    assert "Hires upscale: 1.5, Hires steps: 2, Hires upscaler: Lanczos" in text
    restored = metadata.settings_from_parameters(metadata.parse_parameters(text))
    assert restored["enable_hr"] and restored["hr_scale"] == 1.5 and restored["hr_upscaler"] == "Lanczos"


def test_listing_routes(api):
    assert TINY in [m["title"] for m in api.get("/sdapi/v1/sd-models").json()]
    assert {"Euler a", "DPM++ 2M Karras", "DDIM"} <= {s["name"] for s in api.get("/sdapi/v1/samplers").json()}
    assert api.post("/sdapi/v1/options", json={"sd_model_checkpoint": TINY}).status_code == 200
    assert api.get("/sdapi/v1/options").json()["sd_model_checkpoint"] == TINY
    assert api.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"}).status_code == 422
    assert {"Lanczos", "Nearest"} <= {u["name"] for u in api.get("/sdapi/v1/upscalers").json()}
    assert "Latent (bicubic antialiased)" in [m["name"] for m in api.get("/sdapi/v1/latent-upscale-modes").json()]


@pytest.mark.parametrize("field,value", [("steps", "many"), ("width", [64]), ("seed", {"a": 1}),
                                         ("batch_size", 1.5)])
def test_wrong_field_types_get_422_naming_the_field(api, field, value):
    response = api.post("/sdapi/v1/txt2img", json={**A1111_TXT2IMG, field: value})
    assert response.status_code == 422
    assert field in response.text


@pytest.mark.parametrize("change,message", [({"width": 100}, "multiple of 8"), ({"sampler_name": "Nope"}, "sampler"),
                                            ({"override_settings": {"sd_model_checkpoint": "x.ckpt"}}, "pickle")])
def test_bad_values_get_a_clear_422(api, change, message):
    response = api.post("/sdapi/v1/txt2img", json={**A1111_TXT2IMG, **change})
    assert response.status_code == 422 and message in response.json()["detail"]


def test_bad_base64_image_is_a_clear_422(api):
    response = api.post("/sdapi/v1/img2img", json={**A1111_TXT2IMG, "init_images": ["bm90IGFuIGltYWdl"]})
    assert response.status_code == 422 and "init_images[0]" in response.json()["detail"]


def test_interrupt_stops_a_running_job_and_progress_reports_steps(api):
    result = {}
    worker = threading.Thread(target=lambda: result.update(r=api.post(
        "/sdapi/v1/txt2img", json={**A1111_TXT2IMG, "batch_size": 1, "steps": 300, "width": 128, "height": 128})))
    worker.start()
    deadline = time.monotonic() + 60
    state = {}
    while time.monotonic() < deadline:
        state = api.get("/sdapi/v1/progress").json()
        if state["state"]["sampling_step"] >= 3:
            break
        time.sleep(0.05)
    assert state["state"]["sampling_steps"] == 300 and 0 < state["progress"] < 1
    assert api.post("/sdapi/v1/interrupt").status_code == 200
    worker.join(60)
    body = result["r"].json()
    assert result["r"].status_code == 200 and body["images"] == [] and json.loads(body["info"])["interrupted"]


def test_auth_protects_the_rest_api(engine):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from studio.api import register_api

    app = FastAPI()
    register_api(app, engine, auth=("me", "secret"))
    client = TestClient(app)
    assert client.get("/sdapi/v1/samplers").status_code == 401
    assert client.get("/sdapi/v1/samplers", auth=("me", "wrong")).status_code == 401
    assert client.get("/sdapi/v1/samplers", auth=("me", "secret")).status_code == 200


def test_lora_and_embedding_listings(api, models_dir):
    from tiny_models import save_tiny_embedding, save_tiny_lora

    if not (models_dir / "lora" / "paint.safetensors").exists():
        save_tiny_lora(models_dir / "lora" / "paint.safetensors", seed=1)
    if not (models_dir / "embeddings" / "shiny.safetensors").exists():
        save_tiny_embedding(models_dir / "embeddings" / "shiny.safetensors", seed=4)
    assert "paint" in [lora["name"] for lora in api.get("/sdapi/v1/loras").json()]
    assert "shiny" in api.get("/sdapi/v1/embeddings").json()["loaded"]
