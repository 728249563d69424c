"""``python -m dualflow synth OUT --n N [--size 256|WxH] [--seed S] [--scale S | --dpi D] [--chapter K]``: write
SynthManga pages to disk: ``OUT/bw/*.png`` (1 channel), ``OUT/color/*.png`` (RGB), ``OUT/labels/*.png`` (class ids) and
a contact sheet ``OUT/preview.png``, and ``OUT/synth.json`` (how they were drawn: ``colorize OUT`` then colours only
the ``bw/`` pages). With ``--chapter K`` the pages form chapters of K pages (``chCCC_pPP.png``) in
which the same three characters recur, and ``OUT/identity/*.png`` says which character each pixel belongs to (0:
nobody), for evaluation. The same seed writes byte-identical files."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from dualflow.data.io import SYNTH_MARKER, save_image
from dualflow.data.synth import CLASSES, PrintScale, SynthManga


def parse_size(text: str) -> tuple[int, int]:
    """``256`` → (256, 256); ``512x724`` (W×H) → (724, 512) as (H, W)."""
    try:
        if "x" in text.lower():
            w, h = (int(v) for v in text.lower().split("x"))
        else:
            w = h = int(text)
    except ValueError as e:
        raise argparse.ArgumentTypeError(f"size must be N or WxH, got {text!r}") from e
    if w < 16 or h < 16:
        raise argparse.ArgumentTypeError(f"size must be at least 16 pixels a side, got {text!r}")
    return h, w


def contact_sheet(pages: list, columns: int = 4, max_pages: int = 8) -> np.ndarray:
    """bw | colour pairs of the first pages, in a grid (same-size pages)."""
    tiles = [np.concatenate([np.repeat(p.bw[..., None], 3, 2), p.color], axis=1) for p in pages[:max_pages]]
    while len(tiles) % columns and len(tiles) > columns:
        tiles.append(np.ones_like(tiles[0]))
    rows = [np.concatenate(tiles[i:i + columns], axis=1) for i in range(0, len(tiles), columns)]
    return np.concatenate(rows, axis=0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow synth", description=__doc__)
    parser.add_argument("out", type=Path)
    parser.add_argument("--n", type=int, default=16, help="number of pages")
    parser.add_argument("--size", type=parse_size, default=(256, 256), help="N or WxH (default 256)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--scale", type=float, default=None,
                        help="detail size relative to a 256-px page (default: page short side / 256)")
    parser.add_argument("--dpi", type=float, default=None,
                        help="print scale: draw the page as a scan at this many dots per inch (e.g. 300; 0: a "
                             "thumbnail page, as without --dpi)")
    parser.add_argument("--chapter", type=int, default=0,
                        help="chapters of this many pages with recurring characters (0: independent pages)")
    args = parser.parse_args(argv)
    if args.n < 1:
        parser.error("--n must be at least 1")
    if args.scale is not None and args.scale <= 0:
        parser.error("--scale must be positive")
    if args.dpi is not None and (args.dpi < 0 or (args.dpi and args.scale is not None)):
        parser.error("--dpi must be positive (0: thumbnail), and cannot go with --scale")
    if args.chapter < 0:
        parser.error("--chapter must be 0 (no chapters) or a number of pages")
    scale = PrintScale.at_dpi(args.dpi) if args.dpi else args.scale
    gen = SynthManga(args.seed)
    for sub in ("bw", "color", "labels") + (("identity",) if args.chapter else ()):
        (args.out / sub).mkdir(parents=True, exist_ok=True)
    preview = []
    for i in range(args.n):
        if args.chapter:
            chapter, number = divmod(i, args.chapter)
            page = gen.chapter_page(chapter, number, args.chapter, args.size, scale)
            stem = f"ch{chapter:03d}_p{number:02d}"
            Image.fromarray(page.identity).save(args.out / "identity" / f"{stem}.png")
        else:
            page, stem = gen(i, args.size, scale), f"page_{i:05d}"
        save_image(args.out / "bw" / f"{stem}.png", page.bw)
        save_image(args.out / "color" / f"{stem}.png", page.color)
        Image.fromarray(page.labels).save(args.out / "labels" / f"{stem}.png")
        if len(preview) < 8:
            preview.append(page)
    save_image(args.out / "preview.png", contact_sheet(preview))
    (args.out / "labels" / "classes.txt").write_text("\n".join(f"{i} {c}" for i, c in enumerate(CLASSES)) + "\n")
    drawn = {"pages": args.n, "size": [args.size[1], args.size[0]], "seed": args.seed, "dpi": args.dpi or None,
             "scale": args.scale, "chapter": args.chapter}
    (args.out / SYNTH_MARKER).write_text(json.dumps(drawn, indent=2) + "\n")
    folders = "bw/, color/, labels/" + (", identity/" if args.chapter else "")
    print(f"wrote {args.n} pages of {args.size[1]}x{args.size[0]} to {args.out}/ ({folders}, preview.png, "
          f"{SYNTH_MARKER}); colour them with `dualflow colorize {args.out} --out OUT`")
    return 0
