"""Stage 2: PrimaryModule, the high-capacity colorizer of priority patches, trained on the patches that the
frozen stage-1 model and PatchPlan choose (plus a share of random patches), at native resolution."""

from __future__ import annotations

import math
from dataclasses import asdict

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.color import nlab_to_rgb
from dualflow.hints import for_net
from dualflow.metrics.suite import build_suite, update_suite
from dualflow.panels import panel
from dualflow.patching import crop_pages, random_boxes
from dualflow.pipeline import PlanSettings, primary_inputs
from dualflow.stage_table import require_ckpt
from dualflow.stages.base import StageModule
from dualflow.stages.frozen import load_stage_net


class PrimaryModule(StageModule):
    """Stage 2. ``attention_ckpt`` is filled from ``runs/<experiment>/manifest.json`` by the CLI when omitted."""

    stage = "primary"
    reference_untrained = True

    def __init__(self, attention_ckpt: str | None = None, base: int = 32, depth: int = 3, attn_heads: int = 4,
                 attn_depth: int = 1, window: int = 8, norm: str = "batch", patch_size: int = 64,
                 patch_budget: int = 8, patch_threshold: float = 0.3, patch_overlap: float = 0.25,
                 band_width: int = 8, patch_density: float = 0.0, random_share: float = 0.25, chroma_grid: int = 0,
                 chroma_temperature: float = 0.38, l1_weight: float = 1.0, chroma_weight: float = 1.0,
                 lpips_weight: float = 0.0, gan_weight: float = 0.0, disc_lr: float = 2e-4,
                 colourfulness_weight: float = 0.0, hints: bool = True, lr: float = 5e-4,
                 weight_decay: float = 1e-4, warmup_steps: int = 50, allow_random_backbone: bool = False,
                 val_lpips: bool = True):
        super().__init__(lr, weight_decay, warmup_steps)
        self.save_hyperparameters(logger=False)
        attention, _ = load_stage_net(require_ckpt(attention_ckpt, "attention"), "attention")
        self.frozen["attention"] = attention
        self.plan_settings = PlanSettings(patch_size, patch_budget, patch_threshold, patch_overlap, band_width,
                                          patch_density)
        self.build_colour_net(2, hints, lpips_weight, gan_weight, allow_random_backbone, base=base, depth=depth,
                              attn_heads=attn_heads, attn_depth=attn_depth, window=window, norm=norm,
                              chroma_grid=chroma_grid, chroma_temperature=chroma_temperature)
        self.val_metrics = build_suite("patch", "val", lpips=val_lpips, allow_random_backbone=allow_random_backbone)
        self.test_metrics = build_suite("patch", "test", lpips=val_lpips,
                                        allow_random_backbone=allow_random_backbone)

    def extra_meta(self) -> dict:
        return {"plan": asdict(self.plan_settings), "hints": self.hparams.hints}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(K,2,ph,pw) bw + importance patches (+ 4 hint channels) → (K,3,ph,pw) normalised Lab."""
        return self.net(x)

    def patch_boxes(self, importance: torch.Tensor, page_size: tuple[int, int], random_extra: bool,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Boxes (N,4) and their page index (N,) for a batch. Training: every page gets its budget of planned
        boxes (:meth:`PlanSettings.budget`: by the window's area when the plan is sized by the page; a slot with no
        window above the threshold gets a random box) plus ``random_share`` of random ones, a fixed count, so
        nothing waits on the host. Evaluation: the planned boxes only, or one random
        box for a page with none."""
        b, settings = importance.shape[0], self.plan_settings
        boxes, _, valid = settings.select(importance, page_size)
        k = boxes.shape[1]
        total = k + math.ceil(k * self.hparams.random_share) if random_extra else max(k, 1)
        rand = random_boxes(page_size, settings.patch_size, (b, total), generator, importance.device)
        boxes = torch.cat([torch.where(valid[..., None], boxes, rand[:, :k]), rand[:, k:]], dim=1)
        page = torch.arange(b, device=importance.device)[:, None].expand(b, total)
        if random_extra:
            return boxes.reshape(-1, 4), page.reshape(-1)
        keep = F.pad(valid, (0, total - k))
        keep[:, 0] |= ~keep.any(dim=1)  # evaluation needs at least one patch per page
        return boxes[keep], page[keep]

    @torch.no_grad()
    def patches(self, batch: dict, random_extra: bool, generator: torch.Generator | None = None):
        """Patches of every page: inputs (N,2,p,p) (bw + importance, and the hint map's 4 channels when the
        net takes hints) and RGB targets (N,3,p,p)."""
        bw, color = batch["bw"], batch["color"]
        size = tuple(bw.shape[-2:])
        importance = self.frozen["attention"].importance(bw)
        boxes, page = self.patch_boxes(importance, size, random_extra, generator)
        patch = self.plan_settings.patch_shape(size)
        hints = for_net(batch.get("hints"), bw, self.hparams.hints)
        return primary_inputs(bw, importance, boxes, page, patch, hints), crop_pages(color, boxes, page, patch)

    def training_inputs(self, batch: dict) -> tuple[torch.Tensor, torch.Tensor]:
        """Planned and random patches of the batch: inputs and RGB targets."""
        return self.patches(batch, random_extra=True)

    def training_loss(self, batch: dict, inputs: tuple[torch.Tensor, torch.Tensor]):
        x, y = inputs
        pred, features = self.outputs_for_loss(x)
        losses = self.colour_losses(pred, y, features)
        loss = losses.pop("total")
        n = x.shape[0]
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=n)
        self.log("train/patches", float(n), batch_size=1, reduce_fx="sum")
        return self.finish_step(loss, x[:, :1], y, pred, n)

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        gen = torch.Generator().manual_seed(0)  # the same random fallback patches every validation
        x, y = self.patches(batch, random_extra=False, generator=gen)
        pred = self.net(x)
        self.log_loss(split, self.colour_losses(pred, y)["l1"], x.shape[0])
        update_suite(suite, preds=nlab_to_rgb(pred), target=y)

    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        pages = {"bw": batch["bw"][:2], "color": batch["color"][:2]}
        x, y = self.patches(pages, random_extra=False, generator=torch.Generator().manual_seed(0))
        pred = nlab_to_rgb(self.net(x[:8]))
        rows = [panel(x[i, :1], pred[i], y[i]) for i in range(pred.shape[0])]
        return {"val/panels/primary": np.concatenate(rows, axis=0)}
