"""The README's hint picture: a held-out page as B&W, with the 16 clicks of the bench's protocol drawn on it,
coloured automatically, coloured with those clicks, and the colour page. Run from the repository root:

    python bench/analyses/hints/figure.py --runs_dir runs --experiment hints --out docs/hints.png"""

from __future__ import annotations

import argparse

import numpy as np
import torch
from PIL import Image, ImageDraw

from dualflow import hint_clicks
from dualflow import hints as H
from dualflow.bench.quality import QUALITY_SEED
from dualflow.data.synth import PrintScale, SynthManga
from dualflow.loader import load_page_colorizer
from dualflow.panels import panel


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--experiment", default="hints")
    parser.add_argument("--page", type=int, default=0)
    parser.add_argument("--clicks", type=int, default=16)
    parser.add_argument("--out", default="docs/hints.png")
    args = parser.parse_args()
    page = SynthManga(QUALITY_SEED)(args.page, (1448, 1024), PrintScale.at_dpi(300))
    model = load_page_colorizer(args.experiment, args.runs_dir, device="cpu")
    clicks = hint_clicks.click_hints(page.color, args.clicks)
    bw = torch.from_numpy(page.bw)[None]
    auto = model.colorize_page(bw)["rgb"]
    hinted = model.colorize_page(bw, hints=H.paint(clicks, page.bw.shape))["rgb"]
    dots = Image.fromarray((np.repeat(page.bw[..., None], 3, 2) * 255).astype(np.uint8))
    draw = ImageDraw.Draw(dots)
    for c in clicks:
        colour = tuple(int(v * 255) for v in c.rgb)
        draw.ellipse((c.x - 12, c.y - 12, c.x + 12, c.y + 12), fill=colour, outline=(255, 0, 255), width=4)
    dots_t = torch.from_numpy(np.asarray(dots, np.float32) / 255).permute(2, 0, 1)
    sheet = panel(bw, dots_t, auto, hinted, torch.from_numpy(page.color).permute(2, 0, 1),
                  labels=["B&W page", f"{args.clicks} clicks", "automatic", f"with {args.clicks} clicks",
                          "colour page"])
    Image.fromarray(sheet).resize((sheet.shape[1] // 2, sheet.shape[0] // 2), Image.Resampling.BOX).save(args.out)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
