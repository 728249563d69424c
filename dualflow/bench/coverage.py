"""The coverage/cost curve (``bench --only coverage``): the dual flow with its plan at several densities (priority
patches per megapixel) on print-scale pages: the share of the page and of its detailed pixels inside priority
patches, ΔE2000 overall and in detailed regions, automatic and with clicked hints, page time and peak memory above
the loaded models (in a fresh process per plan); plotted as ``coverage_curve.png``. Choose a plan on tuning pages
(``--seed 2718``), never on the bench's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dualflow.bench.inference import above_start, measure
from dualflow.progress import ProgressLog

DENSITIES = (0.0, 12.0, 40.0, 80.0, 140.0)  # 0: the plan the experiment was trained with


def row_name(density: float) -> str:
    return f"density {density:g}" if density else "trained plan"


def bench_coverage(experiment: str, runs_dir: str, pages: int, size: tuple[int, int], dpi: float | None,
                   densities=DENSITIES, clicks: int = 64, seed: int = 0, cache: str | None = None,
                   repeats: int = 2) -> dict[str, Any]:
    """The curve on ``pages`` SynthManga pages of ``size`` (H, W): every density's quality (colour metrics; with
    ``clicks`` hints too when the models take them, the hint curve's ``clicks`` protocol), coverage, and cost."""
    from dualflow.bench.hint_curve import hinted_samples
    from dualflow.bench.quality import CORE_METRICS, _quality
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import PrintScale
    from dualflow.loader import load_page_colorizer

    data = SynthMangaDataset(pages, size, seed=seed, scale=PrintScale.at_dpi(dpi) if dpi else None, cache=cache)
    data.fill_cache(2)
    models = {row_name(d): load_page_colorizer(experiment, runs_dir, device="cpu",
                                               **({"patch_density": d} if d else {})) for d in densities}
    label = f"{size[1]}x{size[0]}"
    result: dict[str, Any] = {"pages": pages, "page_size": label, "dpi": dpi or 0, "seed": seed,
                              "densities": list(densities)}
    result["automatic"] = _quality((data[i] for i in range(pages)), models, only=CORE_METRICS,
                                   progress=ProgressLog(f"bench coverage {label}", pages))
    if clicks and next(iter(models.values())).takes_hints:
        record: list = []
        result[f"clicks {clicks}"] = _quality(hinted_samples(data, "clicks", clicks, seed, record), models,
                                              only=CORE_METRICS,
                                              progress=ProgressLog(f"bench coverage {label}, {clicks} clicks", pages))
    del models
    for d in densities:  # cost in a fresh process per plan, as the inference bench measures pages
        cost = measure("dualflow", experiment, runs_dir, size[::-1], repeats, {"patch_density": d} if d else None)
        result["automatic"][row_name(d)].update(
            {"seconds_per_page": cost["seconds"], "peak_mib_above_loaded": above_start(cost)} if "seconds" in cost
            else {"cost_error": cost["error"]})
    return result


def coverage_table(r: dict[str, Any]) -> list[str]:
    """One curve as a Markdown table: a row per density."""
    settings = [k for k in r if k == "automatic" or k.startswith("clicks")]
    head = ["plan", "page covered", "detailed covered"] + [f"{s} ΔE2000 / detailed" for s in settings] + [
        "s / page", "peak MiB above loaded"]
    lines = [f"**Coverage/cost curve at {r['page_size']}** ({r['pages']} pages, seed {r['seed']}, "
             f"{r['dpi']:g} dpi; the primary's share of the page against quality and cost):", "",
             "| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for d in r["densities"]:
        auto = r["automatic"][row_name(d)]
        cells = [row_name(d), f"{auto['coverage/page']:.1%}", f"{auto.get('coverage/detailed', float('nan')):.1%}"]
        for s in settings:
            row = r[s][row_name(d)]
            cells.append(f"{row['color/delta_e2000']:.2f} / {row['color/delta_e2000_detailed']:.2f}")
        cells += [f"{auto['seconds_per_page']:.2f}", f"{auto['peak_mib_above_loaded']:.0f}"]
        lines.append("| " + " | ".join(cells) + " |")
    return lines + [""]


def plot_coverage_curve(r: dict[str, Any], path: Path) -> Path:
    """``coverage_curve.png``: ΔE2000 and detailed ΔE2000 against the share of the page in priority patches (one
    line per setting: automatic, with clicks), and seconds a page against the same share."""
    from dualflow.bench.chart import Panel, line_charts

    settings = [k for k in r if k == "automatic" or k.startswith("clicks")]
    share = {d: round(100 * r["automatic"][row_name(d)]["coverage/page"], 1) for d in r["densities"]}
    panels = []
    for metric, label in (("color/delta_e2000", "dE2000"), ("color/delta_e2000_detailed", "detailed dE2000")):
        lines = {s: [(share[d], r[s][row_name(d)][metric]) for d in r["densities"]] for s in settings}
        panels.append(Panel(f"{label} at {r['page_size']}, {r['pages']} pages (lower is better)", lines))
    seconds = {"automatic": [(share[d], r["automatic"][row_name(d)]["seconds_per_page"]) for d in r["densities"]]}
    panels.append(Panel(f"seconds a page at {r['page_size']}", seconds))
    path.parent.mkdir(parents=True, exist_ok=True)
    line_charts(panels, "% of the page in priority patches", log_x=False).save(path)
    return path

