"""Transition coherence: ΔE2000 inside the transition band, and the seam score across patch borders."""

from __future__ import annotations

import torch

from dualflow.metrics.color import DeltaE2000, MaskedMean, lab_of


class TransitionDeltaE(DeltaE2000):
    """ΔE2000 to the target inside the transition band between priority patches and fill."""

    def update(self, preds: torch.Tensor, target: torch.Tensor, transition: torch.Tensor) -> None:
        super().update(preds, target, mask=transition)


def lab_gradient(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB → (B,1,H,W) local colour change: ΔE76 to the right and lower neighbours (max of both)."""
    lab = lab_of(rgb)
    gx = torch.zeros_like(lab[:, :1])
    gy = torch.zeros_like(lab[:, :1])
    gx[..., :, :-1] = (lab[..., :, 1:] - lab[..., :, :-1]).norm(dim=1, keepdim=True)
    gy[..., :-1, :] = (lab[..., 1:, :] - lab[..., :-1, :]).norm(dim=1, keepdim=True)
    # A border pixel sees the step on either side of it.
    gx[..., :, 1:] = torch.maximum(gx[..., :, 1:], gx[..., :, :-1].clone())
    gy[..., 1:, :] = torch.maximum(gy[..., 1:, :], gy[..., :-1, :].clone())
    return torch.maximum(gx, gy)


class SeamScore(MaskedMean):
    """Mean colour change (ΔE76) across patch borders in the output minus the same change in the target:
    0 when the output is as smooth there as the truth, positive when seams show."""

    higher_is_better = False

    def update(self, preds: torch.Tensor, target: torch.Tensor, seams: torch.Tensor) -> None:
        self._accumulate(lab_gradient(preds) - lab_gradient(target), seams)
