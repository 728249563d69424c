"""Single-flow baselines (ablations): one UNet over the whole page, same losses, no attention or patches —
at the page's native resolution (:class:`BaselineModule`), or at a working resolution with its colour brought
to the page by the guided filter on the B&W page, as DDColor and manga-colorization-v2 colour a page
(:class:`ResizeBaselineModule`). :class:`SingleFlowColorizer` runs either on a page with the composite's
post-processing, so the bench compares every row after the same fusion step."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dualflow.color import nlab_to_rgb
from dualflow.colorizer import at_trained_scale
from dualflow.fusion import Fusion, FusionConfig
from dualflow.hints import HINT_CHANNELS, downsample, for_net
from dualflow.metrics.suite import page_inputs, update_suite
from dualflow.panels import panel
from dualflow.patching import plan_patches
from dualflow.pipeline import StoredFill, guided_fill, inference_long_side, working_size
from dualflow.stages.base import StageModule


class BaselineModule(StageModule):
    """Trained on the same pages with the same losses and options (L1, LPIPS, chroma classification, GAN,
    colourfulness); size it to primary + secondary's parameter count (``experiments/baseline.yaml``)."""

    stage = "baseline"
    reference_untrained = True

    def __init__(self, base: int = 40, depth: int = 3, attn_heads: int = 4, attn_depth: int = 1, window: int = 8,
                 norm: str = "group", chroma_grid: int = 0, chroma_temperature: float = 0.38,
                 l1_weight: float = 1.0, chroma_weight: float = 1.0, lpips_weight: float = 0.0,
                 gan_weight: float = 0.0, disc_lr: float = 2e-4, colourfulness_weight: float = 0.0, lr: float = 5e-4,
                 weight_decay: float = 1e-4, warmup_steps: int = 50, allow_random_backbone: bool = False,
                 val_lpips: bool = True, fid_every_n_val: int = 0, working_size: int = 0, guide_radius: int = 2,
                 guide_eps: float = 1e-3, tone_radius: int = 2, hints: bool = True):
        super().__init__(lr, weight_decay, warmup_steps)
        self.save_hyperparameters(logger=False)
        self.trained_long_side = 0  # page long side of the training batches (a resized baseline's inference)
        self.build_colour_net(1, hints, lpips_weight, gan_weight, allow_random_backbone, base=base, depth=depth,
                              attn_heads=attn_heads, attn_depth=attn_depth, window=window, norm=norm,
                              chroma_grid=chroma_grid, chroma_temperature=chroma_temperature)
        self.build_page_suites(val_lpips, allow_random_backbone, fid_every_n_val)

    def extra_meta(self) -> dict:
        return self.working_meta()

    def working(self, page: torch.Tensor) -> torch.Tensor:
        """A page (B,C,H,W) at the net's working resolution: itself at native resolution, area-downsampled to
        ``working_size`` on its long side otherwise."""
        if not self.hparams.working_size:
            return page
        return F.adaptive_avg_pool2d(page, working_size(tuple(page.shape[-2:]), self.hparams.working_size))

    def net_input(self, bw: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        """The page at the working resolution, and the hint map there (no hint lost) for a net trained with
        hints."""
        x = self.working(bw)
        hints = for_net(hints, bw, self.hparams.hints)
        return x if hints is None else torch.cat([x, downsample(hints, tuple(x.shape[-2:]))], dim=1)

    def forward(self, bw: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        """(B,1,H,W) (and hint maps (B,4,H,W)) → (B,3,H,W) normalised Lab, at page resolution (through the
        guided filter when the net works at a lower one)."""
        x = self.net_input(bw, hints)
        low = self.net(x)
        if x.shape[-2:] == bw.shape[-2:]:
            return low
        hp = self.hparams
        return guided_fill(low, x[:, :1], bw, hp.guide_radius, hp.guide_eps, hp.tone_radius).full()

    def predict_rgb(self, batch: dict) -> torch.Tensor:
        return nlab_to_rgb(self(batch["bw"], batch.get("hints")))

    def training_loss(self, batch: dict, inputs: None) -> torch.Tensor | None:
        """The colour losses at the net's working resolution, against the colour page pooled to it."""
        self.trained_long_side = max(batch["bw"].shape[-2:])
        x, target = self.net_input(batch["bw"], batch.get("hints")), self.working(batch["color"])
        pred, features = self.outputs_for_loss(x)
        losses = self.colour_losses(pred, target, features)
        loss = losses.pop("total")
        for k, v in losses.items():
            self.log(f"train/{k}", v, batch_size=x.shape[0])
        return self.finish_step(loss, x[:, :1], target, pred, x.shape[0])

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        bw, color = batch["bw"], batch["color"]
        pred = self(bw, batch.get("hints"))
        self.log_loss(split, self.colour_losses(pred, color)["total"], bw.shape[0])
        update_suite(suite, preds=nlab_to_rgb(pred), **page_inputs(batch, plans=None))

    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        bw, color = batch["bw"][:2], batch["color"][:2]
        hints = batch.get("hints")
        pred = nlab_to_rgb(self(bw, None if hints is None else hints[:2]))
        return {"val/panels/baseline": np.concatenate([panel(bw[i], pred[i], color[i]) for i in range(2)], 0)}


class ResizeBaselineModule(BaselineModule):
    """The resize baseline: :class:`BaselineModule` at a working resolution (``working_size``, the page's long
    side there), recorded as its own stage so an experiment holds both baselines."""

    stage = "resize_baseline"

    def __init__(self, working_size: int = 256, **kwargs):
        if working_size < 1:
            raise ValueError(f"the resize baseline needs a working size, got {working_size}")
        super().__init__(working_size=working_size, **kwargs)


class SingleFlowColorizer(nn.Module):
    """A trained baseline net behind the composite's ``colorize_page``: the page at the net's resolution (a
    resized baseline keeps its training ratio of working size to page, at most ``max_working_size``, and comes
    back through the guided filter), then the composite's fusion step with no priority patches, so its
    post-processing (ink, white paper, descreening) is the dual flow's."""

    def __init__(self, net: nn.Module, meta: dict[str, Any], fusion: FusionConfig | None = None,
                 max_working_size: int = 512):
        super().__init__()
        self.net, self.meta, self.fusion, self.max_working_size = net, meta, Fusion(fusion), max_working_size

    @property
    def takes_hints(self) -> bool:
        """Whether the net was trained with colour hints."""
        return bool(self.meta.get("hints", False))

    @property
    def trained_dpi(self) -> float:
        """The scan resolution the net was trained at (0: thumbnail pages)."""
        return float(self.meta.get("trained_dpi") or 0)

    @torch.inference_mode()
    def colorize_page(self, bw: torch.Tensor, hints: torch.Tensor | None = None, dpi: float | None = None
                      ) -> dict[str, Any]:
        """One page (1,H,W) or (1,1,H,W) in [0,1] (and its hint map (4,H,W)) → ``rgb`` (3,H,W) and the (empty)
        ``plan``; a page scanned at ``dpi`` is coloured at the trained scale, as the dual flow does
        (:func:`colorizer.at_trained_scale`)."""
        bw = bw.reshape(1, 1, *bw.shape[-2:]).float()
        hints = None if hints is None else hints.reshape(1, HINT_CHANNELS, *bw.shape[-2:]).float()
        return at_trained_scale(self._colorize, bw, hints, dpi, self.trained_dpi, self.meta)

    def _colorize(self, bw: torch.Tensor, debug: bool, hints: torch.Tensor | None, overlay: bool) -> dict[str, Any]:
        size, m = tuple(bw.shape[-2:]), self.meta
        hints = for_net(hints, bw, bool(m.get("hints", False)))
        x = F.adaptive_avg_pool2d(bw, working_size(size, inference_long_side(size, m, self.max_working_size))) \
            if m.get("working_size") else bw
        low = self.net(x if hints is None else torch.cat([x, downsample(hints, tuple(x.shape[-2:]))], dim=1))
        if m.get("working_size"):
            fill = guided_fill(low, x, bw, m["guide_radius"], m["guide_eps"], m["tone_radius"])
        else:
            fill = StoredFill(low.float())
        plan = plan_patches(torch.zeros(1, 1), size, budget=0)
        page = self.fusion(torch.zeros(0, 3, 1, 1), plan, fill, bw[0], rgb=True,
                           hints=None if hints is None or not overlay else hints[0]).page
        return {"rgb": page, "plan": plan}
