"""``python -m dualflow colorize INPUT... --out DIR [--experiment NAME | --ckpt A P S] [--engine onnx] [--layers]``.

Files, folders or volumes in (folders recursively, mirrored under ``--out``; a ``.cbz``/``.zip`` archive gives
a ``.cbz`` of the same pages), one PNG per page out; ``--layers`` adds flats, line art and a layered PSD.
Pages of any size and aspect; png, jpg, webp, bmp, tif (each frame of a multi-page TIFF is a page) and gif
(first frame). No single file stops a batch: a page that cannot be read, coloured or written is reported by
name with the reason and the batch goes on; a summary counts written, failed and skipped pages, and the exit
code is 1 when any page failed. Outputs are written atomically, so ``--skip_existing`` continues a killed
batch. The next pages are decoded in a background thread while the current one is coloured, and finished
pages are encoded by writer threads. Colour pages are accepted (rendered to B&W manga first, with a warning)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from dualflow.colorizer import PageColorizer
from dualflow.data.io import DEFAULT_MAX_PIXELS, save_image
from dualflow.hints import HintError, hint_file_for, read_hints, read_palette
from dualflow.loader import load_page_colorizer, stage_paths
from dualflow.pages import Page, collect, read_ahead
from dualflow.scan_dpi import DPI_LIMITS, resolve_dpi
from dualflow.volumes import pack_volume


def load_colorizer(experiment: str = "default", runs_dir: str = "runs", ckpts: list[str] | None = None,
                   device: str | None = None, **overrides):
    """The composite LightningModule (:class:`stages.composite.DualFlowColorizer`, what ``dualflow test`` scores)
    of an experiment, or of explicit (attention, primary, secondary) paths. To colour pages,
    :func:`loader.load_page_colorizer` needs no Lightning."""
    from dualflow.stages.composite import DualFlowColorizer

    model = DualFlowColorizer(**stage_paths(experiment, runs_dir, ckpts), **overrides).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device)


@dataclass
class BatchReport:
    """What a batch did: pages written, failures (``path: reason``), pages skipped and why, volumes packed."""

    written: list[Path] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    volumes: list[Path] = field(default_factory=list)
    seconds: float = 0.0

    def summary(self, out: Path) -> str:
        rate = f", {60 * len(self.written) / self.seconds:.1f} pages/min" if self.written and self.seconds else ""
        volumes = f" ({len(self.volumes)} volume(s))" if self.volumes else ""
        return (f"wrote {len(self.written)} page(s){volumes} to {out}; {len(self.errors)} failed; "
                f"{len(self.skipped)} skipped{rate}")


def _failure(page: Page, stage: str, error: BaseException) -> str:
    """``path: reason`` for a page that failed while colouring or writing; exception types that are not an
    input or resource problem are named, since they point at a bug."""
    if isinstance(error, torch.cuda.OutOfMemoryError | MemoryError):
        return f"{page.source}: out of memory while {stage} (a smaller --max_pixels or the CPU may fit)"
    if isinstance(error, OSError):
        return f"{page.output}: cannot write ({error.strerror or error})"
    return f"{page.source}: {type(error).__name__} while {stage}: {error}"


def _autocast(model, precision: str):
    """bf16 autocast for ``bf16-mixed`` (the networks; colour maths stay float32), nothing for ``32-true``."""
    if precision == "bf16-mixed":
        return torch.autocast(model.device.type, dtype=torch.bfloat16)
    return contextlib.nullcontext()


def _write_page(page: Page, rgb: np.ndarray, bw: np.ndarray, layers: bool, compress_level: int,
                panel: np.ndarray | None, hint_map: torch.Tensor | None = None) -> None:
    """Encode and write one coloured page (and its layers, with its hints, and its debug panel)."""
    from PIL import Image

    page.output.parent.mkdir(parents=True, exist_ok=True)
    save_image(page.output, rgb, compress_level)
    if layers:
        from dualflow.layers import write_layers

        write_layers(page.output, rgb, bw, compress_level, hint_map)
    if panel is not None:
        Image.fromarray(panel).save(page.output.with_name(page.output.stem + "_debug.png"))


class PageWriter:
    """Writes coloured pages in worker threads (PNG and PSD encoding release the GIL), so the next page is
    coloured while the last is encoded; at most ``2 × workers`` pages wait, which bounds memory. Each page's
    outcome lands in the report as its write finishes."""

    def __init__(self, report: BatchReport, workers: int, strict: bool):
        self.report, self.strict = report, strict
        self.pool = ThreadPoolExecutor(max(1, workers), thread_name_prefix="dualflow-write")
        self.pending: deque[tuple[Page, Future]] = deque()
        self.limit = 2 * max(1, workers)

    def submit(self, page: Page, *args) -> None:
        self.pending.append((page, self.pool.submit(_write_page, page, *args)))
        while len(self.pending) > self.limit or (self.pending and self.pending[0][1].done()):
            self._settle()

    def _settle(self) -> None:
        page, future = self.pending.popleft()
        try:
            future.result()
            self.report.written.append(page.output)
        except Exception as e:  # noqa: BLE001 - one page never stops the batch; --strict re-raises
            if self.strict:
                raise
            self.report.errors.append(_failure(page, "writing", e))

    def close(self) -> None:
        try:
            while self.pending:
                self._settle()
        finally:
            self.pool.shutdown(wait=True)


@dataclass
class HintSource:
    """Where pages' colour hints come from (:mod:`dualflow.hints`): ``<stem>_hints.(png|json)`` beside each page
    (for a volume's page: in the archive or ``<volume>_hints/``), or ``path`` (a hint file, or a folder of
    them); names in JSON points resolve in ``palette``; a bad hint file
    fails its page unless ``optional`` (then the page is coloured without hints, with a warning)."""

    path: Path | None = None
    palette: dict = field(default_factory=dict)
    optional: bool = False

    def load(self, page: Page) -> torch.Tensor | None:
        """The page's hint map, None without a hint file; raises :class:`HintError` for a bad one."""
        if page.bw is None:
            return None
        if self.path is None and page.hint_file is not None:
            name, content = page.hint_file
            return read_hints(name, page.bw.shape[:2], self.palette, content)
        found = hint_file_for(page.source, self.path)
        return read_hints(found, page.bw.shape[:2], self.palette) if found else None


def colorize(inputs: list[str | Path], out: str | Path, model=None, debug: bool = False, progress: bool = True,
             max_pixels: int | None = DEFAULT_MAX_PIXELS, skip_existing: bool = False, strict: bool = False,
             precision: str = "32-true", layers: bool = False, writers: int = 2, compress_level: int = 6,
             hints: HintSource | None = None, on_page: Callable[[int, int], None] | None = None,
             dpi: float | None = None, **load_kwargs) -> BatchReport:
    """Colorize files, folders and volumes into ``out``; never stops at a bad page unless ``strict`` (then the
    first failure is raised with its traceback). Decoding (a thread ahead), colouring and encoding (``writers``
    threads) overlap; ``layers`` adds flats, line art and a PSD per page; ``hints``: where colour hints come
    from (default: ``<stem>_hints.png`` / ``.json`` beside each page); ``on_page(done, estimated total)`` after
    each page (the browser's progress bar); ``dpi``: the scan resolution of every page (None: each page's own,
    read from its screentone; models trained on thumbnail pages take pages as they are)."""
    from dualflow.progress import ProgressLog

    out = Path(out)
    found = collect(inputs, out)
    if found.conflicts:
        raise OutputConflictError(found.conflicts)
    model = model or load_page_colorizer(**load_kwargs)
    report = BatchReport(errors=list(found.errors), skipped=list(found.skipped))
    writer = PageWriter(report, writers, strict)
    written: dict[Path, Path] = {}  # every path this run writes → the input it came from
    hints = hints or HintSource()
    start = time.perf_counter()
    # One page per file is the estimate (a multi-page TIFF holds more: the count then goes on without a total).
    bar = ProgressLog("colorize", len(found.sources), enabled=progress)
    try:
        for page in read_ahead(found.sources, max_pixels, skip_existing):
            if _claim(page, written, layers, debug, report):
                _colorize_one(page, model, writer, report, debug, strict, precision, layers, compress_level, hints,
                              dpi)
            bar.step(page.source.name)
            if on_page is not None:
                on_page(bar.done, len(found.sources))
    finally:
        bar.close()
        writer.close()
    for volume in found.volumes:
        packed = pack_volume(volume)
        if packed is not None:
            report.volumes.append(packed)
    report.seconds = time.perf_counter() - start
    return report


class OutputConflictError(ValueError):
    """Two inputs would write the same output path: refused before anything is coloured."""

    def __init__(self, conflicts: list[str]):
        self.conflicts = conflicts
        super().__init__("; ".join(conflicts))


def _outputs(page: Page, layers: bool, debug: bool) -> list[Path]:
    """Every file that colouring ``page`` writes."""
    from dualflow.layers import layer_paths

    return [page.output, *(layer_paths(page.output).values() if layers else ()),
            *([page.output.with_name(page.output.stem + "_debug.png")] if debug else ())]


def _claim(page: Page, written: dict[Path, Path], layers: bool, debug: bool, report: BatchReport) -> bool:
    """Whether ``page`` may be coloured: none of its outputs was written earlier in this run (a multi-page
    TIFF's ``scan_p001.png`` beside a ``scan_p001.png`` file, a page called ``x_flats.png`` beside ``x.png``
    with ``--layers``). A page that would overwrite one is reported failed instead."""
    if page.skipped or page.error:
        return True
    paths = _outputs(page, layers, debug)
    taken = next((p for p in paths if p in written), None)
    if taken is not None:
        report.errors.append(f"{page.source}: would overwrite {taken}, written from {written[taken]} in this run; "
                             f"not coloured (colour it into another --out folder)")
        return False
    written.update(dict.fromkeys(paths, page.source))
    return True


def _colorize_one(page: Page, model, writer: PageWriter, report: BatchReport, debug: bool, strict: bool,
                  precision: str, layers: bool, compress_level: int, hints: HintSource, dpi: float | None) -> None:
    """Colour one decoded page and hand it to the writer, or record why it was skipped or failed; ``dpi``: the
    pages' scan resolution (None: each page's estimate, :func:`scan_dpi.resolve_dpi`)."""
    if page.skipped:
        report.skipped.append(f"{page.source}: {page.output} exists (--skip_existing)")
        return
    if page.error:
        if strict:
            raise RuntimeError(page.error)
        report.errors.append(page.error)
        return
    if page.converted:
        print(f"warning: {page.source}: colour page, converted to B&W manga before colorizing", file=sys.stderr)
    pipeline = model if isinstance(model, PageColorizer) else model.page_colorizer()
    if note := pipeline.scale_note(page.bw.shape[:2]):
        print(f"warning: {page.source}: {note}", file=sys.stderr)
    try:
        hint_map = hints.load(page)
    except HintError as e:
        if not hints.optional:
            if strict:
                raise
            report.errors.append(f"{page.source}: {e} (--hints_optional colours it without hints)")
            page.bw = None
            return
        print(f"warning: {page.source}: {e}; coloured without hints (--hints_optional)", file=sys.stderr)
        hint_map = None
    try:
        bw = torch.from_numpy(page.bw)
        began = time.perf_counter()
        page_dpi = None
        if pipeline.trained_dpi:  # the page's scale: given, or read from its screentone
            page_dpi, line = resolve_dpi(bw, dpi, pipeline.trained_dpi)
            print(f"{page.source}: {line}", file=sys.stderr)
        with _autocast(model, precision):
            result = model.colorize_page(bw, debug=debug, hints=hint_map, dpi=page_dpi)
        rgb = result["rgb"].permute(1, 2, 0).float().cpu().numpy()
        panel = model.debug_panel(bw, result) if debug else None
        if debug:
            figures = ", ".join(f"{k}={v:.2f}" for k, v in result["report"].items())
            print(f"{page.source.name}: {bw.shape[1]}x{bw.shape[0]}, {len(result['plan'])} patches, "
                  f"{time.perf_counter() - began:.2f}s, {figures}")
        writer.submit(page, rgb, page.bw, layers, compress_level, panel, hint_map)
    except Exception as e:  # noqa: BLE001 - one page never stops the batch; --strict re-raises
        if strict:
            raise
        report.errors.append(_failure(page, "colorizing", e))
    finally:
        page.bw = None  # the decoded page is not kept beyond its turn (the writer holds its own reference)


def _load_engine(args: argparse.Namespace, overrides: dict):
    """The PyTorch composite of the experiment, or the ONNX Runtime pipeline of its export."""
    if args.engine == "torch":
        return load_page_colorizer(args.experiment, args.runs_dir, args.ckpt, args.device, **overrides)
    from dualflow.onnx_engine import load_onnx_colorizer

    if "chroma_temperature" in overrides or args.ckpt:
        raise ValueError("--engine onnx runs an exported experiment: --chroma_temperature and --ckpt apply to "
                         "--engine torch (export again to change them)")
    if args.precision == "bf16-mixed":
        raise ValueError("--engine onnx runs float32 (the exported graph); drop --precision bf16-mixed")
    return load_onnx_colorizer(args.onnx or Path(args.runs_dir) / args.experiment / "onnx", **overrides)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow colorize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files or folders of pages (searched recursively)")
    parser.add_argument("--out", required=True, help="output folder (input folders are mirrored under it)")
    parser.add_argument("--experiment", default="default", help="use runs/<experiment>/manifest.json")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--ckpt", nargs=3, metavar=("ATTENTION", "PRIMARY", "SECONDARY"),
                        help="explicit stage checkpoints instead of the experiment's")
    parser.add_argument("--debug", action="store_true",
                        help="also write <stem>_debug.png (bw|importance|boxes|canvas|secondary|fused) and print "
                             "each page's coherence figures")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--precision", choices=["auto", "32-true", "bf16-mixed"], default="auto",
                        help="auto: bf16-mixed on a GPU that supports it, 32-true otherwise")
    parser.add_argument("--budget", type=int, default=None,
                        help="a fixed number of priority patches a page (overrides the trained plan; 0: none)")
    parser.add_argument("--density", type=float, default=None,
                        help="priority patches per megapixel of the page (overrides the trained plan)")
    parser.add_argument("--dpi", type=float, default=None,
                        help="the pages' scan resolution, when known (default: read from each page's screentone; "
                             f"{DPI_LIMITS[0]:g}-{DPI_LIMITS[1]:g}); pages are coloured at the trained scale")
    parser.add_argument("--max_working_size", type=int, default=None,
                        help="cap on the secondary's working long side on large pages (default 512; memory)")
    parser.add_argument("--chroma_temperature", type=float, default=None,
                        help="models trained with a chroma grid: annealed-mean temperature (lower: more vivid; "
                             "default: the trained 0.38)")
    parser.add_argument("--max_pixels", type=int, default=DEFAULT_MAX_PIXELS,
                        help="refuse pages larger than this many pixels before decoding them (default "
                             f"{DEFAULT_MAX_PIXELS:,}; 0: no limit)")
    parser.add_argument("--skip_existing", action="store_true",
                        help="leave pages whose output PNG exists (continue a killed batch)")
    parser.add_argument("--strict", action="store_true", help="stop at the first failing page, with its traceback")
    parser.add_argument("--engine", choices=["torch", "onnx"], default="torch",
                        help="onnx: the networks of `dualflow export` run by ONNX Runtime (no checkpoint, no "
                             "Lightning; pip install 'dualflow[onnx]')")
    parser.add_argument("--onnx", default=None, help="the export folder for --engine onnx (default "
                                                     "runs/<experiment>/onnx)")
    parser.add_argument("--layers", action="store_true",
                        help="also write <stem>_flats.png, <stem>_lines.png (line art with alpha) and <stem>.psd")
    parser.add_argument("--hints", default=None,
                        help="colour hints: a hint file (RGBA PNG layer or JSON points) for a single page, or a "
                             "folder of <stem>_hints.png / <stem>_hints.json (default: beside each page)")
    parser.add_argument("--palette", default=None,
                        help='named colours for JSON hints, {"hair": "#d04a2a", ...} (one palette, many pages)')
    parser.add_argument("--hints_optional", action="store_true",
                        help="colour a page whose hint file is bad without hints (default: the page fails)")
    parser.add_argument("--writers", type=int, default=2, help="threads that encode and write pages (default 2)")
    parser.add_argument("--png_compression", type=int, default=6, choices=range(10), metavar="0-9",
                        help="zlib level of the PNGs (1: fastest, 9: smallest; default 6)")
    args = parser.parse_args(argv)
    if args.dpi is not None and not DPI_LIMITS[0] <= args.dpi <= DPI_LIMITS[1]:
        parser.error(f"--dpi {args.dpi:g} is outside {DPI_LIMITS[0]:g}-{DPI_LIMITS[1]:g}: downscale a larger scan "
                     f"to 300-600 dpi; a page under {DPI_LIMITS[0]:g} dpi has no line art left to colour")
    overrides = {k: v for k, v in (("patch_budget", args.budget), ("patch_density", args.density),
                                   ("max_working_size", args.max_working_size),
                                   ("chroma_temperature", args.chroma_temperature)) if v is not None}
    try:
        model = _load_engine(args, overrides)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    precision = args.precision
    if precision == "auto":
        bf16 = model.device.type == "cuda" and torch.cuda.is_bf16_supported()
        precision = "bf16-mixed" if bf16 else "32-true"
    try:
        hints = HintSource(Path(args.hints) if args.hints else None,
                           read_palette(args.palette) if args.palette else {}, args.hints_optional)
        if hints.path is not None and not hints.path.exists():
            raise HintError(f"{hints.path}: no such hint file or folder")
    except HintError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    try:
        report = colorize(args.inputs, args.out, model=model, debug=args.debug,
                          max_pixels=args.max_pixels or None, skip_existing=args.skip_existing, strict=args.strict,
                          precision=precision, layers=args.layers, writers=args.writers,
                          compress_level=args.png_compression, hints=hints, dpi=args.dpi)
    except OutputConflictError as e:
        for line in e.conflicts:
            print(f"error: {line}", file=sys.stderr)
        print("error: nothing was coloured: colour these inputs into different --out folders", file=sys.stderr)
        return 2
    for line in report.skipped:
        print(f"skipped: {line}", file=sys.stderr)
    for err in report.errors:
        print(f"error: {err}", file=sys.stderr)
    print(report.summary(Path(args.out)))
    return 1 if report.errors else 0
