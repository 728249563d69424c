"""``python -m dualflow bench --experiment NAME``: quality, speed and memory of the dual flow against the
single-flow baseline (and the primary model run alone on whole pages), on the same machine and pages.

Writes ``bench/results.json`` and ``bench/results.md`` (the Markdown table, also printed). Each timing is the
median of repeated runs after a warm-up; ratios are taken within one run. Peak memory is measured in a fresh
process per (model, page size): process RSS on CPU, ``max_memory_allocated`` on GPU.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

SIZES = ((1024, 1448), (2048, 2896), (4096, 5792))  # (W, H) of manga pages, A-series aspect
TINY_SIZES = ((128, 181), (256, 362))


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _proc_mib(path: str, key: str) -> float | None:
    """A ``key:  N kB`` line of a /proc file, in MiB (None where /proc is not there)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def _rss_mib() -> float:
    """Peak resident memory of this process image (VmHWM). Unlike ``ru_maxrss``, which survives ``exec`` and
    so would report the parent's peak in a spawned worker, VmHWM belongs to this address space only."""
    peak = _proc_mib("/proc/self/status", "VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


# ---- data -----------------------------------------------------------------------------------------------
def bench_data(repeats: int, n: int) -> dict[str, float]:
    from dualflow.data.synth import SynthManga

    gen = SynthManga(0)
    out = {}
    for name, size in (("256x256", 256), ("512x724", (724, 512))):
        seconds = timed(lambda size=size: [gen(i, size) for i in range(n)], repeats)
        out[f"synth_pages_per_s_{name}"] = n / seconds
    return out


def bench_sources(n: int, size: int) -> dict[str, float]:
    """Training pages/s of each data source in one process (no loader workers), on the same pages and
    augmentation: SynthManga drawing them, a folder of their colour PNGs (decoded and mangafied), and the same
    folder prepared as LitData shards (streamed, decoded and mangafied)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from dualflow.data.datamodule import MangaDataModule
    from dualflow.data.stream import prepare
    from dualflow.data.synth import SynthManga

    out = {}
    with tempfile.TemporaryDirectory(prefix="dualflow-sources-") as folder:
        colour, shards = Path(folder) / "colour", Path(folder) / "shards"
        colour.mkdir()
        gen = SynthManga(0)
        for i in range(n):
            Image.fromarray((gen(i, size).color * 255).astype(np.uint8)).save(colour / f"{i:05d}.png")
        prepare(colour, str(shards), "color", workers=1)
        for source, root in (("synth", None), ("color", str(colour)), ("stream", str(shards))):
            dm = MangaDataModule(source=source, root=root, image_size=size, crop_size=size, n_train=n, n_val=1,
                                 n_test=1, batch_size=4, num_workers=0)
            dm.setup("fit")
            loader = dm.train_dataloader()
            start, pages = time.perf_counter(), 0
            for batch in loader:
                pages += batch["bw"].shape[0]
            out[f"{source}_pages_per_s_{size}"] = pages / (time.perf_counter() - start)
    return out


# ---- inference speed and memory (one fresh process per measurement) -------------------------------------
def _load(kind: str, experiment: str, runs_dir: str):
    from dualflow.inference import load_colorizer
    from dualflow.manifest import stage_checkpoint
    from dualflow.stages.frozen import load_stage_net

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if kind == "dualflow":
        model = load_colorizer(experiment, runs_dir, device=device)
        return lambda bw: model.colorize_page(bw)["rgb"]
    if kind == "attention":
        from dualflow.pipeline import importance_tiled

        net, _ = load_stage_net(stage_checkpoint(experiment, "attention", runs_dir), "attention")
        net = net.to(device)
        return lambda bw: importance_tiled(net, bw.reshape(1, 1, *bw.shape[-2:]).to(device))
    if kind == "baseline":
        net, _ = load_stage_net(stage_checkpoint(experiment, "baseline", runs_dir), "baseline")
        net = net.to(device)
        return lambda bw: net(bw.reshape(1, 1, *bw.shape[-2:]).to(device))
    # The primary model alone on the whole page (importance set to 1): what the dual flow avoids.
    net, _ = load_stage_net(stage_checkpoint(experiment, "primary", runs_dir), "primary")
    net = net.to(device)
    return lambda bw: net(torch.cat([bw, torch.ones_like(bw)]).reshape(1, 2, *bw.shape[-2:]).to(device))


def _inference_worker(kind, experiment, runs_dir, size, repeats, threads, queue) -> None:
    try:
        torch.set_num_threads(threads)
        run = _load(kind, experiment, runs_dir)
        w, h = size
        from dualflow.data.synth import SynthManga

        bw = torch.from_numpy(SynthManga(7)(0, (min(h, 724), min(w, 512))).bw)
        bw = bw.repeat(-(-h // bw.shape[0]), -(-w // bw.shape[1]))[:h, :w][None].contiguous()
        with torch.inference_mode():
            run(bw[..., :512, :512])  # warm-up (threads, allocator) on a small page
            base_rss = _rss_mib()
            if torch.cuda.is_available():
                torch.cuda.reset_peak_memory_stats()
            seconds = timed(lambda: run(bw), repeats, warmup=0)
        result = {"seconds": seconds, "peak_rss_mib": _rss_mib(), "rss_before_mib": base_rss}
        if torch.cuda.is_available():
            result["peak_gpu_mib"] = torch.cuda.max_memory_allocated() / 2**20
        queue.put(result)
    except Exception as e:  # noqa: BLE001 - reported in the results, the bench goes on
        queue.put({"error": f"{type(e).__name__}: {e}"})


def measure(kind: str, experiment: str, runs_dir: str, size, repeats: int) -> dict[str, Any]:
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    proc = ctx.Process(target=_inference_worker,
                       args=(kind, experiment, runs_dir, size, repeats, torch.get_num_threads(), queue))
    proc.start()
    proc.join()
    if proc.exitcode != 0 and queue.empty():
        return {"error": f"worker died with exit code {proc.exitcode} (out of memory?)"}
    return queue.get()


def _above_start(result: dict) -> float:
    """Peak memory of the inference itself: the peak minus the process's memory with libraries and models
    loaded (which varies with the page cache by a few hundred MiB); what ``max_memory_allocated`` is on GPU."""
    return result["peak_rss_mib"] - result["rss_before_mib"]


def _peak(result: dict) -> float:
    """The memory figure that bounds the page size: GPU memory (``max_memory_allocated``) when the page ran on a
    GPU, else the process's peak RSS."""
    return result.get("peak_gpu_mib", result["peak_rss_mib"])


def _available_mib() -> float:
    available = _proc_mib("/proc/meminfo", "MemAvailable")
    return available if available is not None else float("inf")


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
                if estimate > 0.8 * _available_mib():
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
                out[key][f"memory_ratio_vs_{other}"] = _peak(ref) / _peak(o)
                if "peak_gpu_mib" not in o and _above_start(o) > 0:  # tiny pages may not raise the peak at all
                    out[key][f"memory_above_start_ratio_vs_{other}"] = _above_start(ref) / _above_start(o)
    return out


# ---- quality --------------------------------------------------------------------------------------------
def bench_models(experiment: str, runs_dir: str, has_baseline: bool,
                 chroma_temperature: float | None = None) -> dict[str, Any]:
    """The models the quality figures compare, loaded once: the composite, the same composite with no priority
    patches (what the primary flow adds is the difference) and, when trained, the single-flow baseline.
    ``chroma_temperature``: decoding temperature of models with a chroma grid (None: the trained one)."""
    from dualflow.inference import load_colorizer
    from dualflow.manifest import stage_checkpoint
    from dualflow.stages.composite import set_chroma_temperature
    from dualflow.stages.frozen import load_stage_net

    extra = {} if chroma_temperature is None else {"chroma_temperature": chroma_temperature}
    models = {"dualflow": load_colorizer(experiment, runs_dir, device="cpu", allow_random_backbone=True, **extra),
              "secondary_only": load_colorizer(experiment, runs_dir, device="cpu", allow_random_backbone=True,
                                               patch_budget=0, **extra)}
    if has_baseline:
        models["baseline"] = load_stage_net(stage_checkpoint(experiment, "baseline", runs_dir), "baseline")[0]
        if chroma_temperature is not None and models["baseline"].chroma is not None:
            set_chroma_temperature([models["baseline"]], chroma_temperature)
    return models


def bench_quality(models: dict[str, Any], pages: int, size: int, oracle_pages: int = 128) -> dict[str, Any]:
    """The metric suite on held-out SynthManga pages: dual flow, secondary only, baseline, and the two oracles
    (:mod:`dualflow.oracle`, fitted on ``oracle_pages`` other pages) that show how far the figures can go."""
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import SynthManga
    from dualflow.oracle import ClassToneOracle

    oracle = ClassToneOracle.fit(SynthManga(0)(i, size) for i in range(oracle_pages))
    rng = np.random.default_rng(0)
    truth = lambda s: (s["color"].permute(1, 2, 0).numpy(), s["labels"][0].numpy())  # noqa: E731
    references = {"oracle_median": lambda s: oracle.median_page(*truth(s)),
                  "oracle_sample": lambda s: oracle.sampled_page(*truth(s), rng)}
    data = SynthMangaDataset(pages, size, seed=31337)
    result = _quality([data[i] for i in range(pages)], models, references)
    result["pages"], result["page_size"], result["oracle_pages"] = pages, size, oracle_pages
    return result


def bench_transfer(models: dict[str, Any], size: int, crops: int) -> dict[str, Any]:
    """The same suite on real colour photographs rendered B&W by mangafy (:mod:`dualflow.data.real`): what the
    models carry from SynthManga to pictures they were not drawn from."""
    from dualflow.data.real import REAL_IMAGES, real_pages

    pages = real_pages(size, crops)
    result = _quality(pages, models)
    result["pages"], result["page_size"], result["images"] = len(pages), size, list(REAL_IMAGES)
    return result


def bench_consistency(models: dict[str, Any], chapters: int, pages: int, size: int) -> dict[str, Any]:
    """Cross-page consistency (:class:`ChapterConsistency`) on SynthManga chapters with recurring characters:
    of the colour pages themselves (time of day and shading vary, so it is not 0) and of the dual flow colouring
    each page on its own."""
    from dualflow.data.palette import PARTS, part_ids
    from dualflow.data.synth import SynthManga
    from dualflow.metrics.consistency import ChapterConsistency

    model = models["dualflow"]
    gen = SynthManga(4242)
    truth, per_page = ChapterConsistency(len(PARTS)), ChapterConsistency(len(PARTS))
    with torch.inference_mode():
        for c in range(chapters):
            for p in range(pages):
                page = gen.chapter_page(c, p, pages, size)
                maps = {"identity": torch.from_numpy(page.identity)[None, None],
                        "parts": torch.from_numpy(part_ids(page.labels))[None, None], "chapter": torch.tensor([c])}
                truth.update(torch.from_numpy(page.color).permute(2, 0, 1)[None], **maps)
                per_page.update(model.colorize_page(torch.from_numpy(page.bw)[None])["rgb"][None], **maps)
    return {"chapters": chapters, "pages_per_chapter": pages, "page_size": size,
            "truth": float(truth.compute()), "dualflow_per_page": float(per_page.compute())}


def _quality(samples: list[dict], models: dict[str, Any], references: dict[str, Any] | None = None) -> dict[str, Any]:
    """The page suite of every model on ``samples``; ``references``: name → function of a sample giving its RGB
    page (1,3,H,W), scored beside the models (the oracles)."""
    from dualflow.color import nlab_to_rgb
    from dualflow.metrics.suite import build_suite, compute_logged, page_inputs, update_suite

    model, secondary_only, baseline = models["dualflow"], models["secondary_only"], models.get("baseline")
    references = references or {}
    names = list(models) + list(references)
    suites = {name: build_suite("page", "bench", lpips=True, allow_random_backbone=True) for name in names}
    metric_seconds = []
    with torch.inference_mode():
        for s in samples:
            batch = {k: s[k][None] for k in ("bw", "color", "labels", "detailed") if k in s}
            out = model.colorize_page(s["bw"])
            common = page_inputs(batch, [out["plan"]])
            start = time.perf_counter()
            update_suite(suites["dualflow"], preds=out["rgb"][None], **common)
            metric_seconds.append(time.perf_counter() - start)
            update_suite(suites["secondary_only"], preds=secondary_only.colorize_page(s["bw"])["rgb"][None], **common)
            if baseline is not None:
                update_suite(suites["baseline"], preds=nlab_to_rgb(baseline(batch["bw"])), **common)
            for name, reference in references.items():
                update_suite(suites[name], preds=reference(s), **common)
    result: dict[str, Any] = {name: {k.removeprefix("bench/"): float(v) for k, v in compute_logged(suite).items()}
                              for name, suite in suites.items()}
    result["metric_suite_seconds_per_page"] = statistics.median(metric_seconds)
    return result


# ---- stage costs ----------------------------------------------------------------------------------------
def bench_stages(experiment: str, runs_dir: str, repeats: int, sizes, batch: int = 4) -> dict[str, Any]:
    """Stage-1 inference (tiled) per page size, stage-2 inference per patch batch, and training throughput
    of each stage (optimizer steps on SynthManga batches at the trained configuration)."""
    from dualflow.data.datasets import SynthMangaDataset, collate_skipping
    from dualflow.manifest import read_manifest
    from dualflow.pipeline import importance_tiled
    from dualflow.stages.frozen import load_stage_net

    stages = read_manifest(experiment, runs_dir)["stages"]
    out: dict[str, Any] = {}
    attention, _ = load_stage_net(stages["attention"]["best_ckpt"], "attention")
    with torch.inference_mode():
        for w, h in sizes[:2]:
            bw = torch.rand(1, 1, h, w).round()
            out[f"stage1_inference_seconds_{w}x{h}"] = timed(lambda bw=bw: importance_tiled(attention, bw), repeats)
        primary, meta = load_stage_net(stages["primary"]["best_ckpt"], "primary")
        p = meta["plan"]["patch_size"]
        x = torch.rand(16, 2, p, p)
        out["stage2_inference_seconds_per_16_patches"] = timed(lambda: primary(x), repeats)
        out["metric_suite_seconds_per_page_512"] = _metric_cost(repeats)
    data = SynthMangaDataset(batch * 3, 256, seed=5, transform=None)
    batches = [collate_skipping([data[i] for i in range(j * batch, (j + 1) * batch)]) for j in range(3)]
    for name in ("attention", "primary", "secondary", "baseline"):
        if name not in stages or not stages[name].get("best_ckpt"):
            continue
        out[f"train_{name}"] = _train_throughput(stages[name], batches, repeats)
    return out


def _metric_cost(repeats: int) -> float:
    """Seconds for the full page metric suite (LPIPS included, FID excluded) on one 512² page."""
    from dualflow.metrics.suite import build_suite, update_suite

    suite = build_suite("page", "bench", lpips=True, allow_random_backbone=True)
    g = torch.Generator().manual_seed(0)
    preds, target = torch.rand(1, 3, 512, 512, generator=g), torch.rand(1, 3, 512, 512, generator=g)
    masks = (torch.rand(1, 1, 512, 512, generator=g) > 0.5).float()
    return timed(lambda: update_suite(suite, preds=preds, target=target, bw=masks, transition=masks, seams=masks,
                                      detailed=masks), repeats)


def _train_throughput(entry: dict, batches: list[dict], repeats: int) -> dict[str, float]:
    import importlib

    cfg = entry["config"]["model"]
    module_name, _, cls = cfg["class_path"].rpartition(".")
    module = getattr(importlib.import_module(module_name), cls)(**cfg["init_args"])
    module.train()
    opt = torch.optim.AdamW([p for p in module.net.parameters() if p.requires_grad], lr=1e-4)

    def step():
        for i, b in enumerate(batches):
            loss = module.training_step(b, i)
            opt.zero_grad()
            loss.backward()
            opt.step()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        seconds = timed(step, repeats)
    pages = sum(b["bw"].shape[0] for b in batches) / seconds
    plan = getattr(module, "plan_settings", None)
    if entry["config"]["model"]["class_path"].endswith("PrimaryModule"):
        per_page = plan.budget + math.ceil(plan.budget * module.hparams.random_share)
        return {"pages_per_s": pages, "patches_per_s": pages * per_page}
    return {"pages_per_s": pages}


# ---- report ---------------------------------------------------------------------------------------------
def markdown(results: dict[str, Any], command: str) -> str:
    m = results["machine"]
    lines = [f"Measured {m['date']} on {m['cpu']} ({m['cores']} cores{', ' + m['gpu'] if m['gpu'] else ''}), "
             f"torch {m['torch']}, with `{command}`.", ""]
    if results.get("breakdown"):
        from dualflow.bench_steps import markdown as breakdown_table

        lines += breakdown_table(results["breakdown"])
    q = results.get("quality")
    if q:
        names = [n for n in ("dualflow", "secondary_only", "baseline", "oracle_median", "oracle_sample") if n in q]
        oracles = (f"; the oracles are given each pixel's class and tone level (fitted on {q['oracle_pages']} other "
                   "pages): `oracle_median` the best single guess, `oracle_sample` one plausible colour per region"
                   if "oracle_median" in q else "")
        lines += [f"**Quality** on {q['pages']} held-out SynthManga pages ({q['page_size']}²){oracles}:", "",
                  "| metric | " + " | ".join(names) + " |", "|---" * (len(names) + 1) + "|"]
        for key in ("color/delta_e2000", "color/delta_e2000_detailed", "global/lpips_randinit", "global/lpips",
                    "color/delta_cf", "color/tone_residue", "transition/seam", "transition/delta_e2000",
                    "edge/chroma_on_ink", "edge/f1", "color/psnr", "color/ssim"):
            if key in q["dualflow"]:
                lines.append(f"| {key} | " + " | ".join(f"{q[n].get(key, float('nan')):.3f}" for n in names) + " |")
        lines.append("")
    t = results.get("transfer")
    if q and t:
        names = [n for n in ("dualflow", "secondary_only", "baseline") if n in t]
        lines += [f"**Transfer** to {t['pages']} real photographs ({', '.join(t['images'])}; {t['page_size']}² "
                  "crops rendered B&W by mangafy) beside the SynthManga pages above; the gap is the domain gap:", "",
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
        kinds = [k for k in ("dualflow", "baseline", "primary_whole_page") if any(k in v for v in inf.values())]
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
                    cells += [f"{r['seconds']:.2f}", f"{_peak(r):.0f}" if gpu else
                              f"{r['peak_rss_mib']:.0f} (+{_above_start(r):.0f})"]
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
        if results.get("quality"):
            lines.append(f"| metric suite seconds per page ({results['quality']['page_size']}²) | "
                         f"{results['quality']['metric_suite_seconds_per_page']:.3f} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--out", default="bench", help="folder for results.json and results.md")
    parser.add_argument("--pages", type=int, default=64, help="held-out pages for the quality comparison")
    parser.add_argument("--page_size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--tiny", action="store_true", help="small pages and counts (for tests)")
    parser.add_argument("--breakdown_preset", default="gpu",
                        help="preset whose sizes the training-step breakdown uses (experiments/presets/)")
    parser.add_argument("--breakdown_steps", type=int, default=3, help="timed training steps per stage")
    parser.add_argument("--only", choices=["all", "breakdown", "inference", "quality"], default="all",
                        help="breakdown: only the training-step breakdown (needs no trained experiment); "
                             "inference: only page inference time and memory; quality: only the quality, "
                             "transfer and chapter-consistency figures (compares experiments in minutes)")
    parser.add_argument("--chroma_temperature", type=float, default=None,
                        help="decoding temperature for models trained with a chroma grid (default: trained value)")
    args = parser.parse_args(argv)
    from dualflow import bench_steps
    from dualflow.manifest import read_manifest

    results: dict[str, Any] = {"machine": machine(), "experiment": args.experiment}
    if args.only == "breakdown":
        results["breakdown"] = bench_steps.breakdown(args.breakdown_preset, args.breakdown_steps, tiny=args.tiny)
        return _write(results, args.out, argv)
    stages = read_manifest(args.experiment, args.runs_dir).get("stages", {})
    missing = [s for s in ("attention", "primary", "secondary") if s not in stages]
    if missing:
        print(f"error: experiment {args.experiment!r} lacks stages {missing}: run `make train EXP={args.experiment}`")
        return 2
    has_baseline = "baseline" in stages
    if not has_baseline:
        print(f"[bench] no baseline in {args.experiment!r}: run `make train-baseline EXP={args.experiment}` for the "
              "ablation; reporting the dual flow and the primary-on-whole-page reference only")
    sizes = TINY_SIZES if args.tiny else SIZES
    kinds = ["dualflow", "baseline", "primary_whole_page"] if has_baseline else ["dualflow", "primary_whole_page"]
    if args.only == "inference":
        return _write(_inference(results, args, sizes, kinds), args.out, argv)
    if args.only == "all":
        results["breakdown"] = bench_steps.breakdown(args.breakdown_preset, args.breakdown_steps, tiny=args.tiny)
        results["data"] = bench_data(args.repeats, 4 if args.tiny else 32)
        results["data"].update(bench_sources(8 if args.tiny else 128, 64 if args.tiny else 256))
        results["stages"] = bench_stages(args.experiment, args.runs_dir, args.repeats, sizes)
    models = bench_models(args.experiment, args.runs_dir, has_baseline, args.chroma_temperature)
    results["quality"] = bench_quality(models, args.pages, args.page_size, 8 if args.tiny else 128)
    results["transfer"] = bench_transfer(models, args.page_size, 1 if args.tiny else 4)
    results["consistency"] = bench_consistency(models, 2 if args.tiny else 8, 3 if args.tiny else 8,
                                               128 if args.tiny else args.page_size)
    del models  # the inference figures are taken in fresh processes; free these first
    if args.only == "quality":
        return _write(results, args.out, argv)
    return _write(_inference(results, args, sizes, kinds), args.out, argv)


def _inference(results: dict[str, Any], args: argparse.Namespace, sizes, kinds: list[str]) -> dict[str, Any]:
    """Whole-page inference time and memory per page size, and stage-1 inference alone."""
    results["inference"] = bench_inference(args.experiment, args.runs_dir, sizes, args.repeats, kinds)
    results["stage1_inference"] = bench_inference(args.experiment, args.runs_dir, sizes[:2], args.repeats,
                                                  ["attention"])
    return results


def _write(results: dict[str, Any], out: str, argv: list[str] | None) -> int:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=2, default=float))
    command = "python -m dualflow bench " + " ".join(argv if argv is not None else [])
    table = markdown(results, command.strip())
    (out / "results.md").write_text(table)
    print(table)
    return 0
