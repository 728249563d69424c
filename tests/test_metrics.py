"""Metrics: ΔE2000 against a reference, known answers for every metric, the backbone-weights policy, and
DDP synchronisation (2 gloo processes give the same figures as one process over all the data)."""

import os

import numpy as np
import pytest
import torch
import torch.multiprocessing as mp

from dualflow.color import lab_to_rgb
from dualflow.metrics.attention import AttentionAUROC, AttentionIoU, RankCorrelation
from dualflow.metrics.color import DeltaColorfulness, DeltaE2000, delta_e2000
from dualflow.metrics.edges import ChromaOnInk, EdgeF1
from dualflow.metrics.perceptual import LPIPS, BackboneWeightsMissing, hub_checkpoint
from dualflow.metrics.suite import build_suite, compute_logged
from dualflow.metrics.transition import SeamScore, TransitionDeltaE

# Sharma, Wu & Dalal (2005), Table 1: (Lab1, Lab2, ΔE00).
SHARMA = [
    ((50.0, 2.6772, -79.7751), (50.0, 0.0, -82.7485), 2.0425),
    ((50.0, 3.1571, -77.2803), (50.0, 0.0, -82.7485), 2.8615),
    ((50.0, 2.8361, -74.0200), (50.0, 0.0, -82.7485), 3.4412),
    ((50.0, 0.0, 0.0), (50.0, -1.0, 2.0), 2.3669),
    ((50.0, 2.5, 0.0), (73.0, 25.0, -18.0), 27.1492),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_delta_e2000_matches_published_pairs_and_skimage():
    from skimage.color import deltaE_ciede2000

    a = torch.tensor([p[0] for p in SHARMA], dtype=torch.float64)
    b = torch.tensor([p[1] for p in SHARMA], dtype=torch.float64)
    expected = torch.tensor([p[2] for p in SHARMA], dtype=torch.float64)
    assert torch.allclose(delta_e2000(a, b, dim=-1), expected, atol=1e-4)
    g = torch.Generator().manual_seed(0)
    lab1 = torch.stack([torch.rand(2000, generator=g, dtype=torch.float64) * 100,
                        *(torch.rand(2, 2000, generator=g, dtype=torch.float64) * 256 - 128)], dim=1)
    lab2 = lab1 + torch.randn(2000, 3, generator=g, dtype=torch.float64) * 8
    ref = deltaE_ciede2000(lab1.numpy(), lab2.numpy())
    assert np.allclose(delta_e2000(lab1, lab2, dim=-1).numpy(), ref, atol=1e-4)
    assert torch.allclose(delta_e2000(lab2, lab1, dim=-1), delta_e2000(lab1, lab2, dim=-1), atol=1e-8)


def _img(seed=0, b=2, h=32, w=32):
    return torch.rand(b, 3, h, w, generator=torch.Generator().manual_seed(seed))


def test_identical_images_give_perfect_scores():
    x = _img()
    suite = build_suite("patch", "val", lpips=True, allow_random_backbone=True)
    suite.update(preds=x, target=x)
    v = compute_logged(suite)
    assert v["val/color/delta_e2000"] == pytest.approx(0, abs=1e-3)
    assert v["val/color/ssim"] == pytest.approx(1, abs=1e-4)
    assert v["val/color/delta_cf"] == pytest.approx(0, abs=1e-4)
    assert v["val/global/lpips_randinit"] == pytest.approx(0, abs=1e-6)


def test_known_uniform_shift():
    from skimage.color import deltaE_ciede2000

    lab1, lab2 = torch.tensor([60.0, 20.0, -10.0]), torch.tensor([55.0, 25.0, 0.0])
    rgb1 = lab_to_rgb(lab1.view(1, 3, 1, 1).expand(1, 3, 8, 8))
    rgb2 = lab_to_rgb(lab2.view(1, 3, 1, 1).expand(1, 3, 8, 8))
    m = DeltaE2000()
    m.update(rgb1, rgb2)
    assert float(m.compute()) == pytest.approx(float(deltaE_ciede2000(lab1.numpy(), lab2.numpy())), abs=0.05)
    masked = DeltaE2000()
    mask = torch.zeros(1, 1, 8, 8)
    masked.update(rgb1, rgb1.clone(), mask=mask)
    assert torch.isnan(masked.compute())  # nothing selected: NaN, not a fake zero


def test_colourfulness_difference_signs():
    target = _img(1)
    grey = target.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    m = DeltaColorfulness()
    m.update(grey, target)
    assert float(m.compute()) < -10
    m.reset()
    boosted = ((target - 0.5) * 1.5 + 0.5).clamp(0, 1)
    m.update(boosted, target)
    assert float(m.compute()) > 5


def test_planted_seam_is_detected():
    h, w = 32, 48
    target = torch.zeros(1, 3, h, w)
    target[:, 0] = torch.linspace(0.2, 0.8, w)  # a smooth gradient, no edge at x=24
    target[:, 1] = 0.4
    seams = torch.zeros(1, 1, h, w)
    seams[..., 23:25] = 1
    m = SeamScore()
    m.update(target, target, seams)
    assert float(m.compute()) == pytest.approx(0, abs=1e-6)
    stepped = target.clone()
    stepped[:, :, :, 24:] = (stepped[:, :, :, 24:] + torch.tensor([0.0, 0.15, 0.0]).view(1, 3, 1, 1)).clamp(0, 1)
    m.reset()
    m.update(stepped, target, seams)
    assert float(m.compute()) > 5
    band = torch.zeros(1, 1, h, w)
    band[..., 20:28] = 1
    t = TransitionDeltaE()
    t.update(stepped, target, band)
    assert float(t.compute()) > 2  # half of the band is off


def _two_regions(bleed: bool):
    h, w = 32, 64
    bw = torch.ones(1, 1, h, w)
    bw[..., 31:33] = 0  # ink line between two regions
    color = torch.zeros(1, 3, h, w)
    color[:, :, :, :32] = torch.tensor([0.9, 0.2, 0.2]).view(3, 1, 1)
    color[:, :, :, 32:] = torch.tensor([0.2, 0.3, 0.9]).view(3, 1, 1)
    if bleed:  # colour changes gradually, across the regions instead of at the line
        t = torch.linspace(0, 1, w).view(1, 1, 1, w)
        color = (1 - t) * torch.tensor([0.9, 0.2, 0.2]).view(1, 3, 1, 1) + t * torch.tensor([0.2, 0.3, 0.9]).view(
            1, 3, 1, 1)
        return color.expand(1, 3, h, w).clone(), bw  # and the line itself is not respected
    color[..., 31:33] = 0.05
    return color, bw


def test_bleeding_across_lines_lowers_chroma_on_ink_and_edge_f1():
    sharp, bw = _two_regions(False)
    bled, _ = _two_regions(True)
    good, bad = ChromaOnInk(), ChromaOnInk()
    good.update(sharp, bw)
    bad.update(bled, bw)
    assert float(good.compute()) > 0.95 and float(bad.compute()) < 0.5
    f1_good, f1_flat = EdgeF1(), EdgeF1()
    f1_good.update(sharp, bw)
    f1_flat.update(torch.full_like(sharp, 0.5), bw)
    assert float(f1_good.compute()) > 0.8 and float(f1_flat.compute()) == 0


def test_attention_metrics_known_answers():
    detailed = torch.zeros(2, 1, 64, 64)
    detailed[:, :, :32] = 1
    perfect = torch.zeros(2, 1, 8, 8)
    perfect[:, :, :4] = 1
    auroc, iou, rank = AttentionAUROC(), AttentionIoU(), RankCorrelation()
    auroc.update(perfect, detailed)
    iou.update(perfect, detailed)
    ramp = torch.arange(64.0).view(1, 1, 8, 8).expand(2, 1, 8, 8)
    rank.update(ramp, ramp * 2 + 1)
    assert float(auroc.compute()) == pytest.approx(1.0, abs=1e-3)
    assert float(iou.compute()) == pytest.approx(1.0)
    assert float(rank.compute()) == pytest.approx(1.0)
    inverted = AttentionAUROC()
    inverted.update(1 - perfect, detailed)
    assert float(inverted.compute()) < 0.01


def test_backbone_policy_missing_weights_raise_clear_error(tmp_path, monkeypatch):
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "empty_home"))
    with pytest.raises(BackboneWeightsMissing, match="alexnet-owt-7be5be79.pth.*allow_random_backbone"):
        LPIPS()
    from dualflow.metrics.perceptual import FID

    with pytest.raises(BackboneWeightsMissing, match="weights-inception-2015-12-05-6726825d.pth"):
        FID()
    assert not LPIPS(allow_random_backbone=True).pretrained


def test_backbone_is_fetched_into_the_hub_cache_with_a_hash_check(tmp_path, monkeypatch):
    import hashlib

    from dualflow.metrics import perceptual
    from dualflow.metrics.perceptual import Backbone, fetch_backbone

    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    monkeypatch.delenv("DUALFLOW_BACKBONE_URL")
    served = tmp_path / "server"
    served.mkdir()
    payload = b"pretend weights" * 1000
    prefix = hashlib.sha256(payload).hexdigest()[:8]
    (served / f"tiny-{prefix}.pth").write_bytes(payload)
    (served / "tiny-deadbeef.pth").write_bytes(payload)
    monkeypatch.setitem(perceptual.BACKBONES, "lpips", Backbone(f"tiny-{prefix}.pth",
                                                                (served / f"tiny-{prefix}.pth").as_uri()))
    path = fetch_backbone("lpips")
    assert path == hub_checkpoint("lpips") and path.read_bytes() == payload
    assert [p.name for p in path.parent.iterdir()] == [path.name]  # no partial file left behind
    assert perceptual.backbone_is_pretrained("lpips", allow_random_backbone=False)  # now a cache hit

    # A file that is not the published one is refused and not kept.
    monkeypatch.setitem(perceptual.BACKBONES, "fid", Backbone("tiny-deadbeef.pth",
                                                              (served / "tiny-deadbeef.pth").as_uri()))
    with pytest.raises(BackboneWeightsMissing, match=f"SHA-256 {hashlib.sha256(payload).hexdigest()[:16]}"):
        fetch_backbone("fid")
    assert not hub_checkpoint("fid").exists() and len(list(path.parent.iterdir())) == 1

    # A mirror holds the files under their names; offline, the error says what to fetch and where to put it.
    (served / "tiny-deadbeef.pth").unlink()
    monkeypatch.setenv("DUALFLOW_BACKBONE_URL", served.as_uri())
    with pytest.raises(BackboneWeightsMissing) as err:
        fetch_backbone("fid")
    message = str(err.value)
    assert "tiny-deadbeef.pth" in message and (served / "tiny-deadbeef.pth").as_uri() in message
    assert str(hub_checkpoint("fid")) in message and "allow_random_backbone" in message
    assert perceptual.backbone_is_pretrained("fid", allow_random_backbone=True) is False  # opt-in: no fetch


def test_backbone_policy_loads_cached_weights(tmp_path, monkeypatch):
    import torch_fidelity.feature_extractor_inceptionv3 as fe
    from torchvision.models import alexnet

    monkeypatch.setenv("TORCH_HOME", str(tmp_path))
    ckpt = hub_checkpoint("lpips")
    ckpt.parent.mkdir(parents=True)
    saved = alexnet(weights=None).state_dict()
    torch.save(saved, ckpt)
    m = LPIPS()
    assert m.pretrained
    loaded = m.net.net.slice1[0].weight
    assert torch.equal(loaded, saved["features.0.weight"])  # the cached file, not random or downloaded
    # FID: a randomly initialised torch-fidelity Inception saved under the real file name.
    with monkeypatch.context() as patch:
        patch.setattr(fe.FeatureExtractorInceptionV3, "load_state_dict", lambda self, *a, **k: None)
        patch.setattr(fe, "load_state_dict_from_url", lambda *a, **k: {})
        state = fe.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    torch.save(state, hub_checkpoint("fid"))
    from dualflow.metrics.perceptual import FID

    fid = FID()
    assert fid.pretrained
    suite = build_suite("page", "test", lpips=True, fid=True)
    assert {"global__lpips", "global__fid"} <= set(suite.keys(keep_base=True))  # no _randinit suffix


def _ddp_worker(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    torch.save(_all_metrics(rank, world), f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def _all_metrics(rank: int = 0, world: int = 1) -> dict[str, float]:
    g = torch.Generator().manual_seed(0)
    preds, target = torch.rand(4, 3, 64, 64, generator=g), torch.rand(4, 3, 64, 64, generator=g)
    target[..., :32, :32] = 0.5  # a flat region, where the tone residue is measured
    bw = (torch.rand(4, 1, 64, 64, generator=g) > 0.3).float()
    masks = (torch.rand(4, 1, 64, 64, generator=g) > 0.5).float()
    imp, detailed = torch.rand(4, 1, 8, 8, generator=g), (torch.rand(4, 1, 64, 64, generator=g) > 0.5).float()
    page = build_suite("page", "val", lpips=True, allow_random_backbone=True)
    att = build_suite("attention", "val")
    for i in range(rank, 4, world):
        sl = slice(i, i + 1)
        page.update(preds=preds[sl], target=target[sl], bw=bw[sl], transition=masks[sl], seams=masks[sl],
                    detailed=detailed[sl])
        att.update(importance=imp[sl], detailed=detailed[sl], target=imp[sl] ** 2)
    return {k: float(v) for k, v in {**compute_logged(page), **compute_logged(att)}.items()}


def test_metrics_synchronise_across_two_processes(tmp_path):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_ddp_worker, args=(2, port, str(tmp_path)), nprocs=2, join=True)
    single = _all_metrics()
    for rank in range(2):
        synced = torch.load(tmp_path / f"rank{rank}.pt")
        assert synced.keys() == single.keys() and len(single) == 14
        for k, v in single.items():
            assert synced[k] == pytest.approx(v, rel=1e-4, abs=1e-5), k


def test_metrics_without_data_are_left_out():
    suite = build_suite("attention", "val")
    suite["attention__rank_corr"].update(torch.rand(1, 1, 4, 4), torch.rand(1, 1, 4, 4))
    assert set(compute_logged(suite)) == {"val/attention/rank_corr"}  # no labels: no AUROC / IoU


def test_ink_lines_keep_strokes_and_drop_screentone_of_any_density():
    from dualflow.lineart import ink_lines

    page = torch.ones(1, 1, 64, 64)
    page[..., 30:32, 4:60] = 0  # a 2-px horizontal stroke
    for i in range(40):  # a 2-px diagonal stroke (4-connected staircase)
        page[..., 10 + i, 8 + i:10 + i] = 0
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(64), indexing="ij")
    checker = ((yy + xx) % 2 == 0).float()[None, None]  # densest dot screen: dark pixels touch at corners only
    ink = ink_lines(page)[0, 0]
    assert ink[30:32, 8:56].all() and ink[20, 18:20].all()
    assert not (ink.bool() & (page[0, 0] >= 0.5)).any()  # an opening never adds pixels
    assert ink_lines(checker).sum() == 0
    dots = torch.ones(1, 1, 64, 64)
    dots[..., ::4, ::4] = dots[..., 1::4, 1::4] = 0  # light screentone
    assert ink_lines(dots).sum() == 0
    solid = torch.ones(1, 1, 64, 64)
    solid[..., 16:48, 16:48] = 0  # solid black: its border is a stroke, its inside is not
    ink = ink_lines(solid)[0, 0]
    assert ink[16, 20:44].all() and not ink[24:40, 24:40].any()


def test_strokes_on_paper_keep_outlines_and_drop_hatching_in_dark_tone():
    """Only strokes on paper stay at ink darkness: an outline on white and the border of a black fill are kept,
    the lines of a dense hatch field (mean grey under 0.35, a flat dark colour in the colour page) are not."""
    from dualflow.lineart import ink_lines, strokes_on_paper

    page = torch.ones(1, 1, 96, 96)
    page[..., 10:12, 4:44] = 0  # an outline on paper
    page[..., 56:88, 4:36] = 0  # a black fill: its border is a stroke on paper
    page[..., 20:88, 56:92] = 0.0
    page[..., 20:88:4, 56:92] = 1  # hatching: 3-px dark lines, 1-px light gaps (mean 0.25)
    ink, kept = ink_lines(page)[0, 0], strokes_on_paper(page)[0, 0]
    assert kept[10:12, 8:40].all() and kept[56, 8:32].all()
    assert ink[40:70, 64:84].sum() > 200 and kept[40:70, 64:84].sum() == 0
    assert not (kept.bool() & ~ink.bool()).any()  # a subset of the line art


def test_outlines_drop_hatching_on_paper_and_keep_outlines_beside_it():
    """Hatching on paper (a mid tone drawn as parallel strokes, SynthManga's renderer: flat colour in the colour
    page) is not line art to keep; an outline on paper, a box with its corners and an outline along the
    hatched field's edge are."""
    from dualflow.data.synth import STYLE, Screens, screen_tone
    from dualflow.lineart import ink_lines, outlines

    dark = np.zeros((96, 128), np.float32)
    dark[20:90, 72:124] = 0.45
    hatch = screen_tone(dark, np.full(dark.shape, STYLE["hatch"], np.uint8), Screens(hatch=(4.0, 45.0)))
    page = torch.from_numpy(hatch)[None, None]
    page[..., 10:12, 4:60] = 0  # an outline on paper
    page[..., 30:70, 8:10] = page[..., 30:70, 40:42] = 0  # a box: two sides…
    page[..., 30:32, 8:42] = page[..., 68:70, 8:42] = 0  # …top and bottom, with corners
    page[..., 20:90, 68:70] = 0  # an outline along the hatched field's left edge
    ink, kept = ink_lines(page)[0, 0], outlines(page)[0, 0]
    assert kept[10:12, 8:56].all() and kept[30:70, 8:10].all() and kept[30:32, 8:42].all()
    assert kept[24:86, 68].float().mean() > 0.9
    assert ink[30:80, 84:120].sum() > 500 and kept[30:80, 84:120].sum() < 0.05 * ink[30:80, 84:120].sum()
    assert not (kept.bool() & ~ink.bool()).any()  # a subset of the line art


def test_tone_residue_known_answers():
    from dualflow.metrics.color import ToneResidue, flat_mask

    target = torch.full((1, 3, 40, 40), 0.6)
    target[..., 20:, :] = 0.2  # one lightness edge across the page, between rows 19 and 20
    flat = flat_mask(target)
    assert flat[0, 0, 5, 5] == 1 and flat[0, 0, 20, 5] == 0 and flat[0, 0, 15, 5] == 1 and flat[0, 0, 16, 5] == 0
    clean = ToneResidue()
    clean.update(target.clone(), target)  # flat colour where the page is flat: no residue
    assert float(clean.compute()) == pytest.approx(0.0, abs=1e-3)
    dots = target.clone()
    dots[..., ::2, ::2] = 0.0  # a dot screentone over the flat fills
    dotted = ToneResidue()
    dotted.update(dots, target)
    assert float(dotted.compute()) > 10
    # Texture where the colour page has an edge does not count: only flat regions are scored.
    edge_only = target.clone()
    edge_only[..., 18:22, ::2] = 1.0  # texture within 2 px of the edge (the local mean reaches 2 px)
    near_edge = ToneResidue()
    near_edge.update(edge_only, target)
    assert float(near_edge.compute()) == pytest.approx(0.0, abs=1e-3)


def test_chapter_consistency_known_answers():
    from dualflow.color import rgb_to_lab
    from dualflow.metrics.color import delta_e2000
    from dualflow.metrics.consistency import ChapterConsistency

    def page(hair_rgb, skin_rgb=(0.9, 0.75, 0.6)):
        rgb = torch.ones(1, 3, 16, 16)
        parts = torch.zeros(1, 1, 16, 16, dtype=torch.long)  # part 0 (hair) on top, part 1 (skin) below
        identity = torch.zeros(1, 1, 16, 16, dtype=torch.long)
        parts[..., 8:, :] = 1
        identity[..., :, :12] = 1  # character 1: the left 12 columns; the rest belongs to nobody
        rgb[0, :, :8] = torch.tensor(hair_rgb).view(3, 1, 1)
        rgb[0, :, 8:] = torch.tensor(skin_rgb).view(3, 1, 1)
        return rgb, identity, parts

    same = ChapterConsistency(2, min_pixels=10)
    for _ in range(3):
        same.update(*page((0.8, 0.2, 0.2)), chapter=torch.tensor([0]))
    assert same.compute().item() == pytest.approx(0.0, abs=1e-6)  # identical colours → 0

    red, blue = (0.8, 0.2, 0.2), (0.2, 0.2, 0.8)
    changed = ChapterConsistency(2, min_pixels=10)
    changed.update(*page(red), chapter=torch.tensor([4]))
    changed.update(*page(blue), chapter=torch.tensor([4]))
    lab = rgb_to_lab(torch.tensor([red, blue]).view(2, 3, 1, 1))
    hair_change = delta_e2000(lab[0], lab[1]).item()
    # Two groups (hair changed, skin the same), averaged: half the hair's ΔE2000.
    assert changed.compute().item() == pytest.approx(hair_change / 2, rel=1e-4)

    apart = ChapterConsistency(2, min_pixels=10)  # the same character id in two chapters is not compared
    apart.update(*page(red), chapter=torch.tensor([0]))
    apart.update(*page(blue), chapter=torch.tensor([1]))
    assert torch.isnan(apart.compute())
    few = ChapterConsistency(2, min_pixels=200)  # parts under min_pixels are not measured
    few.update(*page(red), chapter=torch.tensor([0]))
    few.update(*page(blue), chapter=torch.tensor([0]))
    assert torch.isnan(few.compute())


def test_chapter_parts_come_from_the_generators_labels_and_other_classes_are_not_scored():
    """SynthManga's labels are uint8: the part map must mark every other class of a character as no part (-1),
    not as a part of its own (a -1 in uint8 is 255, which once made the rest of each character a fourth part)."""
    from dualflow.data.palette import CLASS_ID, part_ids
    from dualflow.metrics.consistency import ChapterConsistency

    labels = np.full((1, 1, 16, 16), CLASS_ID["eyes"], dtype=np.uint8)
    labels[..., :8, :] = CLASS_ID["hair"]
    parts = torch.from_numpy(part_ids(labels))
    assert parts.dtype == torch.int64 and set(parts.unique().tolist()) == {-1, 0}
    identity = torch.ones(1, 1, 16, 16, dtype=torch.uint8)
    metric = ChapterConsistency(3, min_pixels=10)
    for eyes in ((0.1, 0.2, 0.9), (0.9, 0.2, 0.1)):  # the eyes change colour, the hair does not
        rgb = torch.ones(1, 3, 16, 16) * 0.5
        rgb[0, :, 8:] = torch.tensor(eyes).view(3, 1, 1)
        metric.update(rgb, identity=identity, parts=parts, chapter=torch.tensor([0]))
    assert metric.compute().item() == pytest.approx(0.0, abs=1e-6)


def test_a_suite_sharing_its_lab_conversions_scores_as_each_metric_alone():
    from dualflow.metrics import color
    from dualflow.metrics.suite import build_suite, compute_logged, update_suite

    g = torch.Generator().manual_seed(3)
    preds, target = torch.rand(2, 3, 40, 48, generator=g), torch.rand(2, 3, 40, 48, generator=g)
    inputs = {"target": target, "bw": (torch.rand(2, 1, 40, 48, generator=g) > 0.5).float(),
              "transition": (torch.rand(2, 1, 40, 48, generator=g) > 0.7).float(),
              "seams": (torch.rand(2, 1, 40, 48, generator=g) > 0.8).float(),
              "detailed": (torch.rand(2, 1, 40, 48, generator=g) > 0.5).float()}
    shared = build_suite("page", "t", lpips=False)
    update_suite(shared, preds=preds, **inputs)
    assert color._shared is None  # nothing outlives the update
    alone = build_suite("page", "t", lpips=False)
    for metric in alone.values():  # one at a time, outside any shared conversions
        metric.update(**metric._filter_kwargs(preds=preds, **inputs))
    got, want = compute_logged(shared), compute_logged(alone)
    assert got.keys() == want.keys()
    for key in want:
        assert torch.allclose(got[key], want[key], atol=1e-5, equal_nan=True), key
    # A second pair in the same suite must not reuse the first pair's conversions.
    other = torch.rand(2, 3, 40, 48, generator=g)
    update_suite(shared, preds=other, **inputs)
    de = color.delta_e2000(color.rgb_to_lab(other), color.rgb_to_lab(target)).mean()
    first = color.delta_e2000(color.rgb_to_lab(preds), color.rgb_to_lab(target)).mean()
    assert torch.isclose(compute_logged(shared)["t/color/delta_e2000"], (de + first) / 2, atol=1e-4)
