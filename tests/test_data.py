"""Datasets: odd image formats, corrupt files (skipped and counted, or strict), clear errors, aligned transforms,
mangafy."""

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow.data.datamodule import MangaDataModule, ResumableSampler
from dualflow.data.datasets import ColorFolderDataset, PairedFolderDataset, collate_skipping
from dualflow.data.io import ImageReadError, read_image
from dualflow.data.mangafy import mangafy
from dualflow.data.synth import SynthManga
from dualflow.data.transforms import apply_pair, geometry


def _pair_folder(root, n=3, size=(24, 32)):
    (root / "bw").mkdir(parents=True)
    (root / "color").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random(size) * 255).astype(np.uint8)).save(root / "bw" / f"p{i}.png")
        Image.fromarray((rng.random((*size, 3)) * 255).astype(np.uint8)).save(root / "color" / f"p{i}.png")
    return root


def test_odd_formats_are_converted_correctly(tmp_path):
    g16 = np.full((8, 8), 32768, np.uint16)
    Image.fromarray(g16).save(tmp_path / "g16.png")
    assert read_image(tmp_path / "g16.png", 1) == pytest.approx(np.full((8, 8), 0.5), abs=1e-3)
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0] = 255
    rgba[..., 3] = 0  # fully transparent red → white paper
    rgba[:4, :, 3] = 255  # opaque red top half
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    img = read_image(tmp_path / "rgba.png", 3)
    assert img[0, 0] == pytest.approx([1, 0, 0]) and img[7, 7] == pytest.approx([1, 1, 1])
    pal = Image.new("P", (8, 8))
    pal.putpalette([0, 0, 255] + [0] * 765)
    pal.save(tmp_path / "pal.png")
    assert read_image(tmp_path / "pal.png", 3)[0, 0] == pytest.approx([0, 0, 1])
    Image.fromarray(np.full((8, 8), 200, np.uint8)).save(tmp_path / "grey.jpg", quality=100)
    assert read_image(tmp_path / "grey.jpg", 3).shape == (8, 8, 3)
    Image.fromarray(np.full((8, 8, 3), 10, np.uint8)).save(tmp_path / "c.webp", lossless=True)
    assert read_image(tmp_path / "c.webp", 1) == pytest.approx(np.full((8, 8), 10 / 255), abs=1e-3)


def test_paired_folder_matches_stems_across_extensions(tmp_path):
    root = _pair_folder(tmp_path / "d")
    Image.open(root / "color" / "p1.png").save(root / "color" / "p1.webp", lossless=True)
    (root / "color" / "p1.png").unlink()
    ds = PairedFolderDataset(root)
    assert ds.stems == ["p0", "p1", "p2"]
    s = ds[1]
    assert s["bw"].shape == (1, 24, 32) and s["color"].shape == (3, 24, 32) and s["name"] == "p1"


def test_corrupt_file_is_skipped_with_warning_counted_and_strict_raises(tmp_path):
    root = _pair_folder(tmp_path / "d")
    (root / "bw" / "p1.png").write_bytes(b"not a png at all")
    ds = PairedFolderDataset(root)
    with pytest.warns(UserWarning, match="p1.png"):
        batch = collate_skipping([ds[i] for i in range(3)])
    assert batch["bw"].shape[0] == 2 and int(batch["skipped"]) == 1
    with pytest.raises(ImageReadError, match="p1.png"):
        PairedFolderDataset(root, strict=True)[1]
    (root / "bw" / "p2.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty"):
        PairedFolderDataset(root, strict=True)[2]


def test_clear_errors_for_missing_partner_size_mismatch_and_empty_folders(tmp_path):
    root = _pair_folder(tmp_path / "d")
    (root / "color" / "p2.png").unlink()
    with pytest.raises(FileNotFoundError, match="p2.png: no colour partner"):
        PairedFolderDataset(root)
    root = _pair_folder(tmp_path / "e")
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(root / "bw" / "p0.png")
    with pytest.raises(ValueError, match="size mismatch in pair 'p0'"):
        PairedFolderDataset(root)[0]
    (tmp_path / "empty").mkdir()
    with pytest.raises(FileNotFoundError, match="no images"):
        ColorFolderDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="folder not found"):
        PairedFolderDataset(tmp_path / "missing")


def test_color_folder_is_mangafied(tmp_path):
    (tmp_path / "c").mkdir()
    page = SynthManga(0)(1, 96)
    Image.fromarray((page.color * 255).astype(np.uint8)).save(tmp_path / "c" / "x.png")
    s = ColorFolderDataset(tmp_path / "c")[0]
    bw = s["bw"][0].numpy()
    assert ((bw > 0.2) & (bw < 0.8)).mean() < 0.02 and 0.02 < (bw < 0.5).mean() < 0.8


def test_mangafy_lines_on_edges_and_tone_follows_darkness():
    img = np.ones((64, 64, 3), np.float32)
    img[:, 32:] = 0.45  # a mid-dark block: an edge at x=32 and a toned area
    bw = mangafy(img)
    assert (bw[:, 30:35] < 0.5).mean() > 0.5  # line art along the edge
    assert (bw[:, :24] < 0.5).mean() < 0.01  # white stays paper
    assert 0.2 < (bw[:, 40:] < 0.5).mean() < 0.9  # tone: a screen, not solid
    assert ((bw > 0.2) & (bw < 0.8)).mean() == 0


def test_mangafy_draws_colour_edges_hatches_dark_tones_and_keeps_white_paper():
    from dualflow.data.mangafy import MangafyOptions

    img = np.ones((64, 96, 3), np.float32)
    red, green = np.float32([1.0, 0.55, 0.55]), np.float32([0.55, 0.8, 0.55])  # near-equal lightness
    img[:, 32:64], img[:, 64:] = red, green
    img[40:, :32] = 0.25  # dark: cross-hatched, not dotted
    with_chroma, lum_only = mangafy(img), mangafy(img, MangafyOptions(chroma_lines=0.0))
    assert (with_chroma[:20, 62:67] < 0.5).mean() > 0.5 > (lum_only[:20, 62:67] < 0.5).mean()
    assert (with_chroma[:30, :24] < 0.5).mean() == 0  # white stays paper
    dark = with_chroma[46:, 4:26] < 0.5
    assert 0.6 < dark.mean() < 0.98  # hatched: dark, yet with paper showing through the lines
    coarse = mangafy(img, MangafyOptions(period=6.0, angle=15.0))
    assert not np.array_equal(coarse[:, 34:60], with_chroma[:, 34:60])  # pitch and angle are knobs


def test_scan_degradations_are_seeded_and_keep_the_pair_aligned():
    from dualflow.data.mangafy import MangafyOptions, scan

    page = SynthManga(0)(0, 96)
    options = MangafyOptions(paper=0.2, blur=0.6, jpeg=60, rotate=2.0)
    bw1, c1 = scan(page.color, options, np.random.default_rng(5))
    bw2, c2 = scan(page.color, options, np.random.default_rng(5))
    assert np.array_equal(bw1, bw2) and np.array_equal(c1, c2)
    assert not np.allclose(c1, page.color)  # the colour page turned with the scan
    assert np.array_equal(mangafy(c1, MangafyOptions()) < 0.5, scan(c1, MangafyOptions(), None)[0] < 0.5)
    assert ((bw1 > 0.05) & (bw1 < 0.95)).mean() > 0.1  # greys of paper, blur and JPEG: a scan, not a bitmap


def test_color_folder_takes_the_mangafy_options_of_the_data_module(tmp_path):
    from dualflow.data.datamodule import MangaDataModule

    (tmp_path / "c").mkdir()
    for i in range(6):
        Image.fromarray((SynthManga(0)(i, 64).color * 255).astype(np.uint8)).save(tmp_path / "c" / f"{i}.png")
    plain = MangaDataModule(source="color", root=str(tmp_path / "c"), n_val=1, n_test=1, eval_size=64)
    scanned = MangaDataModule(source="color", root=str(tmp_path / "c"), n_val=1, n_test=1, eval_size=64,
                              mangafy_paper=0.3, mangafy_blur=0.8)
    for dm in (plain, scanned):
        dm.setup("fit")
    a, b = plain.val_set[0]["bw"].numpy(), scanned.val_set[0]["bw"].numpy()
    assert ((a > 0.05) & (a < 0.95)).mean() < 0.01 < ((b > 0.05) & (b < 0.95)).mean()


def test_transform_alignment_is_pixel_exact():
    h, w = 40, 56
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    color = np.stack([yy / h, xx / w, np.zeros_like(yy)], axis=2)
    bw = (yy * w + xx) / (h * w)
    labels = ((yy * w + xx) % 251).astype(np.uint8)
    tf = geometry((24, 24), hflip=True)
    flips = 0
    for seed in range(12):
        tf.set_random_seed(seed)
        b, c, m = apply_pair(tf, bw, color, labels)
        ys = np.rint(c[..., 0] * h).astype(int)
        xs = np.rint(c[..., 1] * w).astype(int)
        assert np.allclose(b, (ys * w + xs) / (h * w), atol=1e-5)
        assert np.array_equal(m, ((ys * w + xs) % 251).astype(np.uint8))
        flips += int(xs[0, 0] > xs[0, -1])
    assert 0 < flips < 12  # both flipped and unflipped crops were checked


def test_shrinking_keeps_screentone_density():
    page = SynthManga(0)(0, 256)
    tf = geometry(None, hflip=False, scale_range=(0.5, 0.5))
    b, _, _ = apply_pair(tf, page.bw, page.color, page.labels)
    assert b.shape == (128, 128)
    assert abs(float(b.mean()) - float(page.bw.mean())) < 0.01


def test_datamodule_splits_are_disjoint_and_deterministic():
    settings = dict(image_size=64, n_train=8, n_val=4, n_test=4, num_workers=0, batch_size=4)
    dm = MangaDataModule(**settings)
    dm.setup()
    # Disjoint by content, not by name: a page drawn from the same (seed, index) twice would pass a name check.
    pages = lambda loader: [c.numpy().tobytes() for b in loader for c in b["color"]]  # noqa: E731
    train, val, test = pages(dm.train_dataloader()), pages(dm.val_dataloader()), pages(dm.test_dataloader())
    assert (len(train), len(val), len(test)) == (8, 4, 4) and len(set(train) | set(val) | set(test)) == 16
    dm2 = MangaDataModule(**settings)
    dm2.setup()
    a, b = next(iter(dm.train_dataloader())), next(iter(dm2.train_dataloader()))
    assert a["name"] == b["name"] and torch.equal(a["bw"], b["bw"])


def test_resumable_sampler_restarts_mid_epoch_and_shards():
    s = ResumableSampler(10, seed=1, shuffle=True)
    full = list(s)
    s2 = ResumableSampler(10, seed=1, shuffle=True)
    s2.skip = 4
    assert list(s2) == full[4:]
    assert list(s) != full  # next epoch, new order
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(s) == 10


def test_folder_validation_crops_are_centred_and_stable(tmp_path):
    root = _pair_folder(tmp_path / "d", n=8, size=(40, 48))
    dm = MangaDataModule(source="paired", root=str(root), eval_size=16, n_val=2, n_test=2, num_workers=0,
                         batch_size=2)
    dm.setup()
    first = next(iter(dm.val_dataloader()))
    second = next(iter(dm.val_dataloader()))
    assert first["bw"].shape == (2, 1, 16, 16) and torch.equal(first["bw"], second["bw"])
    stem = first["name"][0]
    full = read_image(root / "bw" / f"{stem}.png", 1)
    assert torch.allclose(first["bw"][0, 0], torch.from_numpy(full[12:28, 16:32]))


def test_real_pages_are_mangafied_crops_of_packaged_photographs():
    from dualflow.data.real import REAL_IMAGES, real_pages

    pages = real_pages(48, crops_per_image=4)
    assert len(pages) == 4 * len(REAL_IMAGES) and pages[0]["name"] == "astronaut_0"
    crops = [p["color"] for p in pages[:4]]
    assert all(c.shape == (3, 48, 48) for c in crops) and not torch.equal(crops[0], crops[1])
    bw = torch.stack([p["bw"] for p in pages])
    assert set(bw.unique().tolist()) <= {0.0, 1.0} and 0.05 < (bw < 0.5).float().mean() < 0.8


def test_datamodule_chapters_draw_recurring_characters_in_every_split():
    dm = MangaDataModule(source="synth", image_size=64, crop_size=64, n_train=8, n_val=4, n_test=4, chapter=4,
                         num_workers=0, hflip=False)
    dm.setup("fit")
    dm.setup("test")
    for split, seed in ((dm.train_set, 0), (dm.val_set, 1_000_003), (dm.test_set, 2_000_003)):
        gen = SynthManga(seed)
        page = gen.chapter_page(1 if len(split) > 4 else 0, 2, 4, 64)
        index = 6 if len(split) > 4 else 2
        assert torch.equal(split[index]["color"], torch.from_numpy(page.color).permute(2, 0, 1))
    # A chapter's cast is drawn from (seed, chapter): the same in any process, another chapter's or seed's differs.
    assert SynthManga(0).cast(0) == SynthManga(0).cast(0) != SynthManga(0).cast(1)
    assert SynthManga(0).cast(0) != SynthManga(1).cast(0)
    with pytest.raises(ValueError, match="chapter"):
        MangaDataModule(source="synth", chapter=-1).setup("fit")


@pytest.mark.parametrize("source", ["synth", "paired"])
def test_the_sampler_shards_training_pages_over_ranks(tmp_path, monkeypatch, source):
    """Two ranks of one epoch see disjoint halves of the training pages that together are all of them."""
    root = str(_pair_folder(tmp_path / "d", n=12, size=(32, 32))) if source == "paired" else None
    dm = MangaDataModule(source=source, root=root, image_size=32, crop_size=32, n_train=8, n_val=2, n_test=2,
                         num_workers=0, batch_size=2)
    dm.setup("fit")
    seen = {}
    for rank in (0, 1):
        monkeypatch.setattr(ResumableSampler, "_rank_world", lambda self, rank=rank: (rank, 2))
        seen[rank] = [n for b in dm.train_dataloader() for n in b["name"]]
    assert len(seen[0]) == len(seen[1]) == 4 and not set(seen[0]) & set(seen[1])
    assert len(set(seen[0]) | set(seen[1])) == 8
