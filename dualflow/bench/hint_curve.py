"""The hint curve: quality against the number of colour hints on the bench's held-out pages, for every model row
and the oracles. Protocols: ``clicks`` (one hint in each of the n largest flat-colour regions of the colour page,
:func:`hint_clicks.click_hints`) and ``random`` (n uniform points, each with the colour page's mean over its disc).
The hints are drawn once from a fixed seed (clicks need none) and written beside the results, so every row and
every later run sees the same hints."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from dualflow import hint_clicks
from dualflow import hints as H
from dualflow.bench.quality import CORE_METRICS, QUALITY_SEED, _quality, oracle_references
from dualflow.progress import ProgressLog

PROTOCOLS = ("clicks", "random")
COUNTS = (0, 4, 16, 64)


def draw(color: np.ndarray, protocol: str, n: int, seed: int, page: int) -> list[H.Hint]:
    """The hints of one page under ``protocol``: the same for a given (seed, page, n) in every run."""
    if protocol == "clicks":
        return hint_clicks.click_hints(color, n)
    if protocol == "random":
        return hint_clicks.random_hints(color, n, np.random.default_rng([seed, page, n]))
    raise ValueError(f"unknown hint protocol {protocol!r} (one of {', '.join(PROTOCOLS)})")


def bench_hints(models: dict[str, Any], pages: int, size: tuple[int, int], dpi: float | None,
                cache: str | None, out: Path, seed: int = QUALITY_SEED, oracle_pages: int = 16,
                counts: tuple[int, ...] = COUNTS) -> dict[str, Any]:
    """``result[protocol][n]``: the colour metrics and ``class_colour_distance`` of every model given n hints per
    page (n = 0: the automatic product), and of the oracles; the hints go to ``out/hints_<W>x<H>.json``."""
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import PrintScale

    scale = PrintScale.at_dpi(dpi) if dpi else None
    references = oracle_references(oracle_pages, size, scale, cache)
    data = SynthMangaDataset(pages, size, seed=seed, scale=scale, cache=cache)
    data.fill_cache(2)
    name = f"{size[1]}x{size[0]}"
    result: dict[str, Any] = {"pages": pages, "page_size": name, "dpi": dpi or 0, "seed": seed,
                              "hints_file": f"hints_{name}.json", "models_with_hints": {}}
    drawn: dict[str, dict[int, list]] = {}
    for protocol in PROTOCOLS:
        result[protocol], drawn[protocol] = {}, {}
        for n in counts:
            if n == 0 and protocol != PROTOCOLS[0]:  # no hints is one setting, whatever the protocol
                result[protocol][0] = result[PROTOCOLS[0]][0]
                continue
            drawn[protocol][n] = []
            progress = ProgressLog(f"bench hints {name} {protocol} n={n}", pages)
            samples = hinted_samples(data, protocol, n, seed, drawn[protocol][n])
            result[protocol][n] = _quality(samples, models, references, CORE_METRICS, progress)
    for model_name, model in models.items():
        result["models_with_hints"][model_name] = bool(getattr(model, "takes_hints", False))
    out.mkdir(parents=True, exist_ok=True)
    (out / result["hints_file"]).write_text(json.dumps(
        {"format": "[y, x, r, g, b, radius] per hint, page pixels and RGB in [0, 1]", "seed": seed,
         "page_size": name, "pages": pages, "hints": drawn}))
    return result


def hinted_samples(data, protocol: str, n: int, seed: int, record: list) -> Iterator[dict[str, Any]]:
    """The held-out samples with their hint maps, one page at a time (print-scale pages are not all held);
    each page's hints are appended to ``record`` as ``[y, x, r, g, b, radius]`` rows."""
    for i in range(len(data)):
        page = data.page(i)
        hints = draw(page.color, protocol, n, seed, i)
        record.append([[h.y, h.x, *h.rgb, h.radius] for h in hints])
        yield {**data[i], "identity": page.identity, "hints": H.paint(hints, page.color.shape[:2])}


def hint_table(name: str, r: dict[str, Any]) -> list[str]:
    """One size's curve as Markdown: ΔE2000, ΔE2000 in detailed regions and class colour distance per row and
    number of hints."""
    counts = [n for n in r[PROTOCOLS[0]]]
    rows = [k for k in r[PROTOCOLS[0]][counts[0]] if isinstance(r[PROTOCOLS[0]][counts[0]][k], dict)]
    head = [f"{p} {n}" for p in PROTOCOLS for n in counts if not (int(n) == 0 and p != PROTOCOLS[0])]
    lines = [f"**Hint curve at {name}** ({r['pages']} held-out pages, seed {r['seed']}; ΔE2000 / detailed / "
             f"class colour distance; hints in `{r['hints_file']}`; models trained without hints get none):", "",
             "| row | " + " | ".join(head) + " |", "|---" * (len(head) + 1) + "|"]
    for row in rows:
        cells = []
        for p in PROTOCOLS:
            for n in counts:
                if int(n) == 0 and p != PROTOCOLS[0]:
                    continue
                m = r[p][n][row]
                cells.append(f"{m['color/delta_e2000']:.2f} / {m['color/delta_e2000_detailed']:.2f} / "
                             f"{m.get('class_colour_distance', float('nan')):.2f}")
        lines.append(f"| {row} | " + " | ".join(cells) + " |")
    return lines + [""]


def plot_hint_curve(curves: dict[str, dict[str, Any]], path: Path) -> Path:
    """``bench/hint_curve.png``: ΔE2000 and detailed ΔE2000 (written dE2000: the default font has no Δ) against
    the number of clicks (log axis), one line per row (models and oracles), a pair of panels per page size."""
    from dualflow.bench.chart import Panel, line_charts

    panels = []
    for size, r in curves.items():
        clicks = r["clicks"]
        rows = [k for k in clicks[next(iter(clicks))] if isinstance(clicks[next(iter(clicks))][k], dict)]
        for metric, label in (("color/delta_e2000", "dE2000"), ("color/delta_e2000_detailed", "detailed dE2000")):
            lines = {row: [(float(n), clicks[n][row][metric]) for n in clicks if metric in clicks[n].get(row, {})]
                     for row in rows}
            panels.append(Panel(f"{label} at {size}, {r['pages']} pages (lower is better)", lines))
    path.parent.mkdir(parents=True, exist_ok=True)
    line_charts(panels, "clicks per page").save(path)
    return path

