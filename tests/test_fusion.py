"""Fusion invariants: weights in range, identity when the flows agree, no step at patch borders."""

import numpy as np
import pytest
import torch

from dualflow.fusion import (
    Fusion,
    FusionConfig,
    feather_blend,
    harmonize,
    multiband_blend,
    priority_canvas,
    white_paper,
)
from dualflow.patching import crop, plan_patches


def _setup(offset=0.0):
    torch.manual_seed(0)
    page = (96, 128)
    imp = torch.zeros(12, 16)
    imp[2:6, 3:8] = 1
    plan = plan_patches(imp, page, patch_size=48, budget=2, threshold=0.5, band=8)
    yy, xx = torch.meshgrid(torch.linspace(0, 1, page[0]), torch.linspace(0, 1, page[1]), indexing="ij")
    fill = torch.stack([0.3 + 0.4 * yy, 0.2 * xx - 0.1, 0.1 * yy])
    patches = crop(fill, plan.boxes).clone()
    patches[:, 1:] += offset
    return plan, fill, patches, torch.ones(1, *page)


def test_patch_equal_to_fill_gives_fill_back():
    plan, fill, patches, bw = _setup()
    for blend in ("feather", "multiband"):
        out = Fusion(FusionConfig(blend=blend, postprocess=False))(patches, plan, fill, bw)
        assert torch.allclose(out.page, fill, atol=1e-5)
        assert out.report["seam_disagreement"] < 1e-3


def test_blending_leaves_no_step_at_patch_borders():
    plan, fill, patches, bw = _setup(offset=0.2)
    out = Fusion(FusionConfig(harmonize=False, postprocess=False))(patches, plan, fill, bw)
    diff = (out.page - fill)[1]
    step_y = (diff[1:] - diff[:-1]).abs().max()
    step_x = (diff[:, 1:] - diff[:, :-1]).abs().max()
    assert diff.max() > 0.19  # the patch colour is there in the core
    # Smoothstep over a 12-px feather: at most 1.5/12 of the offset per pixel, never a jump.
    assert step_y < 0.2 * 0.15 and step_x < 0.2 * 0.15
    hard = priority_canvas(out.patches, plan, fill)  # pasting without feathering would jump by 0.2
    assert (hard[1, 1:] - hard[1, :-1]).abs().max() > 0.19


def test_multiband_reconstructs_exactly_and_weights_stay_in_range():
    plan, fill, patches, bw = _setup(offset=0.1)
    assert torch.allclose(multiband_blend(fill, fill, plan.coverage, 4), fill, atol=1e-6)
    assert torch.allclose(multiband_blend(fill, fill + 1, torch.ones_like(plan.coverage), 3), fill, atol=1e-6)
    blended = feather_blend(fill + 0.1, fill, plan.coverage)
    assert ((blended - fill) >= -1e-6).all() and ((blended - fill) <= 0.1 + 1e-6).all()


def test_harmonize_pulls_patch_chroma_to_the_fill_in_the_band():
    plan, fill, patches, bw = _setup(offset=0.2)
    moved = harmonize(patches, plan, crop(fill, plan.boxes), strength=1.0)
    band = crop(plan.transition, plan.boxes)
    before = ((patches - crop(fill, plan.boxes))[:, 1:] * band).abs().sum()
    after = ((moved - crop(fill, plan.boxes))[:, 1:] * band).abs().sum()
    assert after < 0.05 * before
    out = Fusion(FusionConfig(coherence_threshold=1.0, postprocess=False))(patches, plan, fill, bw)
    assert out.report["reharmonized"] == 1.0  # disagreement above threshold triggers the strong pass


def test_postprocess_keeps_ink_dark_and_white_areas_white():
    plan, fill, patches, _ = _setup()
    bw = torch.ones(1, 96, 128)
    bw[:, :, 60:64] = 0  # an ink line
    bw[:, 20:22, 10:30:3] = 0  # lettering: dots 2 px apart
    bw[:, 80:, 100:] = (torch.arange(16)[:, None] + torch.arange(28)) % 4 == 0  # a dark tone: lines of paper
    out = Fusion(FusionConfig(harmonize=False))(patches, plan, fill, bw)
    assert out.page[0, :, 61:63].max() <= 0.35
    paper = bw[0] > 0.9
    paper[19:23, 8:31] = False  # the lettering's rows: their gaps lie in no 7×7 window of paper
    paper[:, 60:] = False
    # The paper is white up to the strokes: beside the line and just above and below the letters too.
    assert out.page[0][paper].min() >= 0.95 and out.page[1:][:, paper].abs().max() < 0.1
    assert white_paper(bw)[0, 81:, 101:].sum() == 0  # the gaps inside a tone are no white area


def test_gutters_and_margins_are_pure_white_and_enclosed_paper_keeps_its_colour():
    """Paper connected to the page's edge (gutters, margins) prints as 255 white; paper enclosed by a panel
    border (pale skin, a wall left as paper) keeps the nets' colour up to the softer white rule."""
    from dualflow.fusion import margin_paper

    plan, fill, patches, _ = _setup()
    bw = torch.ones(1, 96, 128)
    bw[:, 10:86, 10:12] = bw[:, 10:86, 116:118] = 0  # a panel border, inside the margin
    bw[:, 10:12, 10:118] = bw[:, 84:86, 10:118] = 0
    fill = fill.clone()
    fill[1] = 0.2  # the nets' guess on paper: a warm pale colour
    out = Fusion(FusionConfig(harmonize=False, smooth_radius=0))(patches, plan, fill, bw, rgb=True)
    margin = margin_paper(bw)[0]
    assert margin[:8].all() and margin[:, :8].all() and not margin[14:82, 14:114].any()
    assert (out.page[:, margin] * 255 + 0.5 >= 255).all()  # every channel 255
    inside = out.page[:, 20:76, 20:108]
    assert inside.amin() >= 0.9 and (inside[0] - inside[2]).mean() > 0.01  # pale, and still warm
    off = Fusion(FusionConfig(harmonize=False, smooth_radius=0, white_margins=False))(patches, plan, fill, bw, rgb=True)
    assert (off.page[:, margin] < 0.99).any() and torch.equal(off.page[:, 20:76, 20:108], inside)


def test_descreen_flattens_copied_dots_and_leaves_lines_as_drawn():
    """A net that copies its input's dots into lightness: descreening removes the texture inside the toned area,
    keeps the tone's mean lightness, and leaves the lightness next to a stroke as it was."""
    from dualflow.data.synth import STYLE, Screens, screen_tone
    from dualflow.filters import box, dilate
    from dualflow.fusion import LINE_CLEARANCE, descreen_lightness
    from dualflow.lineart import ink_lines

    dark = np.zeros((96, 128), np.float32)
    dark[:, 64:] = 0.4  # a mid-grey dot tone on the right half, paper on the left
    bw = torch.from_numpy(screen_tone(dark, np.full(dark.shape, STYLE["dots"], np.uint8), Screens()))[None]
    bw[:, :, 30:32] = 0  # a stroke on the paper
    lightness = 0.4 + 0.2 * bw  # the dots copied into the colours
    strokes = ink_lines(bw[None])
    out = descreen_lightness(lightness, bw, strokes)
    texture = lambda x: (x - box(x[None], 2)[0]).abs()[:, 8:-8, 72:-8].mean()  # noqa: E731 - inside the tone
    assert texture(out) < 0.1 * texture(lightness)
    assert abs(float(out[:, 8:-8, 72:-8].mean() - lightness[:, 8:-8, 72:-8].mean())) < 0.01
    near = dilate(strokes, LINE_CLEARANCE)[0] > 0
    assert near[:, :, 27:35].all() and torch.equal(out[near], lightness[near])


@pytest.mark.parametrize("seed", [2, 3])
def test_striped_rendering_of_a_guided_fill_equals_the_whole_page(seed):
    """The composite never holds the page-sized fill: it renders the guided fill on patch boxes and in
    stripes with a halo. That must give the page the whole-page computation gives, at any stripe height
    (page 3 has ink and dark tones across the stripe borders, so a halo short of post-processing's reach fails)."""
    from dualflow.data.synth import SynthManga
    from dualflow.pipeline import GuidedFill

    g = torch.Generator().manual_seed(0)
    page = (300, 90)
    bw = torch.from_numpy(SynthManga(seed)(0, page).bw)[None]
    field = GuidedFill(a=torch.rand(1, 3, 30, 9, generator=g), b=torch.rand(1, 3, 30, 9, generator=g) - 0.5,
                       bw=bw[None], tone_radius=5)
    imp = torch.zeros(30, 9)
    imp[3:9, 2:7] = imp[20:26, 0:4] = 1
    plan = plan_patches(imp, page, patch_size=48, budget=3, threshold=0.5, band=8)
    patches = crop(field.full()[0], plan.boxes) + 0.1 * torch.rand(len(plan), 3, 48, 48, generator=g)
    whole = Fusion(FusionConfig(stripe=1000))(patches, plan, field.full()[0], bw)
    assert len(plan) == 2
    for stripe in (64, 29):
        striped = Fusion(FusionConfig(stripe=stripe))(patches, plan, field, bw)
        assert torch.allclose(whole.page, striped.page, atol=1e-5), stripe
        assert striped.report == pytest.approx(whole.report, rel=1e-6)  # the fill on the boxes: one batch or crops


def test_coherence_box_by_box_equals_the_whole_page_measure():
    """Overlapping patches: each pixel is counted once although several boxes hold it."""
    from dualflow.fusion import coherence, lab_distance
    from dualflow.patching import paste

    _, fill, _, _ = _setup()
    plan = plan_patches(torch.rand(12, 16, generator=torch.Generator().manual_seed(3)), (96, 128), patch_size=48,
                        budget=6, threshold=0.0, max_overlap=0.9, band=8)
    patches = crop(fill, plan.boxes) + 0.1 * torch.rand(len(plan), 3, 48, 48, generator=torch.Generator())
    s1, wsum = paste(patches, plan.boxes, plan.weights, plan.page_size)
    s2, _ = paste(patches.pow(2), plan.boxes, plan.weights, plan.page_size)
    count, _ = paste(torch.ones_like(plan.weights), plan.boxes, torch.ones_like(plan.weights), plan.page_size)
    mean = s1 / wsum.clamp_min(1e-6)
    spread = (((s2 / wsum.clamp_min(1e-6) - mean.pow(2)).clamp_min(0)
               * torch.tensor([100.0, 110.0, 110.0]).pow(2).view(3, 1, 1)).sum(0)).sqrt()
    canvas = torch.where(wsum > 0, mean, fill)
    band = plan.transition[0] > 0
    report = coherence(patches, plan, crop(fill, plan.boxes))
    assert (count >= 2).sum() > 1000 and band.sum() > 100
    assert abs(report["overlap_disagreement"] - float(spread[count[0] >= 2].mean())) < 1e-3
    assert abs(report["seam_disagreement"] - float(lab_distance(canvas, fill)[band].mean())) < 1e-3


def test_the_fill_on_many_boxes_at_once_equals_it_box_by_box():
    """:meth:`GuidedFill.boxes` (one batch, what fusion takes the fill on the patches with) is
    :meth:`GuidedFill.window` box by box, at the page's borders too."""
    from dualflow.pipeline import GuidedFill

    g = torch.Generator().manual_seed(5)
    fill = GuidedFill(torch.randn(1, 3, 12, 9, generator=g), torch.randn(1, 3, 12, 9, generator=g) * 0.1,
                      torch.rand(1, 1, 96, 72, generator=g), tone_radius=2)
    boxes = torch.tensor([[0, 0, 32, 32], [10, 17, 42, 49], [64, 40, 96, 72], [30, 0, 62, 32]])
    each = torch.cat([fill.window(tuple(b)) for b in boxes.tolist()])
    assert torch.allclose(fill.boxes(boxes), each, atol=1e-5)
