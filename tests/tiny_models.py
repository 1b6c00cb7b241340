"""Tiny randomly initialised diffusers components, like diffusers' own `get_dummy_components`."""

from __future__ import annotations

import string
from pathlib import Path

import torch


def tiny_tokenizer(max_length: int = 32):
    from transformers import CLIPTokenizer

    chars = list(string.ascii_lowercase + string.digits + ".,:;!?'-")
    vocab = {"<|startoftext|>": 0, "<|endoftext|>": 1}
    for ch in chars:
        vocab.setdefault(ch, len(vocab))
        vocab.setdefault(ch + "</w>", len(vocab))
    return CLIPTokenizer(vocab=vocab, merges=[], model_max_length=max_length)


def tiny_text_encoder(vocab_size: int):
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(0)
    config = CLIPTextConfig(bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, intermediate_size=37,
                            num_attention_heads=4, num_hidden_layers=2, vocab_size=vocab_size,
                            max_position_embeddings=32, layer_norm_eps=1e-5)
    return CLIPTextModel(config)


def tiny_sd_components(in_channels: int = 4) -> dict:
    from diffusers import AutoencoderKL, DDIMScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=8, in_channels=in_channels,
        out_channels=4, down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"), cross_attention_dim=32, norm_num_groups=16,
    )
    torch.manual_seed(0)
    vae = AutoencoderKL(
        block_out_channels=(16, 32), in_channels=3, out_channels=3, norm_num_groups=16,
        down_block_types=("DownEncoderBlock2D", "DownEncoderBlock2D"),
        up_block_types=("UpDecoderBlock2D", "UpDecoderBlock2D"), latent_channels=4, sample_size=32,
    )
    scheduler = DDIMScheduler(beta_start=0.00085, beta_end=0.012, beta_schedule="scaled_linear",
                              clip_sample=False, set_alpha_to_one=False)
    tokenizer = tiny_tokenizer()
    return dict(unet=unet, vae=vae, scheduler=scheduler, tokenizer=tokenizer,
                text_encoder=tiny_text_encoder(len(tokenizer)), safety_checker=None,
                feature_extractor=None, image_encoder=None)


TINY_CARD = '{"width": 64, "height": 64, "steps": 4, "cfg_scale": 7.0, "sampler": "Euler a"}'


def save_tiny_sd(folder: Path, in_channels: int = 4) -> Path:
    """Save a tiny pipeline (9 input channels = a dedicated inpainting model) with a studio.json card."""
    from diffusers import StableDiffusionInpaintPipeline, StableDiffusionPipeline

    cls = StableDiffusionInpaintPipeline if in_channels == 9 else StableDiffusionPipeline
    cls(**tiny_sd_components(in_channels), requires_safety_checker=False).save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text(TINY_CARD)
    return folder


def save_tiny_controlnet(folder: Path, cross_attention_dim: int = 32, seed: int = 0) -> Path:
    """A tiny ControlNet for the tiny SD model; its zero convolutions get random weights so it acts."""
    from diffusers import ControlNetModel

    torch.manual_seed(seed)
    model = ControlNetModel(block_out_channels=(32, 64), layers_per_block=1, in_channels=4,
                            down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
                            cross_attention_dim=cross_attention_dim, norm_num_groups=16,
                            conditioning_embedding_out_channels=(16, 32))
    return save_controlnet_with_live_outputs(model, folder)


def save_controlnet_with_live_outputs(model, folder: Path) -> Path:
    """Save a random ControlNet whose "zero convolutions" are non-zero, as in trained ones, so the map matters."""
    with torch.no_grad():
        for module in [*model.controlnet_down_blocks, model.controlnet_mid_block,
                       model.controlnet_cond_embedding.conv_out]:
            module.weight.normal_(0, 0.3)
    model.save_pretrained(folder, safe_serialization=True)
    return folder


def tiny_pointcloud_pipeline(prediction_type: str = "v_prediction"):
    """Our point-cloud pipeline with a tiny random denoiser, the demo's offline tokenizer and a tiny CLIP."""
    from diffusers import DDPMScheduler

    from pipelines.demo.tokenizer import build_tokenizer
    from pipelines.demo.world3d import SHAPES3D
    from pipelines.pointcloud_model import PointCloudDenoiser, PointCloudPipeline

    tokenizer = build_tokenizer(extra_words=SHAPES3D)
    torch.manual_seed(0)
    denoiser = PointCloudDenoiser(width=32, num_layers=2, num_heads=2, cond_dim=32)
    with torch.no_grad():  # the output layer starts at zero in training; make it act
        denoiser.output_proj.weight.normal_(0, 0.2)
    scheduler = DDPMScheduler(beta_schedule="squaredcos_cap_v2", prediction_type=prediction_type, clip_sample=False,
                              timestep_spacing="leading", steps_offset=1)
    pipe = PointCloudPipeline(denoiser.eval(), scheduler, tiny_text_encoder(len(tokenizer)).eval(), tokenizer)
    pipe.set_progress_bar_config(disable=True)
    return pipe


def tiny_shap_e_pipeline():
    """Shap-E with tiny random components, as diffusers' own fast tests build it (offline tokenizer)."""
    from diffusers import HeunDiscreteScheduler, PriorTransformer, ShapEPipeline
    from diffusers.pipelines.shap_e import ShapERenderer
    from transformers import CLIPTextConfig, CLIPTextModelWithProjection

    tokenizer = tiny_tokenizer()
    torch.manual_seed(0)
    text_encoder = CLIPTextModelWithProjection(CLIPTextConfig(
        bos_token_id=0, eos_token_id=1, pad_token_id=1, hidden_size=32, projection_dim=32, intermediate_size=37,
        num_attention_heads=4, num_hidden_layers=2, vocab_size=len(tokenizer), max_position_embeddings=32))
    torch.manual_seed(0)
    prior = PriorTransformer(num_attention_heads=2, attention_head_dim=16, embedding_dim=32, num_embeddings=32,
                             embedding_proj_dim=32, time_embed_dim=128, num_layers=1, clip_embed_dim=64,
                             additional_embeddings=0, time_embed_act_fn="gelu", norm_in_type="layer",
                             encoder_hid_proj_type=None, added_emb_type=None)
    torch.manual_seed(0)
    renderer = ShapERenderer(param_shapes=((8, 93), (8, 8), (8, 8), (8, 8)), d_latent=32, d_hidden=8, n_output=12,
                             background=(0.1, 0.1, 0.1))
    scheduler = HeunDiscreteScheduler(beta_schedule="exp", num_train_timesteps=1024, prediction_type="sample",
                                      use_karras_sigmas=True, clip_sample=True, clip_sample_range=1.0)
    return ShapEPipeline(prior=prior, text_encoder=text_encoder, tokenizer=tokenizer, shap_e_renderer=renderer,
                         scheduler=scheduler)


def save_tiny_sd_upscaler(folder: Path) -> Path:
    """A tiny StableDiffusionUpscalePipeline (x4: a 3-level VAE; UNet over 4 latent + 3 image channels)."""
    from diffusers import (AutoencoderKL, DDIMScheduler, DDPMScheduler, StableDiffusionUpscalePipeline,
                           UNet2DConditionModel)

    torch.manual_seed(0)
    unet = UNet2DConditionModel(
        block_out_channels=(32, 64), layers_per_block=1, sample_size=16, in_channels=7, out_channels=4,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"), up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
        cross_attention_dim=32, norm_num_groups=16, num_class_embeds=351,  # one per noise level 0..350
    )
    vae = AutoencoderKL(
        block_out_channels=(16, 16, 32), in_channels=3, out_channels=3, norm_num_groups=16, latent_channels=4,
        down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3, sample_size=64,
        scaling_factor=0.08333,
    )
    tokenizer = tiny_tokenizer()
    pipe = StableDiffusionUpscalePipeline(
        vae=vae, text_encoder=tiny_text_encoder(len(tokenizer)), tokenizer=tokenizer, unet=unet,
        low_res_scheduler=DDPMScheduler(), scheduler=DDIMScheduler(prediction_type="v_prediction"),
        max_noise_level=350)
    pipe.save_pretrained(folder, safe_serialization=True)
    (folder / "studio.json").write_text('{"steps": 3, "cfg_scale": 7.0, "tile_size": 32}')
    return folder


def save_tiny_ldm_upscaler(folder: Path) -> Path:
    """A tiny LDMSuperResolutionPipeline (x4: a 3-level VQModel; UNet over 3 latent + 3 image channels)."""
    from diffusers import DDIMScheduler, LDMSuperResolutionPipeline, UNet2DModel, VQModel

    torch.manual_seed(0)
    unet = UNet2DModel(sample_size=16, in_channels=6, out_channels=3, block_out_channels=(32, 64),
                       down_block_types=("DownBlock2D", "DownBlock2D"), up_block_types=("UpBlock2D", "UpBlock2D"),
                       layers_per_block=1, norm_num_groups=16)
    vqvae = VQModel(block_out_channels=(16, 16, 32), in_channels=3, out_channels=3, latent_channels=3,
                    down_block_types=("DownEncoderBlock2D",) * 3, up_block_types=("UpDecoderBlock2D",) * 3,
                    norm_num_groups=16, num_vq_embeddings=64)
    LDMSuperResolutionPipeline(vqvae=vqvae, unet=unet, scheduler=DDIMScheduler()).save_pretrained(
        folder, safe_serialization=True)
    (folder / "studio.json").write_text('{"steps": 3, "tile_size": 32}')
    return folder


def save_tiny_lora(path: Path, seed: int, cross_attention_dim: int = 32, text_encoder: bool = True,
                   kohya: bool = False) -> Path:
    """A random LoRA (one .safetensors file; diffusers/PEFT key layout, or kohya's as A1111 and most
    downloads use) for the tiny SD UNet and text encoder; another `cross_attention_dim` makes one for a
    different model family."""
    from diffusers import StableDiffusionPipeline, UNet2DConditionModel
    from peft import LoraConfig, inject_adapter_in_model
    from peft.utils import get_peft_model_state_dict

    components = tiny_sd_components()
    unet = components["unet"]
    if cross_attention_dim != unet.config.cross_attention_dim:
        unet = UNet2DConditionModel.from_config({**unet.config, "cross_attention_dim": cross_attention_dim})
    unet.add_adapter(LoraConfig(r=4, lora_alpha=4, target_modules=["to_q", "to_k", "to_v", "to_out.0"]))
    text = components["text_encoder"]
    if text_encoder:
        # peft's own injection: transformers' add_adapter asks for a newer peft than the registry has
        inject_adapter_in_model(LoraConfig(r=4, lora_alpha=4, target_modules=["q_proj", "k_proj", "v_proj", "out_proj"]),
                                text)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for model in (unet, text) if text_encoder else (unet,):
            for name, param in model.named_parameters():
                if "lora_" in name:  # peft starts lora_B at zero (a no-op LoRA): give both sides weight
                    param.copy_(torch.randn(param.shape, generator=generator) * 0.3)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kohya:
        from diffusers.utils import convert_state_dict_to_kohya
        from safetensors.torch import save_file

        layers = {f"unet.{k}": v for k, v in get_peft_model_state_dict(unet).items()}
        if text_encoder:
            layers.update({f"text_encoder.{k}": v for k, v in get_peft_model_state_dict(text).items()})
        save_file({k: v.contiguous() for k, v in convert_state_dict_to_kohya(layers).items()}, path)
        return path
    StableDiffusionPipeline.save_lora_weights(
        path.parent, unet_lora_layers=get_peft_model_state_dict(unet),
        text_encoder_lora_layers=get_peft_model_state_dict(text) if text_encoder else None,
        weight_name=path.name, safe_serialization=True)
    return path


def save_tiny_embedding(path: Path, seed: int, vectors: int = 2, hidden: int = 32) -> Path:
    """A textual-inversion embedding in A1111's .safetensors layout (`emb_params`: vectors × hidden)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    save_file({"emb_params": torch.randn(vectors, hidden, generator=torch.Generator().manual_seed(seed))}, path)
    return path
