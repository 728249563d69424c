"""Single-flow baseline (ablation): one UNet over the whole page, same losses, no attention or patches."""

from __future__ import annotations

import numpy as np
import torch

from dualflow.color import nlab_to_rgb
from dualflow.metrics.perceptual import build_lpips
from dualflow.metrics.suite import build_suite, page_inputs, update_suite
from dualflow.models import UNet
from dualflow.stages.base import StageModule, panel


class BaselineModule(StageModule):
    """Trained on the same pages with the same L1 (+ LPIPS) losses; size it to primary + secondary's
    parameter count (``experiments/baseline.yaml``) for a fair comparison."""

    stage = "baseline"
    reference_untrained = True

    def __init__(self, base: int = 40, depth: int = 3, attn_heads: int = 4, attn_depth: int = 1, window: int = 8,
                 norm: str = "group", chroma_grid: int = 0, chroma_temperature: float = 0.38,
                 l1_weight: float = 1.0, chroma_weight: float = 1.0, lpips_weight: float = 0.0, lr: float = 5e-4,
                 weight_decay: float = 1e-4, warmup_steps: int = 50, allow_random_backbone: bool = False,
                 val_lpips: bool = True, fid_every_n_val: int = 0):
        super().__init__(lr, weight_decay, warmup_steps)
        self.save_hyperparameters(logger=False)
        self.net_config = dict(in_channels=1, base=base, depth=depth, attn_heads=attn_heads, attn_depth=attn_depth,
                               window=window, norm=norm, chroma_grid=chroma_grid,
                               chroma_temperature=chroma_temperature)
        self.net = UNet(**self.net_config)
        self.lpips_loss = build_lpips(allow_random_backbone)[0] if lpips_weight > 0 else None
        self.val_metrics = build_suite("page", "val", lpips=val_lpips, allow_random_backbone=allow_random_backbone)
        self.test_metrics = build_suite("page", "test", lpips=val_lpips,
                                        allow_random_backbone=allow_random_backbone)
        self.build_val_fid(fid_every_n_val, allow_random_backbone)

    def forward(self, bw: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) → (B,3,H,W) normalised Lab."""
        return self.net(bw)

    def predict_rgb(self, batch: dict) -> torch.Tensor:
        return nlab_to_rgb(self(batch["bw"]))

    def training_loss(self, batch: dict, inputs: None) -> torch.Tensor:
        pred, features = self.outputs_for_loss(batch["bw"])
        loss = self.colour_losses(pred, batch["color"], features)["total"]
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["bw"].shape[0])
        return loss

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        bw, color = batch["bw"], batch["color"]
        pred = self(bw)
        self.log_loss(split, self.colour_losses(pred, color)["total"], bw.shape[0])
        update_suite(suite, preds=nlab_to_rgb(pred), **page_inputs(batch, plans=None))

    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        bw, color = batch["bw"][:2], batch["color"][:2]
        pred = nlab_to_rgb(self(bw))
        return {"val/panels/baseline": np.concatenate([panel(bw[i], pred[i], color[i]) for i in range(2)], 0)}
