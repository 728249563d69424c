"""Stage 1: AttentionModule learns, from the B&W page alone, where colour is hard.

The target needs no annotation: it is the colour complexity of the paired colour page (chroma gradients,
local chroma variance, hue diversity), pooled to the model's grid, smoothed and normalised per page.
SynthManga's region labels are only used to evaluate (AUROC / IoU of detailed vs flat)."""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.color import AB_SCALE, rgb_to_lab
from dualflow.filters import gaussian, sobel
from dualflow.metrics.suite import build_suite, update_suite
from dualflow.models import AttentionNet
from dualflow.models.blocks import pad_to_multiple
from dualflow.panels import draw_boxes, panel
from dualflow.patching import plan_patches
from dualflow.precision import float32
from dualflow.stages.base import StageModule


def _normalise(x: torch.Tensor, q: float) -> torch.Tensor:
    """Divide each page's map by its q-quantile, clamp to [0,1] (pages differ in overall colourfulness)."""
    scale = torch.quantile(x.flatten(1), q, dim=1).clamp_min(1e-6).view(-1, 1, 1, 1)
    return (x / scale).clamp(0, 1)


@float32
def complexity_target(color: torch.Tensor, stride: int, quantile: float = 0.98, sigma: float = 1.0) -> torch.Tensor:
    """(B,3,H,W) RGB colour page → (B,1,ceil(H/s),ceil(W/s)) colour complexity in [0,1], always in float32
    (under bf16 autocast its convolutions would round the target and ``torch.quantile`` refuses bfloat16)."""
    color, _ = pad_to_multiple(color, stride)
    lab = rgb_to_lab(color)
    ab = lab[:, 1:] / AB_SCALE
    chroma = ab.norm(dim=1, keepdim=True)
    grad = sobel(ab).abs().sum(dim=(1, 2))[:, None]  # chroma edges
    mean = F.avg_pool2d(ab, stride, stride)
    var = (F.avg_pool2d(ab * ab, stride, stride) - mean * mean).sum(1, keepdim=True).clamp_min(0)
    hue = ab / chroma.clamp_min(1e-3)  # unit hue vectors, weighted by whether there is chroma at all
    weight = (chroma > 0.05).float()
    resultant = F.avg_pool2d(hue * weight, stride, stride).norm(dim=1, keepdim=True)
    diversity = (F.avg_pool2d(weight, stride, stride) - resultant).clamp_min(0)  # 0 when one hue or grey
    grad = F.avg_pool2d(grad, stride, stride)
    parts = [_normalise(p, quantile) for p in (grad, var.sqrt(), diversity)]
    target = sum(parts) / len(parts)
    return _normalise(gaussian(target, sigma) if sigma > 0 else target, quantile)


class AttentionModule(StageModule):
    """Stage 1. Args are the config (``--model.dim=96`` etc.); ``patch_*`` only shape the panel's patch view."""

    stage = "attention"

    def __init__(self, stride: int = 8, dim: int = 64, depth: int = 4, heads: int = 4, window: int = 8,
                 stem_channels: int = 16, page_scale: float = 1.0, lr: float = 1e-3, weight_decay: float = 1e-4,
                 warmup_steps: int = 50,
                 target_quantile: float = 0.98, target_sigma: float = 1.0, patch_size: int = 64,
                 patch_budget: int = 8, patch_threshold: float = 0.3):
        super().__init__(lr, weight_decay, warmup_steps)
        self.save_hyperparameters(logger=False)
        self.net_config = dict(stride=stride, dim=dim, depth=depth, heads=heads, window=window,
                               stem_channels=stem_channels, page_scale=page_scale)
        self.net = AttentionNet(**self.net_config)
        self.val_metrics = build_suite("attention", "val")
        self.test_metrics = build_suite("attention", "test")

    def forward(self, bw: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) → importance (B,1,h,w) in [0,1]."""
        return self.net.importance(bw)

    def training_inputs(self, batch: dict) -> torch.Tensor:
        """The self-supervised target of the batch: the colour complexity of the colour page seen as the model
        sees the B&W page (at its working resolution)."""
        return complexity_target(self.net.view(batch["color"]), self.net.stride, self.hparams.target_quantile,
                                 self.hparams.target_sigma)

    def _loss(self, batch: dict, target: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        logits = self.net(self.net.view(batch["bw"]))
        return float32(F.binary_cross_entropy_with_logits)(logits, target), logits

    def training_loss(self, batch: dict, target: torch.Tensor) -> torch.Tensor:
        loss, _ = self._loss(batch, target)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["bw"].shape[0])
        return loss

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        target = self.training_inputs(batch)
        loss, logits = self._loss(batch, target)
        self.log_loss(split, loss, batch["bw"].shape[0])
        kwargs = {"importance": torch.sigmoid(logits), "target": target}
        if "detailed" in batch:
            kwargs["detailed"] = batch["detailed"]
            update_suite(suite, **kwargs)
        else:
            update_suite(suite["attention__rank_corr"], **kwargs)  # no labels (folder data): ranking only

    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        """Page, target, importance and planned boxes, at the model's working resolution."""
        bw, color = batch["bw"][:4], batch["color"][:4]
        imp = self(bw)
        target = self.training_inputs({"color": color})
        page_size, view, view_color = tuple(bw.shape[-2:]), self.net.view(bw), self.net.view(color)
        size = view.shape[-2:]
        rows = []
        for i in range(bw.shape[0]):
            plan = plan_patches(imp[i], page_size, self.hparams.patch_size, budget=self.hparams.patch_budget,
                                threshold=self.hparams.patch_threshold)
            boxes = (plan.boxes * self.net.page_scale).round().long()
            up = lambda m: F.interpolate(m[None], size=size, mode="nearest")[0]  # noqa: E731
            rows.append(panel(view[i], up(target[i]), up(imp[i]), draw_boxes(view_color[i], boxes)))
        return {"val/panels/attention": np.concatenate(rows, axis=0)}
