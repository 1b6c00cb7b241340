"""Our Point-E-style point-cloud diffusion model and its diffusers pipeline.

A cloud is N points × 6 channels (x, y, z in about [-1, 1]; r, g, b scaled to [-1, 1]). The
denoiser is a plain transformer over the points with the timestep and the text encoder's hidden
states prepended as extra tokens (as Point-E does); it has no positional encoding, so it is
permutation-equivariant and can sample any number of points. Any diffusers scheduler drives it.

    pipe = PointCloudPipeline.from_pretrained("assets/models/shapes-pointcloud")
    out = pipe("a red torus", num_points=512, generator=torch.Generator().manual_seed(0))
    out.points[0], out.colors[0]     # (512, 3) float32, (512, 3) uint8
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass

import numpy as np
import torch
from diffusers import ConfigMixin, DiffusionPipeline, ModelMixin
from diffusers.configuration_utils import register_to_config
from diffusers.models.embeddings import TimestepEmbedding, Timesteps
from diffusers.utils import BaseOutput
from diffusers.utils.torch_utils import randn_tensor
from torch import nn

POINT_CHANNELS = 6  # x, y, z, r, g, b


@dataclass
class DenoiserOutput(BaseOutput):
    sample: torch.Tensor


class PointCloudDenoiser(ModelMixin, ConfigMixin):
    """Predicts the scheduler's target (noise, or v for the demo model) for a (B, N, 6) noisy cloud, given
    timesteps and (B, T, cond_dim) text encoder states."""

    @register_to_config
    def __init__(self, point_channels: int = POINT_CHANNELS, width: int = 128, num_layers: int = 4,
                 num_heads: int = 4, cond_dim: int = 64):
        super().__init__()
        self.time_proj = Timesteps(width, flip_sin_to_cos=True, downscale_freq_shift=0)
        self.time_embed = TimestepEmbedding(width, width)
        self.input_proj = nn.Linear(point_channels, width)
        self.cond_proj = nn.Linear(cond_dim, width)
        self.blocks = nn.ModuleList(
            nn.TransformerEncoderLayer(width, num_heads, 4 * width, dropout=0.0, activation="gelu",
                                       batch_first=True, norm_first=True)
            for _ in range(num_layers))
        self.norm_out = nn.LayerNorm(width)
        self.output_proj = nn.Linear(width, point_channels)
        nn.init.zeros_(self.output_proj.weight)
        nn.init.zeros_(self.output_proj.bias)

    def forward(self, sample: torch.Tensor, timestep, encoder_hidden_states: torch.Tensor,
                return_dict: bool = True):
        batch = sample.shape[0]
        timestep = torch.as_tensor(timestep, device=sample.device).reshape(-1).expand(batch)
        t = self.time_embed(self.time_proj(timestep).to(sample.dtype))  # (B, width)
        cond = self.cond_proj(encoder_hidden_states)
        points = self.input_proj(sample) + t[:, None]
        tokens = torch.cat([t[:, None], cond, points], dim=1)
        for block in self.blocks:
            tokens = block(tokens)
        out = self.output_proj(self.norm_out(tokens[:, 1 + cond.shape[1]:]))
        return DenoiserOutput(sample=out) if return_dict else (out,)


@dataclass
class PointCloudOutput(BaseOutput):
    points: list[np.ndarray]  # per prompt: (N, 3) float32
    colors: list[np.ndarray]  # per prompt: (N, 3) uint8


def to_channels(points: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """(N, 3) xyz + (N, 3) uint8 rgb → the model's (N, 6) float32 space."""
    return np.concatenate([points, colors.astype(np.float32) / 127.5 - 1.0], axis=1).astype(np.float32)


def from_channels(sample: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    rgb = np.clip(np.round((sample[:, 3:] + 1.0) * 127.5), 0, 255).astype(np.uint8)
    return sample[:, :3].astype(np.float32), rgb


class PointCloudPipeline(DiffusionPipeline):
    """Text → coloured point cloud with classifier-free guidance, any diffusers scheduler."""

    model_cpu_offload_seq = "text_encoder->denoiser"

    def __init__(self, denoiser: PointCloudDenoiser, scheduler, text_encoder, tokenizer):
        super().__init__()
        self.register_modules(denoiser=denoiser, scheduler=scheduler, text_encoder=text_encoder,
                              tokenizer=tokenizer)

    @torch.no_grad()
    def encode_prompt(self, prompts: list[str], device) -> torch.Tensor:
        ids = self.tokenizer(prompts, padding="max_length", max_length=self.tokenizer.model_max_length,
                             truncation=True, return_tensors="pt").input_ids.to(device)
        return self.text_encoder(ids)[0].to(self.denoiser.dtype)

    @torch.no_grad()
    def __call__(self, prompt: str | list[str], num_points: int = 512, num_inference_steps: int = 25,
                 guidance_scale: float = 3.0, generator: torch.Generator | list[torch.Generator] | None = None,
                 known: np.ndarray | None = None, callback_on_step_end=None, return_dict: bool = True):
        """`known` (K, 6) channels, optional: points held fixed while the other num_points − K are
        sampled around them (the upsampling stage: coarse cloud in, dense cloud out)."""
        prompts = [prompt] if isinstance(prompt, str) else list(prompt)
        device, dtype = self._execution_device, self.denoiser.dtype
        cond = self.encode_prompt(prompts, device)
        use_cfg = guidance_scale != 1.0
        if use_cfg:
            cond = torch.cat([self.encode_prompt([""] * len(prompts), device), cond])
        shape = (len(prompts), num_points, self.denoiser.config.point_channels)
        latents = randn_tensor(shape, generator=generator, device=device, dtype=dtype)
        self.scheduler.set_timesteps(num_inference_steps, device=device)
        timesteps = self.scheduler.timesteps
        self.num_timesteps = len(timesteps)
        latents = latents * self.scheduler.init_noise_sigma
        fixed = None
        if known is not None:
            fixed = torch.as_tensor(known, device=device, dtype=dtype)[None].expand(len(prompts), -1, -1)
            fixed_noise = latents[:, :fixed.shape[1]].clone()
        # only some schedulers draw noise in step() (and take a generator for it)
        takes_generator = "generator" in inspect.signature(self.scheduler.step).parameters
        step_kwargs = {"generator": generator} if takes_generator else {}
        self._interrupt = False
        for i, t in enumerate(timesteps):
            if self._interrupt:  # set by a step callback (Stop): skip every remaining step
                break
            model_in = torch.cat([latents] * 2) if use_cfg else latents
            model_in = self.scheduler.scale_model_input(model_in, t)
            pred = self.denoiser(model_in, t, cond).sample
            if use_cfg:
                uncond, text = pred.chunk(2)
                pred = uncond + guidance_scale * (text - uncond)
            latents = self.scheduler.step(pred, t, latents, **step_kwargs).prev_sample
            if fixed is not None:
                latents[:, :fixed.shape[1]] = self._noised(fixed, fixed_noise, timesteps, i)
            if callback_on_step_end is not None:
                callback_on_step_end(self, i, t, {"latents": latents})
        clouds = [from_channels(s) for s in latents.float().cpu().numpy()]
        output = PointCloudOutput([c[0] for c in clouds], [c[1] for c in clouds])
        return output if return_dict else (output.points, output.colors)

    def _noised(self, fixed, noise, timesteps, i):
        """The known points at the noise level of the next step (as diffusers' inpainting does)."""
        if i + 1 >= len(timesteps):
            return fixed
        return self.scheduler.add_noise(fixed, noise, timesteps[i + 1:i + 2])
