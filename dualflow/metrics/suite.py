"""MetricSuite: the right MetricCollection for each stage, with keys ``{split}/{group}/{name}``."""

from __future__ import annotations

import torch
from torchmetrics import Metric, MetricCollection
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from dualflow.metrics.attention import AttentionAUROC, AttentionIoU, RankCorrelation
from dualflow.metrics.color import DeltaColorfulness, DeltaE2000, ToneResidue, shared_conversions
from dualflow.metrics.edges import ChromaOnInk, EdgeF1
from dualflow.metrics.perceptual import FID, LPIPS, metric_name
from dualflow.metrics.transition import SeamScore, TransitionDeltaE
from dualflow.patching import seam_mask
from dualflow.precision import float32

SEP = "__"


def _color() -> dict[str, Metric]:
    return {
        "color/delta_e2000": DeltaE2000(),
        "color/psnr": PeakSignalNoiseRatio(data_range=1.0),
        "color/ssim": StructuralSimilarityIndexMeasure(data_range=1.0),
        "color/delta_cf": DeltaColorfulness(),
        "color/tone_residue": ToneResidue(),
    }


def _lpips(allow_random_backbone: bool) -> dict[str, Metric]:
    m = LPIPS(allow_random_backbone)
    return {f"global/{metric_name('lpips', m.pretrained)}": m}


def build_suite(kind: str, split: str, lpips: bool = True, fid: bool = False,
                allow_random_backbone: bool = False, only: tuple[str, ...] | None = None) -> MetricCollection:
    """Metrics of one stage: ``attention`` | ``patch`` (stage 2) | ``page`` (stage 3, composite, baseline);
    ``only``: keep just these (``color/delta_e2000``...), e.g. where the whole suite costs too much.

    Every metric's ``update`` receives the keyword arguments it names (MetricCollection filters them):
    preds/target (RGB), bw, transition, seams, detailed, importance."""
    metrics: dict[str, Metric] = {}
    if kind == "attention":
        metrics = {"attention/auroc": AttentionAUROC(), "attention/iou": AttentionIoU(),
                   "attention/rank_corr": RankCorrelation()}
    else:
        metrics.update(_color())
        if lpips:
            metrics.update(_lpips(allow_random_backbone))
        if kind == "page":
            metrics.update({
                "color/delta_e2000_detailed": _Detailed(),
                "transition/delta_e2000": TransitionDeltaE(),
                "transition/seam": SeamScore(),
                "edge/chroma_on_ink": ChromaOnInk(),
                "edge/f1": EdgeF1(),
            })
            if fid:
                f = FID(allow_random_backbone)
                metrics[f"global/{metric_name('fid', f.pretrained)}"] = f
    if only is not None:
        metrics = {k: v for k, v in metrics.items() if k in only}
    # Module names cannot hold '/' or '.', so groups are joined with '__' and turned back into '/' by log_key.
    return MetricCollection({k.replace("/", SEP): v for k, v in metrics.items()}, prefix=f"{split}{SEP}")


class _Detailed(DeltaE2000):
    """ΔE2000 inside detailed regions only (where the dual flow claims its gain)."""

    def update(self, preds: torch.Tensor, target: torch.Tensor, detailed: torch.Tensor) -> None:
        super().update(preds, target, mask=detailed)


@float32
def update_suite(suite: Metric | MetricCollection, **inputs: torch.Tensor) -> None:
    """``suite.update(**inputs)`` in float32 outside autocast: under bf16-mixed, SSIM's convolutions, the Lab
    conversions and the LPIPS/FID backbones would otherwise compute in bfloat16. The metrics share their Lab
    conversions and ΔE2000 map (:func:`metrics.color.shared_conversions`)."""
    with shared_conversions():
        suite.update(**inputs)


def page_inputs(batch: dict, plans: list | None) -> dict[str, torch.Tensor]:
    """Inputs of the page suite besides ``preds``: target, bw, each page's transition band and patch seams
    (zeros for a single flow, which has no patches) and the batch's detailed-region mask (``detailed``, which a
    labelled dataset provides; the whole page where there is none)."""
    bw = batch["bw"]
    if plans is None:
        transition = seams = torch.zeros_like(bw)
    else:
        transition = torch.stack([p.transition for p in plans]).to(bw)
        seams = torch.stack([seam_mask(p.boxes, p.page_size) for p in plans]).to(bw)
    detailed = batch["detailed"].to(bw) if "detailed" in batch else torch.ones_like(bw)
    return {"target": batch["color"], "bw": bw, "transition": transition, "seams": seams, "detailed": detailed}


def log_key(name: str) -> str:
    """Collection key ``val__color__psnr`` → logged key ``val/color/psnr``."""
    return name.replace(SEP, "/")


def compute_logged(suite: MetricCollection) -> dict[str, torch.Tensor]:
    """Compute (synchronised across ranks) every metric of ``suite`` that received data, under its logged
    key; metrics without data (e.g. label-based ones on folders without labels) are left out."""
    return {log_key(k): m.compute() for k, m in suite.items(keep_base=False, copy_state=False) if m.update_count}
