"""Stage 3: SecondaryModule, the lighter colorizer of fill zones and transitions. It sees the whole page at a
working resolution, conditioned on the canvas the frozen primary model painted, and its colours come back to
full resolution through a guided filter on the B&W page. Validation scores the fused page (what users get)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.color import nlab_to_rgb
from dualflow.fusion import Fusion
from dualflow.hints import for_net
from dualflow.metrics.suite import page_inputs, update_suite
from dualflow.panels import draw_boxes, panel
from dualflow.patching import PatchPlan
from dualflow.pipeline import PlanSettings, PrimaryFlow, primary_flow, run_secondary, secondary_input
from dualflow.stage_table import require_ckpt
from dualflow.stages.base import StageModule
from dualflow.stages.frozen import load_stage_net


def corrupt_patches(patches: torch.Tensor, shift: float, drop_p: float, hit: torch.Tensor | None = None,
                    generator: torch.Generator | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Training-time damage to the primary output, so the secondary learns to repair, not to copy: a random
    chroma shift per patch (up to ``shift`` in normalised ab) and patches dropped with probability ``drop_p``,
    only on the patches where ``hit`` (K,) is set (all when None). Returns (patches with ab clamped to
    [-1, 1], keep mask (K,)), drawn on the patches' device unless a generator says otherwise."""
    k = patches.shape[0]
    device = generator.device if generator is not None else patches.device
    offset = (torch.rand(k, 2, 1, 1, generator=generator, device=device) * 2 - 1).to(patches) * shift
    keep = (torch.rand(k, generator=generator, device=device) >= drop_p).to(patches.device)
    if hit is not None:
        offset, keep = offset * hit.view(-1, 1, 1, 1), keep | ~hit
    return torch.cat([patches[:, :1], (patches[:, 1:] + offset).clamp(-1, 1)], dim=1), keep


@dataclass
class Conditioning:
    """What the secondary is conditioned on and weighted by: the primary flow, the canvas (B,3,H,W) and coverage
    (B,1,H,W) it is shown, and the plan's transition band (B,1,H,W)."""

    flow: PrimaryFlow
    canvas: torch.Tensor
    coverage: torch.Tensor
    band: torch.Tensor
    hints: torch.Tensor | None = None  # (B,4,H,W) for a secondary that takes hints


class SecondaryModule(StageModule):
    """Stage 3. Earlier stages come from the manifest (filled by the CLI) or ``--model.*_ckpt``."""

    stage = "secondary"
    reference_untrained = True

    def __init__(self, attention_ckpt: str | None = None, primary_ckpt: str | None = None, base: int = 24,
                 depth: int = 3, attn_heads: int = 4, attn_depth: int = 1, window: int = 8, norm: str = "group",
                 working_size: int = 512, guide_radius: int = 2, guide_eps: float = 1e-3, tone_radius: int = 2,
                 chroma_grid: int = 0, chroma_temperature: float = 0.38, chroma_weight: float = 1.0,
                 gan_weight: float = 0.0, disc_lr: float = 2e-4, colourfulness_weight: float = 0.0,
                 fill_weight: float = 1.0, band_weight: float = 2.0, priority_weight: float = 0.25,
                 corrupt_p: float = 0.5, corrupt_shift: float = 0.15, drop_p: float = 0.2, patch_batch: int = 32,
                 hints: bool = True, lr: float = 5e-4, weight_decay: float = 1e-4, warmup_steps: int = 50,
                 allow_random_backbone: bool = False, val_lpips: bool = True, fid_every_n_val: int = 0):
        super().__init__(lr, weight_decay, warmup_steps)
        self.save_hyperparameters(logger=False)
        self.frozen["attention"], _ = load_stage_net(
            require_ckpt(attention_ckpt, "attention"), "attention")
        self.frozen["primary"], meta = load_stage_net(
            require_ckpt(primary_ckpt, "primary"), "primary")
        self.plan_settings = PlanSettings.from_meta(meta["plan"])
        self.primary_hints = bool(meta.get("hints", False))  # stage 2 trained with hints takes them too
        self.build_colour_net(6, hints, 0.0, gan_weight, allow_random_backbone, base=base, depth=depth,
                              attn_heads=attn_heads, attn_depth=attn_depth, window=window, norm=norm,
                              chroma_grid=chroma_grid, chroma_temperature=chroma_temperature)
        self.fusion = Fusion()
        self.trained_long_side = 0  # page long side of the training batches, recorded for inference
        self.build_page_suites(val_lpips, allow_random_backbone, fid_every_n_val)

    def extra_meta(self) -> dict:
        return self.working_meta()

    @torch.no_grad()
    def conditioning(self, bw: torch.Tensor, corrupt: bool, hints: torch.Tensor | None = None) -> Conditioning:
        """The frozen stages on a batch of pages (:func:`pipeline.primary_flow`: batched on the device, no host
        sync), with training-time damage to the primary patches when ``corrupt``: the canvas and coverage the
        secondary sees exclude the dropped patches; the transition band is the plan's. ``hints`` (B,4,H,W)
        go to the primary and the secondary where they were trained with them."""
        hp = self.hparams
        importance = self.frozen["attention"].importance(bw)
        flow = primary_flow(self.frozen["primary"], bw, importance, self.plan_settings, hp.patch_batch,
                            for_net(hints, bw, self.primary_hints))
        shown = None
        if corrupt:
            b, k = flow.valid.shape
            hit = (torch.rand(b, device=bw.device) < hp.corrupt_p).repeat_interleave(k)  # pages damaged
            patches, keep = corrupt_patches(flow.patches, hp.corrupt_shift, hp.drop_p, hit)
            flow, shown = replace(flow, patches=patches), flow.valid & keep.view(b, k)
        canvas, coverage = flow.canvas(shown)
        return Conditioning(flow, canvas, coverage, flow.transition(), for_net(hints, bw, hp.hints))

    def forward(self, bw: torch.Tensor, cond: Conditioning) -> torch.Tensor:
        """Fill colours (B,3,H,W) normalised Lab for pages ``bw`` given the primary flow."""
        hp = self.hparams
        return run_secondary(self.net, bw, cond.canvas, cond.coverage, cond.flow.importance, hp.working_size,
                             hp.guide_radius, hp.guide_eps, hp.tone_radius, cond.hints).full()

    def _weights(self, coverage: torch.Tensor, band: torch.Tensor) -> torch.Tensor:
        """Per-pixel loss weight (B,1,H,W): towards the fill zone and the transition band."""
        hp = self.hparams
        return hp.priority_weight * coverage + hp.fill_weight * (1 - coverage) + hp.band_weight * band

    def training_inputs(self, batch: dict) -> Conditioning:
        """The frozen stages' flow on the batch, with training-time damage to the primary patches."""
        self.trained_long_side = max(batch["bw"].shape[-2:])  # the composite keeps this working/page ratio
        return self.conditioning(batch["bw"], corrupt=True, hints=batch.get("hints"))

    def training_loss(self, batch: dict, cond: Conditioning) -> torch.Tensor | None:
        """The weighted losses at the working resolution, against the colour page, coverage and band pooled to
        it: on a print-scale page the page-resolution fill would cost more than the net (the guided filter
        that brings the fill to the page has no parameters; validation scores the fused page)."""
        hp, bw = self.hparams, batch["bw"]
        x = secondary_input(bw, cond.canvas, cond.coverage, cond.flow.importance, hp.working_size, cond.hints)
        low, features = self.outputs_for_loss(x)  # a chroma net's lightness only: ab goes by the features
        size = tuple(x.shape[-2:])
        pool = lambda t: F.adaptive_avg_pool2d(t, size) if tuple(t.shape[-2:]) != size else t  # noqa: E731
        color = pool(batch["color"])
        losses = self.colour_losses(low, color, features, self._weights(pool(cond.coverage), pool(cond.band)))
        loss = losses.pop("total")
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=bw.shape[0])
        return self.finish_step(loss, x[:, :1], color, low, bw.shape[0])

    def fuse(self, bw: torch.Tensor, pages: list[tuple[torch.Tensor, PatchPlan]], fill: torch.Tensor,
             hints: torch.Tensor | None = None) -> torch.Tensor:
        """Fused RGB pages (B,3,H,W) from :meth:`PrimaryFlow.plans`, with the pages' ``hints`` (B,4,H,W)
        carried across their regions as users get them (:class:`fusion.Fusion`)."""
        fused = [self.fusion(patches, plan, fill[i], bw[i], hints=None if hints is None else hints[i]).page
                 for i, (patches, plan) in enumerate(pages)]
        return nlab_to_rgb(torch.stack(fused))

    def _pages(self, bw: torch.Tensor, hints: torch.Tensor | None = None,
               ) -> tuple[Conditioning, torch.Tensor, list, torch.Tensor]:
        """Conditioning, fill, per-page plans and the fused RGB pages of a batch (what users get)."""
        cond = self.conditioning(bw, corrupt=False, hints=hints)
        fill = self(bw, cond)
        pages = cond.flow.plans()
        return cond, fill, pages, self.fuse(bw, pages, fill, hints if self.hparams.hints else None)

    def predict_rgb(self, batch: dict) -> torch.Tensor:
        return self._pages(batch["bw"], batch.get("hints"))[3]

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        cond, fill, pages, fused = self._pages(batch["bw"], batch.get("hints"))
        weight = self._weights(cond.coverage, cond.band)
        self.log_loss(split, self.colour_losses(fill, batch["color"], weight=weight)["l1"], fill.shape[0])
        update_suite(suite, preds=fused, **page_inputs(batch, [plan for _, plan in pages]))

    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        bw, color = batch["bw"][:2], batch["color"][:2]
        cond, fill, pages, fused = self._pages(bw)
        rows = [panel(bw[i], draw_boxes(nlab_to_rgb(cond.canvas[i:i + 1])[0], pages[i][1].boxes),
                      nlab_to_rgb(fill[i:i + 1])[0], fused[i], color[i]) for i in range(bw.shape[0])]
        return {"val/panels/secondary": np.concatenate(rows, axis=0)}
