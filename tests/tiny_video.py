"""Tiny randomly initialised video components (like diffusers' own `get_dummy_components`), saved to folders."""

from __future__ import annotations

from pathlib import Path

import torch


def save_tiny_motion_adapter(folder: Path, block_out_channels=(32, 64), seed: int = 0) -> Path:
    """A MotionAdapter for the tiny SD UNet of tiny_models (channels 32/64, one layer per block);
    its output projections are random (not zero) so the motion modules act."""
    from diffusers import MotionAdapter

    torch.manual_seed(seed)
    adapter = MotionAdapter(block_out_channels=tuple(block_out_channels), motion_layers_per_block=1,
                            motion_num_attention_heads=2, motion_norm_num_groups=16, motion_max_seq_length=16)
    adapter.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_spatial_lora(folder: Path, base: Path, seed: int = 0) -> Path:
    """A spatial LoRA for the base UNet in `base` beside a motion adapter in `folder`, as the demo
    adapter's training writes it; random (not zero) so it acts."""
    from diffusers import UNet2DConditionModel
    from transformers import CLIPTextModel

    from pipelines.demo.train_motion import add_spatial_lora, save_spatial_lora

    unet = UNet2DConditionModel.from_pretrained(base / "unet")
    text_encoder = CLIPTextModel.from_pretrained(base / "text_encoder")
    torch.manual_seed(seed)
    with torch.no_grad():
        for p in add_spatial_lora(unet, text_encoder).values():
            p.normal_(0, 0.3)
    return save_spatial_lora(unet, folder, text_encoder)


def svd_components() -> dict:
    from diffusers import (AutoencoderKLTemporalDecoder, EulerDiscreteScheduler,
                           UNetSpatioTemporalConditionModel)
    from transformers import CLIPImageProcessor, CLIPVisionConfig, CLIPVisionModelWithProjection

    torch.manual_seed(0)
    unet = UNetSpatioTemporalConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=8, out_channels=4,
        down_block_types=("CrossAttnDownBlockSpatioTemporal", "DownBlockSpatioTemporal"),
        up_block_types=("UpBlockSpatioTemporal", "CrossAttnUpBlockSpatioTemporal"),
        cross_attention_dim=32, num_attention_heads=8, projection_class_embeddings_input_dim=96,
        addition_time_embed_dim=32)
    scheduler = EulerDiscreteScheduler(
        beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear", interpolation_type="linear",
        num_train_timesteps=1000, prediction_type="v_prediction", sigma_max=700.0, sigma_min=0.002, steps_offset=1,
        timestep_spacing="leading", timestep_type="continuous", use_karras_sigmas=True)
    torch.manual_seed(0)
    vae = AutoencoderKLTemporalDecoder(block_out_channels=[32, 64], in_channels=3, out_channels=3,
                                       down_block_types=["DownEncoderBlock2D", "DownEncoderBlock2D"], latent_channels=4)
    torch.manual_seed(0)
    # the pipeline resizes the conditioning image to 224 px before its image encoder
    encoder = CLIPVisionModelWithProjection(CLIPVisionConfig(
        hidden_size=32, projection_dim=32, num_hidden_layers=2, num_attention_heads=4, image_size=224,
        intermediate_size=37, patch_size=32))
    return dict(vae=vae, image_encoder=encoder, unet=unet, scheduler=scheduler,
                feature_extractor=CLIPImageProcessor(crop_size=224, size=224))


TINY_SVD_CARD = '{"width": 64, "height": 64, "steps": 2, "cfg_scale": 2.0, "sampler": "Euler"}'


def save_tiny_svd(folder: Path) -> Path:
    from diffusers import StableVideoDiffusionPipeline

    StableVideoDiffusionPipeline(**svd_components()).save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text(TINY_SVD_CARD)
    return folder
