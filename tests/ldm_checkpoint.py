"""Write a diffusers SD 1.x pipeline as an original (CompVis/LDM-layout) single-file checkpoint.

Test helper only: it lets the tests check the studio's `.safetensors` single-file loading on a tiny
model made here, since no real checkpoint can be downloaded. The layout is the inverse of diffusers'
`convert_ldm_*_checkpoint`, so a wrong mapping makes the round-trip test fail.
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

RESNET = [("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("time_emb_proj", "emb_layers.1"),
          ("norm2", "out_layers.0"), ("conv2", "out_layers.3"), ("conv_shortcut", "skip_connection")]
VAE_ATTENTION = [("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"), ("to_out.0", "proj_out")]


def unet_prefix_map(config) -> list[tuple[str, str]]:
    layers, blocks = config["layers_per_block"], len(config["block_out_channels"])
    pairs = [("time_embedding.linear_1.", "time_embed.0."), ("time_embedding.linear_2.", "time_embed.2."),
             ("conv_in.", "input_blocks.0.0."), ("conv_norm_out.", "out.0."), ("conv_out.", "out.2."),
             ("mid_block.resnets.0.", "middle_block.0."), ("mid_block.attentions.0.", "middle_block.1."),
             ("mid_block.resnets.1.", "middle_block.2.")]
    for i in range(blocks):
        for j in range(layers):
            k = 1 + i * (layers + 1) + j
            pairs += [(f"down_blocks.{i}.resnets.{j}.", f"input_blocks.{k}.0."),
                      (f"down_blocks.{i}.attentions.{j}.", f"input_blocks.{k}.1.")]
        pairs.append((f"down_blocks.{i}.downsamplers.0.conv.", f"input_blocks.{1 + i * (layers + 1) + layers}.0.op."))
        has_attention = config["up_block_types"][i].startswith("CrossAttn")
        for j in range(layers + 1):
            k = i * (layers + 1) + j
            pairs += [(f"up_blocks.{i}.resnets.{j}.", f"output_blocks.{k}.0."),
                      (f"up_blocks.{i}.attentions.{j}.", f"output_blocks.{k}.1.")]
        pairs.append((f"up_blocks.{i}.upsamplers.0.", f"output_blocks.{i * (layers + 1) + layers}."
                                                       f"{2 if has_attention else 1}."))
    return pairs


def vae_prefix_map(config) -> list[tuple[str, str]]:
    blocks, layers = len(config["block_out_channels"]), config["layers_per_block"]
    pairs = [("encoder.conv_norm_out.", "encoder.norm_out."), ("decoder.conv_norm_out.", "decoder.norm_out.")]
    for part in ("encoder", "decoder"):
        pairs += [(f"{part}.mid_block.resnets.0.", f"{part}.mid.block_1."),
                  (f"{part}.mid_block.resnets.1.", f"{part}.mid.block_2."),
                  (f"{part}.mid_block.attentions.0.", f"{part}.mid.attn_1.")]
    for i in range(blocks):
        for j in range(layers):
            pairs.append((f"encoder.down_blocks.{i}.resnets.{j}.", f"encoder.down.{i}.block.{j}."))
        pairs.append((f"encoder.down_blocks.{i}.downsamplers.0.", f"encoder.down.{i}.downsample."))
        for j in range(layers + 1):
            pairs.append((f"decoder.up_blocks.{i}.resnets.{j}.", f"decoder.up.{blocks - 1 - i}.block.{j}."))
        pairs.append((f"decoder.up_blocks.{i}.upsamplers.0.", f"decoder.up.{blocks - 1 - i}.upsample."))
    return pairs


def _rename(key: str, pairs, inner) -> str:
    for new, old in pairs:
        if key.startswith(new):
            rest = key[len(new):]
            for a, b in inner:
                if rest.startswith(a + "."):
                    rest = b + rest[len(a):]
            return old + rest
    return key


def export_ldm_checkpoint(pipe, path: Path) -> Path:
    state: dict[str, torch.Tensor] = {}
    unet_pairs = unet_prefix_map(pipe.unet.config)
    for key, value in pipe.unet.state_dict().items():
        inner = RESNET if ".resnets." in key else []
        state["model.diffusion_model." + _rename(key, unet_pairs, inner)] = value
    vae_pairs = vae_prefix_map(pipe.vae.config)
    for key, value in pipe.vae.state_dict().items():
        inner = [("conv_shortcut", "nin_shortcut")] if ".resnets." in key else VAE_ATTENTION if "attentions" in key else []
        if "attentions" in key and value.ndim == 2:
            value = value[:, :, None, None]  # LDM's VAE attention uses 1×1 convolutions
        state["first_stage_model." + _rename(key, vae_pairs, inner)] = value
    for key, value in pipe.text_encoder.state_dict().items():
        key = key if key.startswith("text_model.") else "text_model." + key  # as in original checkpoints
        state["cond_stage_model.transformer." + key] = value
    save_file({k: v.contiguous() for k, v in state.items()}, str(path))
    return path
