"""The real-model path: Shap-E (diffusers' `ShapEPipeline`) text → mesh → coloured point cloud."""

from __future__ import annotations

import numpy as np
import torch

from pipelines.depth3d import normalise
from pipelines.errors import JobCancelled

HUB_ID = "openai/shap-e"


def latents(pipe, prompt: str, *, steps: int, guidance: float, seed: int, progress=None) -> torch.Tensor:
    """Shap-E's denoised latents (the implicit function's parameters) for one prompt.

    ShapEPipeline takes no step callback, so progress and Stop hook the prior's forward instead."""
    calls = [0]

    def before_prior(module, args):
        if progress is not None:
            if progress.cancelled:
                raise JobCancelled()
            calls[0] += 1
            progress.report(min(calls[0], steps), steps)

    hook = pipe.prior.register_forward_pre_hook(before_prior)
    try:
        generator = torch.Generator("cpu").manual_seed(seed)
        return pipe(prompt, num_inference_steps=steps, guidance_scale=guidance, generator=generator,
                    output_type="latent").images
    finally:
        hook.remove()


def decode_mesh(pipe, latent: torch.Tensor):
    """The coloured mesh of one latent (needs a real checkpoint: the marching-cubes tables live in it)."""
    return pipe.shap_e_renderer.decode_to_mesh(latent[None, :], pipe._execution_device)


def mesh_to_cloud(mesh, count: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sample `count` points uniformly over a mesh's area, colours interpolated from its vertices.
    Shap-E is z-up; the studio (and glTF) is y-up, so the cloud is turned to stand upright."""
    verts = np.asarray(_numpy(mesh.verts), np.float64)
    faces = np.asarray(_numpy(mesh.faces), np.int64)
    channels = mesh.vertex_channels
    colors = np.stack([np.asarray(_numpy(channels[c]), np.float64) for c in ("R", "G", "B")], axis=1)
    if len(faces) == 0:
        raise ValueError("the mesh has no faces")
    a, b, c = verts[faces[:, 0]], verts[faces[:, 1]], verts[faces[:, 2]]
    area = np.linalg.norm(np.cross(b - a, c - a), axis=1) / 2
    rng = np.random.default_rng(seed)
    chosen = rng.choice(len(faces), size=count, p=area / area.sum())
    r1, r2 = np.sqrt(rng.random(count)), rng.random(count)
    weights = np.stack([1 - r1, r1 * (1 - r2), r1 * r2], axis=1)  # uniform barycentric coordinates
    tri = faces[chosen]
    points = np.einsum("nk,nkd->nd", weights, verts[tri])
    rgb = np.einsum("nk,nkd->nd", weights, colors[tri])
    upright = np.stack([points[:, 0], points[:, 2], -points[:, 1]], axis=1)
    return normalise(upright), np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


def _numpy(value):
    return value.detach().float().cpu().numpy() if isinstance(value, torch.Tensor) else value
