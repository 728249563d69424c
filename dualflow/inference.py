"""``python -m dualflow colorize INPUT... --out DIR [--experiment NAME | --ckpt A P S] [--debug]``.

Files or folders in, one PNG per page out (same stem). Pages of any size and aspect. A bad file is reported by
name and skipped, the others are still written, and the exit code is 1 when any file failed. Colour pages
are accepted (rendered to B&W manga first, with a warning)."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np
import torch

from dualflow.data.io import IMAGE_EXTENSIONS, ImageReadError, is_color, list_images, read_image, save_image
from dualflow.data.mangafy import mangafy


def load_colorizer(experiment: str = "default", runs_dir: str = "runs", ckpts: list[str] | None = None,
                   device: str | None = None, **overrides):
    """DualFlowColorizer from an experiment's manifest, or from explicit (attention, primary, secondary) paths."""
    from dualflow.manifest import stage_checkpoint
    from dualflow.stages.composite import DualFlowColorizer

    if ckpts:
        if len(ckpts) != 3:
            raise ValueError(f"--ckpt takes 3 paths (attention, primary, secondary), got {len(ckpts)}")
        paths = dict(zip(("attention_ckpt", "primary_ckpt", "secondary_ckpt"), ckpts, strict=True))
    else:
        paths = {f"{s}_ckpt": stage_checkpoint(experiment, s, runs_dir) for s in ("attention", "primary", "secondary")}
    model = DualFlowColorizer(**paths, **overrides).eval()
    device = device or ("cuda" if torch.cuda.is_available() else "cpu")
    return model.to(device)


def collect_inputs(inputs: list[str | Path]) -> tuple[list[Path], list[str]]:
    """Expand folders (their image files, sorted); returns (files, errors for inputs that do not exist)."""
    files, errors = [], []
    for item in map(Path, inputs):
        if item.is_dir():
            found = list_images(item)
            if not found:
                errors.append(f"{item}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            files += found
        elif item.exists():
            files.append(item)
        else:
            errors.append(f"{item}: no such file or folder")
    return files, errors


def read_page(path: Path) -> np.ndarray:
    """A page as (H,W) B&W in [0,1]; colour pages are rendered to manga with a warning."""
    page = read_image(path, channels=3)
    if is_color(page):
        print(f"warning: {path}: colour page, converted to B&W manga before colorizing", file=sys.stderr)
        return mangafy(page)
    return page[..., 0]


def colorize(inputs: list[str | Path], out: str | Path, model=None, debug: bool = False, progress: bool = True,
             **load_kwargs) -> tuple[list[Path], list[str]]:
    """Colorize files/folders into ``out``; returns (written PNGs, error messages). Never stops at a bad file."""
    from rich.progress import Progress

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model = model or load_colorizer(**load_kwargs)
    files, errors = collect_inputs(inputs)
    written = []
    with Progress(disable=not progress, transient=True) as bar:
        task = bar.add_task("colorizing", total=len(files))
        for path in files:
            try:
                bw = torch.from_numpy(read_page(path))
                start = time.perf_counter()
                result = model.colorize_page(bw, debug=debug)
                target = out / f"{path.stem}.png"
                save_image(target, result["rgb"].permute(1, 2, 0).cpu().numpy())
                written.append(target)
                if debug:
                    from PIL import Image

                    Image.fromarray(model.debug_panel(bw, result)).save(out / f"{path.stem}_debug.png")
                    report = ", ".join(f"{k}={v:.2f}" for k, v in result["report"].items())
                    print(f"{path.name}: {bw.shape[1]}x{bw.shape[0]}, {len(result['plan'])} patches, "
                          f"{time.perf_counter() - start:.2f}s, {report}")
            except (ImageReadError, ValueError, RuntimeError) as e:
                errors.append(f"{path}: {e}" if str(path) not in str(e) else str(e))
            bar.advance(task)
    return written, errors


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow colorize", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("inputs", nargs="+", help="image files or folders of pages")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--experiment", default="default", help="use runs/<experiment>/manifest.json")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--ckpt", nargs=3, metavar=("ATTENTION", "PRIMARY", "SECONDARY"),
                        help="explicit stage checkpoints instead of the experiment's")
    parser.add_argument("--debug", action="store_true",
                        help="also write <stem>_debug.png (bw|importance|boxes|canvas|secondary|fused) and print "
                             "each page's coherence figures")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 ... (default: cuda if available)")
    parser.add_argument("--budget", type=int, default=None, help="override the patch budget per page")
    parser.add_argument("--max_working_size", type=int, default=None,
                        help="cap on the secondary's working long side on large pages (default 512; memory)")
    args = parser.parse_args(argv)
    overrides = {k: v for k, v in (("patch_budget", args.budget), ("max_working_size", args.max_working_size))
                 if v is not None}
    try:
        model = load_colorizer(args.experiment, args.runs_dir, args.ckpt, args.device, **overrides)
    except (FileNotFoundError, ValueError, RuntimeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    written, errors = colorize(args.inputs, args.out, model=model, debug=args.debug)
    for err in errors:
        print(f"error: {err}", file=sys.stderr)
    print(f"wrote {len(written)} page(s) to {args.out}; {len(errors)} failed")
    return 1 if errors else 0
