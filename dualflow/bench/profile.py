"""Where a page's time goes (``bench --only profile``): ``torch.profiler`` on CPU over one print-scale page per
size, coloured by the experiment's page colorizer after a warm-up: each pipeline step's share of the page (the
``page/<step>`` ranges of :meth:`colorizer.PageColorizer.colorize_page`) and the operations that take most of it
(self time, over all steps). The page is the thing to profile: planning, the guided filter and fusion are shared
by the PyTorch and ONNX engines, so the networks are only part of it."""

from __future__ import annotations

import time
from typing import Any

import torch

TOP = 12  # operations listed per page size


def profile_page(model, bw: torch.Tensor, top: int = TOP) -> dict[str, Any]:
    """One profiled ``colorize_page``: its wall seconds, each step's seconds and share, the ``top`` operations by
    self CPU time (seconds, calls, share of the page)."""
    from torch.profiler import ProfilerActivity, profile

    with torch.inference_mode():
        model.colorize_page(bw)  # warm-up
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            start = time.perf_counter()
            model.colorize_page(bw)
            seconds = time.perf_counter() - start
    events = prof.key_averages()
    steps = {e.key.removeprefix("page/"): e.cpu_time_total / 1e6 for e in events if e.key.startswith("page/")}
    ops = sorted((e for e in events if not e.key.startswith("page/")), key=lambda e: e.self_cpu_time_total,
                 reverse=True)[:top]
    return {"seconds": seconds,
            "steps": {k: {"seconds": v, "share": v / seconds} for k, v in steps.items()},
            "top_ops": [{"op": e.key, "self_seconds": e.self_cpu_time_total / 1e6, "calls": e.count,
                         "share": e.self_cpu_time_total / 1e6 / seconds} for e in ops]}


def bench_profile(experiment: str, runs_dir: str, sizes: list[tuple[int, int]], dpi: float | None,
                  seed: int) -> dict[str, Any]:
    """:func:`profile_page` at each page size (H, W) on a SynthManga page drawn at ``dpi`` (None: thumbnail
    drawing), with the experiment's PyTorch page colorizer."""
    from dualflow.data.synth import PrintScale, SynthManga
    from dualflow.loader import load_page_colorizer

    model = load_page_colorizer(experiment, runs_dir, device="cpu")
    out = {"threads": torch.get_num_threads()}
    for h, w in sizes:
        page = SynthManga(seed)(0, (h, w), PrintScale.at_dpi(dpi) if dpi else None)
        out[f"{w}x{h}"] = profile_page(model, torch.from_numpy(page.bw)[None])
    return out


def profile_table(r: dict[str, Any]) -> list[str]:
    """The profile as Markdown: per page size, the steps' shares, then the top operations."""
    lines = [f"**Profile of a page** (`torch.profiler`, CPU, {r['threads']} threads; one page after a warm-up):", ""]
    for size, p in r.items():
        if not isinstance(p, dict):
            continue
        steps = ", ".join(f"{k} {v['seconds']:.2f} s ({v['share']:.0%})" for k, v in p["steps"].items())
        lines += [f"At {size}, {p['seconds']:.2f} s: {steps}.", "", "| operation | self s | calls | share |",
                  "|---|---|---|---|"]
        lines += [f"| `{o['op']}` | {o['self_seconds']:.3f} | {o['calls']} | {o['share']:.1%} |" for o in p["top_ops"]]
        lines.append("")
    return lines
