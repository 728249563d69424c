"""The dual-flow pipeline as functions over networks, shared by stage-3 training and the composite:
importance (tiled on large pages) → PatchPlan → primary on patches (batched) → canvas + coverage →
secondary at a working resolution, brought back to full resolution by a guided filter on the B&W page."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dualflow.patching import PatchPlan, crop, paste, plan_patches


@dataclass
class PlanSettings:
    """PatchPlan parameters; stage 2 owns them (its model is trained on this patch size), later stages read
    them from stage 2's checkpoint."""

    patch_size: int = 64
    budget: int = 8
    threshold: float = 0.3
    max_overlap: float = 0.25
    band: int = 8

    def plan(self, importance: torch.Tensor, page_size: tuple[int, int], budget: int | None = None) -> PatchPlan:
        return plan_patches(importance, page_size, self.patch_size, budget=self.budget if budget is None else budget,
                            threshold=self.threshold, max_overlap=self.max_overlap, band=self.band)


def importance_tiled(net: nn.Module, bw: torch.Tensor, tile: int = 1024) -> torch.Tensor:
    """(B,1,H,W) → importance (B,1,ceil(H/s),ceil(W/s)), run in overlapping tiles when the page is larger than
    ``tile`` so memory stays bounded; the windowed attention is local, so tiles with a margin agree with a
    whole-page pass away from the margins."""
    s = net.stride
    h, w = bw.shape[-2:]
    if h <= tile and w <= tile:
        return net.importance(bw)
    margin = 8 * s
    step = max(s, (tile - 2 * margin) // s * s)
    out = bw.new_zeros(bw.shape[0], 1, -(-h // s), -(-w // s))
    for y in range(0, h, step):
        for x in range(0, w, step):
            y0, x0 = max(0, y - margin), max(0, x - margin)
            y1, x1 = min(h, y + step + margin), min(w, x + step + margin)
            imp = net.importance(bw[..., y0:y1, x0:x1])
            oy, ox = (y - y0) // s, (x - x0) // s
            ny, nx = -(-min(step, h - y) // s), -(-min(step, w - x) // s)
            out[..., y // s:y // s + ny, x // s:x // s + nx] = imp[..., oy:oy + ny, ox:ox + nx]
    return out


def upsample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (B,C,h,w) map to ``size``."""
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


def run_primary(net: nn.Module, bw: torch.Tensor, importance: torch.Tensor, boxes: torch.Tensor,
                batch: int = 16) -> torch.Tensor:
    """One page: bw (1,H,W), importance (1,H,W) at page resolution → primary Lab for each box (K,3,ph,pw),
    computed ``batch`` patches at a time so memory is bounded by the batch, not the page."""
    if boxes.shape[0] == 0:
        return bw.new_zeros(0, 3, 1, 1)
    x = crop(torch.cat([bw, importance]), boxes)
    return torch.cat([net(x[i:i + batch]) for i in range(0, x.shape[0], batch)])


def canvas_from_patches(patches: torch.Tensor, boxes: torch.Tensor, weights: torch.Tensor,
                        page_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Feather-weighted average of the primary patches → canvas (3,H,W) (zeros where no patch) and the
    priority coverage clamp(Σw, 0, 1) (1,H,W)."""
    acc, wsum = paste(patches, boxes.to(patches.device), weights.to(patches), page_size)
    return acc / wsum.clamp_min(1e-6), wsum.clamp(0, 1)


def working_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Page size scaled so its long side is at most ``long_side`` (never enlarged)."""
    h, w = size
    scale = min(1.0, long_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


def _box(x: torch.Tensor, r: int) -> torch.Tensor:
    return F.avg_pool2d(x, 2 * r + 1, stride=1, padding=r, count_include_pad=False)


def guided_upsample(low: torch.Tensor, guide_low: torch.Tensor, guide_high: torch.Tensor, radius: int = 2,
                    eps: float = 1e-3) -> torch.Tensor:
    """Fast guided filter (He & Sun 2015): fit ``low ≈ A·guide + b`` locally at low resolution, upsample A
    and b, apply them to the full-resolution guide, so colour edges snap to the page's ink lines."""
    mean_i, mean_p = _box(guide_low, radius), _box(low, radius)
    cov = _box(guide_low * low, radius) - mean_i * mean_p
    var = _box(guide_low * guide_low, radius) - mean_i * mean_i
    a = cov / (var + eps)
    b = mean_p - a * mean_i
    size = guide_high.shape[-2:]
    return upsample(_box(a, radius), size) * guide_high + upsample(_box(b, radius), size)


def tone_guide(bw: torch.Tensor, size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Guides for the upsampling: the page area-averaged to ``size`` (screentone → grey) and the full page
    box-blurred by the same factor (grey levels without dot texture, ink edges kept)."""
    low = F.adaptive_avg_pool2d(bw, size) if tuple(bw.shape[-2:]) != tuple(size) else bw
    factor = max(1, round(bw.shape[-1] / size[1]))
    high = _box(bw, factor // 2) if factor > 1 else bw
    return low, high


def run_secondary(net: nn.Module, bw: torch.Tensor, canvas: torch.Tensor, coverage: torch.Tensor,
                  importance: torch.Tensor, long_side: int, radius: int = 2, eps: float = 1e-3) -> torch.Tensor:
    """Secondary flow on (B,·,H,W) pages at a working resolution → full-resolution Lab (B,3,H,W)."""
    size = working_size(tuple(bw.shape[-2:]), long_side)
    guide_low, guide_high = tone_guide(bw, size)
    area = lambda x: F.adaptive_avg_pool2d(x, size) if tuple(x.shape[-2:]) != size else x  # noqa: E731
    x = torch.cat([guide_low, area(canvas), area(coverage), upsample(importance, size)], dim=1)
    low = net(x)
    if tuple(size) == tuple(bw.shape[-2:]):
        return low
    out = guided_upsample(low, guide_low, guide_high, radius, eps)
    return torch.cat([out[:, :1].clamp(0, 1), out[:, 1:].clamp(-1, 1)], dim=1)
