"""The dual-flow pipeline as functions over networks, shared by stage-2 training (the primary's inputs), stage-3
training and evaluation, and the composite's inference: importance (tiled on large pages) → the primary flow
(priority boxes of every page, the primary model on them, batched; :class:`PrimaryFlow`) → canvas + coverage →
secondary at a working resolution, brought back to page resolution by a guided filter on the B&W page (on
demand, window by window)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from dualflow.color import clamp_nlab
from dualflow.filters import area_matrix, bilinear_window, bilinear_windows, box, guided_coefficients, window_sum
from dualflow.patching import (
    PatchPlan,
    blend_ramps,
    crop_pages,
    fit_patch,
    overlaps,
    page_plans,
    paste,
    paste_pages,
    select_boxes,
    transition_bands,
    window_sums,
)
from dualflow.precision import float32


@dataclass
class PlanSettings:
    """PatchPlan parameters, under the names stage 2 takes them (``--model.patch_size`` ...); stage 2 owns them
    (its model is trained on this patch size), later stages read them from stage 2's checkpoint. The number of
    priority patches follows the page's area when ``patch_density`` (patches per megapixel) is set, so the primary
    covers as much of a large page as of a small one; ``patch_budget`` is the fixed count otherwise. Either way
    the windows above ``patch_threshold`` bound it, and memory is bounded by the patch batch, not by the count."""

    patch_size: int = 64
    patch_budget: int = 8
    patch_threshold: float = 0.3
    patch_overlap: float = 0.25
    band_width: int = 8
    patch_density: float = 0.0

    @classmethod
    def from_meta(cls, plan: dict) -> PlanSettings:
        """From the ``plan`` of a stage-2 checkpoint or an ONNX export, including those written before the
        settings took stage 2's names."""
        return cls(**{LEGACY_PLAN_NAMES.get(k, k): v for k, v in plan.items()})

    @property
    def feather(self) -> int:
        """Blend-window ramp width (:func:`plan_patches`' default)."""
        return self.patch_size // 4

    def budget(self, page_size: tuple[int, int]) -> int:
        """Priority patch slots of a page of ``page_size`` (H, W)."""
        if self.patch_density <= 0:
            return self.patch_budget
        return max(1, math.ceil(self.patch_density * page_size[0] * page_size[1] / 1e6))

    def patch_shape(self, page_size: tuple[int, int]) -> tuple[int, int]:
        """Patch size on a page of ``page_size`` (:func:`patching.fit_patch`)."""
        return fit_patch(page_size, self.patch_size)

    def select(self, importance: torch.Tensor,
               page_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Boxes of a whole batch (B,K,4), scores and validity (B,K), on the device without host syncs."""
        return select_boxes(importance, page_size, self.patch_size, budget=self.budget(page_size),
                            threshold=self.patch_threshold, max_overlap=self.patch_overlap)


# PlanSettings' fields under their names in checkpoints written before they took stage 2's names.
LEGACY_PLAN_NAMES = {"budget": "patch_budget", "threshold": "patch_threshold", "max_overlap": "patch_overlap",
                     "band": "band_width"}


def importance_tiled(net: nn.Module, bw: torch.Tensor, tile: int = 1024) -> torch.Tensor:
    """(B,1,H,W) → importance at 1/stride of the net's working resolution (:meth:`AttentionNet.view`), run in
    overlapping tiles when that view is larger than ``tile`` so memory stays bounded. Each tile is encoded at its
    place in the page and starts on the attention-window grid, and the attention is local, so the tiles agree
    with a whole-page pass away from their margins."""
    s, grid = net.stride, net.stride * net.window
    bw = net.view(bw)
    h, w = bw.shape[-2:]
    if h <= tile and w <= tile:
        return net.importance_of_view(bw)
    margin = -(-16 * s // grid) * grid  # at least 16 tokens, whole windows
    step = max(grid, (tile - 2 * margin) // grid * grid)
    out = bw.new_zeros(bw.shape[0], 1, -(-h // s), -(-w // s))
    for y in range(0, h, step):
        for x in range(0, w, step):
            y0, x0 = max(0, y - margin), max(0, x - margin)
            y1, x1 = min(h, y + step + margin), min(w, x + step + margin)
            origin = torch.tensor([y0 // s, x0 // s], dtype=torch.float32)
            imp = net.importance_of_view(bw[..., y0:y1, x0:x1], origin)
            oy, ox = (y - y0) // s, (x - x0) // s
            ny, nx = -(-min(step, h - y) // s), -(-min(step, w - x) // s)
            out[..., y // s:y // s + ny, x // s:x // s + nx] = imp[..., oy:oy + ny, ox:ox + nx]
    return out


def upsample(m: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Bilinear resize of a (B,C,h,w) map to ``size``."""
    return F.interpolate(m, size=size, mode="bilinear", align_corners=False)


@float32
def primary_inputs(bw: torch.Tensor, importance: torch.Tensor, boxes: torch.Tensor, page: torch.Tensor,
                   patch: tuple[int, int], hints: torch.Tensor | None = None) -> torch.Tensor:
    """The primary model's input on N boxes of a batch of pages, (N,2,ph,pw): box ``boxes[n]`` of page
    ``page[n]`` of bw (B,1,H,W) and of the importance (B,1,h,w, any resolution) upsampled bilinearly on the
    boxes only; with ``hints`` (B,4,H,W, :mod:`dualflow.hints`) their box too, (N,6,ph,pw). One gather and
    batched matrix products: no loop over boxes, no host sync. Training and inference both use this."""
    size = tuple(bw.shape[-2:])
    parts = [crop_pages(bw, boxes, page, patch), bilinear_windows(importance, size, boxes, page, patch)]
    if hints is not None:
        parts.append(crop_pages(hints, boxes, page, patch))
    return torch.cat(parts, 1)


def run_primary(net: nn.Module, bw: torch.Tensor, importance: torch.Tensor, boxes: torch.Tensor,
                page: torch.Tensor, patch: tuple[int, int], batch: int = 16,
                hints: torch.Tensor | None = None) -> torch.Tensor:
    """Primary Lab (N,3,ph,pw), float32, for N boxes of pages bw (B,1,H,W) with importance (B,1,h,w) (see
    :func:`primary_inputs`), computed ``batch`` patches at a time so memory is bounded by the batch."""
    if boxes.shape[0] == 0:
        return bw.new_zeros(0, 3, *patch)
    x = primary_inputs(bw, importance, boxes, page, patch, hints)
    return torch.cat([net(x[i:i + batch]) for i in range(0, x.shape[0], batch)]).float()


@dataclass
class PrimaryFlow:
    """The primary flow of a batch of pages, as fixed-shape tensors on the device: the importance map, K =
    budget box slots per page (``valid`` says which hold a box), the primary model's colours on every slot and the
    separable factors of their blend windows. Stage-3 training takes the page-sized canvas from it
    (:meth:`canvas`); evaluation and inference take each page's :class:`PatchPlan` (:meth:`plans`)."""

    importance: torch.Tensor  # (B,1,h,w)
    boxes: torch.Tensor  # (B,K,4) long, page pixels
    scores: torch.Tensor  # (B,K) mean importance of each box
    valid: torch.Tensor  # (B,K) bool
    patches: torch.Tensor  # (B·K,3,ph,pw) normalised Lab, float32; slot k of page b at b·K + k
    ramps: tuple[torch.Tensor, torch.Tensor]  # blend-window rows (B,K,ph) and columns (B,K,pw)
    band: int  # transition band width
    page_size: tuple[int, int]  # (H, W) of the pages

    def canvas(self, shown: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Feather-weighted canvas (B,3,H,W) of the slots that are ``shown`` (B,K) bool (default: the valid ones)
        and its coverage clamp(Σw, 0, 1) (B,1,H,W): one scatter for the canvas, matrix products for the
        coverage, no host sync."""
        b, k = self.boxes.shape[:2]
        shown = self.valid if shown is None else shown
        ry, rx = self.ramps
        ry = ry * shown[..., None]
        weights = (ry[..., :, None] * rx[..., None, :]).reshape(-1, 1, ry.shape[-1], rx.shape[-1])
        coverage = window_sums(ry, rx, self.boxes, self.page_size)
        page = torch.arange(b, device=self.boxes.device).repeat_interleave(k)
        canvas = paste_pages(self.patches * weights, self.boxes.reshape(-1, 4), page, b, self.page_size)
        return canvas / coverage.clamp_min(1e-6), coverage.clamp(0, 1)

    def transition(self) -> torch.Tensor:
        """The transition band (B,1,H,W) of every page around its valid boxes, by whole-page morphology."""
        ry, rx = self.ramps
        coverage = window_sums(ry * self.valid[..., None], rx, self.boxes, self.page_size).clamp(0, 1)
        return transition_bands(coverage, self.band)

    def plans(self) -> list[tuple[torch.Tensor, PatchPlan]]:
        """(primary patches, PatchPlan) of each page, valid slots only (:func:`patching.page_plans`)."""
        b, k = self.boxes.shape[:2]
        patches = self.patches.reshape(b, k, *self.patches.shape[1:])
        plans = page_plans(self.boxes, self.scores, self.valid, self.ramps, self.page_size, self.band)
        return [(patches[i][self.valid[i]], plan) for i, plan in enumerate(plans)]


@torch.no_grad()
def primary_flow(net: nn.Module, bw: torch.Tensor, importance: torch.Tensor, settings: PlanSettings,
                 batch: int = 16, hints: torch.Tensor | None = None, drop_empty: bool = False) -> PrimaryFlow:
    """Boxes of every page of bw (B,1,H,W) chosen on ``importance`` (B,1,h,w) under ``settings``, and the primary
    model ``net`` run on all B·K slots ``batch`` patches at a time: batched on the device, fixed shapes (an
    invalid slot is computed and weighs nothing), no host sync. ``drop_empty`` (inference): slots invalid on
    every page are dropped, not computed, at the cost of one host sync (a plan sized by the page leaves most of
    its slots empty on a page with little detail)."""
    b, size = bw.shape[0], tuple(bw.shape[-2:])
    boxes, scores, valid = settings.select(importance, size)
    if drop_empty and boxes.shape[1] > 1:  # valid slots come first
        used = max(1, int(valid.sum(1).max()))
        boxes, scores, valid = boxes[:, :used], scores[:, :used], valid[:, :used]
    patch = settings.patch_shape(size)
    page = torch.arange(b, device=bw.device).repeat_interleave(boxes.shape[1])
    patches = run_primary(net, bw, importance, boxes.reshape(-1, 4), page, patch, batch, hints)
    return PrimaryFlow(importance, boxes, scores, valid, patches, blend_ramps(boxes, size, patch, settings.feather),
                       settings.band_width, size)


@float32
def canvas_from_patches(patches: torch.Tensor, boxes: torch.Tensor, weights: torch.Tensor,
                        page_size: tuple[int, int], window: tuple[int, int, int, int] | None = None,
                        ) -> tuple[torch.Tensor, torch.Tensor]:
    """Feather-weighted average of the primary patches → canvas (3,H,W) (zeros where no patch) and the
    priority coverage clamp(Σw, 0, 1) (1,H,W), of the page or of its ``window`` (y0, x0, y1, x1)."""
    acc, wsum = paste(patches, boxes.to(patches.device), weights.to(patches), page_size, window)
    return acc / wsum.clamp_min(1e-6), wsum.clamp(0, 1)


@float32
def pooled_canvas(patches: torch.Tensor, boxes: torch.Tensor, weights: torch.Tensor, page_size: tuple[int, int],
                  size: tuple[int, int], stripe: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """:func:`canvas_from_patches` area-averaged to the working ``size`` (what the secondary sees), built
    stripe by stripe so that no page-sized canvas exists: (3,h,w) canvas and (1,h,w) coverage."""
    (h, w), device = page_size, patches.device
    rows = area_matrix(h, size[0], device)
    cols = area_matrix(w, size[1], device)
    pooled = patches.new_zeros(4, *size)
    for y in range(0, h, stripe):
        window = (y, 0, min(h, y + stripe), w)
        if not overlaps(boxes, window):
            continue  # no patch: canvas and coverage are zero here
        canvas, coverage = canvas_from_patches(patches, boxes, weights, page_size, window)
        pooled += rows[:, window[0]:window[2]] @ torch.cat([canvas, coverage]) @ cols.T
    return pooled[:3], pooled[3:]


def inference_long_side(page_size: tuple[int, int], meta: dict, cap: int) -> int:
    """Working long side for the secondary on a page at inference: its training ratio (working size / page
    long side) applied to this page, so it sees details at the scale it was trained on, at most ``cap`` (what
    bounds its memory). Checkpoints without the training page size keep their fixed working size."""
    trained = meta.get("trained_long_side") or 0
    if trained <= 0:
        return meta["working_size"]
    return max(1, min(cap, round(max(page_size) * meta["working_size"] / trained)))


def working_size(size: tuple[int, int], long_side: int) -> tuple[int, int]:
    """Page size scaled so its long side is at most ``long_side`` (never enlarged)."""
    h, w = size
    scale = min(1.0, long_side / max(h, w))
    return max(1, round(h * scale)), max(1, round(w * scale))


@dataclass
class GuidedFill:
    """The secondary flow's colours at page resolution, kept as guided-filter coefficients fitted at working
    resolution (fill = up(a) · tone guide + up(b)) and rendered on demand for any window: the composite
    renders stripes and patch boxes, so a page-sized fill never has to exist. Batched: a, b (B,3,h,w),
    bw (B,1,H,W); ``tone_radius`` is the box blur that turns the page's screentone into a grey guide."""

    a: torch.Tensor
    b: torch.Tensor
    bw: torch.Tensor
    tone_radius: int

    @property
    def size(self) -> tuple[int, int]:
        return tuple(self.bw.shape[-2:])

    @float32
    def window(self, window: tuple[int, int, int, int]) -> torch.Tensor:
        """Normalised Lab (B,3,y1-y0,x1-x0) of the fill on ``window`` (y0, x0, y1, x1)."""
        (h, w), r = self.size, self.tone_radius
        y0, x0, y1, x1 = window
        gy0, gx0, gy1, gx1 = max(0, y0 - r), max(0, x0 - r), min(h, y1 + r), min(w, x1 + r)
        guide = box(self.bw[..., gy0:gy1, gx0:gx1], r)[..., y0 - gy0:y1 - gy0, x0 - gx0:x1 - gx0]
        out = bilinear_window(self.a, self.size, window) * guide + bilinear_window(self.b, self.size, window)
        return clamp_nlab(out)

    def full(self) -> torch.Tensor:
        return self.window((0, 0, *self.size))

    @float32
    def boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        """Normalised Lab (K,3,ph,pw) of the first page's fill on each of the (K,4) ``boxes`` (all of one size),
        in one batch: what :meth:`window` gives box by box."""
        boxes = boxes.to(self.bw.device)
        r, page = self.tone_radius, torch.zeros_like(boxes[:, 0])
        patch = (int(boxes[0, 2] - boxes[0, 0]), int(boxes[0, 3] - boxes[0, 1]))
        halo = (patch[0] + 2 * r, patch[1] + 2 * r)
        # The tone guide: each box's (2r+1)² means over the pixels inside the page (zero padding, counted).
        page_and_count = F.pad(torch.cat([self.bw[:1], torch.ones_like(self.bw[:1])], dim=1), (r, r, r, r))
        sums = window_sum(crop_pages(page_and_count, boxes, page, halo), r)[..., r:r + patch[0], r:r + patch[1]]
        guide = sums[:, :1] / sums[:, 1:]
        out = (bilinear_windows(self.a[:1], self.size, boxes, page, patch) * guide
               + bilinear_windows(self.b[:1], self.size, boxes, page, patch))
        return clamp_nlab(out)


@dataclass
class StoredFill:
    """A fill already held at page resolution (B,3,H,W), behind the same interface as :class:`GuidedFill`."""

    lab: torch.Tensor

    def window(self, window: tuple[int, int, int, int]) -> torch.Tensor:
        y0, x0, y1, x1 = window
        return self.lab[..., y0:y1, x0:x1]

    def full(self) -> torch.Tensor:
        return self.lab

    def boxes(self, boxes: torch.Tensor) -> torch.Tensor:
        boxes = boxes.to(self.lab.device)
        patch = (int(boxes[0, 2] - boxes[0, 0]), int(boxes[0, 3] - boxes[0, 1]))
        return crop_pages(self.lab[:1], boxes, torch.zeros_like(boxes[:, 0]), patch)


def secondary_input(bw: torch.Tensor, canvas: torch.Tensor, coverage: torch.Tensor, importance: torch.Tensor,
                    long_side: int, hints: torch.Tensor | None = None) -> torch.Tensor:
    """What the secondary net sees (B,6,h,w) at its working resolution: the page, the primary canvas and its
    coverage (at page or at working resolution, see :func:`pooled_canvas`), and the importance map; with
    ``hints`` (B,4,H,W) also the hint map at the working resolution, no hint lost (:func:`hints.downsample`)."""
    from dualflow.hints import downsample

    size = working_size(tuple(bw.shape[-2:]), long_side)
    area = lambda x: F.adaptive_avg_pool2d(x, size) if tuple(x.shape[-2:]) != size else x  # noqa: E731
    parts = [area(bw), area(canvas), area(coverage), upsample(importance, size)]
    if hints is not None:
        parts.append(downsample(hints, size))
    return torch.cat(parts, dim=1)


def guided_fill(low: torch.Tensor, guide_low: torch.Tensor, bw: torch.Tensor, radius: int = 2, eps: float = 1e-3,
                tone_radius: int = 0) -> GuidedFill | StoredFill:
    """The secondary net's output ``low`` (B,3,h,w) brought to the page's resolution through a guided filter
    on the B&W page (``guide_low``: the page at h×w), so colour edges snap to the ink lines. ``tone_radius`` is
    the least blur of the screentone guide (about the dot pitch; 0: the downscale factor's)."""
    low = low.float()  # the guided filter and its coefficients need float32 under mixed precision
    if tuple(low.shape[-2:]) == tuple(bw.shape[-2:]):
        return StoredFill(low)
    a, b = guided_coefficients(low, guide_low, radius, eps)
    # The tone guide blurs the page by the downscale factor, and at least by ``tone_radius``: a box narrower
    # than the screentone's dot pitch lets the dots through into the colours (measured: tone residue 0.61 L*
    # with radius 1 on 256-px pages, 0.16 with radius 2).
    factor = max(1, round(bw.shape[-1] / low.shape[-1]))
    return GuidedFill(a, b, bw, max(factor // 2, tone_radius))


def run_secondary(net: nn.Module, bw: torch.Tensor, canvas: torch.Tensor, coverage: torch.Tensor,
                  importance: torch.Tensor, long_side: int, radius: int = 2,
                  eps: float = 1e-3, tone_radius: int = 0,
                  hints: torch.Tensor | None = None) -> GuidedFill | StoredFill:
    """Secondary flow on (B,·,H,W) pages: :func:`secondary_input`, the net, then :func:`guided_fill` → the fill
    at page resolution (``.full()`` renders it whole)."""
    x = secondary_input(bw, canvas, coverage, importance, long_side, hints)
    return guided_fill(net(x), x[:, :1], bw, radius, eps, tone_radius)
