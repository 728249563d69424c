"""Chroma as classification over a quantised ab plane (Zhang, Isola & Efros 2016, "Colorful Image Colorization").

L1 regression of ab averages the plausible colours of a region into a grey or a sepia: the washed-out look of
short training runs. Here the network predicts a distribution over ab bins, trained with a cross-entropy whose
pixels are re-weighted by the rarity of their colour (a running estimate of the bins' frequencies, so a
saturated sweater counts as much as the paper), and decoded by the annealed mean: the mean of the distribution
sharpened by a temperature, between the mean (1: accurate but dull) and the mode (→0: vivid but patchy).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dualflow.color import AB_SCALE, rgb_to_lab


def lattice_corners(ab: torch.Tensor, grid: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Normalised ab (..., 2) → the lattice indices (..., 4) long of the four corners of the ``grid`` × ``grid``
    cell each colour falls in, and their bilinear weights (..., 4), which sum to 1."""
    u = (ab.float().clamp(-1, 1) + 1) * 0.5 * (grid - 1)
    lo = u.floor().clamp(max=grid - 2)
    f = u - lo
    lo = lo.long()
    ia, ib, fa, fb = lo[..., :1], lo[..., 1:], f[..., :1], f[..., 1:]
    index = torch.cat([ia * grid + ib, ia * grid + ib + 1, (ia + 1) * grid + ib, (ia + 1) * grid + ib + 1], dim=-1)
    weight = torch.cat([(1 - fa) * (1 - fb), (1 - fa) * fb, fa * (1 - fb), fa * fb], dim=-1)
    return index, weight


def gamut_cells(grid: int, steps: int = 33) -> torch.Tensor:
    """Lattice indices (sorted) of the bins an sRGB colour can soft-encode to: the corners of the cells that a
    dense sampling of the RGB cube falls in (158 of 256 bins for a 16-bin grid). Out-of-gamut bins would only be
    dead outputs."""
    axis = torch.linspace(0, 1, steps)
    rgb = torch.stack(torch.meshgrid(axis, axis, axis, indexing="ij")).reshape(1, 3, -1, 1)
    ab = rgb_to_lab(rgb)[0, 1:, :, 0].T / AB_SCALE  # (N, 2)
    return lattice_corners(ab, grid)[0].unique()


class ChromaBins(nn.Module):
    """The in-gamut bins of a ``grid`` × ``grid`` lattice over normalised ab ([-1, 1]², ab/110). Constants and
    the running prior are buffers: they move with the module, are saved in checkpoints, and DDP broadcasts them
    from rank 0."""

    def __init__(self, grid: int = 16, temperature: float = 0.38, rebalance: float = 0.5, momentum: float = 0.99):
        super().__init__()
        if grid < 2:
            raise ValueError(f"chroma grid must be at least 2 bins a side, got {grid}")
        self.grid, self.temperature = grid, temperature
        self.rebalance, self.momentum = rebalance, momentum
        cells = gamut_cells(grid)
        axis = torch.linspace(-1.0, 1.0, grid)
        self.register_buffer("centres", torch.stack([axis[cells // grid], axis[cells % grid]], dim=1))  # (Q,2)
        lookup = torch.zeros(grid * grid, dtype=torch.long)  # lattice index → bin (in-gamut targets only)
        lookup[cells] = torch.arange(len(cells))
        self.register_buffer("lookup", lookup)
        self.register_buffer("prior", torch.full((len(cells),), 1.0 / len(cells)))

    @property
    def bins(self) -> int:
        return self.centres.shape[0]

    def decode(self, logits: torch.Tensor) -> torch.Tensor:
        """Logits (..., Q), bins last → normalised ab (..., 2), the annealed mean at ``temperature``."""
        return torch.softmax(logits.float() * (1.0 / self.temperature), dim=-1) @ self.centres

    def encode(self, ab: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Normalised ab (..., 2) of sRGB colours → the four bins around each colour (..., 4) long and their
        bilinear weights (..., 4), which sum to 1: a soft target that keeps the colour's place between bins."""
        index, weight = lattice_corners(ab, self.grid)
        return self.lookup[index], weight

    @torch.no_grad()
    def observe(self, index: torch.Tensor, weight: torch.Tensor) -> None:
        """Fold a batch's bin frequencies into the running prior (scatter-add: no host sync on a GPU)."""
        counts = torch.zeros_like(self.prior).scatter_add_(0, index.flatten(), weight.flatten().to(self.prior))
        self.prior.mul_(self.momentum).add_(counts / counts.sum().clamp_min(1e-6), alpha=1 - self.momentum)

    def class_weights(self) -> torch.Tensor:
        """(Q,) rebalancing weights ∝ 1 / ((1-λ)·prior + λ/Q), scaled so that their mean under the prior is 1."""
        w = 1.0 / ((1 - self.rebalance) * self.prior + self.rebalance / self.bins)
        return w / (self.prior * w).sum()

    def loss(self, logits: torch.Tensor, ab: torch.Tensor, pixel_weight: torch.Tensor | None = None) -> torch.Tensor:
        """Rebalanced soft cross-entropy of ``logits`` (..., Q) against target ``ab`` (..., 2), optionally weighted
        per pixel (..., 1). In training mode the batch also updates the prior first."""
        index, weight = self.encode(ab)
        if self.training:
            self.observe(index, weight)
        log_p = torch.gather(F.log_softmax(logits.float(), dim=-1), -1, index)
        rarity = (self.class_weights()[index] * weight).sum(-1, keepdim=True)
        per_pixel = -(log_p * weight).sum(-1, keepdim=True) * rarity
        if pixel_weight is None:
            return per_pixel.mean()
        return (per_pixel * pixel_weight).sum() / pixel_weight.expand_as(per_pixel).sum().clamp_min(1e-6)
