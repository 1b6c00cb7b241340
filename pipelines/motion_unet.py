"""A motion UNet (AnimateDiff) around an already loaded UNet2DConditionModel, sharing its weights.

diffusers' `UNetMotionModel.from_unet2d` copies every spatial weight into a new model: a second
copy of the base UNet in memory. `build_motion_unet` instead builds the motion UNet's skeleton on
the meta device and plugs in the base UNet's own modules (resnets, attentions, samplers, time
embedding, conv in/out) and the adapter's own motion modules, so nothing is copied: the base
model keeps serving text to image, ControlNet and inpainting with the same tensors.

It also carries what `UNetMotionModel` drops: a base UNet with `addition_embed_type="text"`
(the demo model's attention-pooled text embedding added to the timestep embedding) keeps that
embedding, so each frame is denoised exactly as the image model would denoise it.
"""
from __future__ import annotations

import re
from pathlib import Path

import torch
from torch import nn

from pipelines.errors import StudioError

# A motion adapter may bring a LoRA for the base UNet (AnimateDiff v3 ships such a "domain adapter"):
# this file beside the adapter's weights. The video path switches it on; the image tabs switch LoRAs
# per request (pipelines.networks), so text to image never runs with it.
SPATIAL_LORA_FILE = "spatial_lora.safetensors"
SPATIAL_LORA = "motion_spatial"  # its adapter name while training


def _as_list(value, n: int) -> list:
    return list(value) if isinstance(value, (list, tuple)) else [value] * n


def check_adapter_fits(unet, adapter, unet_name: str = "the base model", adapter_name: str = "the motion adapter") -> None:
    """Raise a StudioError naming both models when the adapter's blocks do not fit the UNet's."""
    uc, ac = unet.config, adapter.config
    u_ch, a_ch = list(uc["block_out_channels"]), list(ac["block_out_channels"])
    n = len(u_ch)
    u_layers = _as_list(uc["layers_per_block"], n)
    a_layers = _as_list(ac["motion_layers_per_block"], len(a_ch))
    if u_ch != a_ch or u_layers != a_layers:
        raise StudioError(
            f"Motion adapter '{adapter_name}' does not fit '{unet_name}': its blocks have channels "
            f"{a_ch} and {a_layers} layers each, the model's UNet has {u_ch} and {u_layers}. "
            f"Pick a motion adapter made for this base model (or another base model).")
    groups = ac["motion_norm_num_groups"]
    if any(c % groups for c in a_ch):
        raise StudioError(f"Motion adapter '{adapter_name}': norm groups {groups} do not divide its channels {a_ch}.")
    if uc.get("addition_embed_type") not in (None, "text", "text_time"):
        raise StudioError(f"'{unet_name}' uses addition_embed_type={uc.get('addition_embed_type')!r}, "
                          f"which text to video does not support.")
    if uc.get("class_embed_type") is not None or uc.get("time_cond_proj_dim") is not None:
        raise StudioError(f"'{unet_name}' has class or timestep-condition embeddings, which text to video does not support.")


class TimeAndTextEmbedding(nn.Module):
    """The base UNet's timestep embedding plus its pooled-text embedding (`addition_embed_type="text"`).

    The motion UNet calls `time_embedding(t_emb)` once per clip, before repeating it per frame;
    the prompt embeddings it receives are already repeated per frame (AnimateDiff does that), so
    every `frames`-th row is one clip's prompt."""

    def __init__(self, time_embedding: nn.Module, add_embedding: nn.Module):
        super().__init__()
        self.time_embedding = time_embedding
        self.add_embedding = add_embedding
        self.encoder_hidden_states: torch.Tensor | None = None

    def forward(self, t_emb, condition=None):
        emb = self.time_embedding(t_emb, condition)
        states = self.encoder_hidden_states
        if states is not None:
            if states.shape[0] != emb.shape[0]:
                states = states[:: states.shape[0] // emb.shape[0]]
            emb = emb + self.add_embedding(states).to(emb.dtype)
        return emb


def _remember_prompt(module, args, kwargs):
    states = kwargs.get("encoder_hidden_states", args[2] if len(args) > 2 else None)
    module.time_embedding.encoder_hidden_states = states


def build_motion_unet(unet, adapter, unet_name: str = "the base model", adapter_name: str = "the motion adapter"):
    """UNetMotionModel made of `unet`'s and `adapter`'s own modules (shared, not copied)."""
    from diffusers import UNetMotionModel

    check_adapter_fits(unet, adapter, unet_name, adapter_name)
    if adapter.config.get("conv_in_channels"):
        raise StudioError(f"Motion adapter '{adapter_name}' is a PIA adapter (own input conv), not supported.")
    with torch.device("meta"):
        model = UNetMotionModel.from_unet2d(unet, adapter, load_weights=False)
    model.conv_in = unet.conv_in
    model.time_proj = unet.time_proj
    model.time_embedding = unet.time_embedding
    for mine, theirs in zip(model.down_blocks, unet.down_blocks):
        mine.resnets = theirs.resnets
        if hasattr(mine, "attentions"):
            mine.attentions = theirs.attentions
        mine.downsamplers = theirs.downsamplers
    for mine, theirs in zip(model.up_blocks, unet.up_blocks):
        mine.resnets = theirs.resnets
        if hasattr(mine, "attentions"):
            mine.attentions = theirs.attentions
        mine.upsamplers = theirs.upsamplers
    model.mid_block.resnets = unet.mid_block.resnets
    model.mid_block.attentions = unet.mid_block.attentions
    model.conv_norm_out = unet.conv_norm_out
    model.conv_act = unet.conv_act
    model.conv_out = unet.conv_out
    for mine, theirs in zip(model.down_blocks, adapter.down_blocks):
        mine.motion_modules = theirs.motion_modules
    for mine, theirs in zip(model.up_blocks, adapter.up_blocks):
        mine.motion_modules = theirs.motion_modules
    if hasattr(model.mid_block, "motion_modules"):
        if adapter.mid_block is None:
            raise StudioError(f"Motion adapter '{adapter_name}' has no mid-block motion module.")
        model.mid_block.motion_modules = adapter.mid_block.motion_modules
    if unet.config.get("addition_embed_type") == "text":
        model.time_embedding = TimeAndTextEmbedding(unet.time_embedding, unet.add_embedding)
        model.register_forward_pre_hook(_remember_prompt, with_kwargs=True)
    elif unet.config.get("addition_embed_type") == "text_time":
        model.add_time_proj = unet.add_time_proj
        model.add_embedding = unet.add_embedding
    left = [name for name, t in list(model.named_parameters()) + list(model.named_buffers()) if t.is_meta]
    if left:
        raise StudioError(f"Motion adapter '{adapter_name}' left parts of the motion UNet unset: {left[:3]}")
    model.eval()
    return model


def _check_lora_targets(unet, keys: list[str], adapter_name: str) -> None:
    """Every layer the LoRA's tensor names name must be a layer of `unet`: diffusers only warns about
    the others and loads the rest, which would animate with half a LoRA."""
    layers = {re.sub(r"^unet\.|\.lora_[AB](\.\w+)?\.weight$", "", key) for key in keys}
    names = {name for name, _ in unet.named_modules()}
    missing = sorted(layer for layer in layers if layer not in names)
    if missing:
        raise StudioError(f"The spatial LoRA of motion adapter '{adapter_name}' was made for another base model: "
                          f"this one has no layer {missing[0]!r} ({len(missing)} of its {len(layers)} layers are "
                          f"missing). Pick the base model the adapter was trained on.")


def use_spatial_lora(unet, adapter_dir: Path | None, adapter_name: str, text_encoder=None) -> bool:
    """Switch on the spatial LoRA that the motion adapter in `adapter_dir` brings (loaded into `unet`,
    and into `text_encoder` where it has text-encoder layers, once) and every other LoRA off; without
    one, every LoRA off. True when one is on."""
    path = Path(adapter_dir) / SPATIAL_LORA_FILE if adapter_dir is not None else None
    name = "motion_" + re.sub(r"\W", "_", adapter_name) if path is not None and path.is_file() else None
    if name and name not in (getattr(unet, "peft_config", None) or {}):
        _load_spatial_lora(unet, text_encoder, path, name, adapter_name)
    if name:
        unet.enable_lora()
        unet.set_adapters([name], weights=[1.0])
    elif getattr(unet, "peft_config", None):
        unet.disable_lora()
    _switch_text_encoder_lora(text_encoder, name)
    return name is not None


def _switch_text_encoder_lora(text_encoder, name: str | None) -> None:
    """Only `name` on in the text encoder; every LoRA off when it has no layers of that name."""
    from diffusers.utils.peft_utils import set_adapter_layers, set_weights_and_activate_adapters

    loaded = getattr(text_encoder, "peft_config", None)
    if not loaded:
        return
    set_adapter_layers(text_encoder, enabled=name in loaded)
    if name in loaded:
        set_weights_and_activate_adapters(text_encoder, [name], [1.0])


def _load_spatial_lora(unet, text_encoder, path: Path, name: str, adapter_name: str) -> None:
    """Load the file once into the UNet (and text encoder); all or nothing, so a failure never leaves
    half a LoRA to run with."""
    from safetensors.torch import load_file

    from pipelines.models import check_safetensors

    keys = check_safetensors(path)
    _check_lora_targets(unet, [key for key in keys if not key.startswith("text_encoder.")], adapter_name)
    state = load_file(str(path))
    text_state = {key: value for key, value in state.items() if key.startswith("text_encoder.")}
    if text_state and text_encoder is None:
        raise StudioError(f"The spatial LoRA of motion adapter '{adapter_name}' has text-encoder layers, "
                          f"but the base model has no text encoder to put them in.")
    try:
        unet.load_lora_adapter({key: value for key, value in state.items() if key not in text_state},
                               prefix="unet", adapter_name=name)
        if text_state:
            from diffusers import StableDiffusionPipeline

            StableDiffusionPipeline.load_lora_into_text_encoder(text_state, None, text_encoder, adapter_name=name)
    except (ValueError, KeyError, RuntimeError, TypeError) as error:
        if name in (getattr(unet, "peft_config", None) or {}):
            unet.delete_adapters([name])
        raise StudioError(f"The spatial LoRA of motion adapter '{adapter_name}' does not fit the base "
                          f"model ({str(error)[:200]}).") from None


def motion_state_dict(model) -> dict[str, torch.Tensor]:
    """The motion modules' weights of a motion UNet (what a MotionAdapter saves)."""
    return {k: v for k, v in model.state_dict().items() if "motion_modules" in k}


__all__ = ["build_motion_unet", "check_adapter_fits", "TimeAndTextEmbedding", "motion_state_dict", "use_spatial_lora",
           "SPATIAL_LORA_FILE"]
