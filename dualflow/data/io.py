"""Image files → float arrays, converting every common PIL mode correctly, with errors that name the file.

One opener serves training data and ``colorize``: the page size is read from the file's header and checked
against a pixel limit before anything is decoded (a 300-byte PNG can claim 40000×40000 pixels), and any
failure becomes an :class:`ImageReadError` that names the file and the problem."""

from __future__ import annotations

import contextlib
import io
import os
import tempfile
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import Image, ImageSequence, UnidentifiedImageError

SYNTH_MARKER = "synth.json"  # written by `dualflow synth`: its folder's pages to colour are those in bw/
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff", ".gif")
# Well above a 600-dpi A4 scan (4961×7016 ≈ 35 MP) or A3 (≈ 70 MP); below what the composite can hold in memory
# on a 16 GiB machine (its peak grows about 90 MiB per megapixel above the loaded models).
DEFAULT_MAX_PIXELS = 100_000_000
# The process umask, read once at import (before any writer thread starts: reading it means setting it).
_UMASK = os.umask(0o022)
os.umask(_UMASK)


class ImageReadError(ValueError):
    """An image file that cannot be used: unreadable, truncated, not an image, empty or too large."""


def _to_float(img: Image.Image) -> np.ndarray:
    """PIL image of any mode → (H,W) or (H,W,3) float32 in [0,1]; alpha is composited on white paper."""
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        arr = np.asarray(img, dtype=np.float64)
        peak = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        return np.clip(arr / peak, 0, 1).astype(np.float32)
    if img.mode == "F":
        return np.clip(np.asarray(img, dtype=np.float32), 0, 1)
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = np.asarray(img.convert("RGBA"), dtype=np.float32) / 255.0
        alpha = rgba[..., 3:4]
        return rgba[..., :3] * alpha + (1.0 - alpha)
    if img.mode in ("1", "L"):
        return np.asarray(img.convert("L"), dtype=np.float32) / 255.0
    return np.asarray(img.convert("RGB"), dtype=np.float32) / 255.0


def _channels(arr: np.ndarray, channels: int) -> np.ndarray:
    if channels == 1 and arr.ndim == 3:
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif channels == 3 and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr, dtype=np.float32)


@contextlib.contextmanager
def open_image(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               data: bytes | None = None) -> Iterator[Image.Image]:
    """Open ``path`` lazily (header only), refusing pages over ``max_pixels`` before decoding them; every
    failure inside the block, decoding included, is re-raised as :class:`ImageReadError` naming the file.
    ``data``: the file's bytes, already read (a page of an archive; ``path`` then only names it)."""
    path = Path(path)
    try:
        if (len(data) if data is not None else path.stat().st_size) == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with warnings.catch_warnings():
            # Our own limit below decides; PIL's bomb check (2× its default limit) would pre-empt a user's
            # larger --max_pixels, so it is lifted for this call only.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            saved, Image.MAX_IMAGE_PIXELS = Image.MAX_IMAGE_PIXELS, None
            try:
                img = Image.open(io.BytesIO(data) if data is not None else path)
            finally:
                Image.MAX_IMAGE_PIXELS = saved
        with img:
            w, h = img.size
            if w == 0 or h == 0:
                raise ImageReadError(f"{path}: zero-sized image ({w}x{h})")
            if max_pixels and w * h > max_pixels:
                raise ImageReadError(
                    f"{path}: {w}x{h} = {w * h / 1e6:.0f} MP is over the page limit of {max_pixels / 1e6:.0f} MP "
                    f"(a decompression bomb or a huge scan); not decoded. Raise --max_pixels to allow it")
            yield img
    except ImageReadError:
        raise
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: file not found") from e
    except IsADirectoryError as e:
        raise ImageReadError(f"{path}: a folder, not an image file") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, EOFError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e


def read_image(path: str | Path, channels: int, max_pixels: int | None = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """Read ``path`` (its first frame) as (H,W) grey (channels=1) or (H,W,3) RGB (channels=3) float32 in [0,1].

    Raises :class:`ImageReadError` naming the file when it is missing, empty, corrupt, not an image or over
    ``max_pixels``."""
    with open_image(path, max_pixels) as img:
        img.load()
        return _channels(_to_float(img), channels)


def frame_count(path: str | Path, max_pixels: int | None = DEFAULT_MAX_PIXELS, data: bytes | None = None) -> int:
    """Number of pages in an image file (multi-page TIFF: one per frame; GIF: its first frame only)."""
    with open_image(path, max_pixels, data) as img:
        return 1 if img.format == "GIF" else int(getattr(img, "n_frames", 1))


def read_frame(path: str | Path, frame: int, channels: int, max_pixels: int | None = DEFAULT_MAX_PIXELS,
               data: bytes | None = None) -> np.ndarray:
    """Frame ``frame`` of a multi-page file as :func:`read_image` reads the first; every frame is checked
    against ``max_pixels`` (frames of one TIFF may differ in size). ``data``: as for :func:`open_image`."""
    with open_image(path, max_pixels, data) as img:
        page = ImageSequence.Iterator(img)[frame]
        w, h = page.size
        if max_pixels and w * h > max_pixels:
            raise ImageReadError(f"{path}: page {frame + 1} is {w}x{h}, over the page limit of "
                                 f"{max_pixels / 1e6:.0f} MP; not decoded. Raise --max_pixels to allow it")
        page.load()
        return _channels(_to_float(page), channels)


def is_color(arr: np.ndarray, tol: float = 2.0 / 255) -> bool:
    """True when an (H,W,3) image has visible chroma (a colour page given where a B&W one was expected)."""
    return arr.ndim == 3 and float(np.abs(arr - arr.mean(axis=2, keepdims=True)).max()) > tol


@contextlib.contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block ends without error,
    removed otherwise, so a killed run never leaves a truncated file under the final name. The file gets the
    mode a plain ``open`` would (0666 less the umask), not ``mkstemp``'s owner-only 0600, so a shared folder or
    a web server can read what was written."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.stem}-", suffix=f"{path.suffix}.partial")
    os.fchmod(fd, 0o666 & ~_UMASK)
    os.close(fd)
    try:
        yield Path(tmp)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_image(path: str | Path, arr: np.ndarray, compress_level: int = 6) -> None:
    """Write (H,W), (H,W,3) or (H,W,4) float in [0,1] as an 8-bit PNG, atomically (:func:`atomic_path`);
    ``compress_level`` is zlib's (1: fastest, 9: smallest)."""
    img = Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8))
    with atomic_path(path) as tmp:
        img.save(tmp, format="PNG", compress_level=compress_level)


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in ``folder`` (and its subfolders when ``recursive``), sorted by path."""
    found = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in found if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
