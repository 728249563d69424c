"""Bench quality (64 held-out 256² SynthManga pages, the bench's suite) of experiments, with a chroma
temperature sweep for models that classify chroma. Prints one JSON line per (experiment, temperature)."""
import json
import sys
import time

from dualflow.bench.quality import bench_models, bench_quality
from dualflow.models.chroma import ChromaBins

pages = int(sys.argv[1])
for exp in sys.argv[2:]:
    models = bench_models(exp, "runs", has_baseline=False)
    bins = [m for model in models.values() for m in model.modules() if isinstance(m, ChromaBins)]
    for t in ([0.38, 0.6, 1.0] if bins else [None]):
        for b in bins:
            b.temperature = t
        start = time.time()
        q = bench_quality(models, pages, 256)
        keys = ["delta_e2000", "delta_e2000_detailed", "delta_cf", "tone_residue"]
        row = {name: {k.split("/")[-1]: round(v, 3) for k, v in q[name].items() if k.split("/")[-1] in keys}
               for name in ("dualflow", "secondary_only")}
        print(json.dumps({"experiment": exp, "temperature": t, "seconds": round(time.time() - start), **row}),
              flush=True)
