"""Line art of a B&W manga page: ink strokes as opposed to screentone dots."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F

from dualflow.filters import axis_sum, box


@lru_cache(maxsize=4)
def _line_taps(length: int) -> tuple[tuple[tuple[int, int], ...], ...]:
    """Offsets (dy, dx) from the centre of four line segments of ``length`` pixels: horizontal, vertical and both
    diagonals. The diagonals are 4-connected staircases: a drawn diagonal stroke is, a checkerboard-like
    screentone (whose dark pixels touch only at corners, forming endless 1-px diagonals) is not."""
    c = length // 2
    k = torch.zeros(4, length, length, dtype=torch.bool)
    idx = torch.arange(length)
    k[0, c, :] = k[1, :, c] = True
    k[2, idx, idx] = k[2, idx[:-1], idx[:-1] + 1] = True
    k[3, idx, length - 1 - idx] = k[3, idx[:-1], length - 2 - idx[:-1]] = True
    return tuple(tuple((int(y) - c, int(x) - c) for y, x in k[d].nonzero()) for d in range(4))


def ink_lines(bw: torch.Tensor, length: int = 5, threshold: float = 0.5, max_density: float = 0.75) -> torch.Tensor:
    """(B,1,H,W) B&W page → {0,1} mask of strokes: dark pixels that belong to a run of at least ``length``
    dark pixels in one of four directions (a morphological opening by line segments), where at most
    ``max_density`` of the 7×7 neighbourhood is dark. Light screentone dots are shorter than a run and drop
    out; dense screentone (merged dots) and the inside of solid black are too dark around them to be a stroke
    (a stroke, even a bold one, has paper beside it); outlines, hatching and the borders of solid black stay."""
    dark = bw < threshold
    c = length // 2
    h, w = dark.shape[-2:]
    at = lambda padded, dy, dx: padded[..., c + dy:c + dy + h, c + dx:c + dx + w]  # noqa: E731 - x[y+dy, x+dx]
    padded_dark = F.pad(dark, (c, c, c, c))  # outside the page is paper
    opened = torch.zeros_like(dark)
    for taps in _line_taps(length):
        # Erode by the segment (every tap dark), then dilate by its mirror: exact boolean morphology, and on
        # CPU several times faster than the same opening as convolutions.
        eroded = at(padded_dark, *taps[0]).clone()
        for dy, dx in taps[1:]:
            eroded &= at(padded_dark, dy, dx)
        padded_eroded = F.pad(eroded, (c, c, c, c))
        for dy, dx in taps:
            opened |= at(padded_eroded, -dy, -dx)
    stroke = opened & (box(dark.to(torch.float32), 3) <= max_density)
    return stroke.to(bw.dtype)


PAPER_RADIUS = 8  # 17×17 px: several dot pitches of a dense tone or hatch, less than a panel's width


def stroke_reach(length: int = 5) -> int:
    """Rows of context :func:`ink_lines` reads on each side: the opening (erode, then dilate by the segment's
    half-length) and its 7×7 density window."""
    return max(2 * (length // 2), 3)


HATCH_RADIUS = 7  # hatching is judged on the 15-px horizontal and vertical lines through a pixel
HATCH_CROSSINGS = 10  # stroke/paper changes along both lines together from which it is hatching: five strokes crossed


def outlines(bw: torch.Tensor) -> torch.Tensor:
    """(B,1,H,W) B&W page → {0,1} mask of the :func:`ink_lines` strokes that are not hatching. Hatching is a tone
    drawn as parallel strokes: many stroke/paper changes along the short lines through a pixel, where an
    outline, a corner or a junction crosses them a few times. A colour page shows a flat colour there, so the
    post-processing must not treat hatch strokes as lines to keep. Reads :func:`outline_reach` rows."""
    strokes = ink_lines(bw)
    changes = torch.zeros_like(strokes)
    for dim in (-1, -2):
        n = strokes.shape[dim]
        step = (strokes.narrow(dim, 1, n - 1) != strokes.narrow(dim, 0, n - 1)).to(strokes.dtype)
        changes += axis_sum(F.pad(step, (0, 1) if dim == -1 else (0, 0, 0, 1)), HATCH_RADIUS, dim)
    return strokes * (changes < HATCH_CROSSINGS).to(strokes.dtype)


def outline_reach() -> int:
    """Rows of context :func:`outlines` reads on each side: the strokes' and the hatching window's (whose
    changes reach one pixel past it)."""
    return stroke_reach() + HATCH_RADIUS + 1


def strokes_on_paper(bw: torch.Tensor, min_paper: float = 0.35, strokes: torch.Tensor | None = None) -> torch.Tensor:
    """(B,1,H,W) B&W page → {0,1} mask of the :func:`outlines` (``strokes`` when already computed) whose 17×17
    surroundings are not mostly dark (mean > ``min_paper``): outlines drawn on paper or a light tone. Strokes
    inside a dark toned area (hatching, merged dots) are left out: the colour page shows a flat dark colour
    there, and painting them at ink darkness leaves their texture in it. Reads max(:data:`PAPER_RADIUS`,
    :func:`outline_reach`) rows of context on each side."""
    strokes = outlines(bw) if strokes is None else strokes
    return strokes * (box(bw, PAPER_RADIUS) > min_paper).to(bw.dtype)
