"""The dpi estimate's accuracy: SynthManga layouts scanned at 150, 200, 300 and 600 dpi (drawn at 600 and scanned
down: one layout at every resolution), and the mangafied photographs of the transfer check, whose screen
(mangafy's 4-px period) is a 259-dpi page's middle fine ruling. Prints JSON.

    .venv/bin/python bench/analyses/scan_dpi/estimate.py --seed 31337 --pages 24 --cache runs/cache
"""

import argparse
import json

from dualflow.bench.scales import estimate_errors, scan_samples
from dualflow.data.mangafy import MangafyOptions
from dualflow.data.real import real_pages
from dualflow.data.synth import PEN_DPI
from dualflow.scan_dpi import FINE_UNITS, estimate_dpi


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seed", type=int, default=2718)
    parser.add_argument("--pages", type=int, default=24)
    parser.add_argument("--cache", default=None)
    args = parser.parse_args()
    out = {"seed": args.seed, "pages": args.pages, "synthmanga": {}}
    for dpi in (150.0, 200.0, 300.0, 600.0):
        record: list[dict] = []
        for _ in scan_samples(args.pages, (1448, 1024), dpi, args.seed, args.cache, 300.0, record, 600.0):
            pass
        out["synthmanga"][f"{dpi:g}"] = estimate_errors(record)
    truth = MangafyOptions().period * PEN_DPI / FINE_UNITS
    estimates = [estimate_dpi(p["bw"]).dpi for p in real_pages(512, 4)]
    out["photographs"] = {"screen_dpi": truth, "pages": len(estimates),
                          "within_25pct": sum(bool(e) and abs(e / truth - 1) <= 0.25 for e in estimates)
                          / len(estimates),
                          "per_page": [round(e, 1) if e else None for e in estimates]}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":  # the page cache draws in spawned processes, which import this file
    main()
