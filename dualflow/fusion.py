"""Fusion of the two flows: paste priority patches, blend them with the fill (feathered or multi-band),
harmonise chroma across seams, check global coherence, post-process. All tensors are normalised Lab
(DESIGN.md) for one page: (3,H,W), with (1,H,W) masks; each step can be switched off for ablations."""

from __future__ import annotations

from dataclasses import dataclass

import kornia.filters
import torch
import torch.nn.functional as F
from torch import nn

from dualflow.color import AB_SCALE, L_SCALE
from dualflow.lineart import ink_lines
from dualflow.patching import PatchPlan, crop, paste
from dualflow.pipeline import canvas_from_patches


def feather_blend(canvas: torch.Tensor, fill: torch.Tensor, coverage: torch.Tensor) -> torch.Tensor:
    """Per-pixel mix: coverage · canvas + (1 − coverage) · fill."""
    return coverage * canvas + (1.0 - coverage) * fill


def _down(x: torch.Tensor) -> torch.Tensor:
    return F.avg_pool2d(x, 2, ceil_mode=True)


def _up(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def multiband_blend(canvas: torch.Tensor, fill: torch.Tensor, coverage: torch.Tensor, levels: int = 4) -> torch.Tensor:
    """Laplacian-pyramid blending (Burt & Adelson): low frequencies mix over wide zones, details over narrow
    ones, so colour shifts between the flows fade out without blurring edges. Reconstruction is exact."""
    a, b, m = canvas[None], fill[None], coverage[None]
    bands = []
    for _ in range(levels):
        if min(a.shape[-2:]) < 2:
            break
        a2, b2, m2 = _down(a), _down(b), _down(m)
        size = a.shape[-2:]
        bands.append(m * (a - _up(a2, size)) + (1 - m) * (b - _up(b2, size)))
        a, b, m = a2, b2, m2
    out = m * a + (1 - m) * b
    for band in reversed(bands):
        out = _up(out, band.shape[-2:]) + band
    return out[0]


def harmonize(patches: torch.Tensor, plan: PatchPlan, fill: torch.Tensor, strength: float) -> torch.Tensor:
    """Shift each patch's chroma (ab) towards the fill's mean chroma in the patch's part of the transition
    band, so that the two flows agree where they meet. (K,3,ph,pw) → (K,3,ph,pw)."""
    if len(plan) == 0 or strength <= 0:
        return patches
    band = crop(plan.transition.to(patches), plan.boxes)  # (K,1,ph,pw)
    fill_patches = crop(fill, plan.boxes)
    n = band.sum(dim=(2, 3)).clamp_min(1.0)
    diff = ((fill_patches[:, 1:] - patches[:, 1:]) * band).sum(dim=(2, 3)) / n  # (K,2)
    diff = diff * (band.sum(dim=(2, 3)) > 0)
    shifted = patches.clone()
    shifted[:, 1:] = (patches[:, 1:] + strength * diff[:, :, None, None]).clamp(-1, 1)
    return shifted


def lab_distance(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Per-pixel Euclidean distance in CIE Lab units (ΔE76) between normalised Lab tensors, (...,3,H,W)."""
    scale = a.new_tensor([L_SCALE, AB_SCALE, AB_SCALE]).view(3, 1, 1)
    return ((a - b) * scale).pow(2).sum(dim=-3).sqrt()


def coherence(patches: torch.Tensor, plan: PatchPlan, canvas: torch.Tensor, fill: torch.Tensor) -> dict[str, float]:
    """Global coherence check: colour disagreement (ΔE76) between overlapping patches and across the seams
    between the priority canvas and the fill, averaged over the pixels where each applies."""
    if len(plan) == 0:
        return {"overlap_disagreement": 0.0, "seam_disagreement": 0.0}
    w = plan.weights.to(patches)
    s1, wsum = paste(patches, plan.boxes, w, plan.page_size)
    s2, _ = paste(patches.pow(2), plan.boxes, w, plan.page_size)
    count, _ = paste(torch.ones_like(w), plan.boxes, (w > 0).to(w), plan.page_size)
    mean = s1 / wsum.clamp_min(1e-6)
    var = (s2 / wsum.clamp_min(1e-6) - mean.pow(2)).clamp_min(0)
    scale = patches.new_tensor([L_SCALE, AB_SCALE, AB_SCALE]).view(3, 1, 1)
    spread = (var * scale.pow(2)).sum(0, keepdim=True).sqrt()
    overlap = count >= 2
    band = plan.transition.to(canvas) > 0
    seam = lab_distance(canvas, fill)[None]
    return {
        "overlap_disagreement": float(spread[overlap].mean()) if overlap.any() else 0.0,
        "seam_disagreement": float(seam[band].mean()) if band.any() else 0.0,
    }


def postprocess(lab: torch.Tensor, bw: torch.Tensor, smooth_radius: int = 2, smooth_eps: float = 1e-3,
                keep_ink: bool = True, keep_white: bool = True, white_radius: int = 3) -> torch.Tensor:
    """Edge-aware chroma smoothing guided by the B&W page (a guided filter keeps chroma edges on ink lines);
    ink lines stay dark; large white areas (balloons, paper) stay white."""
    out = lab.clone()
    if smooth_radius > 0:
        k = 2 * smooth_radius + 1
        guide = F.avg_pool2d(bw[None], 3, stride=1, padding=1, count_include_pad=False)  # tone → grey level
        out[1:] = kornia.filters.guided_blur(guide, out[None, 1:], k, smooth_eps)[0]
    if keep_ink:
        ink = ink_lines(bw[None])[0] > 0
        out[:1] = torch.where(ink, out[:1].clamp(max=0.35), out[:1])
    if keep_white:
        k = 2 * white_radius + 1
        white = -F.max_pool2d(-(bw[None] > 0.9).float(), k, stride=1, padding=white_radius)[0] > 0.5
        out[:1] = torch.where(white, out[:1].clamp(min=0.95), out[:1])
        out[1:] = torch.where(white, out[1:] * 0.2, out[1:])
    return out


def in_stripes(fn, *pages: torch.Tensor, stripe: int = 512, halo: int = 16) -> torch.Tensor:
    """Apply a local filter ``fn(*pages)`` ((C,H,W) tensors) in horizontal stripes with a ``halo`` of context
    rows, so its temporaries are stripe-sized instead of page-sized. Exact for filters whose reach is at most
    ``halo`` rows."""
    h = pages[0].shape[-2]
    if h <= stripe + 2 * halo:
        return fn(*pages)
    parts = []
    for y in range(0, h, stripe):
        y0, y1 = max(0, y - halo), min(h, y + stripe + halo)
        out = fn(*(p[..., y0:y1, :] for p in pages))
        parts.append(out[..., y - y0:y - y0 + min(stripe, h - y), :])
    return torch.cat(parts, dim=-2)


@dataclass
class FusionResult:
    lab: torch.Tensor  # (3,H,W) fused normalised Lab
    canvas: torch.Tensor  # (3,H,W) priority canvas (fill where no patch)
    report: dict[str, float]


class Fusion(nn.Module):
    """The fusion step with every stage switchable (``blend``: feather | multiband)."""

    def __init__(self, blend: str = "feather", levels: int = 4, harmonize: bool = True, strength: float = 0.5,
                 coherence_threshold: float = 6.0, postprocess: bool = True, smooth_radius: int = 2,
                 keep_ink: bool = True, keep_white: bool = True):
        super().__init__()
        if blend not in ("feather", "multiband"):
            raise ValueError(f"fusion blend must be 'feather' or 'multiband', got {blend!r}")
        self.blend, self.levels, self.harmonize, self.strength = blend, levels, harmonize, strength
        self.coherence_threshold, self.post = coherence_threshold, postprocess
        self.smooth_radius, self.keep_ink, self.keep_white = smooth_radius, keep_ink, keep_white

    def _canvas(self, patches: torch.Tensor, plan: PatchPlan, fill: torch.Tensor) -> torch.Tensor:
        canvas, coverage = canvas_from_patches(patches, plan.boxes, plan.weights, plan.page_size)
        return torch.where(coverage > 0, canvas, fill)

    def forward(self, patches: torch.Tensor, plan: PatchPlan, fill: torch.Tensor, bw: torch.Tensor) -> FusionResult:
        """patches (K,3,ph,pw), fill (3,H,W), bw (1,H,W) → fused page."""
        if self.harmonize:
            patches = harmonize(patches, plan, fill, self.strength)
        canvas = self._canvas(patches, plan, fill)
        report = coherence(patches, plan, canvas, fill)
        report["reharmonized"] = 0.0
        if self.harmonize and report["seam_disagreement"] > self.coherence_threshold:
            # Too much disagreement left: pull the patches fully onto the fill's chroma in the band.
            patches = harmonize(patches, plan, fill, 1.0)
            canvas = self._canvas(patches, plan, fill)
            report.update(coherence(patches, plan, canvas, fill), reharmonized=1.0)
        coverage = plan.coverage.to(fill)
        if self.blend == "multiband":
            fused = multiband_blend(canvas, fill, coverage, self.levels)
        else:
            fused = feather_blend(canvas, fill, coverage)
        if self.post:  # local filters (reach < 16 rows): in stripes, to bound full-resolution temporaries
            fused = in_stripes(lambda lab, page: postprocess(lab, page, self.smooth_radius, keep_ink=self.keep_ink,
                                                             keep_white=self.keep_white), fused, bw)
        fused = torch.cat([fused[:1].clamp(0, 1), fused[1:].clamp(-1, 1)])
        return FusionResult(lab=fused, canvas=canvas, report=report)
