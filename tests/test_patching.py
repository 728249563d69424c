"""PatchPlan invariants and edge cases."""

import torch

from dualflow.patching import box_scores, candidate_boxes, paste, plan_patches, seam_mask, select_boxes


def _importance():
    g = torch.Generator().manual_seed(0)
    imp = torch.rand(40, 50, generator=g) * 0.3
    imp[5:15, 5:20] = 0.9
    imp[25:38, 30:48] = 0.8
    imp[20:24, 0:10] = 0.7
    return imp


def _overlap(a, b):
    h = max(0, min(a[2], b[2]) - max(a[0], b[0]))
    w = max(0, min(a[3], b[3]) - max(a[1], b[1]))
    return h * w


def test_invariants():
    page = (320, 400)
    plan = plan_patches(_importance(), page, patch_size=64, budget=6, threshold=0.4, max_overlap=0.25, band=8)
    boxes = plan.boxes.tolist()
    assert 1 <= len(boxes) <= 6
    for y0, x0, y1, x1 in boxes:
        assert 0 <= y0 < y1 <= page[0] and 0 <= x0 < x1 <= page[1] and (y1 - y0, x1 - x0) == (64, 64)
    for i in range(len(boxes)):
        for j in range(i + 1, len(boxes)):
            assert _overlap(boxes[i], boxes[j]) <= 0.25 * 64 * 64 + 1e-6
    assert (plan.scores >= 0.4).all() and torch.all(plan.scores[:-1] >= plan.scores[1:])
    assert torch.allclose(plan.coverage + plan.fill, torch.ones(1, *page))
    assert plan.coverage.min() >= 0 and plan.coverage.max() <= 1
    assert set(plan.transition.unique().tolist()) <= {0.0, 1.0} and plan.transition.sum() > 0
    # The band straddles the priority/fill border: it holds pixels on both sides.
    band = plan.transition[0] > 0
    assert (plan.coverage[0][band] >= 0.5).any() and (plan.coverage[0][band] < 0.5).any()


def test_weights_are_smooth_and_normalise_on_overlaps():
    page = (200, 200)
    plan = plan_patches(torch.ones(25, 25), page, patch_size=96, stride=32, budget=9, threshold=0.0,
                        max_overlap=0.6)
    w = plan.weights
    assert w.min() >= 0 and w.max() <= 1
    assert (w[..., 1:, :] - w[..., :-1, :]).abs().max() < 0.1 and (w[..., 1:] - w[..., :-1]).abs().max() < 0.1
    # Normalised weights sum to 1 wherever any patch has weight: constant patches paste to that constant.
    acc, wsum = paste(torch.full((len(plan), 3, 96, 96), 0.7), plan.boxes, w, page)
    covered = wsum[0] > 0
    assert torch.allclose((acc / wsum.clamp_min(1e-6))[:, covered], torch.tensor(0.7))
    assert ((wsum[0] > 1.0) & covered).any()  # there were real overlaps


def test_batched_selection_is_each_pages_own_and_what_nms_keeps():
    """A batch of pages gets the boxes each page gets alone, and they are the boxes torchvision's NMS keeps over
    the windows above the threshold, best first (the reference that the batched greedy steps reproduce)."""
    from torchvision.ops import nms

    g = torch.Generator().manual_seed(3)
    maps = torch.rand(3, 1, 40, 50, generator=g) ** 3
    maps[1, :, 20:30, 10:40] = 0.95
    page, patch, budget = (320, 400), 64, 6
    boxes, _, valid = select_boxes(maps, page, patch, budget=budget, threshold=0.3, max_overlap=0.25)
    windows = candidate_boxes(page, (patch, patch), patch // 2, maps.device)
    scores = box_scores(maps, windows, page)
    for i in range(3):
        alone = select_boxes(maps[i:i + 1], page, patch, budget=budget, threshold=0.3, max_overlap=0.25)
        assert torch.equal(alone[0][0], boxes[i]) and torch.equal(alone[2][0], valid[i])
        above = scores[i] >= 0.3
        xyxy = windows[above][:, [1, 0, 3, 2]].float()
        # Overlap of a quarter patch or more suppresses: IoU ≥ 0.25 / 1.75 (NMS drops IoU above its threshold).
        kept = nms(xyxy, scores[i][above], iou_threshold=0.25 / 1.75 - 1e-6)[:budget]
        assert torch.equal(windows[above][kept], boxes[i][valid[i]]), i


def test_page_smaller_than_patch_flat_map_and_zero_budget():
    small = plan_patches(torch.ones(3, 4), (30, 45), patch_size=64, budget=3, threshold=0.5)
    assert small.boxes.tolist() == [[0, 0, 30, 45]] and torch.all(small.coverage == 1)  # no feather at page edges
    flat = plan_patches(torch.full((10, 10), 0.2), (80, 80), patch_size=32, threshold=0.3)
    assert len(flat) == 0 and torch.all(flat.fill == 1) and flat.transition.sum() == 0
    zero = plan_patches(torch.ones(10, 10), (80, 80), patch_size=32, budget=0)
    assert len(zero) == 0 and torch.all(zero.coverage == 0)
    high_flat = plan_patches(torch.full((10, 10), 0.9), (80, 80), patch_size=32, budget=3, threshold=0.3)
    assert len(high_flat) == 3


def test_seam_mask_marks_inner_borders_only():
    m = seam_mask(torch.tensor([[0, 0, 10, 10], [5, 20, 15, 30]]), (20, 40))
    assert m[0, 0, :9].sum() == 0  # the top page border is not a seam (column 9 is the right border)
    assert m[0, 9, :10].sum() == 10 and m[0, 5, 20:30].sum() == 10 and m[0, 5:15, 20].sum() == 10


def test_the_plan_is_sized_by_the_page_and_bounded_by_the_detail():
    """``patch_density`` patches a megapixel: a page four times the area gets four times the slots; the windows
    above the threshold bound them (a page that is all detail fills its budget without breaking the overlap bound,
    an empty one gets none); a page smaller than a patch still gets its one patch."""
    import math

    from dualflow.loader import plan_settings
    from dualflow.pipeline import PlanSettings

    plan = PlanSettings(patch_size=32, patch_density=400.0)
    assert plan.budget((1024, 1448)) == math.ceil(400 * 1024 * 1448 / 1e6)
    assert plan.budget((2048, 2896)) == math.ceil(400 * 2048 * 2896 / 1e6)
    assert PlanSettings(patch_size=32, patch_budget=6).budget((2048, 2896)) == 6  # no density: the fixed count
    size = (256, 192)
    k = plan.budget(size)
    boxes, _, valid = plan.select(torch.ones(1, 1, 32, 24), size)  # all detail
    assert boxes.shape[1] == k == 20 and bool(valid.all())
    kept = boxes[0].tolist()
    assert all(_overlap(a, b) < 0.25 * 32 * 32 for i, a in enumerate(kept) for b in kept[i + 1:])
    assert not plan.select(torch.zeros(1, 1, 32, 24), size)[2].any()  # no detail: no patch
    small, _, ok = plan.select(torch.ones(1, 1, 3, 4), (20, 30))  # smaller than a patch
    assert ok.sum() == 1 and small[0, 0].tolist() == [0, 0, 20, 30]
    # Checkpoints written before the settings took stage 2's names; an inference budget replaces the density.
    legacy = {"patch_size": 64, "budget": 6, "threshold": 0.3, "max_overlap": 0.25, "band": 8}
    assert PlanSettings.from_meta(legacy) == PlanSettings(64, 6, 0.3, 0.25, 8)
    sized = {"plan": {"patch_size": 64, "patch_density": 50.0}}
    assert plan_settings(sized, patch_budget=0).budget((2048, 2896)) == 0
    assert plan_settings(sized, patch_density=10.0).budget((1000, 1000)) == 10
