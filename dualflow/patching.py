"""Importance map → PatchPlan: priority patch boxes with feathered blend weights, a priority coverage map, the
fill mask (the rest of the page) and a transition band between the two.

Selection is window scoring (mean importance per candidate window, by integral image), a threshold, greedy
non-maximum suppression with a bound on the overlap between kept patches, and a budget: the budget is what
bounds the primary model's memory per page. :func:`select_boxes` does it for a whole batch at once on the
device, with fixed shapes and no host synchronisation (what a GPU training step needs); :func:`plan_patches`
builds the full plan of one page (weights, coverage, band) for inference on top of it.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import torch
import torch.nn.functional as F

from dualflow.filters import ring
from dualflow.precision import float32


@dataclass
class PatchPlan:
    """How one page splits between the two flows.

    boxes: (K,4) long, (y0, x0, y1, x1) in page pixels, all of size ``patch_size``.
    scores: (K,) mean importance of each box.
    weights: (K,1,ph,pw) feathered blend window of each patch (1 inside, smooth ramp to ~0 at inner borders;
        no ramp on sides that touch the page border, where nothing else can take over).
    coverage: (1,H,W) priority coverage in [0,1]: clamp(Σ pasted weights, 0, 1).
    fill: (1,H,W) = 1 - coverage (computed on access): the share the secondary flow owns.
    transition: (1,H,W) {0,1} band of ``band`` pixels around the priority/fill border.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    coverage: torch.Tensor
    transition: torch.Tensor
    page_size: tuple[int, int]
    patch_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def inside(self) -> torch.Tensor:
        """(H,W) bool: the pixels inside a priority patch (what the primary coloured)."""
        covered = torch.zeros(self.page_size, dtype=torch.bool)
        for y0, x0, y1, x1 in self.boxes.tolist():
            covered[y0:y1, x0:x1] = True
        return covered

    @property
    def fill(self) -> torch.Tensor:
        return 1.0 - self.coverage


def fit_patch(page_size: tuple[int, int], patch_size: int) -> tuple[int, int]:
    """(ph, pw) of a square patch on a page: a page smaller than the patch gets a patch the size of the page."""
    return min(patch_size, page_size[0]), min(patch_size, page_size[1])


@lru_cache(maxsize=32)
def candidate_boxes(page_size: tuple[int, int], patch: tuple[int, int], stride: int,
                    device: torch.device | str | None = None) -> torch.Tensor:
    """All windows of size ``patch`` on a ``stride`` grid, the last row/column flush with the page edge, built
    on ``device`` (no host-to-device copy)."""
    (h, w), (ph, pw) = page_size, patch

    def starts(n: int, p: int) -> torch.Tensor:
        s = torch.arange(0, n - p + 1, stride, device=device)
        return s if (n - p) % stride == 0 else torch.cat([s, s.new_full((1,), n - p)])

    ys, xs = torch.meshgrid(starts(h, ph), starts(w, pw), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return torch.stack([ys, xs, ys + ph, xs + pw], dim=1)


def box_scores(importance: torch.Tensor, boxes: torch.Tensor, page_size: tuple[int, int]) -> torch.Tensor:
    """Mean of importance maps (B,1,h,w) or (B,h,w), any resolution, over page-pixel boxes (N,4), via an
    integral image per page: (B,N)."""
    h, w = importance.shape[-2:]
    imp = importance.reshape(-1, h, w).float()
    integral = F.pad(imp.cumsum(1).cumsum(2), (1, 0, 1, 0))
    sy, sx = h / page_size[0], w / page_size[1]
    y0 = (boxes[:, 0] * sy).floor().long().clamp(0, h - 1)
    x0 = (boxes[:, 1] * sx).floor().long().clamp(0, w - 1)
    y1 = torch.maximum((boxes[:, 2] * sy).ceil().long().clamp(max=h), y0 + 1)
    x1 = torch.maximum((boxes[:, 3] * sx).ceil().long().clamp(max=w), x0 + 1)
    total = integral[:, y1, x1] - integral[:, y0, x1] - integral[:, y1, x0] + integral[:, y0, x0]
    return total / ((y1 - y0) * (x1 - x0)).float()


def select_boxes(importance: torch.Tensor, page_size: tuple[int, int], patch_size: int = 128,
                 stride: int | None = None, budget: int = 8, threshold: float = 0.3,
                 max_overlap: float = 0.25) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Priority boxes of every page of a batch: importance (B,1,h,w) → boxes (B,K,4) long, scores (B,K),
    valid (B,K) bool, with K = ``budget``, on the importance map's device.

    Greedy NMS as K batched steps (take each page's best window, suppress the windows that overlap it by
    ``max_overlap`` of a patch or more; with 0, by any pixel): the boxes, in order, that
    ``torchvision.ops.nms`` keeps over the windows above ``threshold``, with fixed shapes and no host
    synchronisation, and exact at the bound (diagonal neighbours on a half-patch stride overlap by exactly
    25 %: not both kept at the default 0.25). A slot is invalid when no window above the threshold is left;
    valid slots come first."""
    h, w = page_size
    ph, pw = fit_patch(page_size, patch_size)
    stride = stride or max(1, patch_size // 2)
    cand = candidate_boxes((h, w), (ph, pw), stride, importance.device)
    scores = box_scores(importance, cand, (h, w))
    scores = scores.masked_fill(scores < threshold, float("-inf"))
    limit = max_overlap * ph * pw  # kept boxes overlap by less than this area (all boxes have one size)
    picked, best = [], []
    for _ in range(max(0, budget)):
        idx = scores.argmax(dim=1)  # (B,)
        best.append(scores.gather(1, idx[:, None])[:, 0])
        picked.append(idx)
        box = cand[idx]  # (B,4)
        inter_h = torch.minimum(box[:, None, 2], cand[:, 2]) - torch.maximum(box[:, None, 0], cand[:, 0])
        inter_w = torch.minimum(box[:, None, 3], cand[:, 3]) - torch.maximum(box[:, None, 1], cand[:, 1])
        overlap = inter_h.clamp_min(0) * inter_w.clamp_min(0)  # integer areas: the bound holds exactly
        suppress = (overlap > 0) & (overlap >= limit)
        scores = scores.masked_fill(suppress, float("-inf")).scatter(1, idx[:, None], float("-inf"))
    b = importance.shape[0]
    if not picked:
        none = torch.zeros(b, 0, dtype=torch.bool, device=importance.device)
        return cand.new_zeros(b, 0, 4), importance.new_zeros(b, 0), none
    idx, best = torch.stack(picked, 1), torch.stack(best, 1)
    return cand[idx], best, torch.isfinite(best)


def _ramp(n: int, feather: int, start_open: torch.Tensor, end_open: torch.Tensor) -> torch.Tensor:
    """(K,n) product of smoothstep ramps at each end; an 'open' end (touching the page border) has none."""
    t = torch.arange(n, dtype=torch.float32, device=start_open.device) + 0.5
    if feather <= 0:
        return torch.ones(start_open.shape[0], n, device=start_open.device)
    up = (t / feather).clamp(0, 1)
    down = ((n - t) / feather).clamp(0, 1)
    up, down = up * up * (3 - 2 * up), down * down * (3 - 2 * down)
    up = torch.where(start_open[:, None], torch.ones_like(up), up)
    down = torch.where(end_open[:, None], torch.ones_like(down), down)
    return up * down


def blend_ramps(boxes: torch.Tensor, page_size: tuple[int, int], patch: tuple[int, int],
                feather: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable factors of the blend windows of (...,4) ``boxes``: rows (...,ph) and columns (...,pw)."""
    (h, w), (ph, pw) = page_size, patch
    shape, boxes = boxes.shape[:-1], boxes.reshape(-1, 4)
    ry = _ramp(ph, feather, boxes[:, 0] == 0, boxes[:, 2] == h)
    rx = _ramp(pw, feather, boxes[:, 1] == 0, boxes[:, 3] == w)
    return ry.reshape(*shape, ph), rx.reshape(*shape, pw)


def _placed(ramp: torch.Tensor, start: torch.Tensor, n: int) -> torch.Tensor:
    """(...,p) ramps placed at ``start`` (...) on an axis of length n → (...,n), zero outside."""
    p = ramp.shape[-1]
    offset = torch.arange(n, device=ramp.device) - start[..., None]
    inside = (offset >= 0) & (offset < p)
    return ramp.gather(-1, offset.clamp(0, p - 1)) * inside


@float32
def window_sums(ry: torch.Tensor, rx: torch.Tensor, boxes: torch.Tensor, page_size: tuple[int, int]) -> torch.Tensor:
    """Σ_k of the separable windows ry[b,k] ⊗ rx[b,k] placed at boxes[b,k] → (B,1,H,W): the coverage of every
    page as one batched (H×K)·(K×W) matrix product, without scattering a pixel (scale a window by scaling
    its ry). ry (B,K,ph), rx (B,K,pw), boxes (B,K,4)."""
    rows = _placed(ry, boxes[..., 0], page_size[0])  # (B,K,H)
    cols = _placed(rx, boxes[..., 1], page_size[1])  # (B,K,W)
    return (rows.transpose(1, 2) @ cols)[:, None]


def meets(boxes: torch.Tensor, window: tuple[int, int, int, int]) -> torch.Tensor:
    """(K,) bool: which of the (K,4) ``boxes`` overlap ``window`` (y0, x0, y1, x1) by at least a pixel."""
    y0, x0, y1, x1 = window
    return (boxes[:, 0] < y1) & (boxes[:, 2] > y0) & (boxes[:, 1] < x1) & (boxes[:, 3] > x0)


def overlaps(boxes: torch.Tensor, window: tuple[int, int, int, int]) -> bool:
    """Whether any of the (K,4) ``boxes`` overlaps ``window`` (y0, x0, y1, x1)."""
    return bool(meets(boxes, window).any())


def paste(patches: torch.Tensor, boxes: torch.Tensor, weights: torch.Tensor, page_size: tuple[int, int],
          window: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted paste of (K,C,ph,pw) patches → (C,h,w) Σ w·patch and (1,h,w) Σ w (normalise outside), over
    the whole page or only over ``window`` (y0, x0, y1, x1) of it (what stripes need): the boxes that meet the
    window in one scatter-add, pixels outside it sent to a slot that is dropped (no loop over patches: a plan
    sized by the page holds hundreds)."""
    wy0, wx0, wy1, wx1 = window or (0, 0, *page_size)
    h, w = wy1 - wy0, wx1 - wx0
    c = patches.shape[1]
    near = meets(boxes, (wy0, wx0, wy1, wx1))
    out = patches.new_zeros(c + 1, h * w + 1)
    if bool(near.any()):
        keep = near.nonzero()[:, 0]
        iy, ix = box_grid(boxes[keep] - boxes.new_tensor([wy0, wx0, wy0, wx0]), tuple(patches.shape[-2:]))
        inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w)
        pixel = torch.where(inside, iy * w + ix, h * w)  # (N,ph,pw); h·w: outside the window
        weight = weights[keep]
        values = torch.cat([weight * patches[keep], weight], dim=1)  # (N,C+1,ph,pw)
        out.index_add_(1, pixel.reshape(-1), values.transpose(0, 1).reshape(c + 1, -1))
    out = out[:, :h * w].view(c + 1, h, w)
    return out[:c], out[c:]


def box_grid(boxes: torch.Tensor, patch: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Pixel rows (N,ph,1) and columns (N,1,pw) of (N,4) boxes of size ``patch``, for gathers and scatters."""
    iy = boxes[:, 0, None] + torch.arange(patch[0], device=boxes.device)
    ix = boxes[:, 1, None] + torch.arange(patch[1], device=boxes.device)
    return iy[:, :, None], ix[:, None, :]


def crop_pages(pages: torch.Tensor, boxes: torch.Tensor, page: torch.Tensor,
               patch: tuple[int, int]) -> torch.Tensor:
    """(B,C,H,W) pages → (N,C,ph,pw): box ``boxes[n]`` of page ``page[n]``, all N in one gather. The gather
    indexes a view of every (ph,pw) window by its origin, so it copies whole rows (5× faster on a CPU than
    indexing pixel by pixel) and needs no loop over boxes."""
    windows = pages.unfold(2, patch[0], 1).unfold(3, patch[1], 1)  # (B,C,H-ph+1,W-pw+1,ph,pw), no copy
    return windows[page, :, boxes[:, 0], boxes[:, 1]]


def paste_pages(values: torch.Tensor, boxes: torch.Tensor, page: torch.Tensor, batch: int,
                page_size: tuple[int, int]) -> torch.Tensor:
    """Sum of (N,C,ph,pw) ``values`` pasted at their boxes of their pages → (B,C,H,W), in one scatter-add
    over flat pixel indices (the batched counterpart of :func:`paste`; weights are whatever the caller
    multiplied in)."""
    n, c, ph, pw = values.shape
    (h, w), (iy, ix) = page_size, box_grid(boxes, (ph, pw))
    pixel = ((page[:, None, None] * h + iy) * w + ix).reshape(-1)  # (N·ph·pw,) index into B·H·W
    out = values.new_zeros(c, batch * h * w)
    out.index_add_(1, pixel, values.transpose(0, 1).reshape(c, -1))
    return out.view(c, batch, h, w).transpose(0, 1)


def crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(C,H,W) page → (K,C,ph,pw) patches at native resolution (boxes of one size)."""
    if boxes.shape[0] == 0:
        return x.new_zeros(0, x.shape[0], 1, 1)
    y0, x0, y1, x1 = boxes[0].tolist()
    boxes = boxes.to(x.device)
    return crop_pages(x[None], boxes, torch.zeros_like(boxes[:, 0]), (y1 - y0, x1 - x0))


def band_ring(coverage: torch.Tensor, r: int) -> torch.Tensor:
    """{0,1} ring of radius ``r`` around the border of coverage ≥ 0.5 (dilation minus erosion), on any
    (...,H,W) map: whole pages of a training batch, or one grown patch box."""
    return ring(coverage >= 0.5, r)


def band_width_radius(band: int) -> int:
    return max(1, band // 2)


def transition_bands(coverage: torch.Tensor, band: int) -> torch.Tensor:
    """(B,1,H,W) coverage → the transition band of every page, by whole-page morphology (stage-3 training;
    equal to :func:`transition_band`, which computes it box by box for large pages)."""
    return band_ring(coverage, band_width_radius(band)) if band > 0 else torch.zeros_like(coverage)


def transition_band(coverage: torch.Tensor, boxes: torch.Tensor, band: int) -> torch.Tensor:
    """{0,1} band of about ``band`` pixels straddling the border between coverage ≥ 0.5 and the rest.

    The band can only lie within ``r`` pixels of a patch box, so it is computed box by box on the box grown
    by 2r (the reach of dilation and erosion): cost bounded by the budget, not the page; exact."""
    out = torch.zeros_like(coverage)
    if band <= 0 or boxes.shape[0] == 0:
        return out
    r = band_width_radius(band)
    h, w = coverage.shape[-2:]
    for y0, x0, y1, x1 in boxes.tolist():
        gy0, gx0, gy1, gx1 = max(0, y0 - 2 * r), max(0, x0 - 2 * r), min(h, y1 + 2 * r), min(w, x1 + 2 * r)
        ring = band_ring(coverage[:, gy0:gy1, gx0:gx1], r)
        iy0, ix0, iy1, ix1 = max(0, y0 - r), max(0, x0 - r), min(h, y1 + r), min(w, x1 + r)
        inner = ring[:, iy0 - gy0:iy1 - gy0, ix0 - gx0:ix1 - gx0]
        out[:, iy0:iy1, ix0:ix1] = torch.maximum(out[:, iy0:iy1, ix0:ix1], inner)
    return out


def page_plans(boxes: torch.Tensor, scores: torch.Tensor, valid: torch.Tensor,
               ramps: tuple[torch.Tensor, torch.Tensor], page_size: tuple[int, int], band: int) -> list[PatchPlan]:
    """The PatchPlan of every page of a batched selection (:func:`select_boxes`: boxes (B,K,4), scores and
    validity (B,K); ``ramps``: :func:`blend_ramps` of the boxes): the valid boxes with their blend windows, the
    coverage (one batched :func:`window_sums`) and the transition band (box by box, cost bounded by the budget).
    Evaluation and inference need these; a training step needs only the batched tensors."""
    ry, rx = ramps
    ry = ry * valid[..., None]  # an invalid slot weighs nothing
    coverage = window_sums(ry, rx, boxes, page_size).clamp(0, 1)
    weights = (ry[..., :, None] * rx[..., None, :])[:, :, None]  # (B,K,1,ph,pw)
    patch = (ry.shape[-1], rx.shape[-1])
    plans = []
    for i in range(boxes.shape[0]):
        keep = valid[i]
        kept = boxes[i][keep]
        plans.append(PatchPlan(boxes=kept, scores=scores[i][keep], weights=weights[i][keep], coverage=coverage[i],
                               transition=transition_band(coverage[i], kept, band), page_size=tuple(page_size),
                               patch_size=patch))
    return plans


def plan_patches(importance: torch.Tensor, page_size: tuple[int, int], patch_size: int = 128,
                 stride: int | None = None, budget: int = 8, threshold: float = 0.3, max_overlap: float = 0.25,
                 feather: int | None = None, band: int = 16) -> PatchPlan:
    """Choose priority patches on one page from its importance map ((h,w), (1,h,w) or (1,1,h,w) in [0,1]):
    :func:`select_boxes` and :func:`page_plans` on a batch of one.

    Pages smaller than ``patch_size`` get a patch the size of the page; a flat map below ``threshold`` or a
    ``budget`` of 0 gives no patches (the fill flow then owns the whole page)."""
    patch = fit_patch(page_size, patch_size)
    feather = patch_size // 4 if feather is None else feather
    importance = importance.detach().float().reshape(1, 1, *importance.shape[-2:])
    boxes, scores, valid = select_boxes(importance, page_size, patch_size, stride, budget, threshold, max_overlap)
    return page_plans(boxes, scores, valid, blend_ramps(boxes, page_size, patch, feather), page_size, band)[0]


def random_boxes(page_size: tuple[int, int], patch_size: int, shape: int | tuple[int, ...],
                 generator: torch.Generator | None = None,
                 device: torch.device | str | None = None) -> torch.Tensor:
    """(*shape,4) uniformly placed boxes of the plan's patch size (the random share of stage-2 training),
    drawn on ``generator``'s device (or ``device``) and returned on ``device``."""
    h, w = page_size
    ph, pw = fit_patch(page_size, patch_size)
    shape = (shape,) if isinstance(shape, int) else tuple(shape)
    source = generator.device if generator is not None else device
    ys = torch.randint(0, h - ph + 1, shape, generator=generator, device=source)
    xs = torch.randint(0, w - pw + 1, shape, generator=generator, device=source)
    return torch.stack([ys, xs, ys + ph, xs + pw], dim=-1).to(device or source)


def seam_mask(boxes: torch.Tensor, page_size: tuple[int, int]) -> torch.Tensor:
    """(1,H,W) {0,1}: pixels on the inner borders of patch boxes (page borders excluded), where seams show."""
    h, w = page_size
    mask = torch.zeros(1, h, w)
    for y0, x0, y1, x1 in boxes.tolist():
        if y0 > 0:
            mask[0, y0, x0:x1] = 1
        if y1 < h:
            mask[0, y1 - 1, x0:x1] = 1
        if x0 > 0:
            mask[0, y0:y1, x0] = 1
        if x1 < w:
            mask[0, y0:y1, x1 - 1] = 1
    return mask
