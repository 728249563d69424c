"""Print-scale pages: physical drawing sizes from a dpi, the page cache, the attention's working resolution and
the single-flow baselines behind the composite's post-processing."""

import warnings

import numpy as np
import pytest
import torch

from dualflow.data.datasets import SynthMangaDataset
from dualflow.data.synth import PrintScale, Screens, SynthManga
from tests.test_synth import _median_dark_run


def test_print_scale_gives_the_rulings_and_lettering_of_a_printed_page():
    for dpi in (200.0, 300.0, 600.0):
        scale = PrintScale.at_dpi(dpi)
        for seed in range(20):
            screens = Screens.draw(np.random.default_rng(seed), scale.pen)
            assert 50 <= dpi / screens.fine[0] <= 85  # fine screentone: 50-85 lines per inch at the page's dpi
        letter_mm = 5 * scale.letter / dpi * 25.4  # a lettering cell is 5 units
        assert 2.3 <= letter_mm <= 3.0, letter_mm  # tankōbon dialogue: about 7.5 pt


def test_print_scale_keeps_strokes_and_tones_when_the_page_grows():
    gen, scale = SynthManga(5), PrintScale.at_dpi()
    small = np.median([_median_dark_run(gen(i, (362, 256), scale).bw) for i in range(3)])
    large = np.median([_median_dark_run(gen(i, (724, 512), scale).bw) for i in range(3)])
    assert abs(large - small) <= 1  # a larger page is a larger physical page, not a drawing enlarged
    thumb = np.median([_median_dark_run(gen(i, (724, 512)).bw) for i in range(3)])
    assert thumb > large  # the thumbnail default enlarges the drawing with the page (scale 2 here)


def test_page_cache_returns_the_page_it_drew_and_redraws_a_damaged_file(tmp_path):
    kwargs = dict(n=3, size=(90, 64), seed=4, scale=PrintScale.at_dpi(150), cache=tmp_path)
    first = SynthMangaDataset(**kwargs)
    assert first.fill_cache(workers=2) == 3 and first.fill_cache(workers=2) == 0  # drawn once
    drawn = SynthManga(4)(1, (90, 64), PrintScale.at_dpi(150))
    cached = SynthMangaDataset(**kwargs).page(1)
    assert np.array_equal(cached.bw, drawn.bw) and np.array_equal(cached.labels, drawn.labels)
    assert np.abs(cached.color - drawn.color).max() <= 0.5 / 255 + 1e-6  # stored as bytes
    assert np.array_equal(first[1]["color"].numpy(), SynthMangaDataset(**kwargs)[1]["color"].numpy())
    other = SynthMangaDataset(**{**kwargs, "seed": 5})
    assert other.cache.folder != first.cache.folder  # seed, size, scale and generator version name the folder
    path = first.cache.path(2)
    path.write_bytes(b"not a page")
    with pytest.warns(UserWarning, match="unreadable cached page"):
        again = SynthMangaDataset(**kwargs).page(2)
    assert np.array_equal(again.bw, SynthManga(4)(2, (90, 64), PrintScale.at_dpi(150)).bw)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        SynthMangaDataset(**kwargs).page(2)  # the redrawn page replaced the damaged file


def test_attention_sees_the_page_at_its_working_resolution():
    from dualflow.models import AttentionNet
    from dualflow.pipeline import importance_tiled

    torch.manual_seed(0)
    net = AttentionNet(dim=16, depth=2, heads=2, window=4, page_scale=0.25).eval()
    bw = (torch.rand(1, 1, 362, 256) > 0.5).float()
    with torch.no_grad():
        imp = net.importance(bw)
        assert imp.shape[-2:] == (12, 8)  # ceil(362/4/8), 256/4/8
        pooled = torch.nn.functional.adaptive_avg_pool2d(bw, (90, 64))
        assert torch.allclose(imp, torch.sigmoid(net(pooled)))  # the area-downsampled page, not a crop or stride
        assert torch.allclose(importance_tiled(net, bw, tile=4096), imp)
    with pytest.raises(ValueError, match="page_scale"):
        AttentionNet(page_scale=0.0)


class _Grey(torch.nn.Module):
    """A 'net' that paints every pixel mid-grey with a strong red cast (normalised Lab)."""

    def forward(self, x):
        out = torch.zeros(x.shape[0], 3, *x.shape[-2:])
        out[:, 0], out[:, 1] = 0.5, 0.6
        return out


@pytest.mark.parametrize("working", [0, 32])
def test_single_flow_baselines_go_through_the_composites_post_processing(working):
    from dualflow.color import rgb_to_lab
    from dualflow.fusion import white_paper
    from dualflow.stages.baseline import SingleFlowColorizer

    page = SynthManga(3)(0, (128, 96))
    bw = torch.from_numpy(page.bw)[None]
    meta = {"working_size": working, "guide_radius": 2, "guide_eps": 1e-3, "tone_radius": 2,
            "trained_long_side": 128 if working else 0}
    out = SingleFlowColorizer(_Grey(), meta).colorize_page(bw)
    assert out["rgb"].shape == (3, 128, 96) and len(out["plan"]) == 0
    lab = rgb_to_lab(out["rgb"][None])[0]
    white = white_paper(bw) > 0.5
    assert white.any() and lab[0][white[0]].min() > 90  # paper stays white, as in the dual flow's output
    assert lab[1][~white[0]].mean() > 20  # elsewhere the net's red cast
