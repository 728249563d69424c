import json, sys
from dualflow.bench.inference import measure, above_start
from dualflow.bench.probes import matmul_peak
import torch

if __name__ == "__main__":
    print("matmul GFLOP/s", matmul_peak(torch.device("cpu")) / 1e9)
    for exp, d in [("hints", 0), ("hints", 40), ("dense40", 0), ("dense40", 140)]:
        r = measure("dualflow", exp, "/work/train/runs", (2048, 2896), 3, {"patch_density": d} if d else None)
        print(exp, d, round(r["seconds"], 2), round(above_start(r)), flush=True)
