"""Throughput of ``colorize`` on a volume: a ``.cbz`` of print-scale SynthManga pages (PNG, 300 dpi) coloured
end to end (decode, colour, encode PNG, pack the .cbz) in a fresh process per engine; pages/min."""

from __future__ import annotations

import io
import multiprocessing as mp
import tempfile
import time
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

VOLUME_SEED = 4242  # the volume's pages: their own seed, apart from training, tuning and quality pages


def write_volume(path: Path, pages: int, size: tuple[int, int], dpi: float | None, cache: str | None) -> Path:
    """A .cbz of ``pages`` B&W pages (H, W) = ``size``, drawn at ``dpi`` (through the page cache)."""
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import PrintScale

    scale = PrintScale.at_dpi(dpi) if dpi else None
    data = SynthMangaDataset(pages, size, seed=VOLUME_SEED, scale=scale, cache=cache)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as archive:
        for i in range(pages):
            buf = io.BytesIO()
            Image.fromarray((data.page(i).bw * 255 + 0.5).astype(np.uint8)).save(buf, "PNG")
            archive.writestr(f"chapter 1/page {i + 1}.png", buf.getvalue())
    return path


def _volume_worker(engine: str, experiment: str, runs_dir: str, volume: str, threads: int, writers: int,
                   queue) -> None:
    try:
        torch.set_num_threads(threads)
        from dualflow.inference import colorize
        from dualflow.loader import load_page_colorizer
        from dualflow.onnx_engine import load_onnx_colorizer

        if engine == "onnx":
            model = load_onnx_colorizer(Path(runs_dir) / experiment / "onnx")
        else:
            model = load_page_colorizer(experiment, runs_dir)
        with tempfile.TemporaryDirectory() as out:
            start = time.perf_counter()
            report = colorize([volume], out, model=model, progress=False, writers=writers)
            seconds = time.perf_counter() - start
            size_mib = sum(p.stat().st_size for p in Path(out).glob("*.cbz")) / 2**20
        queue.put({"pages": len(report.written), "errors": len(report.errors), "seconds": seconds,
                   "pages_per_min": 60 * len(report.written) / seconds, "cbz_mib": size_mib, "writers": writers})
    except Exception as e:  # noqa: BLE001 - reported in the results, the bench goes on
        queue.put({"error": f"{type(e).__name__}: {e}"})


def bench_volume(experiment: str, runs_dir: str, pages: int, size: tuple[int, int], dpi: float | None,
                 cache: str | None, engines: list[str], writers: int = 2) -> dict[str, Any]:
    """Pages/min of each engine on one volume (the same .cbz for all)."""
    ctx = mp.get_context("spawn")
    out: dict[str, Any] = {"pages": pages, "page_size": f"{size[1]}x{size[0]}", "dpi": dpi}
    with tempfile.TemporaryDirectory() as tmp:
        volume = write_volume(Path(tmp) / "volume.cbz", pages, size, dpi, cache)
        out["volume_mib"] = volume.stat().st_size / 2**20
        for engine in engines:
            queue = ctx.Queue()
            proc = ctx.Process(target=_volume_worker, args=(engine, experiment, runs_dir, str(volume),
                                                            torch.get_num_threads(), writers, queue))
            proc.start()
            proc.join()
            out[engine] = queue.get() if not queue.empty() else {"error": f"worker exit code {proc.exitcode}"}
            print(f"[bench] volume {engine}: {out[engine]}", flush=True)
    return out
