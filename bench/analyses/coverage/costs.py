"""Seconds a 2048×2896 page and peak memory above the loaded models, each plan in a fresh process (the inference
bench's method), for experiments and plan densities given as EXP:DENSITY (0: the experiment's trained plan).

    .venv/bin/python bench/analyses/coverage/costs.py --runs_dir /work/train/runs hints:0 hints:40 dense40:0
"""

from __future__ import annotations

import argparse

import torch

from dualflow.bench.inference import above_start, measure
from dualflow.bench.probes import matmul_peak


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("plans", nargs="+", help="EXP:DENSITY")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    print(f"matmul {matmul_peak(torch.device('cpu')) / 1e9:.0f} GFLOP/s")
    for plan in args.plans:
        experiment, density = plan.split(":")
        overrides = {"patch_density": float(density)} if float(density) else None
        r = measure("dualflow", experiment, args.runs_dir, (2048, 2896), args.repeats, overrides)
        print(f"{plan}: {r['seconds']:.2f} s, {above_start(r):.0f} MiB above loaded" if "seconds" in r
              else f"{plan}: {r['error']}", flush=True)


if __name__ == "__main__":
    main()
