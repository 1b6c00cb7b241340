"""Tiny random SD 2.x, SDXL (+ refiner), SD3 and Flux.1 folders, built like diffusers' own
`get_dummy_components` and saved offline (CLIP tokenizers from a small vocab, T5 from a Unigram vocab).

Each `save_tiny_<family>` writes a diffusers folder with a studio.json card (tiny size and steps), so the
catalog finds it in a models dir and detects its family from its configs alone.
"""

from __future__ import annotations

import json
import string
from pathlib import Path

import torch

from tiny_models import save_controlnet_with_live_outputs, tiny_sd_components, tiny_text_encoder, tiny_tokenizer

CARD = {"width": 64, "height": 64, "steps": 3}


def _save(pipe, folder: Path, card: dict | None = None) -> Path:
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text(json.dumps({**CARD, **(card or {})}))
    return folder


def tiny_t5_tokenizer(max_length: int = 64):
    """A T5 (Unigram, SentencePiece-style) tokenizer from a small in-memory vocab: no files, no hub."""
    from transformers import T5Tokenizer

    pieces = [(c, -1.0) for c in "▁" + string.ascii_lowercase + string.digits + ".,:;!?'-"]
    pieces += [("▁" + c, -2.0) for c in string.ascii_lowercase]
    vocab = [("<pad>", 0.0), ("</s>", 0.0), ("<unk>", 0.0), *pieces]
    return T5Tokenizer(vocab=vocab, extra_ids=0, model_max_length=max_length)


def tiny_t5_encoder(vocab_size: int):
    from transformers import T5Config, T5EncoderModel

    torch.manual_seed(0)
    return T5EncoderModel(T5Config(vocab_size=vocab_size, d_model=32, d_kv=8, d_ff=37, num_layers=2, num_heads=4,
                                   relative_attention_num_buckets=8, decoder_start_token_id=0, pad_token_id=0,
                                   eos_token_id=1))


def tiny_clip_with_projection(vocab_size: int, hidden: int = 32):
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    torch.manual_seed(0)
    return CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=hidden, projection_dim=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size, max_position_embeddings=32,
        layer_norm_eps=1e-5, hidden_act="gelu"))


def save_tiny_sd2(folder: Path) -> Path:
    """SD 2.x: linear-projection attention, a v-prediction scheduler (the 768-v checkpoints)."""
    from diffusers import DDIMScheduler, StableDiffusionPipeline, UNet2DConditionModel

    components = tiny_sd_components()
    torch.manual_seed(0)
    components["unet"] = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=16, attention_head_dim=(2, 4), use_linear_projection=True)
    components["scheduler"] = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                            clip_sample=False, set_alpha_to_one=False, prediction_type="v_prediction")
    return _save(StableDiffusionPipeline(**components, requires_safety_checker=False), folder)


def tiny_sdxl_unet(cross_attention_dim: int = 64, pooled_dim: int = 32, refiner: bool = False):
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    # refiner: text_time embeds 5 values (size, crop, aesthetic score) instead of 6
    time_ids = 5 if refiner else 6
    return UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=4, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2),
        projection_class_embeddings_input_dim=time_ids * 8 + pooled_dim, cross_attention_dim=cross_attention_dim,
        norm_num_groups=16)


def tiny_sdxl_components(refiner: bool = False) -> dict:
    from diffusers import EulerDiscreteScheduler

    base = tiny_sd_components()
    tokenizer = tiny_tokenizer()
    scheduler = EulerDiscreteScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                                       timestep_spacing="leading", steps_offset=1)
    components = dict(vae=base["vae"], scheduler=scheduler, tokenizer_2=tokenizer,
                      text_encoder_2=tiny_clip_with_projection(len(tokenizer)), image_encoder=None,
                      feature_extractor=None)
    if refiner:  # the refiner has only the big (OpenCLIP) text encoder
        return dict(components, unet=tiny_sdxl_unet(32, refiner=True), tokenizer=None, text_encoder=None)
    return dict(components, unet=tiny_sdxl_unet(), tokenizer=tokenizer, text_encoder=tiny_text_encoder(len(tokenizer)))


def save_tiny_sdxl(folder: Path) -> Path:
    from diffusers import StableDiffusionXLPipeline

    return _save(StableDiffusionXLPipeline(**tiny_sdxl_components()), folder)


def save_tiny_sdxl_refiner(folder: Path) -> Path:
    from diffusers import StableDiffusionXLImg2ImgPipeline

    pipe = StableDiffusionXLImg2ImgPipeline(**tiny_sdxl_components(refiner=True), requires_aesthetics_score=True,
                                            force_zeros_for_empty_prompt=False)
    return _save(pipe, folder)


def tiny_flow_vae(latent_channels: int):
    """A 2-level VAE (factor 2) with SD3/Flux's shift and scale and no quant convs."""
    from diffusers import AutoencoderKL

    torch.manual_seed(0)
    return AutoencoderKL(block_out_channels=(16, 32), in_channels=3, out_channels=3, norm_num_groups=16,
                         down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2,
                         latent_channels=latent_channels, sample_size=32, use_quant_conv=False,
                         use_post_quant_conv=False, shift_factor=0.0609, scaling_factor=1.5035)


def save_tiny_sd3(folder: Path) -> Path:
    from diffusers import FlowMatchEulerDiscreteScheduler, SD3Transformer2DModel, StableDiffusion3Pipeline

    torch.manual_seed(0)
    # two layers: the last one is context-only, and ControlNet residuals go to the others
    transformer = SD3Transformer2DModel(sample_size=32, patch_size=1, in_channels=16, num_layers=2,
                                        attention_head_dim=8, num_attention_heads=4, caption_projection_dim=32,
                                        joint_attention_dim=32, pooled_projection_dim=64, out_channels=16)
    tokenizer, t5_tokenizer = tiny_tokenizer(), tiny_t5_tokenizer()
    pipe = StableDiffusion3Pipeline(
        transformer=transformer, scheduler=FlowMatchEulerDiscreteScheduler(shift=3.0), vae=tiny_flow_vae(16),
        text_encoder=tiny_clip_with_projection(len(tokenizer)), tokenizer=tokenizer,
        text_encoder_2=tiny_clip_with_projection(len(tokenizer)), tokenizer_2=tiny_tokenizer(),
        text_encoder_3=tiny_t5_encoder(len(t5_tokenizer)), tokenizer_3=t5_tokenizer)
    return _save(pipe, folder)


def tiny_flux_transformer(guidance: bool = True):
    from diffusers import FluxTransformer2DModel

    torch.manual_seed(0)
    return FluxTransformer2DModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                  attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                  pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=guidance)


def save_tiny_flux(folder: Path, schnell: bool = False) -> Path:
    """Flux.1: dev has a guidance embedding (distilled guidance), schnell has none."""
    from diffusers import FlowMatchEulerDiscreteScheduler, FluxPipeline
    from transformers import CLIPTextModel  # noqa: F401 - the pooled CLIP encoder Flux uses

    tokenizer, t5_tokenizer = tiny_tokenizer(), tiny_t5_tokenizer()
    scheduler = FlowMatchEulerDiscreteScheduler(shift=1.0, use_dynamic_shifting=not schnell, base_shift=0.5,
                                                max_shift=1.15, base_image_seq_len=256, max_image_seq_len=4096)
    pipe = FluxPipeline(transformer=tiny_flux_transformer(guidance=not schnell), scheduler=scheduler,
                        vae=tiny_flow_vae(4), text_encoder=tiny_text_encoder(len(tokenizer)), tokenizer=tokenizer,
                        text_encoder_2=tiny_t5_encoder(len(t5_tokenizer)), tokenizer_2=t5_tokenizer)
    return _save(pipe, folder)


def save_tiny_sdxl_controlnet(folder: Path, seed: int = 0) -> Path:
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel(
        block_out_channels=(32, 64), layers_per_block=1, in_channels=4, norm_num_groups=16,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), conditioning_embedding_out_channels=(16, 32),
        attention_head_dim=(2, 4), use_linear_projection=True, addition_embed_type="text_time",
        addition_time_embed_dim=8, transformer_layers_per_block=(1, 2), projection_class_embeddings_input_dim=80,
        cross_attention_dim=64)
    return save_controlnet_with_live_outputs(model, folder)


def save_tiny_flux_controlnet(folder: Path, seed: int = 0) -> Path:
    from diffusers import FluxControlNetModel

    torch.manual_seed(seed)
    model = FluxControlNetModel(patch_size=1, in_channels=16, num_layers=1, num_single_layers=1,
                                attention_head_dim=16, num_attention_heads=2, joint_attention_dim=32,
                                pooled_projection_dim=32, axes_dims_rope=[4, 4, 8], guidance_embeds=True)
    with torch.no_grad():
        for module in [*model.controlnet_blocks, *model.controlnet_single_blocks, model.controlnet_x_embedder]:
            module.weight.normal_(0, 0.3)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def save_tiny_sd3_controlnet(folder: Path, seed: int = 0) -> Path:
    from diffusers import SD3ControlNetModel

    torch.manual_seed(seed)
    model = SD3ControlNetModel(sample_size=32, patch_size=1, in_channels=16, num_layers=1, attention_head_dim=8,
                               num_attention_heads=4, joint_attention_dim=32, caption_projection_dim=32,
                               pooled_projection_dim=64, out_channels=16)
    with torch.no_grad():
        for module in [*model.controlnet_blocks, model.pos_embed_input.proj]:
            module.weight.normal_(0, 0.3)
    model.save_pretrained(folder, safe_serialization=True)
    return folder
