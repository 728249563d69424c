"""Fusion invariants: weights in range, identity when the flows agree, no step at patch borders."""

import torch

from dualflow.fusion import Fusion, feather_blend, harmonize, multiband_blend
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
        out = Fusion(blend=blend, postprocess=False)(patches, plan, fill, bw)
        assert torch.allclose(out.lab, fill, atol=1e-5)
        assert out.report["seam_disagreement"] < 1e-3


def test_blending_leaves_no_step_at_patch_borders():
    plan, fill, patches, bw = _setup(offset=0.2)
    out = Fusion(harmonize=False, postprocess=False)(patches, plan, fill, bw)
    diff = (out.lab - fill)[1]
    step_y = (diff[1:] - diff[:-1]).abs().max()
    step_x = (diff[:, 1:] - diff[:, :-1]).abs().max()
    assert diff.max() > 0.19  # the patch colour is there in the core
    # Smoothstep over a 12-px feather: at most 1.5/12 of the offset per pixel, never a jump.
    assert step_y < 0.2 * 0.15 and step_x < 0.2 * 0.15
    hard = torch.where(plan.coverage > 0, out.canvas, fill)  # pasting without feathering would jump by 0.2
    assert (hard[1, 1:] - hard[1, :-1]).abs().max() > 0.19


def test_multiband_reconstructs_exactly_and_weights_stay_in_range():
    plan, fill, patches, bw = _setup(offset=0.1)
    assert torch.allclose(multiband_blend(fill, fill, plan.coverage, 4), fill, atol=1e-6)
    assert torch.allclose(multiband_blend(fill, fill + 1, torch.ones_like(plan.coverage), 3), fill, atol=1e-6)
    blended = feather_blend(fill + 0.1, fill, plan.coverage)
    assert ((blended - fill) >= -1e-6).all() and ((blended - fill) <= 0.1 + 1e-6).all()


def test_harmonize_pulls_patch_chroma_to_the_fill_in_the_band():
    plan, fill, patches, bw = _setup(offset=0.2)
    moved = harmonize(patches, plan, fill, strength=1.0)
    band = crop(plan.transition, plan.boxes)
    before = ((patches - crop(fill, plan.boxes))[:, 1:] * band).abs().sum()
    after = ((moved - crop(fill, plan.boxes))[:, 1:] * band).abs().sum()
    assert after < 0.05 * before
    out = Fusion(coherence_threshold=1.0, postprocess=False)(patches, plan, fill, bw)
    assert out.report["reharmonized"] == 1.0  # disagreement above threshold triggers the strong pass


def test_postprocess_keeps_ink_dark_and_white_areas_white():
    plan, fill, patches, _ = _setup()
    bw = torch.ones(1, 96, 128)
    bw[:, :, 60:64] = 0  # an ink line
    out = Fusion(harmonize=False)(patches, plan, fill, bw)
    assert out.lab[0, :, 61:63].max() <= 0.35
    assert out.lab[0, :, :40].min() >= 0.95 and out.lab[1:, :, :40].abs().max() < 0.1


def test_striped_postprocess_equals_whole_page():
    from dualflow.data.synth import SynthManga
    from dualflow.fusion import in_stripes, postprocess

    page = SynthManga(2)(0, (300, 90))
    bw = torch.from_numpy(page.bw)[None]
    lab = torch.rand(3, 300, 90, generator=torch.Generator().manual_seed(0)) * 2 - 1
    whole = postprocess(lab, bw)
    striped = in_stripes(lambda a, b: postprocess(a, b), lab, bw, stripe=64, halo=16)
    assert torch.allclose(whole, striped, atol=1e-5)
