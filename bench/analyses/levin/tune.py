"""Tune ``levin_propagation`` (working long side, affinity floor ``eps``) on the tuning pages (seed 2718, never the
bench's), at 16 and 64 clicks, as any row is tuned. Run from the repository root:

    python bench/analyses/levin/tune.py --runs_dir runs --experiment hints --pages 6"""

from __future__ import annotations

import argparse
import itertools
import json
import time

import torch

from dualflow import hint_clicks
from dualflow import hints as H
from dualflow.bench.levin import LevinPropagation
from dualflow.bench.quality import TUNING_SEED
from dualflow.data.synth import PrintScale, SynthManga
from dualflow.loader import load_page_colorizer
from dualflow.metrics.color import DeltaE2000


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--experiment", default="hints")
    parser.add_argument("--pages", type=int, default=6)
    parser.add_argument("--sides", default="256,384,512")
    parser.add_argument("--eps", default="1e-5,1e-4,1e-3")
    parser.add_argument("--out", default="bench/analyses/levin/tuning.json")
    args = parser.parse_args()
    lightness = load_page_colorizer(args.experiment, args.runs_dir, device="cpu")
    settings = list(itertools.product([int(s) for s in args.sides.split(",")], [float(e) for e in args.eps.split(",")]))
    scores = {f"{side}/{eps:g}/{n}": DeltaE2000() for side, eps in settings for n in (16, 64)}
    seconds = {f"{side}": [] for side, _ in settings}
    rows: dict = {}
    for i in range(args.pages):
        page = SynthManga(TUNING_SEED)(i, (1448, 1024), PrintScale.at_dpi(300))
        bw, target = torch.from_numpy(page.bw)[None], torch.from_numpy(page.color).permute(2, 0, 1)[None]
        for n in (16, 64):
            hint_map = H.paint(hint_clicks.click_hints(page.color, n), page.bw.shape)
            for side, eps in settings:
                row = rows.setdefault((side, eps), LevinPropagation(lightness, side, eps))
                start = time.perf_counter()
                rgb = row.colorize_page(bw, hints=hint_map)["rgb"]
                seconds[f"{side}"].append(time.perf_counter() - start)
                scores[f"{side}/{eps:g}/{n}"].update(rgb[None], target)
        print(f"page {i + 1}/{args.pages}", flush=True)
    result = {"pages": args.pages, "seed": TUNING_SEED, "page_size": "1024x1448",
              "delta_e2000": {k: float(m.compute()) for k, m in scores.items()},
              "seconds_per_page": {k: sum(v) / len(v) for k, v in seconds.items()}}
    with open(args.out, "w") as f:
        json.dump(result, f, indent=2)
    for k, v in sorted(result["delta_e2000"].items(), key=lambda kv: kv[1]):
        print(k, round(v, 3))
    print(result["seconds_per_page"])


if __name__ == "__main__":
    main()
