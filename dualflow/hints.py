"""Colour hints: what the user says that no B&W page tells (which colour the hair is).

A page's hints are one *hint map* (4,H,W): normalised Lab (zero where there is no hint) and a {0,1} mask, at
the page's resolution; every colorizer takes it beside the page. At a working resolution the mask is
max-pooled and the colours are the mask-weighted mean (:func:`downsample`), so no hint is lost, however small.

Hints come from a hint layer (an RGBA PNG over the page, opaque pixels are hints, any size of the page's aspect),
a JSON list of points (``{"x", "y", "colour", "radius"}`` in page pixels, or fractions of the page as floats in
[0, 1]; colours as ``#rrggbb`` or names from a palette file ``{"name": "#rrggbb"}``), or a layer named ``hints``
in a PSD page. Training draws them from the colour page, the bench clicks them (:mod:`dualflow.hint_clicks`)."""

from __future__ import annotations

import json
import re
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

HINT_CHANNELS = 4  # normalised L, a, b and the mask
MAX_POINTS = 10_000  # more points than this in one file is not a hint list (refused)
HINT_SUFFIXES = ("_hints.png", "_hints.json")  # beside a page: its hints, never a page to colour


class HintError(ValueError):
    """A hint file that cannot be used; the message names the file and the problem."""


@dataclass(frozen=True)
class Hint:
    """One colour hint: a disc of ``radius`` pixels at (``y``, ``x``) page pixels, colour ``rgb`` in [0, 1]."""

    y: float
    x: float
    rgb: tuple[float, float, float]
    radius: float = 3.0


def empty(size: tuple[int, int]) -> torch.Tensor:
    """The hint map of a page without hints: (4,H,W) zeros, the automatic case."""
    return torch.zeros(HINT_CHANNELS, *size)


def _nlab(rgb: np.ndarray) -> np.ndarray:
    """(..., 3) RGB in [0,1] → normalised Lab (L/100, ab/110)."""
    from dualflow.color import rgb_to_nlab

    flat = torch.from_numpy(np.asarray(rgb, np.float32).reshape(-1, 3).T.copy())[None, :, :, None]
    return rgb_to_nlab(flat)[0, :, :, 0].T.reshape(*np.shape(rgb)).numpy()


def paint(hints: list[Hint], size: tuple[int, int]) -> torch.Tensor:
    """Hints → hint map (4,H,W) of a page of ``size``; a later hint paints over an earlier one; hints outside
    the page are clipped to it (their part inside is kept)."""
    h, w = size
    out = np.zeros((HINT_CHANNELS, h, w), np.float32)
    if not hints:
        return torch.from_numpy(out)
    labs = _nlab(np.array([hint.rgb for hint in hints], np.float32))
    for hint, lab in zip(hints, labs, strict=True):
        r = max(0.71, float(hint.radius))  # at least the pixel nearest the centre
        y0, y1 = max(0, int(np.floor(hint.y - r))), min(h, int(np.ceil(hint.y + r)) + 1)
        x0, x1 = max(0, int(np.floor(hint.x - r))), min(w, int(np.ceil(hint.x + r)) + 1)
        if y0 >= y1 or x0 >= x1:
            continue
        yy, xx = np.mgrid[y0:y1, x0:x1]
        disc = (yy - hint.y) ** 2 + (xx - hint.x) ** 2 <= r * r
        out[:3, y0:y1, x0:x1][:, disc] = lab[:, None]
        out[3, y0:y1, x0:x1][disc] = 1.0
    return torch.from_numpy(out)


def downsample(hints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Hint maps (B,4,H,W) → (B,4,h,w): the mask max-pooled (a hint of one pixel still marks its cell) and the
    colour averaged over the hinted pixels of each cell only (never mixed with the zeros around it)."""
    if tuple(hints.shape[-2:]) == tuple(size):
        return hints
    mask = hints[:, 3:]
    weight = F.adaptive_avg_pool2d(mask, size)
    colour = F.adaptive_avg_pool2d(hints[:, :3] * mask, size) / weight.clamp_min(1e-8)
    present = F.adaptive_max_pool2d(mask, size)
    return torch.cat([colour * present, present], dim=1)


def resample(hints: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Hint maps (B,4,H,W) at another page size, no hint lost: :func:`downsample` when shrinking, nearest pixel
    when enlarging."""
    if size[0] <= hints.shape[-2] and size[1] <= hints.shape[-1]:
        return downsample(hints, size)
    return F.interpolate(hints, size=size, mode="nearest")


def for_net(hints: torch.Tensor | None, bw: torch.Tensor, takes_hints: bool) -> torch.Tensor | None:
    """The hint map given to a net for pages ``bw`` (B,1,H,W): ``hints`` (B,4,H,W), or zeros where there are
    none (the automatic case), for a net trained with hints; None for a net trained without them."""
    if not takes_hints:
        return None
    if hints is None:
        return bw.new_zeros(bw.shape[0], HINT_CHANNELS, *bw.shape[-2:])
    return hints.to(bw)


def propagate(bw: torch.Tensor, hints: torch.Tensor, colour: bool = True) -> torch.Tensor:
    """The hints' reach beyond any net's receptive field: each region that the page's ink lines enclose
    (:func:`lineart.ink_lines`, dilated by a pixel so thin gaps do not let colour through; screentone is not a
    line) takes the mean colour of the hints inside it. ``bw`` (1,H,W), ``hints`` (4,H,W) → (4,H,W): normalised
    Lab (``colour``; else the mean chroma only, lightness 0) and the {0,1} mask of the filled regions. Connected
    regions are not local: computed once per page, on the CPU."""
    from scipy import ndimage

    from dualflow.lineart import ink_lines

    size = tuple(bw.shape[-2:])
    mask = hints[3] > 0.5
    out = torch.zeros(HINT_CHANNELS, *size)
    if not bool(mask.any()):
        return out.to(bw.device)
    ink = F.max_pool2d(ink_lines(bw.reshape(1, 1, *size).float()), 3, 1, 1)[0, 0] > 0.5
    labels, n = ndimage.label((~ink).cpu().numpy())
    regions = torch.from_numpy(labels).view(-1)
    where = mask.view(-1).cpu() & (regions > 0)
    counts = torch.bincount(regions[where], minlength=n + 1).float()
    colours = hints[:3].reshape(3, -1).cpu().float()
    means = torch.stack([torch.bincount(regions[where], colours[c][where], minlength=n + 1)
                         for c in range(3)]) / counts.clamp_min(1)
    filled = (counts > 0)[regions]
    # Each pixel takes its nearest hint when that hint lies in its own region (a region that a gap in the
    # lines joined keeps its hints apart), else its region's mean hint colour.
    _, (iy, ix) = ndimage.distance_transform_edt(~mask.cpu().numpy(), return_indices=True)
    nearest = torch.from_numpy(iy * size[1] + ix).view(-1)
    own = regions[nearest] == regions
    out[:3] = (torch.where(own, colours[:, nearest], means[:, regions]) * filled).view(3, *size)
    filled = filled.view(size)
    if not colour:
        out[0] = 0
    out[3] = filled.float()
    return out.to(bw.device)


def without_hints(x: torch.Tensor, in_channels: int) -> torch.Tensor:
    """A net input ``x`` (B,C,H,W) completed to ``in_channels`` with an empty hint map: a net trained with hints
    run automatically (the bench's timings of the nets alone)."""
    missing = in_channels - x.shape[1]
    return x if missing <= 0 else torch.cat([x, x.new_zeros(x.shape[0], missing, *x.shape[-2:])], dim=1)


# ---- reading hints -------------------------------------------------------------------------------------
def parse_colour(text: object, palette: dict[str, tuple[float, float, float]], where: str) -> tuple[float, ...]:
    """``#rrggbb`` (or ``#rgb``) or a palette name → RGB in [0,1]; anything else is a :class:`HintError`."""
    if isinstance(text, str):
        name = text.strip()
        if name in palette:
            return palette[name]
        if re.fullmatch(r"#[0-9a-fA-F]{6}", name):
            return tuple(int(name[i:i + 2], 16) / 255 for i in (1, 3, 5))
        if re.fullmatch(r"#[0-9a-fA-F]{3}", name):
            return tuple(int(c * 2, 16) / 255 for c in name[1:])
        known = f" (palette: {', '.join(sorted(palette))})" if palette else " (no palette given: --palette FILE)"
        if not name.startswith("#"):
            raise HintError(f"{where}: unknown colour name {name!r}{known}")
    raise HintError(f"{where}: {text!r} is not a colour (#rrggbb or a palette name)")


def read_palette(path: str | Path) -> dict[str, tuple[float, float, float]]:
    """A palette file ``{"hair": "#d04a2a", ...}`` → name → RGB."""
    path = Path(path)
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HintError(f"{path}: not a readable palette ({e})") from e
    if not isinstance(data, dict) or not data:
        raise HintError(f'{path}: a palette is a JSON object of named colours, {{"hair": "#d04a2a"}}')
    return {str(k): parse_colour(v, {}, f"{path}: {k}") for k, v in data.items()}


def _coordinate(value: object, extent: int, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise HintError(f"{where}: {value!r} is not a number")
    if isinstance(value, float) and 0.0 <= value <= 1.0:
        return value * (extent - 1)  # a fraction of the page
    return float(value)


def read_points(path: str | Path, size: tuple[int, int],
                palette: dict[str, tuple[float, float, float]] | None = None, content: bytes | None = None,
                ) -> list[Hint]:
    """A JSON list of ``{"x", "y", "colour", "radius"?}`` → hints on a page of ``size`` (H, W). Points outside
    the page are dropped with a warning; an empty list is no hints (a warning too). ``content``: the file's
    bytes, already read (from an archive; ``path`` then only names it)."""
    path = Path(path)
    try:
        data = json.loads(content if content is not None else path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise HintError(f"{path}: not a readable JSON hint list ({e})") from e
    return points_to_hints(data, size, palette, str(path))


def points_to_hints(data: object, size: tuple[int, int], palette: dict[str, tuple[float, float, float]] | None,
                    where: str) -> list[Hint]:
    """The points of a hint list (parsed JSON, :func:`read_points`) → hints on a page of ``size``; ``where``
    names the list in messages."""
    palette = palette or {}
    if isinstance(data, dict) and "points" in data:
        data = data["points"]
    if not isinstance(data, list):
        raise HintError(f'{where}: a hint list is a JSON list of points, [{{"x": 10, "y": 20, "colour": "#ff0000"}}]')
    if len(data) > MAX_POINTS:
        raise HintError(f"{where}: {len(data)} points, more than {MAX_POINTS} (a hint layer PNG suits dense hints)")
    if not data:
        warnings.warn(f"{where}: an empty hint list: the page is coloured without hints", stacklevel=2)
    h, w = size
    hints, outside = [], 0
    for i, point in enumerate(data):
        at = f"{where}: point {i}"
        if not isinstance(point, dict) or not {"x", "y"} <= set(point) or not ({"colour", "color"} & set(point)):
            raise HintError(f'{at}: needs "x", "y" and "colour", got {point!r}')
        x, y = _coordinate(point["x"], w, at), _coordinate(point["y"], h, at)
        radius = point.get("radius", 3)
        if isinstance(radius, bool) or not isinstance(radius, int | float) or not 0 < radius <= max(h, w):
            raise HintError(f"{at}: radius {radius!r} must be a positive number of pixels")
        colour = parse_colour(point.get("colour", point.get("color")), palette, at)
        if not (-radius <= x <= w - 1 + radius and -radius <= y <= h - 1 + radius):
            outside += 1
            continue
        hints.append(Hint(y, x, colour, float(radius)))
    if outside:
        warnings.warn(f"{where}: {outside} point(s) outside the {w}x{h} page, ignored", stacklevel=2)
    return hints


def layer_to_map(rgba: np.ndarray, size: tuple[int, int], where: str) -> torch.Tensor:
    """An RGBA hint layer (h,w,4) in [0,1] → hint map (4,H,W) of a page of ``size``: scaled to the page
    (nearest, so hint colours stay as painted) when its aspect matches within 2 %; opaque (alpha ≥ 0.5) pixels
    are hints. A layer of another aspect, or fully opaque, is refused; a fully transparent one warns."""
    lh, lw = rgba.shape[:2]
    h, w = size
    if abs(lw / lh - w / h) > 0.02 * (w / h):
        raise HintError(f"{where}: hint layer is {lw}x{lh}, the page {w}x{h}: another aspect (paint it over the "
                        f"page, or at its size)")
    opaque = rgba[..., 3] >= 0.5
    if opaque.all():
        raise HintError(f"{where}: the hint layer is opaque everywhere: hints are the painted pixels of a "
                        f"transparent layer")
    if not opaque.any():
        warnings.warn(f"{where}: the hint layer is fully transparent: the page is coloured without hints",
                      stacklevel=2)
    layer = torch.from_numpy(np.concatenate([_nlab(rgba[..., :3]), opaque[..., None]], axis=2).astype(np.float32))
    layer = layer.permute(2, 0, 1)
    layer[:3] *= layer[3:]
    if (lh, lw) != (h, w):
        layer = F.interpolate(layer[None], size=(h, w), mode="nearest")[0]
    return layer


def to_layer(hints: torch.Tensor) -> np.ndarray:
    """Hint map (4,H,W) → RGBA hint layer (H,W,4) float in [0,1]: the hints' colours, opaque where hinted. What
    :func:`layer_to_map` reads back: the PSD's ``hints`` layer, the sample pages' and the browser's hint files."""
    from dualflow.color import nlab_to_rgb

    mask = (hints[3:].float().cpu() > 0.5).float()
    rgb = nlab_to_rgb(hints[None, :3].float().cpu())[0] * mask
    return torch.cat([rgb, mask]).permute(1, 2, 0).numpy()


def draw_dots(rgb: np.ndarray, hints: torch.Tensor, ring: int = 2) -> np.ndarray:
    """A copy of page ``rgb`` (H,W,3) with each hinted pixel of ``hints`` (4,H,W) in its colour, ringed in
    black and white so a dot shows on any colour: where the user's hints were, for sample pages and panels."""
    from scipy import ndimage

    layer = to_layer(hints)
    mask = layer[..., 3] > 0.5
    inner = ndimage.binary_dilation(mask, iterations=ring)
    outer = ndimage.binary_dilation(inner, iterations=ring)
    out = np.array(rgb, np.float32, copy=True)
    out[outer & ~inner] = 1.0
    out[inner & ~mask] = 0.0
    out[mask] = layer[..., :3][mask]
    return out


def read_layer(path: str | Path, size: tuple[int, int], content: bytes | None = None) -> torch.Tensor:
    """A hint layer PNG (or any image with alpha; its bytes ``content`` when already read) → hint map (see
    :func:`layer_to_map`)."""
    from dualflow.data.io import ImageReadError, open_image

    try:
        with open_image(path, data=content) as img:
            rgba = np.asarray(img.convert("RGBA"), np.float32) / 255.0
    except ImageReadError as e:
        raise HintError(str(e)) from e
    return layer_to_map(rgba, size, str(path))


def psd_hint_layer(path: str | Path) -> np.ndarray | None:
    """The RGBA pixels (H,W,4, float) of a PSD's layer named ``hints``, placed on the canvas, or None."""
    from psd_tools import PSDImage

    psd = PSDImage.open(path)
    for layer in psd.descendants():
        if layer.name.strip().lower() == "hints" and not layer.is_group():
            canvas = np.zeros((psd.height, psd.width, 4), np.float32)
            pixels = layer.numpy()
            if pixels.shape[-1] == 3:
                pixels = np.concatenate([pixels, np.ones_like(pixels[..., :1])], axis=-1)
            top, left = max(0, layer.top), max(0, layer.left)
            part = pixels[top - layer.top:, left - layer.left:][:psd.height - top, :psd.width - left]
            canvas[top:top + part.shape[0], left:left + part.shape[1]] = part
            return canvas
    return None


def read_hints(path: str | Path, size: tuple[int, int],
               palette: dict[str, tuple[float, float, float]] | None = None, content: bytes | None = None,
               ) -> torch.Tensor:
    """The hint map of a page of ``size`` from a hint file: ``.json`` points, a ``.psd`` with a ``hints`` layer,
    or an image layer; ``content``: its bytes when already read (a hint file inside a volume)."""
    path = Path(path)
    if path.suffix.lower() == ".json":
        return paint(read_points(path, size, palette, content), size)
    if path.suffix.lower() == ".psd":
        rgba = psd_hint_layer(path)
        if rgba is None:
            raise HintError(f"{path}: no layer named 'hints'")
        return layer_to_map(rgba, size, f"{path}: layer 'hints'")
    return read_layer(path, size, content)


def is_hint_file(path: Path) -> bool:
    """``<stem>_hints.png`` and ``<stem>_hints.json``: hints for a page, never pages to colour."""
    return hinted_stem(path.name) is not None


def hinted_stem(name: str) -> str | None:
    """The page a hint file's ``name`` belongs to (``ch1/p001_hints.png`` → ``ch1/p001``), None when it is not
    a hint file."""
    lower = name.lower()
    return next((name[:-len(suffix)] for suffix in HINT_SUFFIXES if lower.endswith(suffix)), None)


def hint_file_for(page: Path, given: Path | None = None) -> Path | None:
    """The hint file of ``page``: ``given`` itself when it is a file, ``<stem>_hints.(png|json)`` in ``given``
    when it is a folder, else beside the page; None when there is none."""
    if given is not None and given.is_file():
        return given
    folder = given if given is not None else page.parent
    for suffix in HINT_SUFFIXES:
        candidate = folder / f"{page.stem}{suffix}"
        if candidate.is_file():
            return candidate
    return None
