"""Edge consistency: colour should change at the input's ink lines and not inside regions."""

from __future__ import annotations

import torch
from torchmetrics import Metric

from dualflow.color import luminance
from dualflow.filters import dilate, sobel
from dualflow.lineart import ink_lines
from dualflow.metrics.color import lab_of


class ChromaOnInk(Metric):
    """Share of chroma-gradient energy (|∇ab|, the magnitude, so a change spread over many pixels weighs
    what a sharp one does) that lies on or within ``radius`` px of ink lines. Colour bleeding across lines
    moves energy into regions and lowers it. Higher is better."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, radius: int = 2, **kwargs):
        super().__init__(**kwargs)
        self.radius = radius
        self.add_state("on_ink", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, bw: torch.Tensor) -> None:
        ab = lab_of(preds)[:, 1:]
        energy = sobel(ab).pow(2).sum(dim=(1, 2)).sqrt()[:, None]
        near = dilate(ink_lines(bw), self.radius)
        self.on_ink += (energy * near).sum().double()
        self.total += energy.sum().double()

    def compute(self) -> torch.Tensor:
        return (self.on_ink / self.total).float() if self.total > 0 else torch.tensor(float("nan"))


class EdgeF1(Metric):
    """F1 between luminance edges of the output (Sobel magnitude > ``threshold``) and the input's line art,
    each matched within ``tolerance`` px."""

    higher_is_better = True
    full_state_update = False

    def __init__(self, threshold: float = 0.15, tolerance: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.threshold, self.tolerance = threshold, tolerance
        for name in ("pred_hit", "pred_n", "ref_hit", "ref_n"):
            self.add_state(name, torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, bw: torch.Tensor) -> None:
        edges = (sobel(luminance(preds.float())).pow(2).sum(2).add(1e-6).sqrt() > self.threshold).float()
        ref = ink_lines(bw)
        self.pred_hit += (edges * dilate(ref, self.tolerance)).sum().double()
        self.pred_n += edges.sum().double()
        self.ref_hit += (ref * dilate(edges, self.tolerance)).sum().double()
        self.ref_n += ref.sum().double()

    def compute(self) -> torch.Tensor:
        p = self.pred_hit / self.pred_n.clamp_min(1)
        r = self.ref_hit / self.ref_n.clamp_min(1)
        return (2 * p * r / (p + r)).float() if (p + r) > 0 else torch.tensor(0.0)
