"""Layered output for colourists (``colorize --layers``): the flat colours without the line art, the line art
as black with alpha, and one PSD that opens with both as named layers (plus the coloured page and the page's
colour hints, both hidden; the ``hints`` layer is what ``colorize`` reads back from a PSD page).

The line layer is black with alpha 1 − bw, so over any colour layer it darkens exactly as multiplying by the
B&W page does (line art and screentone). The flats are the coloured page where the page is paper or light,
and under the ink (bw < :data:`INK`) the colour of the nearest paper around it, filled by push–pull (a
weighted image pyramid): a colourist recolours a flat zone without line art baked into it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.data.io import atomic_path, save_image
from dualflow.hints import to_layer

INK = 0.5  # B&W value below which a pixel is line art (stroke, screentone dot, solid black)
LAYER_NAMES = ("flats", "line art", "colorized")
HINT_LAYER = "hints"  # the name :func:`hints.psd_hint_layer` reads


def fill_under_ink(rgb: torch.Tensor, known: torch.Tensor) -> torch.Tensor:
    """(3,H,W) colours where ``known`` (1,H,W) is 1, filled elsewhere from the known colours around them:
    push (area-average colour·known and known down a pyramid), then pull (each level's holes take the coarser
    estimate, in proportion to what is missing). Known pixels keep their colour exactly."""
    levels = [(rgb * known, known)]
    while max(levels[-1][1].shape[-2:]) > 1 and float(levels[-1][1].min()) == 0:
        c, w = levels[-1]
        levels.append((F.avg_pool2d(c[None], 2, ceil_mode=True)[0], F.avg_pool2d(w[None], 2, ceil_mode=True)[0]))
    c, w = levels[-1]
    estimate = c / w.clamp_min(1e-6)
    for c, w in reversed(levels[:-1]):
        coarse = F.interpolate(estimate[None], size=c.shape[-2:], mode="bilinear", align_corners=False)[0]
        estimate = c + coarse * (1 - w)  # the known pixels' mean in proportion w, the coarser estimate for the rest
    return estimate


def flats(rgb: torch.Tensor, bw: torch.Tensor) -> torch.Tensor:
    """The coloured page (3,H,W) without its line art (bw (1,H,W)): see the module docstring."""
    known = (bw >= INK).to(rgb.dtype)
    if float(known.max()) == 0:
        return rgb  # nothing but ink: nothing to fill from
    return fill_under_ink(rgb, known).clamp(0, 1)


def line_art(bw: np.ndarray) -> np.ndarray:
    """(H,W) B&W page in [0,1] → (H,W,4) black with alpha 1 − bw, float in [0,1]."""
    out = np.zeros((*bw.shape, 4), np.float32)
    out[..., 3] = 1 - np.clip(bw, 0, 1)
    return out


def to_uint8(img: np.ndarray) -> np.ndarray:
    return (np.clip(img, 0, 1) * 255 + 0.5).astype(np.uint8)


def write_psd(path: Path, flat: np.ndarray, lines: np.ndarray, page: np.ndarray,
              hints: np.ndarray | None = None) -> None:
    """One PSD (uint8 (H,W,3) flats and page, (H,W,4) line art), layers bottom to top as :data:`LAYER_NAMES`,
    the coloured page hidden, and the uint8 (H,W,4) hint layer ``hints`` (hidden) on top when given; every
    channel RLE-compressed (PackBits, which every PSD reader reads); written atomically."""
    from psd_tools import PSDImage
    from psd_tools.constants import Compression

    h, w = flat.shape[:2]
    psd = PSDImage.new("RGB", (w, h))
    # Layers are RLE already; the merged image (what readers without layers show) defaults to raw, 3 bytes a pixel.
    psd._record.image_data.compression = Compression.RLE
    psd.create_pixel_layer_from_array(flat, name=LAYER_NAMES[0])
    psd.create_pixel_layer_from_array(lines, name=LAYER_NAMES[1])
    psd.create_pixel_layer_from_array(page, name=LAYER_NAMES[2]).visible = False
    if hints is not None:
        psd.create_pixel_layer_from_array(hints, name=HINT_LAYER).visible = False
    with atomic_path(path) as tmp:
        psd.save(tmp)


def layer_paths(output: Path) -> dict[str, Path]:
    """Where the layers of the page written to ``output`` (``x.png``) go: ``x_flats.png``, ``x_lines.png``,
    ``x.psd``."""
    return {"flats": output.with_name(output.stem + "_flats.png"),
            "lines": output.with_name(output.stem + "_lines.png"), "psd": output.with_suffix(".psd")}


def write_layers(output: Path, rgb: np.ndarray, bw: np.ndarray, compress_level: int = 6,
                 hints: torch.Tensor | None = None) -> list[Path]:
    """The flats and line-art PNGs and the PSD of a coloured page (``rgb`` (H,W,3), ``bw`` (H,W), float), the
    PSD with the page's hint map ``hints`` (4,H,W) as a hidden layer when the page had hints."""
    paths = layer_paths(output)
    flat = flats(torch.from_numpy(rgb).permute(2, 0, 1), torch.from_numpy(bw)[None]).permute(1, 2, 0).numpy()
    lines = line_art(bw)
    save_image(paths["flats"], flat, compress_level)
    save_image(paths["lines"], lines, compress_level)
    layer = None if hints is None else to_uint8(to_layer(hints))
    write_psd(paths["psd"], to_uint8(flat), to_uint8(lines), to_uint8(rgb), layer)
    return list(paths.values())
