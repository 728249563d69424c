"""Collections at scale: LitData optimized shards, written by ``dualflow prepare`` and streamed by
``--data.source=stream``, from a local folder or a bucket, sharded over DDP ranks and nodes.

A sample holds its pages PNG-encoded (lossless: screentone survives; a colour-only collection stores no B&W
page and is mangafied on the fly), its name and kind. Training draws them through the same augmentation as
the folder datasets, and the loader's saved state counts the batches training consumed, so resuming is exact.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import sys
import tempfile
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("LITDATA_DISABLE_VERSION_CHECK", "1")  # litdata otherwise asks PyPI on every dataset

import numpy as np  # noqa: E402
from litdata import StreamingDataLoader, StreamingDataset  # noqa: E402
from PIL import Image  # noqa: E402

from dualflow.data.datasets import _Transformed  # noqa: E402
from dualflow.data.io import DEFAULT_MAX_PIXELS, IMAGE_EXTENSIONS, ImageReadError, read_image  # noqa: E402

REPORT = "prepare_report.json"


# ---- prepare ---------------------------------------------------------------------------------------------
def _images(folder: Path) -> dict[str, Path]:
    """Image files below ``folder`` by their relative path without extension."""
    return {str(p.relative_to(folder).with_suffix("")): p for p in sorted(folder.rglob("*"))
            if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS}


def collect_items(src: Path, kind: str) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """Inputs of ``prepare``: ``color`` — every image below ``src``; ``paired`` — ``src/bw`` and ``src/color``
    matched by relative path. Returns (items, problems: pages without a partner)."""
    if not src.is_dir():
        raise FileNotFoundError(f"{src}: folder not found")
    if kind == "color":
        return [{"name": name, "color": str(p), "bw": ""} for name, p in _images(src).items()], []
    bw, color = _images(src / "bw"), _images(src / "color")
    if not bw or not color:
        raise FileNotFoundError(f"{src}: a paired collection needs images in {src / 'bw'} and {src / 'color'}")
    items = [{"name": n, "color": str(color[n]), "bw": str(bw[n])} for n in sorted(bw.keys() & color.keys())]
    problems = [{"file": str(p), "reason": f"no colour partner {n}.* in {src / 'color'}", "unpaired": True}
                for n, p in bw.items() if n not in color]
    problems += [{"file": str(p), "reason": f"no B&W partner {n}.* in {src / 'bw'}", "unpaired": True}
                 for n, p in color.items() if n not in bw]
    return items, problems


def encode_png(page: np.ndarray) -> bytes:
    """(H,W) or (H,W,3) float in [0,1] → 8-bit PNG bytes."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(page, 0, 1) * 255 + 0.5).astype(np.uint8)).save(buffer, format="PNG", compress_level=3)
    return buffer.getvalue()


def decode_png(data: bytes, channels: int) -> np.ndarray:
    img = Image.open(io.BytesIO(data))
    img.load()
    arr = np.asarray(img.convert("RGB" if channels == 3 else "L"), dtype=np.float32) / 255.0
    return np.ascontiguousarray(arr)


def _shrink(page: np.ndarray, size: int | None) -> np.ndarray:
    """Area-downscale so the short side is at most ``size`` (never enlarged; area keeps screentone density)."""
    h, w = page.shape[:2]
    if not size or min(h, w) <= size:
        return page
    scale = size / min(h, w)
    img = Image.fromarray((page * 255 + 0.5).astype(np.uint8))
    img = img.resize((max(1, round(w * scale)), max(1, round(h * scale))), Image.Resampling.BOX)
    return np.asarray(img, dtype=np.float32) / 255.0


@dataclass
class PrepareItem:
    """``optimize``'s function (runs in worker processes, so it is a picklable object): one input → one
    sample, or None for a file that cannot be used, logged with its reason to ``report_dir``."""

    size: int | None
    max_pixels: int | None
    report_dir: str

    def __call__(self, item: dict[str, str]) -> dict[str, Any] | None:
        with open(Path(self.report_dir) / f"done-{os.getpid()}", "ab") as done:  # one byte per item: progress
            done.write(b".")
        try:
            color = read_image(item["color"], 3, self.max_pixels)
            bw = b""
            if item["bw"]:
                page = read_image(item["bw"], 1, self.max_pixels)
                if page.shape != color.shape[:2]:
                    raise ImageReadError(f"{item['bw']}: {page.shape[1]}x{page.shape[0]}, but its colour partner "
                                         f"{item['color']} is {color.shape[1]}x{color.shape[0]}")
                bw = encode_png(_shrink(page, self.size))
            return {"name": item["name"], "color": encode_png(_shrink(color, self.size)), "bw": bw}
        except (ImageReadError, MemoryError) as e:
            with open(Path(self.report_dir) / f"skipped-{os.getpid()}.jsonl", "a") as log:
                log.write(json.dumps({"file": item["bw"] or item["color"], "reason": str(e)}) + "\n")
            return None


@contextlib.contextmanager
def _watch(report_dir: str, total: int, every: float = 5.0) -> Iterator[None]:
    """Progress lines while ``optimize`` runs: the workers' ``done-*`` files hold one byte per item taken
    (litdata's own bar moves only when a worker finishes)."""
    from dualflow.progress import ProgressLog

    progress, stop = ProgressLog("prepare", total, unit="images"), threading.Event()

    def update() -> None:
        done = sum(p.stat().st_size for p in Path(report_dir).glob("done-*"))
        if done > progress.done:
            progress.step(n=done - progress.done)

    def poll() -> None:
        while not stop.wait(every):
            update()

    watcher = threading.Thread(target=poll, name="dualflow-prepare-progress", daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        update()
        progress.close()


def prepare(src: str | Path, out: str, kind: str = "color", size: int | None = None, workers: int = 1,
            max_pixels: int | None = DEFAULT_MAX_PIXELS, chunk_bytes: str = "64MB") -> dict[str, Any]:
    """Write ``src`` as LitData shards to ``out`` (a folder or a bucket URL) and a report of what was skipped
    next to them (in the working directory when ``out`` is a URL). Returns the report."""
    from litdata import optimize

    if kind not in ("color", "paired"):
        raise ValueError(f"--kind must be color or paired, got {kind!r}")
    items, problems = collect_items(Path(src), kind)
    if not items:
        raise FileNotFoundError(f"{src}: no images to prepare ({', '.join(IMAGE_EXTENSIONS)})")
    with tempfile.TemporaryDirectory(prefix="dualflow-prepare-") as report_dir, _watch(report_dir, len(items)):
        optimize(fn=PrepareItem(size, max_pixels, report_dir), inputs=items, output_dir=out,
                 num_workers=max(1, workers), chunk_bytes=chunk_bytes, mode="overwrite", keep_data_ordered=True,
                 verbose=False)
        for log in sorted(Path(report_dir).glob("skipped-*.jsonl")):
            problems += [json.loads(line) for line in log.read_text().splitlines()]
    unreadable = sum(1 for p in problems if not p.get("unpaired"))  # the others never were inputs
    written = len(StreamingDataset(out)) if len(items) > unreadable else 0
    if written != len(items) - unreadable:
        # litdata reports success even when its worker processes die: the index is the truth.
        raise RuntimeError(f"{out}: the shards hold {written} samples, expected {len(items) - unreadable} "
                           f"({len(items)} inputs, {unreadable} skipped): a prepare worker failed (see above)")
    report = {"source": str(src), "kind": kind, "size": size, "output": out, "inputs": len(items),
              "written": written, "skipped": sorted(problems, key=lambda p: p["file"])}
    local = "://" not in out
    path = Path(out) / REPORT if local else Path(f"{REPORT.removesuffix('.json')}-{Path(out).name}.json")
    path.write_text(json.dumps(report, indent=2))
    report["report"] = str(path)
    return report


def main(argv: list[str] | None = None) -> int:
    """``python -m dualflow prepare SRC OUT [--kind color|paired] [--size N] [--workers K]``."""
    import argparse

    parser = argparse.ArgumentParser(prog="dualflow prepare", description=main.__doc__)
    parser.add_argument("src", help="a folder of colour images, or of bw/ + color/ pairs (searched recursively)")
    parser.add_argument("out", help="output folder, or a bucket URL (s3://bucket/path, gs://..., ...)")
    parser.add_argument("--kind", choices=["color", "paired"], default="color")
    parser.add_argument("--size", type=int, default=None, help="area-downscale so the short side is at most N")
    parser.add_argument("--workers", type=int, default=os.cpu_count() or 1, help="worker processes")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="skip images larger than this (checked from the header before decoding)")
    args = parser.parse_args(argv)
    try:
        report = prepare(args.src, args.out, args.kind, args.size, args.workers, args.max_pixels or None)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for problem in report["skipped"]:
        print(f"skipped: {problem['file']}: {problem['reason']}", file=sys.stderr)
    print(f"prepared {report['written']} of {report['inputs']} {args.kind} samples into {args.out}; "
          f"{len(report['skipped'])} skipped (listed in {report['report']})")
    return 0


# ---- streaming -------------------------------------------------------------------------------------------
class MangaStreamDataset(StreamingDataset):
    """Samples of a prepared collection as ``{"bw", "color", "name"}`` pages, with the folder datasets'
    augmentation (seeded from (seed, epoch, index)); colour-only samples are mangafied on the fly. A sample
    that cannot be decoded is skipped and counted like an unreadable file."""

    def __init__(self, root: str, shuffle: bool, seed: int, pages: _Transformed, max_cache_size: str = "50GB"):
        super().__init__(root, shuffle=shuffle, seed=seed, drop_last=shuffle, max_cache_size=max_cache_size)
        self.pages = pages

    def __getitem__(self, index):
        sample = super().__getitem__(index)
        try:
            color = decode_png(sample["color"], 3)
            bw = decode_png(sample["bw"], 1) if sample["bw"] else None
        except (OSError, ValueError) as e:
            return self.pages._skip(ImageReadError(f"{self.input_dir.url or self.input_dir.path}: sample "
                                                   f"{sample.get('name')}: cannot decode ({e})"))
        self.pages._epoch = self.current_epoch
        i = getattr(index, "index", index)
        if bw is None:
            bw, color = self.pages.mangafied(color, i)
        return self.pages.finish(bw, color, sample["name"], index=i)


class StreamLoader(StreamingDataLoader):
    """A StreamingDataLoader whose saved state counts the batches training has consumed (``consumed()``),
    not the batches the loader has handed out: Lightning fetches one batch ahead, and a state that counted
    it would make a resumed run skip that batch."""

    def __init__(self, *args, consumed: Callable[[], int] | None = None, **kwargs):
        super().__init__(*args, **kwargs)
        self.consumed = consumed

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self.consumed is None:
            return plain(state)
        batches = self.consumed()
        samples = batches * self.batch_size
        state.update(num_samples_yielded=samples, latest_worker_idx=(batches - 1) % max(1, self.num_workers),
                     dataset=self.dataset.state_dict(samples, self.num_workers, self.batch_size))
        return plain(state)


def plain(value: Any) -> Any:
    """numpy scalars and arrays in a state → Python numbers and lists: checkpoints load with
    ``torch.load(weights_only=True)``, which refuses numpy objects."""
    if isinstance(value, dict):
        return {k: plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(plain(v) for v in value)
    if isinstance(value, np.generic | np.ndarray):
        return value.tolist()
    return value
