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


@dataclass
class PatchPlan:
    """How one page splits between the two flows.

    boxes: (K,4) long, (y0, x0, y1, x1) in page pixels, all of size ``patch_size``.
    scores: (K,) mean importance of each box.
    weights: (K,1,ph,pw) feathered blend window of each patch (1 inside, smooth ramp to ~0 at inner borders;
        no ramp on sides that touch the page border, where nothing else can take over).
    coverage: (1,H,W) priority coverage in [0,1]: clamp(Σ pasted weights, 0, 1).
    fill: (1,H,W) = 1 - coverage: the share the secondary flow owns. coverage + fill = 1 everywhere.
    transition: (1,H,W) {0,1} band of ``band`` pixels around the priority/fill border.
    """

    boxes: torch.Tensor
    scores: torch.Tensor
    weights: torch.Tensor
    coverage: torch.Tensor
    fill: torch.Tensor
    transition: torch.Tensor
    page_size: tuple[int, int]
    patch_size: tuple[int, int]

    def __len__(self) -> int:
        return int(self.boxes.shape[0])


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


def paste(patches: torch.Tensor, boxes: torch.Tensor, weights: torch.Tensor,
          page_size: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Weighted paste of (K,C,ph,pw) patches → (C,H,W) Σ w·patch and (1,H,W) Σ w (normalise outside)."""
    c = patches.shape[1]
    acc = patches.new_zeros(c, *page_size)
    wsum = patches.new_zeros(1, *page_size)
    for k in range(boxes.shape[0]):  # a loop over at most `budget` patches, not over pixels
        y0, x0, y1, x1 = boxes[k].tolist()
        acc[:, y0:y1, x0:x1] += weights[k] * patches[k]
        wsum[:, y0:y1, x0:x1] += weights[k]
    return acc, wsum


def crop(x: torch.Tensor, boxes: torch.Tensor) -> torch.Tensor:
    """(C,H,W) page → (K,C,ph,pw) patches at native resolution."""
    if boxes.shape[0] == 0:
        return x.new_zeros(0, x.shape[0], 1, 1)
    return torch.stack([x[:, y0:y1, x0:x1] for y0, x0, y1, x1 in boxes.tolist()])


def transition_band(coverage: torch.Tensor, band: int) -> torch.Tensor:
    """{0,1} band of about ``band`` pixels straddling the border between coverage ≥ 0.5 and the rest."""
    core = (coverage >= 0.5).float()[None]
    if band <= 0 or core.sum() == 0 or core.min() == 1:
        return torch.zeros_like(coverage)
    r = max(1, band // 2)
    grown = F.max_pool2d(core, 2 * r + 1, stride=1, padding=r)
    shrunk = -F.max_pool2d(-core, 2 * r + 1, stride=1, padding=r)
    return (grown - shrunk)[0]


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
    return PatchPlan(boxes=boxes, scores=scores, weights=weights, coverage=coverage, fill=1.0 - coverage,
                     transition=transition_band(coverage, band), page_size=(h, w), patch_size=(ph, pw))


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
