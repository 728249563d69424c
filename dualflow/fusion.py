"""Fusion of the two flows: blend the priority patches with the fill (feathered or multi-band), harmonise
chroma across seams, check global coherence, post-process. Tensors are normalised Lab (docs/design.md) for one
page: patches (K,3,ph,pw), masks (1,H,W). The fill is a (3,H,W) tensor or a fill field rendered window by
window (``pipeline.GuidedFill``): seams and coherence are measured on the patch boxes only and the page is
assembled in stripes, so memory beyond the page tensors is bounded by the budget and the stripe, not the
page size. Each step can be switched off for ablations."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dualflow.color import AB_SCALE, L_SCALE, clamp_nlab, nlab_to_rgb
from dualflow.filters import box, dilate, erode, guided_filter
from dualflow.hints import propagate
from dualflow.lineart import PAPER_RADIUS, outline_reach, outlines, strokes_on_paper
from dualflow.patching import PatchPlan, crop, overlaps, paste
from dualflow.pipeline import GuidedFill, StoredFill, canvas_from_patches
from dualflow.precision import float32


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


def harmonize(patches: torch.Tensor, plan: PatchPlan, fill_patches: torch.Tensor, strength: float) -> torch.Tensor:
    """Shift each patch's chroma (ab) towards the fill's mean chroma (``fill_patches``: the fill on the patch
    boxes) in the patch's part of the transition band, so that the two flows agree where they meet.
    (K,3,ph,pw) → (K,3,ph,pw)."""
    if len(plan) == 0 or strength <= 0:
        return patches
    band = crop(plan.transition.to(patches), plan.boxes)  # (K,1,ph,pw)
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


def coherence(patches: torch.Tensor, plan: PatchPlan, fill_patches: torch.Tensor, stripe: int = 256
              ) -> dict[str, float]:
    """Global coherence check: colour disagreement (ΔE76) between overlapping patches and across the seams
    between the priority canvas and the fill, averaged over the pixels where each applies. Both live inside
    the patch boxes (outside them the canvas is the fill), so they are summed over the boxes' union, ``stripe``
    rows of the page at a time (memory), each pixel once however many boxes hold it."""
    if len(plan) == 0:
        return {"overlap_disagreement": 0.0, "seam_disagreement": 0.0}
    w = plan.weights.to(patches)
    stats = torch.cat([patches, patches.pow(2)], dim=1)  # weighted mean and second moment in one paste
    # The fill on each box (identical where boxes overlap) and whether the patch weighs there, summed per pixel.
    holds = torch.cat([fill_patches, (w > 0).to(w)], dim=1)
    scale2 = patches.new_tensor([L_SCALE, AB_SCALE, AB_SCALE]).pow(2).view(3, 1, 1)
    (h, width), spread_sum, seam_sum, overlap_n = plan.page_size, 0.0, 0.0, 0
    for y in range(0, h, stripe):
        window = (y, 0, min(h, y + stripe), width)
        s, wsum = paste(stats, plan.boxes, w, plan.page_size, window)
        held, boxes_n = paste(holds, plan.boxes, torch.ones_like(w), plan.page_size, window)
        inside = boxes_n[0] > 0
        if not bool(inside.any()):
            continue
        mean = s[:3] / wsum.clamp_min(1e-6)
        var = (s[3:] / wsum.clamp_min(1e-6) - mean.pow(2)).clamp_min(0)
        spread = (var * scale2).sum(0).sqrt()
        overlap = inside & (held[3] >= 2)
        spread_sum += float(spread[overlap].sum())
        overlap_n += int(overlap.sum())
        fill = held[:3] / boxes_n.clamp_min(1)
        band = (plan.transition[0, window[0]:window[2]] > 0).to(inside.device) & inside
        seam_sum += float(lab_distance(mean, fill)[band].sum())
    band_n = int((plan.transition > 0).sum())
    return {"overlap_disagreement": spread_sum / overlap_n if overlap_n else 0.0,
            "seam_disagreement": seam_sum / band_n if band_n else 0.0}


WHITE_RADIUS = 3  # paper areas with no 7×7 window of paper (text strokes' counters, tone gaps) are not "white"
TONE_RADIUS = 2  # the descreening guide: the B&W page's 5×5 mean, a dot pitch or more, so a tone reads as grey
DESCREEN_RADIUS = 2  # lightness is made locally linear in that tone over 5×5 windows
LINE_CLEARANCE = 3  # lightness within 3 px of a stroke keeps the nets' lines and edges


def descreen_lightness(lightness: torch.Tensor, bw: torch.Tensor, strokes: torch.Tensor) -> torch.Tensor:
    """Lightness (1,H,W) away from the ``strokes`` (1,1,H,W, the page's :func:`outlines`), guided-filtered by
    the page's tone with its dots averaged out: flat where the tone is flat, which removes the dot and hatch
    texture the nets copy from their input; within :data:`LINE_CLEARANCE` of a stroke it stays as drawn
    (smoothing there blurs lines)."""
    flat = guided_filter(lightness[None], box(bw[None], TONE_RADIUS), DESCREEN_RADIUS, 1e-2)[0]
    return torch.where(dilate(strokes, LINE_CLEARANCE)[0] > 0, lightness, flat)


def postprocess(lab: torch.Tensor, bw: torch.Tensor, smooth_radius: int = 2, smooth_eps: float = 1e-3,
                keep_ink: bool = True, keep_white: bool = True, descreen: bool = True,
                white_radius: int = WHITE_RADIUS, margins: torch.Tensor | None = None) -> torch.Tensor:
    """Edge-aware chroma smoothing guided by the B&W page (a guided filter keeps chroma edges on ink lines);
    lightness descreened away from the line art (:func:`descreen_lightness`); outlines drawn on paper stay
    dark (:func:`strokes_on_paper`), hatching does not (:func:`outlines`); white areas stay white
    (:func:`white_paper`), and ``margins`` (1,H,W, :func:`margin_paper`: gutters and page margins) pure white.
    Local but for ``margins``, computed on the whole page: see :func:`postprocess_reach`."""
    lightness, ab = lab[:1], lab[1:]
    strokes = outlines(bw[None]) if descreen or keep_ink else None
    if smooth_radius > 0:
        ab = guided_filter(ab[None], box(bw[None], 1), smooth_radius, smooth_eps)[0]  # guide: tone → grey
    if descreen:
        lightness = descreen_lightness(lightness, bw, strokes)
    if keep_ink:
        lightness = torch.where(strokes_on_paper(bw[None], strokes=strokes)[0] > 0, lightness.clamp(max=0.35),
                                lightness)
    if keep_white:
        white = white_paper(bw, white_radius) > 0.5
        lightness = torch.where(white, lightness.clamp(min=0.95), lightness)
        ab = torch.where(white, ab * 0.2, ab)
    if margins is not None:
        lightness = torch.where(margins, torch.ones_like(lightness), lightness)
        ab = torch.where(margins, torch.zeros_like(ab), ab)
    return torch.cat([lightness, ab])


def margin_paper(bw: torch.Tensor, radius: int = WHITE_RADIUS) -> torch.Tensor:
    """(1,H,W) bool: the :func:`white_paper` areas connected to the page's edge, the gutters and margins. They
    are white in every colour page, while paper enclosed by ink may be pale skin, hair or a wall left as paper,
    which the nets cannot tell from white (their chroma on paper: C* 1.1 on white, 1.6–2.1 on those). Connected
    components are not local, so this is computed once on the whole page (on the CPU)."""
    from scipy import ndimage

    paper = (white_paper(bw, radius)[0] > 0.5).cpu().numpy()
    regions, _ = ndimage.label(paper)
    edge = np.unique(np.concatenate([regions[0], regions[-1], regions[:, 0], regions[:, -1]]))
    return torch.from_numpy(np.isin(regions, edge[edge > 0]))[None].to(bw.device)


def white_paper(bw: torch.Tensor, radius: int = WHITE_RADIUS) -> torch.Tensor:
    """{0,1} paper pixels of an area that holds a (2r+1)² window of paper (balloons, gutters, empty paper), up
    to the strokes around and inside it (an opening of the paper): the lettering's surroundings and a balloon's
    rim are the balloon's white too."""
    paper = (bw > 0.9).to(bw.dtype)
    return dilate(erode(paper, radius), radius) * paper


def postprocess_reach(smooth_radius: int, white_radius: int) -> int:
    """Rows of context :func:`postprocess` reads on each side (chroma guided filter 2r + tone blur 1, the
    descreening guided filter 2r + its tone blur, the outlines with their clearance, the strokes'
    surroundings, the white opening 2r): the halo that makes striped post-processing exact."""
    return max(2 * smooth_radius + 1, 2 * DESCREEN_RADIUS + TONE_RADIUS, outline_reach() + LINE_CLEARANCE,
               PAPER_RADIUS, 2 * white_radius)


def priority_canvas(patches: torch.Tensor, plan: PatchPlan, fill: torch.Tensor,
                    window: tuple[int, int, int, int] | None = None) -> torch.Tensor:
    """The primary flow's canvas (3,h,w), with the fill where no patch lies, on the page or its ``window``."""
    canvas, coverage = canvas_from_patches(patches, plan.boxes, plan.weights, plan.page_size, window)
    return torch.where(coverage > 0, canvas, fill)


def fill_crops(fill: GuidedFill | StoredFill, boxes: torch.Tensor) -> torch.Tensor:
    """The fill of one page on each patch box, (K,3,ph,pw)."""
    if boxes.shape[0] == 0:
        return torch.zeros(0, 3, 1, 1)
    return fill.boxes(boxes)


@dataclass
class FusionResult:
    page: torch.Tensor  # (3,H,W) the fused page: normalised Lab, or RGB when asked for
    patches: torch.Tensor  # (K,3,ph,pw) primary patches after harmonisation
    report: dict[str, float]


def laid_over(lab: torch.Tensor, hinted: torch.Tensor) -> torch.Tensor:
    """Normalised Lab (3,h,w) with the propagated hints ``hinted`` (4,h,w, :func:`hints.propagate`) laid over
    the regions they fill."""
    return torch.where(hinted[3:] > 0.5, hinted[:3].to(lab), lab)


@dataclass
class FusionConfig:
    """Every switch of the fusion step (the composite nests it: ``--model.fusion.descreen=false``)."""

    blend: str = "feather"  # feather | multiband
    levels: int = 4  # multi-band pyramid levels
    harmonize: bool = True  # shift patch chroma towards the fill in the transition band
    harmonize_strength: float = 0.5
    coherence_threshold: float = 6.0  # seam ΔE76 above which the patches are harmonised fully
    postprocess: bool = True
    smooth_radius: int = 2  # edge-aware chroma smoothing
    keep_ink: bool = True  # outlines drawn on paper stay dark
    keep_white: bool = True  # paper areas stay white
    white_margins: bool = True  # paper connected to the page's edge (gutters, margins) pure white
    descreen: bool = True  # lightness made flat away from the line art
    stripe: int = 256  # rows assembled at a time (memory)

    def __post_init__(self) -> None:
        if self.blend not in ("feather", "multiband"):
            raise ValueError(f"fusion blend must be 'feather' or 'multiband', got {self.blend!r}")


class Fusion(nn.Module):
    """The fusion step with every stage switchable (:class:`FusionConfig`). The page is assembled ``stripe``
    rows at a time (exact: each stripe carries the post-processing reach as a halo); multi-band blending is not
    local, so it blends the whole page at once (page-sized memory)."""

    def __init__(self, config: FusionConfig | None = None):
        super().__init__()
        self.config = config or FusionConfig()

    @float32
    def forward(self, patches: torch.Tensor, plan: PatchPlan, fill: torch.Tensor | GuidedFill | StoredFill,
                bw: torch.Tensor, rgb: bool = False, hints: torch.Tensor | None = None) -> FusionResult:
        """patches (K,3,ph,pw), fill (3,H,W) or the fill field of one page, bw (1,H,W) → fused page; ``hints``
        (4,H,W): the page's colour hints, carried across the regions the ink lines enclose
        (:func:`hints.propagate`) over the fused colours."""
        fill = StoredFill(fill[None]) if isinstance(fill, torch.Tensor) else fill
        c = self.config
        fill_patches = fill_crops(fill, plan.boxes).to(patches)
        if c.harmonize:
            patches = harmonize(patches, plan, fill_patches, c.harmonize_strength)
        report = coherence(patches, plan, fill_patches)
        report["reharmonized"] = 0.0
        if c.harmonize and report["seam_disagreement"] > c.coherence_threshold:
            # Too much disagreement left: pull the patches fully onto the fill's chroma in the band.
            patches = harmonize(patches, plan, fill_patches, 1.0)
            report.update(coherence(patches, plan, fill_patches), reharmonized=1.0)
        return FusionResult(page=self.render(patches, plan, fill, bw, rgb, hints), patches=patches, report=report)

    def render(self, patches: torch.Tensor, plan: PatchPlan, fill: GuidedFill | StoredFill, bw: torch.Tensor,
               rgb: bool = False, hints: torch.Tensor | None = None) -> torch.Tensor:
        """Blend, post-process, lay the propagated ``hints`` over it and clamp the page stripe by stripe into one
        (3,H,W) tensor (Lab or RGB)."""
        (h, w), c = plan.page_size, self.config
        whole = None
        if c.blend == "multiband":
            f = fill.full()[0]
            whole = multiband_blend(priority_canvas(patches, plan, f), f, plan.coverage.to(f), c.levels)
        halo = postprocess_reach(c.smooth_radius, WHITE_RADIUS) if c.postprocess else 0
        margins = margin_paper(bw) if c.postprocess and c.white_margins else None
        hinted = propagate(bw, hints) if hints is not None else None
        out = bw.new_empty(3, h, w)
        for y in range(0, h, c.stripe):
            y0, y1 = max(0, y - halo), min(h, y + c.stripe + halo)
            fused = whole[:, y0:y1] if whole is not None else self._feathered((y0, 0, y1, w), patches, plan, fill)
            if c.postprocess:
                fused = postprocess(fused, bw[:, y0:y1], c.smooth_radius, keep_ink=c.keep_ink,
                                    keep_white=c.keep_white, descreen=c.descreen,
                                    margins=None if margins is None else margins[:, y0:y1])
            part = fused[:, y - y0:y - y0 + min(c.stripe, h - y)]
            if hinted is not None:
                part = laid_over(part, hinted[:, y:y + part.shape[1]])
            part = clamp_nlab(part)
            out[:, y:y + part.shape[1]] = nlab_to_rgb(part[None])[0] if rgb else part
        return out

    @staticmethod
    def _feathered(window: tuple[int, int, int, int], patches: torch.Tensor, plan: PatchPlan,
                   fill: GuidedFill | StoredFill) -> torch.Tensor:
        f = fill.window(window)[0]
        if not overlaps(plan.boxes, window):
            return f
        y0, x0, y1, x1 = window
        return feather_blend(priority_canvas(patches, plan, f, window), f, plan.coverage[:, y0:y1, x0:x1].to(f))
