"""Image files → float arrays, converting every common PIL mode correctly, with errors that name the file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp", ".bmp", ".tif", ".tiff")


class ImageReadError(ValueError):
    """An image file that cannot be used: unreadable, truncated, not an image, or empty."""


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


def read_image(path: str | Path, channels: int) -> np.ndarray:
    """Read ``path`` as (H,W) grey (channels=1) or (H,W,3) RGB (channels=3) float32 in [0,1].

    Raises :class:`ImageReadError` naming the file when it is missing, empty, corrupt or not an image."""
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise ImageReadError(f"{path}: empty file (0 bytes)")
        with Image.open(path) as img:
            img.load()
            arr = _to_float(img)
    except ImageReadError:
        raise
    except FileNotFoundError as e:
        raise ImageReadError(f"{path}: file not found") from e
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as e:
        raise ImageReadError(f"{path}: not a readable image ({e})") from e
    if arr.shape[0] == 0 or arr.shape[1] == 0:
        raise ImageReadError(f"{path}: zero-sized image")
    if channels == 1 and arr.ndim == 3:
        arr = arr @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    elif channels == 3 and arr.ndim == 2:
        arr = np.repeat(arr[..., None], 3, axis=2)
    return np.ascontiguousarray(arr, dtype=np.float32)


def is_color(arr: np.ndarray, tol: float = 2.0 / 255) -> bool:
    """True when an (H,W,3) image has visible chroma (a colour page given where a B&W one was expected)."""
    return arr.ndim == 3 and float(np.abs(arr - arr.mean(axis=2, keepdims=True)).max()) > tol


def save_image(path: str | Path, arr: np.ndarray) -> None:
    """Write (H,W) or (H,W,3) float in [0,1] as an 8-bit PNG."""
    Image.fromarray((np.clip(arr, 0, 1) * 255 + 0.5).astype(np.uint8)).save(path)


def list_images(folder: Path) -> list[Path]:
    """Image files directly in ``folder``, sorted by name."""
    return sorted(p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
