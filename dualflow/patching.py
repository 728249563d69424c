"""Importance map → PatchPlan: priority patch boxes with feathered blend weights, a priority coverage map, the
fill mask (the rest of the page) and a transition band between the two.

Selection is window scoring (mean importance per candidate window, by integral image), a threshold, greedy
non-maximum suppression with a bound on the overlap between kept patches, and a budget: the budget is what
bounds the primary model's memory per page. Everything is vectorised over candidates and pixels.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.ops import nms

from dualflow.filters import dilate, erode


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

    @property
    def fill(self) -> torch.Tensor:
        return 1.0 - self.coverage


def candidate_boxes(page_size: tuple[int, int], patch: tuple[int, int], stride: int) -> torch.Tensor:
    """All windows of size ``patch`` on a ``stride`` grid, the last row/column flush with the page edge."""
    (h, w), (ph, pw) = page_size, patch

    def starts(n: int, p: int) -> torch.Tensor:
        s = torch.arange(0, n - p + 1, stride)
        return torch.unique(torch.cat([s, torch.tensor([n - p])]))

    ys, xs = torch.meshgrid(starts(h, ph), starts(w, pw), indexing="ij")
    ys, xs = ys.reshape(-1), xs.reshape(-1)
    return torch.stack([ys, xs, ys + ph, xs + pw], dim=1)


def box_scores(importance: torch.Tensor, boxes: torch.Tensor, page_size: tuple[int, int]) -> torch.Tensor:
    """Mean of a (h,w) importance map (any resolution) over page-pixel boxes, via an integral image."""
    h, w = importance.shape[-2:]
    imp = importance.reshape(h, w).float()
    integral = F.pad(imp.cumsum(0).cumsum(1), (1, 0, 1, 0))
    sy, sx = h / page_size[0], w / page_size[1]
    y0 = (boxes[:, 0] * sy).floor().long().clamp(0, h - 1)
    x0 = (boxes[:, 1] * sx).floor().long().clamp(0, w - 1)
    y1 = torch.maximum((boxes[:, 2] * sy).ceil().long().clamp(max=h), y0 + 1)
    x1 = torch.maximum((boxes[:, 3] * sx).ceil().long().clamp(max=w), x0 + 1)
    total = integral[y1, x1] - integral[y0, x1] - integral[y1, x0] + integral[y0, x0]
    return total / ((y1 - y0) * (x1 - x0)).float()


def _ramp(n: int, feather: int, start_open: torch.Tensor, end_open: torch.Tensor) -> torch.Tensor:
    """(K,n) product of smoothstep ramps at each end; an 'open' end (touching the page border) has none."""
    t = torch.arange(n, dtype=torch.float32) + 0.5
    if feather <= 0:
        return torch.ones(start_open.shape[0], n)
    up = (t / feather).clamp(0, 1)
    down = ((n - t) / feather).clamp(0, 1)
    up, down = up * up * (3 - 2 * up), down * down * (3 - 2 * down)
    up = torch.where(start_open[:, None], torch.ones_like(up), up)
    down = torch.where(end_open[:, None], torch.ones_like(down), down)
    return up * down


def blend_windows(boxes: torch.Tensor, page_size: tuple[int, int], patch: tuple[int, int],
                  feather: int) -> torch.Tensor:
    """(K,1,ph,pw) feathered windows for ``boxes``."""
    (h, w), (ph, pw) = page_size, patch
    ry = _ramp(ph, feather, boxes[:, 0] == 0, boxes[:, 2] == h)
    rx = _ramp(pw, feather, boxes[:, 1] == 0, boxes[:, 3] == w)
    return (ry[:, :, None] * rx[:, None, :])[:, None]


def intersect(box: list[int], window: tuple[int, int, int, int]) -> tuple[int, int, int, int] | None:
    """Intersection (y0, x0, y1, x1) of two boxes, or None when they do not overlap."""
    y0, x0 = max(box[0], window[0]), max(box[1], window[1])
    y1, x1 = min(box[2], window[2]), min(box[3], window[3])
    return (y0, x0, y1, x1) if y0 < y1 and x0 < x1 else None


def overlaps(boxes: torch.Tensor, window: tuple[int, int, int, int]) -> bool:
    """Whether any of the (K,4) ``boxes`` overlaps ``window`` (y0, x0, y1, x1)."""
    return any(intersect(b, window) is not None for b in boxes.tolist())


def paste(patches: torch.Tensor, boxes: torch.Tensor, weights: torch.Tensor, page_size: tuple[int, int],
          window: tuple[int, int, int, int] | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted paste of (K,C,ph,pw) patches → (C,h,w) Σ w·patch and (1,h,w) Σ w (normalise outside), over
    the whole page or only over ``window`` (y0, x0, y1, x1) of it (what stripes and patch boxes need)."""
    wy0, wx0, wy1, wx1 = window or (0, 0, *page_size)
    acc = patches.new_zeros(patches.shape[1], wy1 - wy0, wx1 - wx0)
    wsum = patches.new_zeros(1, wy1 - wy0, wx1 - wx0)
    for k, box in enumerate(boxes.tolist()):  # a loop over at most `budget` patches, not over pixels
        part = intersect(box, (wy0, wx0, wy1, wx1))
        if part is None:
            continue
        y0, x0, y1, x1 = part
        src = (slice(y0 - box[0], y1 - box[0]), slice(x0 - box[1], x1 - box[1]))
        w = weights[k][:, src[0], src[1]]
        acc[:, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] += w * patches[k][:, src[0], src[1]]
        wsum[:, y0 - wy0:y1 - wy0, x0 - wx0:x1 - wx0] += w
    return acc, wsum


def crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(C,H,W) page → (K,C,ph,pw) patches at native resolution."""
    if boxes.shape[0] == 0:
        return x.new_zeros(0, x.shape[0], 1, 1)
    return torch.stack([x[:, y0:y1, x0:x1] for y0, x0, y1, x1 in boxes.tolist()])


def transition_band(coverage: torch.Tensor, boxes: torch.Tensor, band: int) -> torch.Tensor:
    """{0,1} band of about ``band`` pixels straddling the border between coverage ≥ 0.5 and the rest.

    The band can only lie within ``r`` pixels of a patch box, so it is computed box by box on the box grown
    by 2r (the reach of dilation and erosion): cost bounded by the budget, not the page; exact."""
    out = torch.zeros_like(coverage)
    if band <= 0 or boxes.shape[0] == 0:
        return out
    r = max(1, band // 2)
    h, w = coverage.shape[-2:]
    for y0, x0, y1, x1 in boxes.tolist():
        gy0, gx0, gy1, gx1 = max(0, y0 - 2 * r), max(0, x0 - 2 * r), min(h, y1 + 2 * r), min(w, x1 + 2 * r)
        core = (coverage[:, gy0:gy1, gx0:gx1] >= 0.5).float()
        ring = dilate(core, r) - erode(core, r)
        iy0, ix0, iy1, ix1 = max(0, y0 - r), max(0, x0 - r), min(h, y1 + r), min(w, x1 + r)
        inner = ring[:, iy0 - gy0:iy1 - gy0, ix0 - gx0:ix1 - gx0]
        out[:, iy0:iy1, ix0:ix1] = torch.maximum(out[:, iy0:iy1, ix0:ix1], inner)
    return out


def plan_patches(importance: torch.Tensor, page_size: tuple[int, int], patch_size: int = 128,
                 stride: int | None = None, budget: int = 8, threshold: float = 0.3, max_overlap: float = 0.25,
                 feather: int | None = None, band: int = 16) -> PatchPlan:
    """Choose priority patches on one page from its importance map ((h,w), (1,h,w) or (1,1,h,w) in [0,1]).

    Pages smaller than ``patch_size`` get a patch the size of the page; a flat map below ``threshold`` or a
    ``budget`` of 0 gives no patches (the fill flow then owns the whole page)."""
    h, w = page_size
    ph, pw = min(patch_size, h), min(patch_size, w)
    stride = stride or max(1, patch_size // 2)
    feather = patch_size // 4 if feather is None else feather
    importance = importance.detach().float().cpu()
    boxes = candidate_boxes((h, w), (ph, pw), stride)
    scores = box_scores(importance, boxes, (h, w))
    keep = scores >= threshold
    boxes, scores = boxes[keep], scores[keep]
    if budget > 0 and boxes.shape[0] > 0:
        iou_limit = max_overlap / (2.0 - max_overlap) if max_overlap < 1 else 1.0  # equal-size boxes
        order = nms(boxes.float(), scores, iou_limit)[:budget]
        boxes, scores = boxes[order], scores[order]
    else:
        boxes, scores = boxes[:0], scores[:0]
    weights = blend_windows(boxes, (h, w), (ph, pw), feather)
    _, wsum = paste(torch.ones_like(weights), boxes, weights, (h, w))
    coverage = wsum.clamp(0, 1)
    return PatchPlan(boxes=boxes, scores=scores, weights=weights, coverage=coverage,
                     transition=transition_band(coverage, boxes, band), page_size=(h, w), patch_size=(ph, pw))


def random_boxes(page_size: tuple[int, int], patch_size: int, n: int,
                 generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,4) uniformly placed boxes of the plan's patch size, for the random share of stage-2 training."""
    h, w = page_size
    ph, pw = min(patch_size, h), min(patch_size, w)
    ys = torch.randint(0, h - ph + 1, (n,), generator=generator)
    xs = torch.randint(0, w - pw + 1, (n,), generator=generator)
    return torch.stack([ys, xs, ys + ph, xs + pw], dim=1)


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
