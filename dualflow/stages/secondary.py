"""Stage 3: SecondaryModule, the lighter colorizer of fill zones and transitions. It sees the whole page at a
working resolution, conditioned on the canvas the frozen primary model painted, and its colours come back to
full resolution through a guided filter on the B&W page. Validation scores the fused page (what users get)."""

from __future__ import annotations

import numpy as np
import torch

from dualflow.color import nlab_to_rgb, rgb_to_nlab
from dualflow.fusion import Fusion
from dualflow.metrics.suite import build_suite, page_inputs
from dualflow.models import UNet
from dualflow.pipeline import PlanSettings, canvas_from_patches, run_primary, run_secondary
from dualflow.stages.base import StageModule, draw_boxes, panel
from dualflow.stages.frozen import load_stage_net
from dualflow.stages.primary import require_ckpt


def corrupt_patches(patches: torch.Tensor, shift: float, drop_p: float,
                    generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time damage to the primary output, so the secondary learns to repair, not to copy: a random
    chroma shift per patch (up to ``shift`` in normalised ab) and patches dropped with probability ``drop_p``.
    Returns (patches, keep mask (K,))."""
    k = patches.shape[0]
    offset = (torch.rand(k, 2, 1, 1, generator=generator) * 2 - 1).to(patches) * shift
    out = patches.clone()
    out[:, 1:] = (out[:, 1:] + offset).clamp(-1, 1)
    keep = torch.rand(k, generator=generator) >= drop_p
    return out, keep


class SecondaryModule(StageModule):
    """Stage 3. Earlier stages come from the manifest (filled by the CLI) or ``--model.*_ckpt``."""

    stage = "secondary"
    reference_untrained = True

    def __init__(self, attention_ckpt: str | None = None, primary_ckpt: str | None = None, base: int = 24,
                 depth: int = 3, attn_heads: int = 4, attn_depth: int = 1, window: int = 8, norm: str = "group",
                 working_size: int = 512, guide_radius: int = 2, guide_eps: float = 1e-3,
                 fill_weight: float = 1.0, band_weight: float = 2.0, priority_weight: float = 0.25,
                 corrupt_p: float = 0.5, corrupt_shift: float = 0.15, drop_p: float = 0.2, patch_batch: int = 32,
                 lr: float = 5e-4, weight_decay: float = 1e-4, warmup_steps: int = 50,
                 allow_random_backbone: bool = False, val_lpips: bool = True):
        super().__init__(lr, weight_decay, warmup_steps)
        self.save_hyperparameters(logger=False)
        self.frozen["attention"], _ = load_stage_net(
            require_ckpt(attention_ckpt, "attention", "make train-stage1"), "attention")
        self.frozen["primary"], meta = load_stage_net(
            require_ckpt(primary_ckpt, "primary", "make train-stage2"), "primary")
        self.plan_settings = PlanSettings(**meta["plan"])
        self.net_config = dict(in_channels=6, base=base, depth=depth, attn_heads=attn_heads, attn_depth=attn_depth,
                               window=window, norm=norm)
        self.net = UNet(**self.net_config)
        self.fusion = Fusion()
        self.trained_long_side = 0  # page long side of the training batches, recorded for inference
        self.val_metrics = build_suite("page", "val", lpips=val_lpips, allow_random_backbone=allow_random_backbone)
        self.test_metrics = build_suite("page", "test", lpips=val_lpips,
                                        allow_random_backbone=allow_random_backbone)

    def extra_meta(self) -> dict:
        hp = self.hparams
        return {"working_size": hp.working_size, "guide_radius": hp.guide_radius, "guide_eps": hp.guide_eps,
                "trained_long_side": self.trained_long_side}

    @torch.no_grad()
    def primary_flow(self, bw: torch.Tensor, corrupt: bool) -> dict:
        """Frozen stages on a batch of pages: importance, plans, primary patches, canvas and coverage."""
        size = tuple(bw.shape[-2:])
        importance = self.frozen["attention"].importance(bw)
        hp = self.hparams
        plans, patches, canvases, coverages = [], [], [], []
        for i in range(bw.shape[0]):
            plan = self.plan_settings.plan(importance[i], size)
            p = run_primary(self.frozen["primary"], bw[i], importance[i], plan.boxes.to(bw.device), hp.patch_batch)
            weights = plan.weights.to(bw)
            if corrupt and len(plan) and torch.rand(()) < hp.corrupt_p:
                p, keep = corrupt_patches(p, hp.corrupt_shift, hp.drop_p)
                weights = weights * keep.view(-1, 1, 1, 1).to(bw)
            canvas, coverage = canvas_from_patches(p, plan.boxes, weights, size)
            plans.append(plan)
            patches.append(p)
            canvases.append(canvas)
            coverages.append(coverage.to(bw))
        return {"importance": importance, "plans": plans, "patches": patches, "canvas": torch.stack(canvases),
                "coverage": torch.stack(coverages)}

    def forward(self, bw: torch.Tensor, flow: dict) -> torch.Tensor:
        """Fill colours (B,3,H,W) normalised Lab for pages ``bw`` given the primary flow."""
        hp = self.hparams
        return run_secondary(self.net, bw, flow["canvas"], flow["coverage"], flow["importance"], hp.working_size,
                             hp.guide_radius, hp.guide_eps).full()

    def _loss(self, fill: torch.Tensor, color: torch.Tensor, flow: dict) -> torch.Tensor:
        """L1 in Lab weighted towards the fill zone and the transition band."""
        hp = self.hparams
        band = torch.stack([p.transition for p in flow["plans"]]).to(fill)
        cov = flow["coverage"]
        weight = hp.priority_weight * cov + hp.fill_weight * (1 - cov) + hp.band_weight * band
        err = (fill - rgb_to_nlab(color)).abs().sum(1, keepdim=True)
        return (weight * err).sum() / (weight.sum() * 3).clamp_min(1e-6)

    def training_step(self, batch: dict, batch_idx: int):
        if not self.count_skipped(batch):
            return None
        self.trained_long_side = max(batch["bw"].shape[-2:])  # the composite keeps this working/page ratio
        flow = self.primary_flow(batch["bw"], corrupt=True)
        loss = self._loss(self(batch["bw"], flow), batch["color"], flow)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch["bw"].shape[0])
        return loss

    def fuse(self, bw: torch.Tensor, flow: dict, fill: torch.Tensor) -> torch.Tensor:
        """Fused RGB pages (B,3,H,W)."""
        fused = [self.fusion(flow["patches"][i], flow["plans"][i], fill[i], bw[i]).page for i in range(bw.shape[0])]
        return nlab_to_rgb(torch.stack(fused))

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        bw, color = batch["bw"], batch["color"]
        flow = self.primary_flow(bw, corrupt=False)
        fill = self(bw, flow)
        self.log_loss(split, self._loss(fill, color, flow), bw.shape[0])
        suite.update(preds=self.fuse(bw, flow, fill), **page_inputs(batch, flow["plans"]))

    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        bw, color = batch["bw"][:2], batch["color"][:2]
        flow = self.primary_flow(bw, corrupt=False)
        fill = self(bw, flow)
        fused = self.fuse(bw, flow, fill)
        rows = [panel(bw[i], draw_boxes(nlab_to_rgb(flow["canvas"][i:i + 1])[0], flow["plans"][i].boxes),
                      nlab_to_rgb(fill[i:i + 1])[0], fused[i], color[i]) for i in range(bw.shape[0])]
        return {"val/panels/secondary": np.concatenate(rows, axis=0)}
