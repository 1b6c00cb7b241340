"""Samplers on the demo model: prompt adherence (OpenCV judge) and time per image against steps.

    python -m benchmarks.samplers [--n 32] [--steps 5 10 20 40] [--threads 1]

Each sampler draws the same fixed prompts and seeds (pipelines.demo.evaluate.fixed_cases) at CFG 4
through the studio's sampler table; the baseline is the model's recommended setting (from its
studio.json), measured in the same run. LCM is left out: it needs an LCM-distilled model, and the
demo model is not one.
"""

from __future__ import annotations

import argparse
import json
import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SAMPLERS = ["DDPM", "DDIM", "Euler a", "DPM++ 2M", "DPM++ 2M Karras", "UniPC"]


def main() -> None:
    import torch

    from pipelines.demo.evaluate import DEFAULT_MODEL, adherence, load, set_sampler
    from pipelines.errors import StudioError
    from pipelines.samplers import check_schedule

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=32, help="prompts per setting")
    parser.add_argument("--steps", type=int, nargs="*", default=[5, 10, 20, 40])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--samplers", nargs="*", default=SAMPLERS)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    card = json.loads((DEFAULT_MODEL / "studio.json").read_text())
    pipe = load()

    def measure(sampler: str, steps: int) -> dict:
        set_sampler(pipe, sampler)
        check_schedule(pipe.scheduler, sampler, steps)  # as the studio does before sampling
        result = adherence(pipe, steps=steps, cfg=card["cfg_scale"], n=args.n)
        result.pop("images")
        return result

    base = measure(card["sampler"], card["steps"])
    print(f"demo model {card['name']}, CFG {card['cfg_scale']}, {args.n} prompts per row, torch threads "
          f"{torch.get_num_threads()}; baseline {card['sampler']} {card['steps']} steps: "
          f"{base['all']:.3f} right, {1000 * base['sec_per_image']:.0f} ms/image")
    print(f"{'sampler':>16} {'steps':>5} {'colour+shape':>12} {'background':>10} {'all':>6} {'ms/img':>7} "
          f"{'time ratio':>10}")
    for sampler in args.samplers:
        for steps in args.steps:
            try:
                r = measure(sampler, steps)
            except StudioError as error:
                print(f"{sampler:>16} {steps:>5} refused: {error}")
                continue
            print(f"{sampler:>16} {steps:>5} {r['color_shape']:>12.3f} {r['background']:>10.3f} {r['all']:>6.3f} "
                  f"{1000 * r['sec_per_image']:>7.0f} {r['sec_per_image'] / base['sec_per_image']:>10.2f}",
                  flush=True)


if __name__ == "__main__":
    main()
