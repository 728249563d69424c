"""The ``levin_propagation`` row of the hint curve on the bench's held-out pages, alone: the same pages, the same
hints (drawn by the same protocols and seed) and the same metric code as ``bench --only hints``, whose figures do
not depend on the other rows. Run from the repository root:

    python bench/analyses/levin/curve.py --runs_dir runs --experiment hints --pages 24 --out bench/analyses/levin"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from dualflow.bench.hint_curve import bench_hints
from dualflow.bench.levin import LevinPropagation
from dualflow.loader import load_page_colorizer


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--experiment", default="hints")
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--size", default="1024x1448")
    parser.add_argument("--cache", default=None)
    parser.add_argument("--out", default="bench/analyses/levin")
    args = parser.parse_args()
    w, h = (int(v) for v in args.size.split("x"))
    row = LevinPropagation(load_page_colorizer(args.experiment, args.runs_dir, device="cpu"))
    start = time.perf_counter()
    curve = bench_hints({"levin_propagation": row}, args.pages, (h, w), 300.0, args.cache, Path(args.out))
    curve["seconds"] = time.perf_counter() - start
    (Path(args.out) / f"levin_curve_{args.size}.json").write_text(json.dumps(curve, indent=2, default=float))
    print(json.dumps({p: {n: r["levin_propagation"]["color/delta_e2000"] for n, r in curve[p].items()}
                      for p in ("clicks", "random")}, indent=1))


if __name__ == "__main__":
    main()
