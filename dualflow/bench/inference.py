"""Whole-page inference time and memory on print-scale SynthManga pages (300 dpi), one fresh process per
(model, page size): the dual flow against the single-flow baseline and the primary model run alone on the
whole page, and the dual flow's networks run by ONNX Runtime (``dualflow_onnx``). Process RSS on CPU,
``max_memory_allocated`` on GPU."""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

import torch

from dualflow.bench.probes import available_mib, reset_peak_rss, rss_mib, timed
from dualflow.hints import without_hints

SIZES = ((1024, 1448), (2048, 2896), (4096, 5792))  # (W, H) of manga pages, A-series aspect


TINY_SIZES = ((128, 181), (256, 362))


def _load(kind: str, experiment: str, runs_dir: str, plan: dict | None = None):
    from dualflow.loader import load_page_colorizer
    from dualflow.manifest import stage_checkpoint
    from dualflow.stages.frozen import load_stage_net

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "dualflow":  # ``plan``: overrides of the patch plan (loader.plan_settings)
        model = load_page_colorizer(experiment, runs_dir, device=device, **(plan or {}))
        return lambda bw: model.colorize_page(bw)["rgb"]
    if kind == "dualflow_onnx":
        from dualflow.onnx_engine import load_onnx_colorizer

        model = load_onnx_colorizer(export_folder(experiment, runs_dir))
        return lambda bw: model.colorize_page(bw)["rgb"]
    if kind == "attention":
        from dualflow.pipeline import importance_tiled

        net, _ = load_stage_net(stage_checkpoint(experiment, "attention", runs_dir, None), "attention")
        net = net.to(device)
        return lambda bw: importance_tiled(net, bw.reshape(1, 1, *bw.shape[-2:]).to(device))
    if kind == "baseline":
        net, _ = load_stage_net(stage_checkpoint(experiment, "baseline", runs_dir, None), "baseline")
        net = net.to(device)
        return lambda bw: net(without_hints(bw.reshape(1, 1, *bw.shape[-2:]).to(device), net.in_channels))
    # The primary model alone on the whole page (importance set to 1): what the dual flow avoids.
    net, _ = load_stage_net(stage_checkpoint(experiment, "primary", runs_dir, None), "primary")
    net = net.to(device)
    return lambda bw: net(without_hints(torch.cat([bw, torch.ones_like(bw)]).reshape(1, 2, *bw.shape[-2:]).to(device),
                                        net.in_channels))


def export_folder(experiment: str, runs_dir: str) -> str:
    """The experiment's ONNX export (``runs/<exp>/onnx``), exported and checked first when it has none or has one
    of an older format."""
    import json
    from pathlib import Path

    from dualflow.onnx_engine import FORMAT

    folder = Path(runs_dir) / experiment / "onnx"
    manifest = folder / "manifest.json"
    if not manifest.is_file() or json.loads(manifest.read_text()).get("format") != FORMAT:
        from dualflow.export import export_experiment

        export_experiment(experiment, folder, runs_dir)
    return str(folder)


def _inference_worker(kind, experiment, runs_dir, size, repeats, threads, queue, plan=None) -> None:
    try:
        torch.set_num_threads(threads)
        run = _load(kind, experiment, runs_dir, plan)
        w, h = size
        from dualflow.data.synth import PrintScale, SynthManga

        bw = torch.from_numpy(SynthManga(7)(0, (h, w), PrintScale.at_dpi()).bw)[None]  # a print-scale page
        with torch.inference_mode():
            run(bw[..., :512, :512])  # warm-up (threads, allocator) on a small page
            reset_peak_rss()  # drawing the page is not part of its inference
            base_rss = rss_mib()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            seconds = timed(lambda: run(bw), repeats, warmup=0)
        result = {"seconds": seconds, "peak_rss_mib": rss_mib(), "rss_before_mib": base_rss}
        if torch.cuda.is_available():
            result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        queue.put(result)
    except Exception as e:  # noqa: BLE001 - reported in the results, the bench goes on
        queue.put({"error": f"{type(e).__name__}: {e}"})


# Modules the fresh processes need, imported once by the fork server they start from (no model, no CUDA context
# there): each measurement still starts clean, without paying ~3 s of imports.
PRELOAD = ["torch", "dualflow.inference", "dualflow.stages.composite", "dualflow.onnx_engine",
           "dualflow.stages.frozen", "dualflow.data.synth"]


def _context():
    """Fresh processes forked from a server that has only imported :data:`PRELOAD` (spawn where fork is not)."""
    if "forkserver" not in mp.get_all_start_methods():
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(PRELOAD)
    return ctx


def measure(kind: str, experiment: str, runs_dir: str, size, repeats: int, plan: dict | None = None) -> dict[str, Any]:
    """Seconds a page of ``size`` (W, H) and peak memory of ``kind`` in a fresh process (``plan``: overrides of
    the dual flow's patch plan)."""
    ctx = _context()
    queue = ctx.Queue()
    proc = ctx.Process(target=_inference_worker,
                       args=(kind, experiment, runs_dir, size, repeats, torch.get_num_threads(), queue, plan))
    proc.start()
    proc.join()
    if proc.exitcode != 0 and queue.empty():
        return {"error": f"worker died with exit code {proc.exitcode} (out of memory?)"}
    return queue.get()


def above_start(result: dict) -> float:
    """Peak memory of the inference itself: the peak minus the process's memory with libraries and models
    loaded (which varies with the page cache by a few hundred MiB); what ``max_memory_allocated`` is on GPU."""
    return result["peak_rss_mib"] - result["rss_before_mib"]


def peak_memory(result: dict) -> float:
    """The memory figure that bounds the page size: GPU memory (``max_memory_allocated``) when the page ran on a
    GPU, else the process's peak RSS."""
    return result.get("peak_gpu_mib", result["peak_rss_mib"])


def bench_inference(experiment: str, runs_dir: str, sizes, repeats: int, kinds: list[str]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    last: dict[str, dict] = {}
    for w, h in sizes:
        key = f"{w}x{h}"
        out[key] = {}
        for kind in kinds:
            prev = last.get(kind)
            if prev and "peak_rss_mib" in prev and not torch.cuda.is_available():
                # Memory grows ~linearly with pixels for whole-page models: skip what would not fit.
                estimate = prev["peak_rss_mib"] * (w * h) / prev["pixels"]
                if estimate > 0.8 * available_mib():
                    out[key][kind] = {"skipped": f"estimated peak {estimate / 1024:.1f} GiB exceeds 80% of "
                                                 f"available memory"}
                    continue
            result = measure(kind, experiment, runs_dir, (w, h), repeats)
            result["pixels"] = w * h
            out[key][kind] = last[kind] = result
            print(f"[bench] {kind:9s} {key}: {result}", flush=True)
        ref = out[key].get("dualflow", {})
        for other in kinds[1:]:
            o = out[key].get(other, {})
            if "seconds" in ref and "seconds" in o:
                out[key][f"time_ratio_vs_{other}"] = ref["seconds"] / o["seconds"]
                out[key][f"memory_ratio_vs_{other}"] = peak_memory(ref) / peak_memory(o)
                if "peak_gpu_mib" not in o and above_start(o) > 0:  # tiny pages may not raise the peak at all
                    out[key][f"memory_above_start_ratio_vs_{other}"] = above_start(ref) / above_start(o)
    return out
