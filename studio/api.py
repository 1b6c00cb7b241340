"""AUTOMATIC1111-compatible REST routes (`/sdapi/v1/...`) on the studio's own server.

Same field names and response shapes as A1111's API, so its existing clients work unchanged. Each
request becomes the same typed request the UI builds and runs through the same job queue.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import secrets
import time

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBasic, HTTPBasicCredentials
from PIL import Image, UnidentifiedImageError
from pydantic import BaseModel, ConfigDict, Field

from pipelines import hires, metadata, networks
from pipelines.models import UPSCALE
from pipelines.errors import JobCancelled, StudioError
from pipelines.samplers import FLOW_SAMPLERS, SAMPLERS
from pipelines.text2image import VERSION, Text2ImageRequest

MAX_UPLOAD_BYTES = 50 * 1024 * 1024


class Txt2ImgBody(BaseModel):
    model_config = ConfigDict(extra="ignore")  # unknown A1111 fields are accepted and ignored

    prompt: str = ""
    negative_prompt: str = ""
    seed: int = -1
    sampler_name: str | None = None
    sampler_index: str | None = None  # older A1111 clients send the sampler here
    scheduler: str | None = None
    batch_size: int = 1
    n_iter: int = 1
    steps: int | None = None
    cfg_scale: float | None = None
    width: int | None = None
    height: int | None = None
    denoising_strength: float | None = None
    enable_hr: bool = False
    hr_scale: float = 2.0
    hr_upscaler: str | None = None
    hr_second_pass_steps: int = 0
    override_settings: dict = Field(default_factory=dict)
    send_images: bool = True
    save_images: bool = False


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = Field(default_factory=list)
    mask: str | None = None
    resize_mode: int = 0


class PngInfoBody(BaseModel):
    image: str


def register_api(app: FastAPI, engine, auth: tuple[str, str] | None = None) -> None:
    """Add the /sdapi/v1 routes to the running Gradio server's FastAPI app."""
    guard = [Depends(_basic_auth(auth))] if auth else []
    state = {"model": None}

    def model_of(body: Txt2ImgBody) -> str:
        return body.override_settings.get("sd_model_checkpoint") or state["model"] or ""

    def generate(body: Txt2ImgBody, init_image=None) -> dict:
        request = Text2ImageRequest(
            prompt=body.prompt, negative_prompt=body.negative_prompt, model=model_of(body),
            sampler=_sampler_name(body), steps=body.steps, cfg_scale=body.cfg_scale, width=body.width,
            height=body.height, seed=body.seed, batch_count=body.n_iter, batch_size=body.batch_size,
            init_image=init_image,
            strength=0.75 if body.denoising_strength is None else body.denoising_strength,
            enable_hr=body.enable_hr and init_image is None, hr_scale=body.hr_scale,
            hr_upscaler=body.hr_upscaler or "Latent", hr_steps=body.hr_second_pass_steps,
        )
        job = engine.submit_text2image(request, owner="rest-api", save=body.save_images)
        try:
            saved, _warnings = job.outcome()
        except JobCancelled:
            saved = []
        except StudioError as error:
            raise HTTPException(422, str(error)) from None
        return _response(body, saved)

    @app.post("/sdapi/v1/txt2img", dependencies=guard)
    def txt2img(body: Txt2ImgBody):
        return generate(body)

    @app.post("/sdapi/v1/img2img", dependencies=guard)
    def img2img(body: Img2ImgBody):
        if not body.init_images:
            raise HTTPException(422, "init_images: give one base64 image.")
        if body.mask:
            raise HTTPException(422, "mask: inpainting through the API is not supported yet.")
        return generate(body, decode_image(body.init_images[0], "init_images[0]"))

    @app.post("/sdapi/v1/png-info", dependencies=guard)
    def png_info(body: PngInfoBody):
        text = metadata.read_parameters(decode_image(body.image, "image")) or ""
        items = metadata.parse_parameters(text) if text else {}
        return {"info": text, "items": items, "parameters": items}

    @app.get("/sdapi/v1/progress", dependencies=guard)
    def progress():
        job = engine.jobs.current
        step, total = (job.step, job.total) if job else (0, 0)
        return {"progress": step / total if total else 0.0, "eta_relative": 0.0,
                "state": {"skipped": False, "interrupted": bool(job and job.cancelled), "job": job.label if job else "",
                          "job_count": engine.jobs.pending(), "job_timestamp": time.strftime("%Y%m%d%H%M%S"),
                          "job_no": engine.jobs.completed, "sampling_step": step, "sampling_steps": total},
                "current_image": None, "textinfo": None}

    @app.post("/sdapi/v1/interrupt", dependencies=guard)
    def interrupt():
        engine.jobs.cancel()
        return {}

    @app.get("/sdapi/v1/sd-models", dependencies=guard)
    def sd_models():
        return [{"title": e.name, "model_name": e.name, "hash": None, "sha256": None, "filename": e.location,
                 "config": None} for e in engine.manager.catalog.entries("image")]

    @app.get("/sdapi/v1/samplers", dependencies=guard)
    def samplers():
        return [{"name": name, "aliases": [], "options": {}} for name in [*SAMPLERS, *FLOW_SAMPLERS]]

    @app.get("/sdapi/v1/upscalers", dependencies=guard)
    def upscalers():  # the names `hr_upscaler` takes (A1111 lists its pixel upscalers here)
        pixel = [{"name": name, "model_name": None, "model_path": None, "model_url": None, "scale": 4}
                 for name in hires.PIXEL_UPSCALERS]
        return pixel + [{"name": e.name, "model_name": e.name, "model_path": e.location, "model_url": None,
                         "scale": 4} for e in engine.manager.catalog.entries(UPSCALE)]

    @app.get("/sdapi/v1/latent-upscale-modes", dependencies=guard)
    def latent_upscale_modes():
        return [{"name": name} for name in hires.LATENT_UPSCALERS]

    @app.get("/sdapi/v1/loras", dependencies=guard)
    def loras():  # the route of A1111's built-in Lora extension
        found = networks.files(engine.manager.catalog.models_dir, networks.LORA_DIR)
        return [{"name": name, "alias": name, "path": str(path), "metadata": {}} for name, path in found.items()]

    @app.get("/sdapi/v1/embeddings", dependencies=guard)
    def embeddings():
        found = networks.embedding_names(engine.manager.catalog.models_dir)
        return {"loaded": {name: {"step": None, "sd_checkpoint": None, "sd_checkpoint_name": None, "shape": None,
                                  "vectors": None} for name in found}, "skipped": {}}

    @app.get("/sdapi/v1/options", dependencies=guard)
    def get_options():
        current = state["model"] or (engine.manager.default_entry.name if engine.manager.default_entry else None)
        return {"sd_model_checkpoint": current, "samples_format": "png"}

    @app.post("/sdapi/v1/options", dependencies=guard)
    def set_options(options: dict):
        if "sd_model_checkpoint" in options:
            try:
                state["model"] = engine.manager.entry(str(options["sd_model_checkpoint"])).name
            except StudioError as error:
                raise HTTPException(422, str(error)) from None
        return None


def _sampler_name(body: Txt2ImgBody) -> str | None:
    name = body.sampler_name or body.sampler_index
    # A1111 ≥ 1.9 sends the schedule separately: "DPM++ 2M" + scheduler "Karras" = "DPM++ 2M Karras".
    if name and body.scheduler and body.scheduler.lower() == "karras" and (f"{name} Karras" in SAMPLERS
                                                                         or f"{name} Karras" in FLOW_SAMPLERS):
        return f"{name} Karras"
    return name


def decode_image(data: str, field: str) -> Image.Image:
    if "," in data[:100] and data.startswith("data:"):
        data = data.split(",", 1)[1]
    if len(data) > MAX_UPLOAD_BYTES * 4 // 3 + 4:
        raise HTTPException(413, f"{field}: the image is larger than {MAX_UPLOAD_BYTES // 2**20} MB.")
    try:
        image = Image.open(io.BytesIO(base64.b64decode(data, validate=False)))
        image.load()
    except (binascii.Error, UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as error:
        raise HTTPException(422, f"{field}: not a readable base64 image ({type(error).__name__}).") from None
    return image


def _response(body: Txt2ImgBody, saved) -> dict:
    infotexts = [s.generated.parameters for s in saved]
    seeds = [s.generated.seed for s in saved]
    images = [_encode_png(s.generated.image, s.generated.parameters) for s in saved] if body.send_images else []
    first = metadata.parse_parameters(infotexts[0]) if infotexts else {}
    info = {
        "prompt": body.prompt, "all_prompts": [body.prompt] * len(saved), "negative_prompt": body.negative_prompt,
        "all_negative_prompts": [body.negative_prompt] * len(saved), "seed": seeds[0] if seeds else body.seed,
        "all_seeds": seeds, "subseed": -1, "all_subseeds": [-1] * len(saved), "subseed_strength": 0,
        "width": int(first.get("Size-1", body.width or 0)), "height": int(first.get("Size-2", body.height or 0)),
        "sampler_name": first.get("Sampler"), "cfg_scale": float(first.get("CFG scale", 0) or 0),
        "steps": int(first.get("Steps", 0) or 0), "batch_size": body.batch_size, "restore_faces": False,
        "sd_model_name": first.get("Model"), "denoising_strength": body.denoising_strength,
        "extra_generation_params": {}, "index_of_first_image": 0, "infotexts": infotexts, "styles": [],
        "job_timestamp": time.strftime("%Y%m%d%H%M%S"), "clip_skip": 1, "version": VERSION,
        "interrupted": not saved,
    }
    return {"images": images, "parameters": body.model_dump(), "info": json.dumps(info)}


def _encode_png(image: Image.Image, parameters: str) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "PNG", pnginfo=metadata.png_info(parameters))
    return base64.b64encode(buffer.getvalue()).decode()


def _basic_auth(auth: tuple[str, str]):
    security = HTTPBasic()

    def check(credentials: HTTPBasicCredentials = Depends(security)):
        user_ok = secrets.compare_digest(credentials.username.encode(), auth[0].encode())
        pass_ok = secrets.compare_digest(credentials.password.encode(), auth[1].encode())
        if not (user_ok and pass_ok):
            raise HTTPException(401, "Wrong user name or password.", headers={"WWW-Authenticate": "Basic"})

    return check
