"""Attention-stage metrics: how well the importance map separates detailed from flat regions (SynthManga
labels, evaluation only), and how well it ranks pixels like the self-supervised target does."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric, Metric
from torchmetrics.classification import BinaryAUROC, BinaryJaccardIndex


def labels_to_grid(detailed: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,1,H,W) {0,1} detailed mask → (B,1,h,w) {0,1}: a cell is detailed when most of its pixels are."""
    return (F.adaptive_avg_pool2d(detailed.float(), size) > 0.5).long()


def spearman(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Spearman rank correlation of two 1-D tensors (ties broken by order, fine for continuous maps)."""
    ra = a.argsort().argsort().float()
    rb = b.argsort().argsort().float()
    ra, rb = ra - ra.mean(), rb - rb.mean()
    return (ra * rb).sum() / (ra.norm() * rb.norm()).clamp_min(1e-12)


class AttentionAUROC(BinaryAUROC):
    """AUROC of importance vs detailed labels (binned: constant memory, syncs across ranks)."""

    def __init__(self, **kwargs):
        super().__init__(thresholds=200, **kwargs)

    def update(self, importance: torch.Tensor, detailed: torch.Tensor) -> None:
        super().update(importance.flatten(), labels_to_grid(detailed, importance.shape[-2:]).flatten())


class AttentionIoU(BinaryJaccardIndex):
    """IoU between the thresholded importance map and the detailed labels."""

    def __init__(self, threshold: float = 0.5, **kwargs):
        super().__init__(threshold=threshold, **kwargs)

    def update(self, importance: torch.Tensor, detailed: torch.Tensor) -> None:
        super().update(importance.flatten(), labels_to_grid(detailed, importance.shape[-2:]).flatten())


class RankCorrelation(MeanMetric):
    """Mean per-page Spearman correlation between the predicted importance and the self-supervised target."""

    higher_is_better = True

    def update(self, importance: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        for p, t in zip(importance.flatten(1), target.flatten(1), strict=True):
            super().update(spearman(p.float(), t.float()))


__all__ = ["AttentionAUROC", "AttentionIoU", "RankCorrelation", "Metric"]
