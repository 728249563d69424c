"""SynthManga: deterministic, manga-like B&W, sensible labels; the synth command writes identical files."""

import hashlib

import numpy as np

from dualflow.data.synth import CLASS_ID, CLASSES, STYLE, Screens, SynthManga, render_bw
from dualflow.data.synth_cli import main as synth_main


def test_same_seed_and_index_give_identical_pages_and_other_indices_differ():
    a, b = SynthManga(3)(7, 128), SynthManga(3)(7, 128)
    assert np.array_equal(a.bw, b.bw) and np.array_equal(a.color, b.color) and np.array_equal(a.labels, b.labels)
    c = SynthManga(3)(8, 128)
    assert not np.array_equal(a.color, c.color)
    assert not np.array_equal(a.color, SynthManga(4)(7, 128).color)


def test_bw_is_manga_not_grey_photo():
    pages = [SynthManga(0)(i, 256) for i in range(8)]
    for p in pages:
        mid = ((p.bw > 0.2) & (p.bw < 0.8)).mean()
        assert mid < 0.02, f"{mid:.3f} of pixels are mid-grey"
        assert 0.05 < (p.bw < 0.5).mean() < 0.7  # ink present, paper dominant
    sky = np.concatenate([p.bw[p.labels == CLASS_ID["sky"]] for p in pages])
    assert sky.size > 1000 and 0.02 < (sky < 0.5).mean() < 0.6  # sky is a dot screentone, not flat white or black


def test_screentone_density_follows_lightness_in_every_style():
    h = w = 96
    ink = np.zeros((h, w), bool)
    for name in ("dots", "coarse", "hatch", "cross"):
        style = np.full((h, w), STYLE[name], np.uint8)
        fractions = []
        for level in (0.9, 0.7, 0.5, 0.3):
            bw = render_bw(np.full((h, w, 3), level, np.float32), style, ink)
            fractions.append((bw < 0.5).mean())
            assert set(np.unique(bw)) <= {0.0, 1.0}
        assert fractions == sorted(fractions) and fractions[-1] - fractions[0] > 0.3, name
        # A mid tone is a texture (dots or lines): both ink and paper in every 8×8 tile.
        bw = render_bw(np.full((h, w, 3), 0.5, np.float32), style, ink)
        tiles = bw[:64, :64].reshape(8, 8, 8, 8).mean(axis=(1, 3))
        assert ((tiles > 0.1) & (tiles < 0.9)).all(), name
    flat = render_bw(np.full((h, w, 3), 0.5, np.float32), np.full((h, w), STYLE["flat"], np.uint8), ink)
    assert len(np.unique(flat)) == 1  # no tone: paper or solid black


def test_pages_use_several_screens_pitches_and_angles():
    a, b = render_bw(np.full((64, 64, 3), 0.5, np.float32), np.zeros((64, 64), np.uint8), np.zeros((64, 64), bool),
                     Screens(fine=(3.0, 45.0))), \
        render_bw(np.full((64, 64, 3), 0.5, np.float32), np.zeros((64, 64), np.uint8), np.zeros((64, 64), bool),
                  Screens(fine=(4.0, 30.0)))
    assert not np.array_equal(a, b)
    drawn = {Screens.draw(np.random.default_rng(i), 1.0) for i in range(20)}
    assert len(drawn) > 5


def test_layout_has_slanted_borders_bleeds_and_insets():
    from dualflow.data.synth_layout import panels

    slanted = bleed = inset = 0
    for i in range(60):
        ps = panels(np.random.default_rng(i), 362, 256, 6.0)
        for p in ps:
            ys, xs = sorted(c[0] for c in p.corners), sorted(c[1] for c in p.corners)
            slanted += (ys[1] - ys[0] > 1) or (xs[1] - xs[0] > 1)
            bleed += p.box[0] <= 0.5 or p.box[2] >= 361.5
        boxes = [p.box for p in ps]
        inset += any(a is not b and a[0] >= b[0] and a[1] >= b[1] and a[2] <= b[2] and a[3] <= b[3]
                     for a in boxes for b in boxes)
    assert slanted > 5 and bleed > 3 and inset > 3


def test_figures_have_parts_in_varied_poses_and_one_look_keeps_its_palette():
    from dualflow.data.synth_figures import random_look

    look = random_look(np.random.default_rng(3))
    pages = [SynthManga(2)(i, 256, cast=[look]) for i in range(12)]
    skin = np.concatenate([p.color[p.labels == CLASS_ID["skin"]] for p in pages])
    assert len(skin) > 2000
    # The look's skin is the most common skin colour (light, and shadow hue or time of day multiply it).
    lit = skin[np.abs(skin - np.asarray(look.skin)).max(1) < 0.02]
    assert len(lit) > 0.2 * len(skin)
    hair = [p.labels == CLASS_ID["hair"] for p in pages]
    eyes = [p.labels == CLASS_ID["eyes"] for p in pages]
    assert sum(h.any() for h in hair) >= 8 and sum(e.any() for e in eyes) >= 6
    # Heads at different sizes (close-ups, busts, full bodies): the hair areas span a wide range.
    areas = sorted(h.sum() for h in hair if h.any())
    assert areas[-1] > 5 * areas[0]


def test_label_coverage_detailed_and_flat():
    pages = [SynthManga(1)(i, 256) for i in range(24)]
    seen = set(np.unique(np.concatenate([p.labels.ravel() for p in pages])))
    assert seen == set(range(len(CLASSES)))
    detailed = np.mean([p.detailed.mean() for p in pages])
    assert 0.1 < detailed < 0.7


def test_non_square_pages():
    p = SynthManga(0)(0, (181, 97))
    assert p.bw.shape == (181, 97) and p.color.shape == (181, 97, 3) and p.labels.shape == (181, 97)


def _digest(folder):
    return {f.relative_to(folder).as_posix(): hashlib.sha256(f.read_bytes()).hexdigest()
            for f in sorted(folder.rglob("*.png"))}


def test_synth_command_writes_identical_files_for_same_seed(tmp_path):
    assert synth_main([str(tmp_path / "a"), "--n", "3", "--size", "96x64", "--seed", "5"]) == 0
    assert synth_main([str(tmp_path / "b"), "--n", "3", "--size", "96x64", "--seed", "5"]) == 0
    a, b = _digest(tmp_path / "a"), _digest(tmp_path / "b")
    assert a == b and {"bw/page_00000.png", "color/page_00002.png", "labels/page_00001.png", "preview.png"} <= set(a)
    from PIL import Image

    assert Image.open(tmp_path / "a" / "bw" / "page_00000.png").mode == "L"
    assert Image.open(tmp_path / "a" / "color" / "page_00000.png").size == (96, 64)


def _median_dark_run(bw: np.ndarray) -> float:
    """Median length of horizontal runs of dark pixels: the page's stroke and screentone-dot size."""
    dark = np.pad(bw < 0.5, ((0, 0), (1, 1)))
    edges = np.diff(dark.astype(np.int8), axis=1)
    starts, ends = np.nonzero(edges == 1), np.nonzero(edges == -1)
    return float(np.median(ends[1] - starts[1]))


def test_detail_scale_is_fixed_by_scale_not_by_page_size():
    gen = SynthManga(5)
    small = np.median([_median_dark_run(gen(i, 256).bw) for i in range(4)])
    enlarged = np.median([_median_dark_run(gen(i, 768).bw) for i in range(4)])
    fixed = np.median([_median_dark_run(gen(i, 768, scale=1.0).bw) for i in range(4)])
    assert enlarged >= 2 * small  # by default a larger page is a 256-px page drawn 3x larger
    assert abs(fixed - small) <= 1  # at scale 1 it keeps the details of a 256-px page
    assert np.array_equal(gen(0, 512).bw, gen(0, 512, scale=2.0).bw)


def test_shapes_off_the_page_are_empty_and_combine_with_shapes_on_it():
    from dualflow.data.draw import clip_box, ellipse, grid

    g = grid(40, 30)
    assert clip_box(50, 35, 60, 45, 40, 30) == (slice(40, 40), slice(30, 30))
    union = ellipse(g, 20, 25, 8, 8) | ellipse(g, 20, 45, 6, 6)  # the second lies right of the page
    assert union.m.shape == g[0][union.sl].shape and union.m.any()
    cut = union - ellipse(g, -20, -20, 5, 5)
    assert np.array_equal(cut.m, union.m)


def test_many_pages_of_every_size_draw_without_error():
    gen = SynthManga(11)
    for i in range(150):
        size = [(256, 256), (362, 256), (97, 181), (64, 64)][i % 4]
        page = gen(i, size)
        assert page.bw.shape == size and page.identity.shape == size


def test_synth_chapters_keep_their_cast_and_write_identity_maps(tmp_path):
    from PIL import Image

    assert synth_main([str(tmp_path), "--n", "6", "--size", "128", "--chapter", "3", "--seed", "2"]) == 0
    names = sorted(p.name for p in (tmp_path / "identity").glob("*.png"))
    assert names == [f"ch00{c}_p0{p}.png" for c in range(2) for p in range(3)]
    gen = SynthManga(2)
    assert gen.cast(0) == gen.cast(0) and gen.cast(0) != gen.cast(1)
    page = gen.chapter_page(1, 2, 3, 128)
    assert np.array_equal(np.asarray(Image.open(tmp_path / "identity" / "ch001_p02.png")), page.identity)
    # A character's pixels are its parts (skin, hair, eyes, clothes), never the background.
    owned = page.labels[page.identity > 0]
    figure_classes = {CLASS_ID[c] for c in ("skin", "hair", "eyes", "cloth_plain", "cloth_pattern")}
    assert owned.size > 0 and set(np.unique(owned)) <= figure_classes
