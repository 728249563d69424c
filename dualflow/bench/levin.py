"""The hint curve's classical anchor, ``levin_propagation``: Levin, Lischinski & Weiss 2004, *Colorization using
Optimization*. The hints' chroma spreads to the rest of the page by one sparse linear solve: neighbouring pixels
of similar B&W value should have similar colour (affinities from the page itself), hinted pixels keep their
hint. It needs no training, so the learned rows must beat it. Solved at a working resolution (the page
area-averaged, which also averages the screentone away) and brought back to the page with the same guided filter
as the secondary's colours; the lightness is the automatic dual flow's, so only the chroma is Levin's."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.color import nlab_to_rgb, rgb_to_nlab
from dualflow.hints import downsample
from dualflow.pipeline import guided_fill, working_size

OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))  # each 8-neighbour pair once


def _pairs(h: int, w: int, dy: int, dx: int) -> tuple[tuple[slice, slice], tuple[slice, slice]]:
    """The slices of the pixels and of their (dy, dx) neighbours, both inside an h×w grid."""
    x0, x1 = max(0, -dx), w - max(0, dx)
    return (slice(0, h - dy), slice(x0, x1)), (slice(dy, h), slice(x0 + dx, x1 + dx))


def solve_chroma(y: np.ndarray, chroma: np.ndarray, known: np.ndarray, eps: float = 1e-4,
                 pull: float = 1e-4) -> np.ndarray:
    """Levin's colour propagation on one grid: ``y`` (h,w) the B&W page, ``chroma`` (2,h,w) the hints' ab where
    ``known`` (h,w) → (2,h,w) ab everywhere. Affinity of neighbours r, s: exp(−(y_r − y_s)² / 2σ²), σ² the two
    pixels' mean 3×3 variance (×0.6, at least ``eps``, as Levin et al.); the graph Laplacian's Dirichlet problem
    with the hints fixed, plus ``pull`` × (ab − 0) so a region no hint reaches stays grey, not undefined."""
    from scipy import ndimage, sparse
    from scipy.sparse.linalg import spsolve

    h, w = y.shape
    if not known.any():
        return np.zeros((2, h, w), np.float32)
    y = y.astype(np.float64)
    var = np.maximum(ndimage.uniform_filter(y * y, 3) - ndimage.uniform_filter(y, 3) ** 2, 0)
    index = np.arange(h * w).reshape(h, w)
    rows, cols, weights = [], [], []
    for dy, dx in OFFSETS:
        a, b = _pairs(h, w, dy, dx)
        sigma2 = np.maximum(0.6 * (var[a] + var[b]) / 2, eps)
        rows.append(index[a].ravel())
        cols.append(index[b].ravel())
        weights.append(np.exp(-((y[a] - y[b]) ** 2) / (2 * sigma2)).ravel())
    r, c, v = np.concatenate(rows), np.concatenate(cols), np.concatenate(weights)
    affinity = sparse.coo_matrix((np.r_[v, v], (np.r_[r, c], np.r_[c, r])), shape=(h * w, h * w)).tocsr()
    laplacian = sparse.diags(np.asarray(affinity.sum(1)).ravel()) - affinity
    fixed = known.ravel()
    free = ~fixed
    values = chroma.reshape(2, -1).T.astype(np.float64)
    system = laplacian[free][:, free] + pull * sparse.identity(int(free.sum()))
    rhs = -(laplacian[free][:, fixed] @ values[fixed])
    out = values.copy()
    out[free] = spsolve(system.tocsc(), rhs).reshape(-1, 2)
    return out.T.reshape(2, h, w).astype(np.float32)


class LevinPropagation:
    """The ``levin_propagation`` row: the ``lightness`` model's automatic page (its L), with the chroma of the
    hints spread by :func:`solve_chroma` at ``long_side`` pixels; grey without hints. Defaults tuned on the
    tuning pages (``bench/analyses/levin``). The automatic page of the last ``bw`` is kept, so settings tried on
    one page colour it once."""

    takes_hints = True

    def __init__(self, lightness: Any, long_side: int = 512, eps: float = 1e-3, pull: float = 1e-4):
        self.lightness, self.long_side, self.eps, self.pull = lightness, long_side, eps, pull
        self._last: tuple[torch.Tensor | None, dict[str, Any] | None] = (None, None)

    @torch.inference_mode()
    def colorize_page(self, bw: torch.Tensor, hints: torch.Tensor | None = None) -> dict[str, Any]:
        if self._last[0] is not bw:
            self._last = (bw, self.lightness.colorize_page(bw))
        out = self._last[1]
        page = bw.reshape(1, 1, *bw.shape[-2:]).float()
        size = working_size(tuple(page.shape[-2:]), self.long_side)
        small = F.adaptive_avg_pool2d(page, size)
        ab = torch.zeros(1, 2, *size)
        if hints is not None:
            cell = downsample(hints.reshape(1, 4, *page.shape[-2:]).float(), size)[0]
            ab = torch.from_numpy(solve_chroma(small[0, 0].numpy(), cell[1:3].numpy(), cell[3].numpy() > 0.5,
                                               self.eps, self.pull))[None]
        low = torch.cat([torch.zeros(1, 1, *size), ab], dim=1)
        chroma = guided_fill(low, small, page, tone_radius=2).full()[:, 1:]
        lab = rgb_to_nlab(out["rgb"][None].float())
        return {"rgb": nlab_to_rgb(torch.cat([lab[:, :1], chroma], dim=1))[0].clamp(0, 1), "plan": out["plan"]}
