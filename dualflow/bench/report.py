"""The bench's results as Markdown: the training-step breakdown, quality, transfer, consistency, inference and
throughput tables, the coverage curve."""

from __future__ import annotations

from typing import Any

from dualflow.bench.coverage import coverage_table
from dualflow.bench.hint_curve import hint_table
from dualflow.bench.inference import above_start, peak_memory
from dualflow.bench.profile import profile_table
from dualflow.bench.quality import QUALITY_SEED
from dualflow.bench.scales import dpi_table
from dualflow.bench.steps import PHASES
from dualflow.stage_table import PIPELINE, STAGES


def breakdown_table(result: dict[str, Any]) -> list[str]:
    """The breakdown as a Markdown table (milliseconds and shares per phase, the forward and backward pass's
    achieved FLOP/s against the device's measured matmul peak)."""
    peaks = ", ".join(f"{name} {value / 1e9:.0f} GFLOP/s" for name, value in
                      result.get("matmul_peak_flops_per_s", {}).items())
    lines = [f"**Training step breakdown** ({result['preset']} preset sizes, median of {result['steps']} steps "
             "after a warm-up; `inputs` is planning, cropping, targets and canvas without the frozen networks; "
             f"FLOP/s of the trained network's forward and backward pass against the measured matmul peak: {peaks}):",
             "", "| stage | device, precision | " + " | ".join(PHASES) + " | step s | it/s | forward+backward "
             "GFLOP | GFLOP/s (share of peak) | loader pages/s (× step) |",
             "|---" * (len(PHASES) + 7) + "|"]
    for stage in (STAGES[s].key for s in PIPELINE):
        r = result.get(f"stage{stage}")
        if not r:
            continue
        cells = [f"{1000 * r['seconds'][k]:.1f} ms ({r['share'][k]:.0%})" for k in PHASES]
        share = f" ({r['share_of_matmul_peak']:.0%})" if "share_of_matmul_peak" in r else ""
        lines.append(f"| {stage} | {r['device']}, {r['precision']} | " + " | ".join(cells) +
                     f" | {r['step_seconds']:.3f} | {r['it_per_s']:.2f} | {r['forward_backward_flops'] / 1e9:.1f} | "
                     f"{r['forward_backward_flops_per_s'] / 1e9:.1f}{share} | {r['loader_pages_per_s']:.1f} "
                     f"({r['loader_vs_step']:.1f}×) |")
    return lines + [""]


ROWS = ("dualflow", "secondary_only", "baseline", "resize_baseline", "oracle_median", "oracle_sample")


def quality_table(q: dict[str, Any]) -> list[str]:
    """One page size's quality rows as a Markdown table."""
    names = [n for n in ROWS if n in q]
    oracles = (f"; the oracles are given each pixel's class and tone level (fitted on {q['oracle_pages']} training "
               "pages): `oracle_median` the best single guess, `oracle_sample` one plausible colour per region"
               if "oracle_median" in q else "")
    drawing = f"print scale, {q['dpi']:g} dpi" if q.get("dpi") else "thumbnail drawing"
    scope = "" if q.get("metrics", "full") == "full" else "; colour metrics only at this size (the full suite's cost)"
    lines = [f"**Quality at {q['page_size']}** on {q['pages']} held-out SynthManga pages ({drawing}); every model row "
             f"goes through the same fusion post-processing{oracles}{scope}:", "",
             "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
    for key in ("color/delta_e2000", "color/delta_e2000_detailed", "global/lpips_randinit", "global/lpips",
                "color/delta_cf", "class_colour_distance", "color/tone_residue", "transition/seam",
                "transition/delta_e2000",
                "edge/chroma_on_ink", "edge/f1", "color/psnr", "color/ssim", "coverage/page", "coverage/detailed"):
        if key in q["dualflow"]:
            lines.append(f"| {key} | " + " | ".join(f"{q[n].get(key, float('nan')):.3f}" for n in names) + " |")
    lines.append(f"| metric suite seconds per page | {q['metric_suite_seconds_per_page']:.2f} |"
                 + " |" * (len(names) - 1))
    return lines + [""]


def header(results: dict[str, Any], command: str) -> list[str]:
    """Where, when and how the figures were measured."""
    m = results["machine"]
    return [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores{', ' + m['gpu'] if m['gpu'] else ''}), "
            f"torch {m['torch']}, with `{command}`.", ""]


ABLATION_METRICS = {"color/delta_e2000": "ΔE2000", "color/delta_e2000_detailed": "ΔE2000 detailed",
                    "color/delta_cf": "ΔCF", "class_colour_distance": "class colour distance",
                    "color/tone_residue": "tone residue", "global/lpips_randinit": "LPIPS (random backbone)",
                    "global/lpips": "LPIPS"}


def merged_options(options: dict[str, Any]) -> dict[str, Any]:
    """``primary.x`` and ``secondary.x`` with one value named once, as ``x``."""
    merged = {}
    for key, value in options.items():
        stage, _, option = key.partition(".")
        twin = f"{'secondary' if stage == 'primary' else 'primary'}.{option}"
        merged[option if options.get(twin) == value else key] = value
    return merged


def ablation_markdown(results: dict[str, Any], command: str) -> str:
    """The ablation (:mod:`dualflow.bench.ablation`): one row per experiment and per oracle."""
    q = results["quality"]
    exps = results["experiments"]
    keys = [k for k in ABLATION_METRICS if k in q[exps[0]]]
    pages = "held-out" if q.get("seed", QUALITY_SEED) == QUALITY_SEED else f"tuning (seed {q['seed']})"
    lines = header(results, command) + [
        f"**Ablation** on {q['pages']} {pages} SynthManga pages {q['page_size']} (print scale, {q['dpi']:g} dpi), "
        f"every experiment on the same stage 1; training: wall seconds of stages 2 and 3 as they ran (validation "
        f"included); page: median seconds of one {q['page_size']} page in this process:", "",
        "| experiment | options | " + " | ".join(ABLATION_METRICS[k] for k in keys) + " | train s (2 + 3) | page s |",
        "|---" * (len(keys) + 4) + "|"]
    for name in [*exps, "oracle_median", "oracle_sample"]:
        options = ", ".join(f"{k}={v}" for k, v in merged_options(results["options"].get(name, {})).items())
        train = results["training"].get(name, {})
        walls = [train[s]["wall_seconds"] for s in ("primary", "secondary") if s in train]
        cost = (f"{sum(walls):.0f} ({' + '.join(f'{w:.0f}' for w in walls)})" if walls else "—")
        page = results["page_seconds"].get(name)
        lines.append(f"| {name} | {options or '—'} | " + " | ".join(f"{q[name].get(k, float('nan')):.2f}" for k in keys)
                     + f" | {cost} | {f'{page:.2f}' if page else '—'} |")
    shown = ", ".join(str(i) for i in results["samples"]["pages"])
    lines += ["", f"`ablation_samples.png`: {pages} pages {shown}; columns B&W, "
              + ", ".join(exps) + ", colour page."]
    return "\n".join(lines + [""])


def markdown(results: dict[str, Any], command: str) -> str:
    lines = header(results, command)
    if results.get("breakdown"):
        lines += breakdown_table(results["breakdown"])
    tables = results.get("quality") or {}
    for q in tables.values():
        lines += quality_table(q)
    for name, curve in (results.get("quality_hints") or {}).items():
        lines += hint_table(name, curve)
    if results.get("coverage"):
        lines += coverage_table(results["coverage"])
    if results.get("scan_resolutions"):
        r = results["scan_resolutions"]
        lines += ["", f"**Scan resolutions** ({r['pages']} layouts of {r['page_size_at_300dpi']} at 300 dpi, drawn "
                      f"at {r['drawn_at_dpi']:g} dpi and scanned at each, seed {r['seed']}, ΔE2000 / detailed; "
                      f"models trained at {r['trained_dpi']:g} dpi):", ""]
        lines += dpi_table(r, results["quality_dpi"])
    if results.get("profile"):
        lines += profile_table(results["profile"])
    q = next(iter(tables.values()), None)
    t = results.get("transfer")
    if q and t:
        names = [n for n in ("dualflow", "secondary_only", "baseline", "resize_baseline") if n in t]
        lines += [f"**Transfer** to {t['pages']} real photographs ({', '.join(t['images'])}; {t['page_size']}² "
                  f"crops rendered B&W by mangafy) beside the {q['page_size']} SynthManga pages above; the gap is "
                  "the domain gap:", "",
                  "| metric | " + " | ".join(f"{n}: synth | {n}: real | {n}: gap" for n in names) + " |",
                  "|---" * (3 * len(names) + 1) + "|"]
        for key in ("color/delta_e2000", "color/delta_cf", "color/psnr"):
            cells = []
            for n in names:
                a, b = q[n].get(key, float("nan")), t[n].get(key, float("nan"))
                cells += [f"{a:.2f}", f"{b:.2f}", f"{b - a:+.2f}"]
            lines.append(f"| {key} | " + " | ".join(cells) + " |")
        lines.append("")
    c = results.get("consistency")
    if c:
        lines += [f"**Chapter consistency** ({c['chapters']} SynthManga chapters of {c['pages_per_chapter']} pages, "
                  f"{c['page_size']}²; mean cross-page ΔE2000 of each recurring character's hair, skin and clothes): "
                  f"colour pages {c['truth']:.2f}, dual flow colouring each page alone {c['dualflow_per_page']:.2f}.",
                  ""]
    inf = results.get("inference")
    if inf:
        kinds = [k for k in ("dualflow", "dualflow_onnx", "baseline", "primary_whole_page")
                 if any(k in v for v in inf.values())]
        gpu = any("peak_gpu_mib" in r for v in inf.values() for r in v.values() if isinstance(r, dict))
        memory = ("peak GPU memory (`max_memory_allocated`)" if gpu else "peak process RSS, and in brackets its part "
                  "above the process with libraries and models loaded")
        lines += [f"**Inference** per page (median after warm-up; {memory}):", "",
                  "| page | " + " | ".join(f"{k} s | {k} peak {'GPU ' if gpu else ''}MiB" for k in kinds) + " |",
                  "|---" * (2 * len(kinds) + 1) + "|"]
        for size, row in inf.items():
            cells = []
            for k in kinds:
                r = row.get(k, {})
                if "seconds" in r:
                    cells += [f"{r['seconds']:.2f}", f"{peak_memory(r):.0f}" if gpu else
                              f"{r['peak_rss_mib']:.0f} (+{above_start(r):.0f})"]
                else:
                    cells += ["—", r.get("skipped") or r.get("error", "—")]
            lines.append(f"| {size} | " + " | ".join(cells) + " |")
        lines.append("")
        for size, row in inf.items():
            ratios = [f"{row[f'time_ratio_vs_{k}']:.0%} of the time and {row[f'memory_ratio_vs_{k}']:.0%} of the "
                      f"peak memory of {k}" + (f" ({row[f'memory_above_start_ratio_vs_{k}']:.0%} above start)"
                                               if f"memory_above_start_ratio_vs_{k}" in row else "")
                      for k in kinds[1:] if f"time_ratio_vs_{k}" in row]
            if ratios:
                lines.append(f"At {size} the dual flow takes " + "; ".join(ratios) + ".")
        lines.append("")
    check = results.get("onnx_export")
    if check:
        lines += [f"**ONNX export** checked on a {check['page'][1]}x{check['page'][0]} page: |ONNX Runtime − PyTorch| "
                  f"mean {check['mean_abs'] * 255:.4f}/255, max {check['max_abs'] * 255:.4f}/255.", ""]
    vol = results.get("volume")
    if vol:
        cells = [f"{e} {vol[e]['pages_per_min']:.1f} pages/min ({vol[e]['seconds']:.0f} s, {vol[e]['errors']} errors)"
                 if "pages_per_min" in vol.get(e, {}) else f"{e} {vol.get(e, {}).get('error', '—')}"
                 for e in ("torch", "onnx")]
        lines += [f"**Volume** of {vol['pages']} pages {vol['page_size']} ({vol['volume_mib']:.0f} MiB .cbz) through "
                  f"`colorize` end to end (decode, colour, encode, pack): " + "; ".join(cells) + ".", ""]
    for size, row in results.get("stage1_inference", {}).items():
        r = row.get("attention", {})
        if "seconds" in r:
            memory = f"peak GPU {r['peak_gpu_mib']:.0f}" if "peak_gpu_mib" in r else f"peak RSS {r['peak_rss_mib']:.0f}"
            lines.append(f"Stage 1 alone at {size}: {r['seconds']:.2f} s, {memory} MiB.")
    lines.append("")
    other = {**results.get("data", {}), **results.get("stages", {})}
    if other:
        lines += ["**Throughput and stage costs:**", "", "| figure | value |", "|---|---|"]
        for k, v in other.items():
            if isinstance(v, dict):
                for kk, vv in v.items():
                    lines.append(f"| {k} {kk} | {vv:.1f} |")
            else:
                lines.append(f"| {k} | {v:.3f} |")
    return "\n".join(lines) + "\n"
