"""Studio overhead: one request through the studio's job path vs. the same diffusers pipeline called directly.

    python -m benchmarks.studio_overhead [--model NAME_OR_FOLDER] [--runs 10] [--steps 20]

Both paths use the same weights, size, steps, sampler and seed in the same process; the studio path
includes validation, the job queue, latent decode with the NaN check, and (with --save) the PNG write.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

os.environ.setdefault("HF_HUB_OFFLINE", "1")


def timed(paths: dict, runs: int) -> dict[str, list[float]]:
    """Seconds per call of each path; the paths take turns so a busy machine slows them alike."""
    for fn in paths.values():
        fn()  # warm-up
    out = {name: [] for name in paths}
    for _ in range(runs):
        for name, fn in paths.items():
            start = time.perf_counter()
            fn()
            out[name].append(time.perf_counter() - start)
    return out


def main() -> None:
    import torch
    from diffusers import DiffusionPipeline

    from pipelines.engine import Engine
    from pipelines.samplers import build_scheduler
    from pipelines.text2image import Text2ImageRequest

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="", help="catalog name (default: the studio's default model)")
    parser.add_argument("--models-dir", default="models")
    parser.add_argument("--runs", type=int, default=10)
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    engine = Engine(args.models_dir, tempfile.mkdtemp(prefix="bench-out-"))
    entry = engine.manager.entry(args.model)
    request = Text2ImageRequest("a red circle on a blue background", model=entry.name, steps=args.steps, seed=1234)

    direct = DiffusionPipeline.from_pretrained(entry.location, dtype=engine.manager.dtype, local_files_only=True)
    direct.to(engine.manager.device)
    direct.set_progress_bar_config(disable=True)
    direct.scheduler = build_scheduler(entry.sampler, direct.scheduler.config)

    def call_direct():
        direct(request.prompt, num_inference_steps=args.steps, guidance_scale=entry.cfg_scale, width=entry.width,
               height=entry.height, generator=torch.Generator("cpu").manual_seed(1234))

    def call_studio(save: bool):
        return lambda: engine.submit_text2image(request, save=save).outcome()

    results = timed({"diffusers directly": call_direct, "studio job path": call_studio(False),
                     "studio job path + PNG save": call_studio(True)}, args.runs)
    base = statistics.median(results["diffusers directly"])
    print(f"model {entry.name} ({entry.width}x{entry.height}), {args.steps} steps, {entry.sampler}, "
          f"CFG {entry.cfg_scale}, device {engine.manager.device}, torch threads {torch.get_num_threads()}, "
          f"{args.runs} runs each (median)")
    print(f"{'path':32s} {'median s':>9s} {'ratio':>7s} {'diff ms':>8s}")
    for name, times in results.items():
        median = statistics.median(times)
        print(f"{name:32s} {median:9.4f} {median / base:7.3f} {1000 * (median - base):8.1f}")


if __name__ == "__main__":
    main()
