"""Make the README's sample grid with the committed demo model.

    python -m pipelines.demo.grid [--out docs/demo-grid.png] [--model assets/models/shapes-sd]

Rows: colours; columns: circle, square, triangle (each on a different background). Every cell
is marked with a green tick when the judge agrees with the prompt, a red cross otherwise.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import cv2
import numpy as np
import torch

from . import world
from .evaluate import DEFAULT_MODEL, generate, load
from .judge import judge

ROWS = ["red", "green", "blue", "yellow", "purple", "orange"]
CELL, PAD, LABEL_W, HEAD_H = 128, 4, 70, 22


def make_grid(model=DEFAULT_MODEL, seed: int = 0) -> np.ndarray:
    pipe = load(model)
    studio = json.loads((Path(model) / "studio.json").read_text())
    bgs = ["black", "white", "gray", "blue", "yellow", "green", "purple", "orange", "red"]
    prompts, cells = [], []
    for i, c in enumerate(ROWS):
        for j, s in enumerate(world.SHAPES):
            b = [x for x in bgs if x != c][(i + 3 * j) % 8]
            prompts.append(world.prompt_for(c, s, b))
            cells.append((c, s, b))
    imgs = generate(pipe, prompts, [seed + k for k in range(len(prompts))], studio["steps"],
                    studio["cfg_scale"])
    h = HEAD_H + len(ROWS) * (CELL + PAD)
    w = LABEL_W + len(world.SHAPES) * (CELL + PAD)
    grid = np.full((h, w, 3), 255, np.uint8)
    font = cv2.FONT_HERSHEY_SIMPLEX
    for j, s in enumerate(world.SHAPES):
        cv2.putText(grid, s, (LABEL_W + j * (CELL + PAD) + 30, 16), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    for k, ((c, s, b), im) in enumerate(zip(cells, imgs)):
        i, j = divmod(k, len(world.SHAPES))
        y, x = HEAD_H + i * (CELL + PAD), LABEL_W + j * (CELL + PAD)
        grid[y:y + CELL, x:x + CELL] = cv2.resize(im, (CELL, CELL), interpolation=cv2.INTER_NEAREST)
        ok = judge(im).matches(color=c, shape=s, background=b)
        cv2.putText(grid, "ok" if ok else "x", (x + 4, y + CELL - 6), font, 0.4,
                    (0, 160, 0) if ok else (220, 0, 0), 1, cv2.LINE_AA)
        if j == 0:
            cv2.putText(grid, c, (4, y + CELL // 2), font, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m pipelines.demo.grid")
    ap.add_argument("--out", type=Path, default=Path("docs/demo-grid.png"))
    ap.add_argument("--model", default=str(DEFAULT_MODEL))
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    grid = make_grid(args.model, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(args.out), cv2.cvtColor(grid, cv2.COLOR_RGB2BGR))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
