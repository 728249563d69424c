"""The colouring page's work, apart from its web page (:mod:`dualflow.serve`): open an uploaded page or volume
through ``colorize``'s checked readers, gather the hints a user painted and clicked, colour a preview and then
the full page, and write what comes out (PNG, PSD with flats, line art and hints, the hint layer, the coloured
``.cbz``), all inside one output folder. Every failure is a :class:`StudioError` whose message names the file
and the problem, for the page to show."""

from __future__ import annotations

import json
import logging
import re
import shutil
import time
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.data.io import DEFAULT_MAX_PIXELS, ImageReadError, atomic_path, save_image
from dualflow.hints import (
    HINT_CHANNELS,
    HintError,
    downsample,
    layer_to_map,
    paint,
    parse_colour,
    points_to_hints,
    psd_hint_layer,
    read_palette,
    to_layer,
)
from dualflow.layers import write_layers
from dualflow.pages import Page, Source, collect, pages_of
from dualflow.scan_dpi import resolve_dpi
from dualflow.volumes import is_archive

log = logging.getLogger(__name__)

PREVIEW_SIDE = 512  # long side of the preview page: about the secondary's working resolution


class StudioError(ValueError):
    """What the page tells the user instead of a traceback."""


def safe_stem(name: str) -> str:
    """A file name's stem reduced to letters, digits, ``-``, ``_`` and ``.``: outputs never leave their folder."""
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", Path(name).stem).strip("._")
    return stem or "page"


@dataclass
class Document:
    """An opened upload: a page file (its frames) or a volume (its pages, read when shown)."""

    name: str
    source: Path  # the upload's copy in the output folder
    sources: list[Source]
    volume: bool
    names: list[str] = field(default_factory=list)  # one per page
    decoded: dict[int, Page] = field(default_factory=dict)  # a page file's pages; a volume's page on show


def blend_layers(layers: list[np.ndarray]) -> np.ndarray | None:
    """The ImageEditor's hint layers (h,w,4 uint8), later over earlier, as one RGBA float layer; None when
    nothing is painted."""
    out = None
    for layer in layers:
        if layer is None or layer.ndim != 3 or layer.shape[2] != 4 or not (layer[..., 3] >= 128).any():
            continue
        rgba = layer.astype(np.float32) / 255
        out = rgba if out is None else np.where(rgba[..., 3:] >= 0.5, rgba, out)
    return out


class Studio:
    """One colorizer kept warm for every request; ``out`` holds uploads, outputs and saved palettes."""

    def __init__(self, colorizer: Any, out: Path, max_pixels: int | None = DEFAULT_MAX_PIXELS):
        self.colorizer, self.out, self.max_pixels = colorizer, Path(out), max_pixels
        self.out.mkdir(parents=True, exist_ok=True)

    # ---- opening ------------------------------------------------------------------------------------
    def open(self, upload: str | Path) -> Document:
        """A copy of the upload under ``out/uploads``, checked as ``colorize`` checks its inputs."""
        upload = Path(upload)
        name = f"{safe_stem(upload.name)}{upload.suffix.lower()}"
        copy = self.out / "uploads" / name
        copy.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(upload, copy)
        found = collect([copy], self.out / safe_stem(name))
        if found.errors or not found.sources:
            reasons = found.errors or found.skipped or ["not a page (PNG, JPEG, TIFF, PSD) or a volume (.cbz, .zip)"]
            said = "; ".join(r.replace(str(copy), upload.name) for r in reasons)
            raise StudioError(said if said.startswith(upload.name) else f"{upload.name}: {said}")
        doc = Document(upload.name, copy, found.sources, is_archive(copy))
        if doc.volume:
            doc.names = [s.member for s in found.sources]
        else:
            for page in pages_of(found.sources[0], self.max_pixels, False):
                if page.error:
                    raise StudioError(page.error.replace(str(copy), upload.name))
                doc.decoded[len(doc.decoded)] = page
            doc.names = [upload.name] if len(doc.decoded) == 1 else [f"{upload.name} p{i + 1}" for i in doc.decoded]
        return doc

    def page(self, doc: Document, index: int) -> np.ndarray:
        """Page ``index`` of the document, B&W (H,W) in [0,1]; a damaged volume page is a :class:`StudioError`."""
        if not 0 <= index < len(doc.names):
            raise StudioError(f"{doc.name}: no page {index + 1} (it has {len(doc.names)})")
        if doc.volume and index not in doc.decoded:
            page = next(pages_of(doc.sources[index], self.max_pixels, False))
            if page.error:
                raise StudioError(page.error.replace(str(doc.source), doc.name))
            doc.decoded = {index: page}  # the page being worked on, decoded once; one page of a volume held
        return doc.decoded[index].bw

    def psd_hints(self, doc: Document) -> np.ndarray | None:
        """The ``hints`` layer of an uploaded PSD page (RGBA uint8), to start the editor's hint layer from."""
        if doc.source.suffix.lower() != ".psd":
            return None
        layer = psd_hint_layer(doc.source)
        return None if layer is None else (np.clip(layer, 0, 1) * 255 + 0.5).astype(np.uint8)

    # ---- hints --------------------------------------------------------------------------------------
    def hints(self, size: tuple[int, int], layers: list[np.ndarray], points: list[dict],
              palette: dict[str, str]) -> torch.Tensor | None:
        """The page's hint map from the painted layers (scaled to the page) and the clicked points over them;
        None without hints. A bad layer or point is a :class:`StudioError`."""
        try:
            rgb_palette = {k: parse_colour(v, {}, f"palette: {k}") for k, v in palette.items()}
            painted = blend_layers(layers)
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # an empty layer is the normal state here, not worth a warning
                hint_map = layer_to_map(painted, size, "the painted hint layer") if painted is not None else None
                clicked = points_to_hints(points, size, rgb_palette, "clicked hints") if points else []
        except HintError as e:
            raise StudioError(str(e)) from e
        if clicked:
            dots = paint(clicked, size)
            hint_map = dots if hint_map is None else torch.where(dots[3:] > 0.5, dots, hint_map)
        return hint_map if hint_map is not None and bool(hint_map[3].any()) else None

    # ---- colouring ----------------------------------------------------------------------------------
    def colour(self, bw: np.ndarray, hints: torch.Tensor | None, preview: bool = False,
               debug: bool = False) -> dict[str, Any]:
        """``rgb`` (H,W,3) float of the page with its hints, and ``seconds``; ``preview``: coloured at
        :data:`PREVIEW_SIDE` pixels and scaled up (a first look in about a tenth of the time); ``debug`` adds the
        debug ``panel`` (importance map, patches)."""
        start = time.perf_counter()
        page = torch.from_numpy(np.ascontiguousarray(bw, np.float32))
        size = tuple(page.shape)
        if preview and max(size) > PREVIEW_SIDE:
            scale = PREVIEW_SIDE / max(size)
            small = (max(1, round(size[0] * scale)), max(1, round(size[1] * scale)))
            page = F.adaptive_avg_pool2d(page[None, None], small)[0, 0]
            hints = None if hints is None else downsample(hints.reshape(1, HINT_CHANNELS, *size), small)[0]
        dpi, trained = None, getattr(self.colorizer, "trained_dpi", 0)
        if trained and tuple(page.shape) == size:  # the page's scale, as colorize reads it (not for a preview)
            dpi, line = resolve_dpi(page, None, trained)
            log.info("%s", line)
        with torch.inference_mode():
            out = self.colorizer.colorize_page(page, debug=debug, hints=hints, dpi=dpi)
        rgb = out["rgb"].float().cpu()
        if tuple(rgb.shape[-2:]) != size:
            rgb = F.interpolate(rgb[None], size=size, mode="bilinear", align_corners=False)[0]
        result = {"rgb": rgb.clamp(0, 1).permute(1, 2, 0).numpy(), "seconds": time.perf_counter() - start}
        if debug and hasattr(self.colorizer, "debug_panel"):
            result["panel"] = self.colorizer.debug_panel(page, out)
        return result

    # ---- what comes out -----------------------------------------------------------------------------
    def save_page(self, doc: Document, index: int, bw: np.ndarray, rgb: np.ndarray, hints: torch.Tensor | None,
                  layers: bool = False) -> list[Path]:
        """The coloured PNG (fast zlib level: it is written at every recolour) and the hint layer
        ``<stem>_hints.png`` that ``colorize --hints`` reads, under ``out/<document>/``; ``layers`` adds the
        flats, line art and PSD (with the hints as a hidden layer)."""
        stem = safe_stem(doc.names[index].replace("/", "_").replace(" ", "_"))
        folder = self.out / safe_stem(doc.name)
        folder.mkdir(parents=True, exist_ok=True)
        png = folder / f"{stem}.png"
        save_image(png, rgb, compress_level=1)
        written = [png]
        if hints is not None:
            save_image(folder / f"{stem}_hints.png", to_layer(hints), compress_level=1)
            written.append(folder / f"{stem}_hints.png")
        if layers:
            written += write_layers(png, rgb, bw, compress_level=1, hints=hints)
        return written

    def colour_volume(self, doc: Document, hints: dict[int, torch.Tensor], on_page=None) -> tuple[Path, list[str]]:
        """The whole volume through ``colorize``, each page with its hints (written as the volume's
        ``<volume>_hints/`` folder beside the upload): the coloured ``.cbz`` and the pages that failed."""
        from dualflow.inference import colorize

        if not doc.volume:
            raise StudioError(f"{doc.name}: not a volume (.cbz, .zip)")
        folder = doc.source.with_name(f"{doc.source.stem}_hints")
        shutil.rmtree(folder, ignore_errors=True)
        for index, hint_map in hints.items():
            member = Path(doc.names[index])
            target = folder / member.parent / f"{member.stem}_hints.png"
            target.parent.mkdir(parents=True, exist_ok=True)
            save_image(target, to_layer(hint_map))
        report = colorize([doc.source], self.out / safe_stem(doc.name), model=self.colorizer, progress=False,
                          on_page=on_page)
        if not report.volumes:
            raise StudioError(f"{doc.name}: no page could be coloured: " + "; ".join(report.errors))
        return report.volumes[0], [e.replace(str(doc.source), doc.name) for e in report.errors]

    def resolve_colour(self, text: str, palette: dict[str, str]) -> str:
        """A colour as typed (``#rrggbb``, ``#rgb`` or a name in ``palette``) → ``#rrggbb``."""
        try:
            rgb = parse_colour(text, {k: parse_colour(v, {}, f"palette: {k}") for k, v in palette.items()},
                               "hint colour")
        except HintError as e:
            raise StudioError(str(e)) from e
        return "#" + "".join(f"{round(c * 255):02x}" for c in rgb)

    def load_palette(self, path: str | Path) -> dict[str, str]:
        """A palette file (``{"hair": "#d04a2a"}``) → name → ``#rrggbb``."""
        try:
            colours = read_palette(path)
        except HintError as e:
            raise StudioError(str(e).replace(str(path), Path(path).name)) from e
        return {k: "#" + "".join(f"{round(c * 255):02x}" for c in rgb) for k, rgb in colours.items()}

    def save_palette(self, palette: dict[str, str]) -> Path:
        """The palette as ``out/palette.json``, the format ``colorize --palette`` reads."""
        path = self.out / "palette.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(palette, indent=2))
        return path


def page_error(e: BaseException) -> str:
    """The message the page shows for a failure: the error's own for what we check, else its type and text."""
    if isinstance(e, StudioError | HintError | ImageReadError):
        return str(e)
    return f"{type(e).__name__}: {e}"
