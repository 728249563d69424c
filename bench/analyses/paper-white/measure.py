"""Paper white (#40): of the pixels that are white (>= 250 in every channel) in the colour page, how many come
out >= 250, and the page ΔE2000 overall and in detailed regions, with and without ``fusion.white_margins``
(gutters and margins pure white). Run from the repository root:

    python bench/analyses/paper-white/measure.py --runs_dir runs --experiment default [--pages 12] [--seed 2718]

Default pages: SynthManga 1024x1448 at 300 dpi, seed quality.TUNING_SEED (2718); ``--seed 31337 --pages 24``
is the bench's held-out set, scored once the rule was chosen."""

from __future__ import annotations

import argparse

import numpy as np
import torch

from dualflow.bench.quality import TUNING_SEED
from dualflow.data.datasets import SynthMangaDataset
from dualflow.data.synth import PrintScale
from dualflow.loader import load_page_colorizer
from dualflow.metrics.color import DeltaE2000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--pages", type=int, default=12)
    parser.add_argument("--seed", type=int, default=TUNING_SEED)
    parser.add_argument("--size", default="1024x1448")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    model = load_page_colorizer(args.experiment, args.runs_dir, device="cpu")
    data = SynthMangaDataset(args.pages, (h, w), seed=args.seed, scale=PrintScale.at_dpi(300))
    rows = {}
    for margins in (False, True):
        model.fusion.config.white_margins = margins
        overall, detailed, kept, white_pixels = DeltaE2000(), DeltaE2000(), 0, 0
        with torch.inference_mode():
            for i in range(args.pages):
                page = data.page(i)
                rgb = model.colorize_page(torch.from_numpy(page.bw)[None])["rgb"][None]
                color = torch.from_numpy(page.color).permute(2, 0, 1)[None]
                overall.update(rgb, color)
                detailed.update(rgb, color, torch.from_numpy(page.detailed)[None, None].float())
                white = (page.color * 255 + 0.5 >= 250).all(axis=2)
                out = (rgb[0].permute(1, 2, 0).numpy() * 255 + 0.5 >= 250).all(axis=2)
                kept, white_pixels = kept + int((out & white).sum()), white_pixels + int(white.sum())
        rows[margins] = (float(overall.compute()), float(detailed.compute()), kept / white_pixels)
    print(f"{args.pages} pages {args.size}, seed {args.seed}")
    print("| white_margins | ΔE2000 | ΔE2000 detailed | white pixels out >= 250 |\n|---|---|---|---|")
    for margins, (de, de_d, share) in rows.items():
        print(f"| {str(margins).lower()} | {de:.3f} | {de_d:.3f} | {100 * share:.1f} % |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
