"""Fast local filters equal their slow references (pooling, interpolation) on the page and on windows."""

import torch
import torch.nn.functional as F

from dualflow.filters import area_matrix, bilinear_window, box, dilate, erode, guided_filter
from dualflow.patching import plan_patches, transition_band


def test_box_and_morphology_match_2d_pooling():
    g = torch.Generator().manual_seed(0)
    x = torch.rand(2, 3, 37, 53, generator=g)
    mask = (torch.rand(1, 1, 37, 53, generator=g) > 0.8).float()
    for r in (1, 2, 5, 8):
        k = 2 * r + 1
        assert torch.allclose(box(x, r), F.avg_pool2d(x, k, 1, r, count_include_pad=False), atol=1e-6)
        assert torch.equal(dilate(mask, r), F.max_pool2d(mask, k, 1, r))
        assert torch.equal(erode(1 - mask, r), -F.max_pool2d(mask - 1, k, 1, r))


def test_bilinear_window_matches_interpolate_on_any_window():
    x = torch.rand(1, 3, 13, 9, generator=torch.Generator().manual_seed(1))
    size = (101, 67)
    ref = F.interpolate(x, size=size, mode="bilinear", align_corners=False)
    for window in ((0, 0, 101, 67), (17, 5, 40, 66), (100, 0, 101, 1)):
        y0, x0, y1, x1 = window
        assert torch.allclose(bilinear_window(x, size, window), ref[..., y0:y1, x0:x1], atol=1e-5)


def test_guided_filter_keeps_an_edge_of_the_guide_and_smooths_elsewhere():
    guide = torch.zeros(1, 1, 32, 32)
    guide[..., 16:] = 1
    noisy = guide + 0.05 * torch.randn(1, 1, 32, 32, generator=torch.Generator().manual_seed(2))
    out = guided_filter(noisy, guide, 2, 1e-3)
    assert (out[..., :, 14] - out[..., :, 17]).abs().min() > 0.9  # the step survives
    assert out[..., :, 2:12].std() < 0.5 * noisy[..., :, 2:12].std()  # the noise does not


def test_transition_band_box_by_box_equals_whole_page_morphology():
    imp = torch.rand(20, 30, generator=torch.Generator().manual_seed(3))
    plan = plan_patches(imp, (200, 300), patch_size=64, budget=5, threshold=0.0, max_overlap=0.9, band=8)
    core = (plan.coverage >= 0.5).float()[None]
    ref = (F.max_pool2d(core, 9, 1, 4) + F.max_pool2d(-core, 9, 1, 4))[0]  # grown - shrunk
    assert len(plan) >= 3 and plan.transition.sum() > 0
    assert torch.equal(transition_band(plan.coverage, plan.boxes, 8), ref)


def test_area_pooling_by_stripes_matches_adaptive_pooling_of_the_page_canvas():
    from dualflow.pipeline import canvas_from_patches, pooled_canvas

    x = torch.rand(2, 37, 53, generator=torch.Generator().manual_seed(4))
    assert torch.allclose(area_matrix(37, 10) @ x @ area_matrix(53, 7).T, F.adaptive_avg_pool2d(x, (10, 7)), atol=1e-6)
    imp = torch.rand(20, 30, generator=torch.Generator().manual_seed(5))
    plan = plan_patches(imp, (200, 300), patch_size=64, budget=4, threshold=0.0, max_overlap=0.9)
    patches = torch.rand(len(plan), 3, 64, 64, generator=torch.Generator().manual_seed(6))
    canvas, coverage = canvas_from_patches(patches, plan.boxes, plan.weights, (200, 300))
    low_canvas, low_coverage = pooled_canvas(patches, plan.boxes, plan.weights, (200, 300), (40, 60), stripe=48)
    assert torch.allclose(low_canvas, F.adaptive_avg_pool2d(canvas, (40, 60)), atol=1e-5)
    assert torch.allclose(low_coverage, F.adaptive_avg_pool2d(coverage, (40, 60)), atol=1e-5)
