"""Quality across scan resolutions (``bench --only dpi``): the same held-out page layouts scanned at several dpi
(:func:`data.scan.scanned`: drawn at 300 dpi and up, area-downsampled below), each coloured at the scale its
models were trained at by the dpi its screentone reads (:func:`scan_dpi.resolve_dpi`, as ``colorize`` does) and,
for comparison, as scanned; the estimate's error per page; and the cost of a 600-dpi page against the same page
at 300 dpi."""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import torch

from dualflow.data.synth import PRINT_DPI
from dualflow.progress import ProgressLog

DPIS = (150.0, 200.0, 300.0, 600.0)
WITHIN = 0.15  # the estimate's goal: within ±15 % of the scan's dpi


def scan_samples(pages: int, size: tuple[int, int], dpi: float, seed: int, cache: str | None,
                 trained_dpi: float, record: list[dict], drawn_at: float) -> Iterator[dict]:
    """Samples of ``pages`` layouts of ``size`` (H, W) at 300 dpi, drawn at ``drawn_at`` dpi and scanned at
    ``dpi`` (area averages: one print scanned at every resolution is one layout at each), with the dpi each is
    coloured at (given none: the estimate, or the trained dpi where it has nothing to go on); each page's
    estimate is appended to ``record``."""
    from dualflow.data.datasets import SynthMangaDataset, to_sample
    from dualflow.data.scan import scanned, size_at
    from dualflow.data.synth import PrintScale
    from dualflow.scan_dpi import estimate_dpi, resolve_dpi

    at = drawn_at
    drawings = SynthMangaDataset(pages, size_at(size, at), seed=seed, scale=PrintScale.at_dpi(at), cache=cache)
    drawings.fill_cache(2)
    for i in range(pages):
        page = scanned(drawings.gen, i, size, dpi, drawings.page(i))
        start = time.perf_counter()
        estimate = estimate_dpi(page.bw)
        seconds = time.perf_counter() - start
        coloured_at, _ = resolve_dpi(page.bw, None, trained_dpi, estimate)
        record.append({"dpi": dpi, "estimate": estimate.dpi, "seconds": seconds, "coloured_at": coloured_at})
        sample = to_sample(np.clip(page.bw, 0, 1), np.clip(page.color, 0, 1), f"scan{dpi:g}_{i}", page.labels)
        yield {**sample, "identity": page.identity, "dpi": coloured_at}


def estimate_errors(record: list[dict]) -> dict[str, Any]:
    """The estimate's relative error on a set of pages: the share within ±15 %, the median and worst |error|,
    pages with nothing to read, and the median seconds."""
    errors = [abs(r["estimate"] / r["dpi"] - 1.0) for r in record if r["estimate"]]
    return {"pages": len(record), "within_15pct": sum(e <= WITHIN for e in errors) / max(1, len(record)),
            "median_abs_error": statistics.median(errors) if errors else None,
            "max_abs_error": max(errors) if errors else None,
            "no_estimate": sum(not r["estimate"] for r in record),
            "seconds": statistics.median(r["seconds"] for r in record),
            "per_page": [round(r["estimate"] or 0.0, 1) for r in record]}


def bench_dpi(models: dict[str, Any], pages: int, size: tuple[int, int], dpis=DPIS, seed: int = 0,
              cache: str | None = None, repeats: int = 3) -> dict[str, Any]:
    """``quality_dpi[dpi]``: colour metrics of every model on the layouts scanned at each of ``dpis``, coloured
    at the trained scale by the estimate (``estimated``) and as scanned (``as_scanned``, what colouring did
    before pages had a scale); the estimate's errors; and the cost ratio of 600 to 300 dpi. Each layout is
    drawn once, at the highest of ``dpis`` (300 at least), and scanned at every one: SynthManga's layouts
    depend on the page's pixels, so a layout drawn at 600 dpi is not the one drawn at 300."""
    from dualflow.bench.quality import CORE_METRICS, _quality

    trained = models["dualflow"].trained_dpi
    if not trained:
        raise ValueError("bench --only dpi needs models trained at print scale (data.dpi > 0); these were trained "
                         "on thumbnail pages")
    drawn_at = max(PRINT_DPI, *dpis)
    result: dict[str, Any] = {"pages": pages, "page_size_at_300dpi": f"{size[1]}x{size[0]}", "seed": seed,
                              "trained_dpi": trained, "dpis": list(dpis), "drawn_at_dpi": drawn_at,
                              "quality_dpi": {}, "estimate": {}}
    for dpi in dpis:
        record: list[dict] = []
        label = f"{dpi:g}"
        progress = ProgressLog(f"bench dpi {label}", pages)
        estimated = _quality(scan_samples(pages, size, dpi, seed, cache, trained, record, drawn_at), models,
                             only=CORE_METRICS, progress=progress)
        scans = scan_samples(pages, size, dpi, seed, cache, trained, [], drawn_at)
        as_scanned = _quality(({**s, "dpi": None} for s in scans),
                              models, only=CORE_METRICS, progress=ProgressLog(f"bench dpi {label} as scanned", pages))
        result["quality_dpi"][label] = {"estimated": estimated, "as_scanned": as_scanned}
        result["estimate"][label] = estimate_errors(record)
    result["cost"] = page_cost(models["dualflow"], size, seed, cache, repeats)
    return result


def page_cost(model, size: tuple[int, int], seed: int, cache: str | None, repeats: int) -> dict[str, Any]:
    """Median seconds of one layout (drawn at 600 dpi, scanned at 600 and 300) coloured at each (dpi given, and
    estimated: the estimate's time included), in this process; their ratio is the goal's figure."""
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.scan import scanned, size_at
    from dualflow.data.synth import PrintScale
    from dualflow.scan_dpi import resolve_dpi

    out: dict[str, Any] = {}
    data = SynthMangaDataset(1, size_at(size, 600.0), seed=seed, scale=PrintScale.at_dpi(600.0), cache=cache)
    for dpi in (300.0, 600.0):  # one drawing scanned at both: the same layout
        bw = torch.from_numpy(scanned(data.gen, 0, size, dpi, data.page(0)).bw)[None]
        model.colorize_page(bw, dpi=dpi)  # warm-up
        given, estimated = [], []
        for _ in range(repeats):
            start = time.perf_counter()
            model.colorize_page(bw, dpi=dpi)
            mid = time.perf_counter()
            model.colorize_page(bw, dpi=resolve_dpi(bw, None, model.trained_dpi)[0])
            given.append(mid - start)
            estimated.append(time.perf_counter() - mid)
        out[f"{dpi:g}"] = {"page_size": f"{bw.shape[-1]}x{bw.shape[-2]}", "seconds_dpi_given": statistics.median(given),
                           "seconds_dpi_estimated": statistics.median(estimated)}
    for kind in ("seconds_dpi_given", "seconds_dpi_estimated"):
        out[f"ratio_600_to_300_{kind.removeprefix('seconds_')}"] = out["600"][kind] / out["300"][kind]
    return out


def dpi_table(r: dict[str, Any], quality_dpi: dict[str, Any]) -> list[str]:
    """The resolution table as Markdown: a row per dpi, ΔE2000 (overall / detailed) of every model coloured at
    the trained scale and as scanned, and the estimate's accuracy."""
    first = next(iter(quality_dpi.values()))["estimated"]
    models = [k for k, v in first.items() if isinstance(v, dict)]
    head = ["dpi", "estimate within ±15 % (median error)"] + [f"{m} at trained scale" for m in models] + [
        f"{m} as scanned" for m in models]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for dpi, q in quality_dpi.items():
        e = r["estimate"][dpi]
        cells = [dpi, f"{e['within_15pct']:.0%} ({e['median_abs_error'] or 0:.1%})"]
        for setting in ("estimated", "as_scanned"):
            cells += [f"{q[setting][m]['color/delta_e2000']:.2f} / {q[setting][m]['color/delta_e2000_detailed']:.2f}"
                      for m in models]
        lines.append("| " + " | ".join(cells) + " |")
    c = r["cost"]
    lines += ["", f"Cost of the same layout at 600 against 300 dpi: {c['ratio_600_to_300_dpi_given']:.2f}× with the "
                  f"dpi given ({c['600']['seconds_dpi_given']:.2f} s / {c['300']['seconds_dpi_given']:.2f} s), "
                  f"{c['ratio_600_to_300_dpi_estimated']:.2f}× estimated ({c['600']['seconds_dpi_estimated']:.2f} s /"
                  f" {c['300']['seconds_dpi_estimated']:.2f} s)."]
    return lines
