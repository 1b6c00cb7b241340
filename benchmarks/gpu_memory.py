"""GPU speed and memory of the studio's memory options on the full-size SD 1.5 architecture.

    python -m benchmarks.gpu_memory [--size 512] [--steps 20] [--runs 3]
    python -m benchmarks.gpu_memory --tiny --device cpu      # a smoke run of the script itself

The weights are random (SD 1.5's shapes need no download): speed and memory do not depend on what
the weights are. Each setting is timed in the same run as plain diffusers defaults (fp32, no
options), so the ratios compare like with like. Prints it/s, peak memory and the ratio to the
baseline per setting, and which setting the studio's `auto` policy chooses for this GPU.
"""

from __future__ import annotations

import argparse
import time

import torch

SD15_UNET = dict(sample_size=64, cross_attention_dim=768, attention_head_dim=8,
                 block_out_channels=(320, 640, 1280, 1280), layers_per_block=2)
SD15_VAE = dict(block_out_channels=(128, 256, 512, 512), layers_per_block=2, latent_channels=4,
                down_block_types=("DownEncoderBlock2D",) * 4, up_block_types=("UpDecoderBlock2D",) * 4)
TINY_UNET = dict(sample_size=8, cross_attention_dim=32, attention_head_dim=4, block_out_channels=(32, 64),
                 layers_per_block=1, down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
                 up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"), norm_num_groups=16)
TINY_VAE = dict(block_out_channels=(16, 32), layers_per_block=1, latent_channels=4, norm_num_groups=16,
                down_block_types=("DownEncoderBlock2D",) * 2, up_block_types=("UpDecoderBlock2D",) * 2)


def build(tiny: bool, dtype: torch.dtype, device: str):
    """A StableDiffusionPipeline-equivalent: UNet + VAE + scheduler; text embeddings are random
    (the text encoder runs once per image and is not what the memory options change)."""
    from diffusers import AutoencoderKL, EulerDiscreteScheduler, UNet2DConditionModel

    torch.manual_seed(0)
    unet = UNet2DConditionModel(**(TINY_UNET if tiny else SD15_UNET)).to(device, dtype)
    vae = AutoencoderKL(**(TINY_VAE if tiny else SD15_VAE)).to(device, dtype)
    return unet, vae, EulerDiscreteScheduler(beta_schedule="scaled_linear", beta_start=0.00085, beta_end=0.012)


def generate(unet, vae, scheduler, size: int, steps: int, tiled: bool, sliced_attention: bool):
    from diffusers.models.attention_processor import AttnProcessor2_0, SlicedAttnProcessor

    unet.set_attn_processor(SlicedAttnProcessor(slice_size=1) if sliced_attention else AttnProcessor2_0())
    if tiled:
        vae.enable_tiling()
    else:
        vae.disable_tiling()
    factor = 2 ** (len(vae.config.block_out_channels) - 1)
    device, dtype = unet.device, unet.dtype
    context = torch.randn(2, 77, unet.config.cross_attention_dim, device=device, dtype=dtype)
    latents = torch.randn(1, 4, size // factor, size // factor, device=device, dtype=dtype)
    scheduler.set_timesteps(steps, device=device)
    latents = latents * scheduler.init_noise_sigma
    with torch.inference_mode():
        for t in scheduler.timesteps:
            model_input = scheduler.scale_model_input(torch.cat([latents] * 2), t)
            noise = unet(model_input, t, encoder_hidden_states=context).sample
            uncond, cond = noise.chunk(2)
            latents = scheduler.step(uncond + 7.5 * (cond - uncond), t, latents).prev_sample
        return vae.decode(latents / vae.config.scaling_factor).sample


SETTINGS = {  # name: (fp16, sliced attention, VAE tiling, channels_last, torch.compile)
    "diffusers defaults (fp32)": (False, False, False, False, False),
    "fp16 + SDPA (studio default)": (True, False, False, False, False),
    "fp16 + attention slicing": (True, True, False, False, False),
    "fp16 + VAE tiling": (True, False, True, False, False),
    "fp16 + channels_last": (True, False, False, True, False),
    "fp16 + torch.compile": (True, False, False, False, True),
}


def measure(name: str, args) -> dict:
    half, sliced, tiled, channels_last, compiled = SETTINGS[name]
    dtype = torch.float16 if half and args.device == "cuda" else torch.float32
    unet, vae, scheduler = build(args.tiny, dtype, args.device)
    if channels_last:
        unet.to(memory_format=torch.channels_last)
    if compiled:
        unet = torch.compile(unet, mode="max-autotune-no-cudagraphs")
    cuda = args.device == "cuda"
    generate(unet, vae, scheduler, args.size, 2, tiled, sliced)  # warm-up (and compile)
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    times = []
    for _ in range(args.runs):
        start = time.perf_counter()
        generate(unet, vae, scheduler, args.size, args.steps, tiled, sliced)
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    peak = torch.cuda.max_memory_allocated() / 2**30 if cuda else float("nan")
    del unet, vae
    if cuda:
        torch.cuda.empty_cache()
    best = min(times)
    return {"name": name, "seconds": best, "it/s": args.steps / best, "peak GiB": peak}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--size", type=int, default=512)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--tiny", action="store_true", help="tiny shapes: check the script runs (no figures)")
    parser.add_argument("--skip", nargs="*", default=[], help="settings to leave out (e.g. compile on CPU)")
    args = parser.parse_args()
    rows = [measure(name, args) for name in SETTINGS if not any(s in name for s in args.skip)]
    base = rows[0]["seconds"]
    print(f"| setting | s / image | it/s | ratio to diffusers defaults | peak GiB |  ({args.size}px, "
          f"{args.steps} steps, CFG, {args.device})")
    print("| --- | ---: | ---: | ---: | ---: |")
    for row in rows:
        print(f"| {row['name']} | {row['seconds']:.3f} | {row['it/s']:.2f} | {base / row['seconds']:.2f}× | "
              f"{row['peak GiB']:.2f} |")
    if args.device == "cuda":
        from pipelines.memory import plan_memory

        free, _total = torch.cuda.mem_get_info()
        print("auto memory policy on this GPU:", plan_memory(free, int(2.1 * 2**30), "cuda", label="SD 1.5 in fp16").summary())


if __name__ == "__main__":
    main()
