"""Line art of a B&W manga page: ink strokes as opposed to screentone dots."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from dualflow.filters import box


@lru_cache(maxsize=4)
def _line_kernels(length: int) -> torch.Tensor:
    """(4,1,L,L) kernels: horizontal, vertical and both diagonal lines of ``length`` pixels. The diagonals are
    4-connected staircases: a drawn diagonal stroke is, a checkerboard-like screentone (whose dark pixels
    touch only at corners, forming endless 1-px diagonals) is not."""
    k = torch.zeros(4, 1, length, length)
    c = length // 2
    idx = torch.arange(length)
    k[0, 0, c, :] = 1
    k[1, 0, :, c] = 1
    k[2, 0, idx, idx] = 1
    k[2, 0, idx[:-1], idx[:-1] + 1] = 1
    k[3, 0, idx, length - 1 - idx] = 1
    k[3, 0, idx[:-1], length - 2 - idx[:-1]] = 1
    return k


def ink_lines(bw: torch.Tensor, length: int = 5, threshold: float = 0.5, max_density: float = 0.75) -> torch.Tensor:
    """(B,1,H,W) B&W page → {0,1} mask of strokes: dark pixels that belong to a run of at least ``length``
    dark pixels in one of four directions (a morphological opening by line segments), where at most
    ``max_density`` of the 7×7 neighbourhood is dark. Light screentone dots are shorter than a run and drop
    out; dense screentone (merged dots) and the inside of solid black are too dark around them to be a stroke
    (a stroke, even a bold one, has paper beside it); outlines, hatching and the borders of solid black stay."""
    dark = (bw < threshold).to(torch.float32)
    k = _line_kernels(length).to(bw.device)
    pad = length // 2
    need = k.sum(dim=(1, 2, 3)).view(1, 4, 1, 1) - 0.5
    eroded = (F.conv2d(dark, k, padding=pad) >= need).to(torch.float32)  # (B,4,H,W)
    # Dilate each direction by its (mirrored) segment and sum the four: > 0 where any of them covers. One 4→1
    # convolution, half the time of four grouped ones (counts are small integers, so the test is exact).
    opened = F.conv2d(eroded, k.flip(-2, -1).transpose(0, 1), padding=pad)
    stroke = (opened > 0) & (box(dark, 3) <= max_density)
    return stroke.to(bw.dtype)


PAPER_RADIUS = 8  # 17×17 px: several dot pitches of a dense tone or hatch, less than a panel's width


def strokes_on_paper(bw: torch.Tensor, min_paper: float = 0.35) -> torch.Tensor:
    """(B,1,H,W) B&W page → {0,1} mask of the :func:`ink_lines` strokes whose 17×17 surroundings are not mostly
    dark (mean > ``min_paper``): outlines drawn on paper or a light tone. Hatching and merged dots inside a dark
    toned area are left out: the colour page shows a flat dark colour there, and painting them at ink darkness
    leaves their texture in it. Reads :data:`PAPER_RADIUS` rows of context on each side."""
    return ink_lines(bw) * (box(bw, PAPER_RADIUS) > min_paper).to(bw.dtype)
