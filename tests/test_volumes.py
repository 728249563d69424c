"""Volumes (.cbz in, .cbz out) and layered output: reading order, skipped entries, a bad page, resuming, bad
archives refused with nothing written, and layers checked by reading the files back."""

import io
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow import volumes
from dualflow.data.synth import SynthManga
from dualflow.inference import colorize, load_colorizer
from dualflow.layers import LAYER_NAMES, fill_under_ink, layer_paths
from dualflow.volumes import ArchiveError, natural_key, open_volume


def _png(seed: int, size=(96, 72)) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((SynthManga(seed)(0, size).bw * 255).astype(np.uint8)).save(buf, "PNG")
    return buf.getvalue()


def _volume(path: Path, entries: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for name, data in entries.items():
            z.writestr(name, data)
    return path


@pytest.fixture(scope="module")
def model(tiny_experiment):
    return load_colorizer("tiny", str(tiny_experiment), device="cpu")


def test_reading_order_is_natural():
    names = ["ch10/p1.png", "ch2/p10.png", "ch2/p2.png", "Ch2/p3.png", "ch1/p1.png"]
    assert sorted(names, key=natural_key) == ["ch1/p1.png", "ch2/p2.png", "Ch2/p3.png", "ch2/p10.png", "ch10/p1.png"]


def test_volume_in_volume_out(model, tmp_path):
    """Pages in reading order from nested folders, the same names (as PNG) out, non-images named and left out,
    a damaged page reported while the rest are written; --skip_existing then colours only what is missing."""
    src = _volume(tmp_path / "vol 1.cbz", {"ComicInfo.xml": b"<ComicInfo/>", "ch2/p10.jpg": _png(1),
                                          "ch2/p2.png": _png(2), "ch1/p1.png": _png(3), "ch1/": b"",
                                          "ch2/p3.png": b"\x89PNG\r\n\x1a\n broken"})
    out = tmp_path / "out"
    report = colorize([src], out, model=model, progress=False)
    assert [Path(e).name for e in report.skipped] == ["ComicInfo.xml: not an image by its extension, left out of the "
                                                      "volume"]
    assert len(report.errors) == 1 and "vol 1.cbz/ch2/p3.png" in report.errors[0]
    assert report.volumes == [out / "vol 1.cbz"]
    with zipfile.ZipFile(out / "vol 1.cbz") as z:
        assert z.namelist() == ["ch1/p1.png", "ch2/p2.png", "ch2/p10.png"]
        page = Image.open(io.BytesIO(z.read("ch2/p10.png")))
        assert page.size == (72, 96) and page.mode == "RGB"
    assert (out / ".vol 1.cbz.pages").is_dir()  # kept: a page failed, so a rerun can resume
    repaired = _volume(tmp_path / "vol 1.cbz", {"ch2/p10.jpg": _png(1), "ch2/p2.png": _png(2),
                                               "ch1/p1.png": _png(3), "ch2/p3.png": _png(4)})
    again = colorize([repaired], out, model=model, progress=False, skip_existing=True)
    assert len(again.written) == 1 and len(again.skipped) == 3 and not again.errors
    with zipfile.ZipFile(out / "vol 1.cbz") as z:
        assert z.namelist() == ["ch1/p1.png", "ch2/p2.png", "ch2/p3.png", "ch2/p10.png"]
    assert not (out / ".vol 1.cbz.pages").exists()
    done = colorize([repaired], out, model=model, progress=False, skip_existing=True)
    assert not done.written and len(done.skipped) == 4
    # A finished volume's pages are named with the .cbz that holds them (its staging folder is gone).
    assert all(line.endswith(f"{out / 'vol 1.cbz'} exists (--skip_existing)") and ".pages" not in line
               for line in done.skipped), done.skipped


def test_zip_volumes_held_in_folders_come_out_as_cbz_in_the_mirrored_folder(model, tmp_path):
    shelf = tmp_path / "shelf"
    (shelf / "series").mkdir(parents=True)
    _volume(shelf / "series" / "vol 2.zip", {"p2.png": _png(2), "p1.png": _png(1)})
    Image.open(io.BytesIO(_png(3))).save(shelf / "cover.png")
    report = colorize([shelf], tmp_path / "out", model=model, progress=False)
    assert not report.errors and report.volumes == [tmp_path / "out" / "series" / "vol 2.cbz"]
    with zipfile.ZipFile(report.volumes[0]) as z:
        assert z.namelist() == ["p1.png", "p2.png"]
    assert (tmp_path / "out" / "cover.png").is_file()  # the loose page beside it, as ever


def _encrypted(path: Path) -> Path:
    _volume(path, {"p1.png": _png(1)})
    data = bytearray(path.read_bytes())
    for sig in (b"PK\x03\x04", b"PK\x01\x02"):  # set bit 0 (encrypted) of the general purpose flags
        at = data.find(sig)
        flags = at + (6 if sig == b"PK\x03\x04" else 8)
        data[flags] |= 0x1
    path.write_bytes(bytes(data))
    return path


@pytest.mark.parametrize("kind, message", [
    ("truncated", "not a readable zip archive"),
    ("traversal", "points outside"),
    ("absolute", "points outside"),
    ("drive", "points outside"),
    ("backslash", "points outside"),
    ("nopages", "no pages"),
    ("bomb", "zip bomb"),
    ("encrypted", "encrypted"),
    ("duplicate", "appears 2 times"),
])
def test_bad_archives_are_refused_and_nothing_is_written(model, tmp_path, monkeypatch, kind, message):
    monkeypatch.setattr(volumes, "BOMB_BYTES", 1 << 20)
    src = tmp_path / "in" / f"{kind}.cbz"
    src.parent.mkdir()
    if kind == "truncated":
        full = _volume(tmp_path / "full.cbz", {"p1.png": _png(1), "p2.png": _png(2)}).read_bytes()
        src.write_bytes(full[: len(full) // 2])
    elif kind == "traversal":
        _volume(src, {"p1.png": _png(1), "../x.png": _png(2)})
    elif kind == "absolute":
        _volume(src, {"/tmp/x.png": _png(2)})
    elif kind == "drive":  # a Windows drive-relative name
        _volume(src, {"p1.png": _png(1), "C:x.png": _png(2)})
    elif kind == "backslash":  # a Windows parent reference
        _volume(src, {"p1.png": _png(1), "..\\x.png": _png(2)})
    elif kind == "nopages":
        _volume(src, {"notes.txt": b"no pages here", "ch1/": b""})
    elif kind == "bomb":
        _volume(src, {"p1.png": _png(1), "p2.bmp": b"\0" * (2 << 20)})
    elif kind == "encrypted":
        _encrypted(src)
    else:
        with pytest.warns(UserWarning, match="Duplicate name"), zipfile.ZipFile(src, "w") as z:
            z.writestr("p1.png", _png(1))
            z.writestr("p1.png", _png(2))
    with pytest.raises(ArchiveError, match=message):
        open_volume(src, tmp_path / "out")
    report = colorize([src], tmp_path / "out", model=model, progress=False)
    assert len(report.errors) == 1 and str(src) in report.errors[0] and message in report.errors[0]
    assert not report.written and not (tmp_path / "out").exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(["in"] + (["full.cbz"] if kind == "truncated" else []))


def test_fill_under_ink_keeps_paper_and_fills_from_around():
    rgb = torch.zeros(3, 40, 60)
    rgb[0, :, :30], rgb[2, :, 30:] = 1.0, 1.0  # red left half, blue right half
    known = torch.ones(1, 40, 60)
    known[:, 10:30, 5:15] = 0  # a hole inside the red
    known[:, :, 28:33] = 0  # a stroke on the border
    filled = fill_under_ink(rgb * known, known)
    assert torch.equal(filled[:, known[0] > 0], rgb[:, known[0] > 0])
    assert float((filled[:, 12:28, 7:13] - rgb[:, 12:28, 7:13]).abs().max()) < 1e-5  # red all around
    border = filled[:, :, 28:33]
    assert float(border[1].abs().max()) < 1e-5 and float((border[0] + border[2] - 1).abs().max()) < 1e-4


def test_layers_read_back(model, tmp_path):
    """--layers: flats equal the page away from the ink and carry no ink; the line art is black with alpha
    1 − bw; the PSD holds the named layers in order, the coloured page hidden."""
    from psd_tools import PSDImage

    bw = SynthManga(7)(0, (120, 88)).bw
    (tmp_path / "in").mkdir()
    Image.fromarray((bw * 255).astype(np.uint8)).save(tmp_path / "in" / "page.png")
    report = colorize([tmp_path / "in"], tmp_path / "out", model=model, progress=False, layers=True)
    assert not report.errors
    out = tmp_path / "out" / "page.png"
    paths = layer_paths(out)
    page = np.asarray(Image.open(out), dtype=np.int16)
    flat = np.asarray(Image.open(paths["flats"]), dtype=np.int16)
    lines = np.asarray(Image.open(paths["lines"]))
    read_bw = np.asarray(Image.open(tmp_path / "in" / "page.png"), dtype=np.float32) / 255
    paper = read_bw >= 0.5
    assert np.abs(flat[paper] - page[paper]).max() <= 1
    ink = read_bw < 0.1
    assert flat[ink].mean() > page[ink].mean() + 20  # the ink is not in the flats
    assert lines.shape == (*bw.shape, 4) and lines[..., :3].max() == 0
    assert np.abs(lines[..., 3] / 255 - (1 - read_bw)).max() <= 1 / 255
    psd = PSDImage.open(paths["psd"])
    assert [layer.name for layer in psd] == list(LAYER_NAMES)
    assert [layer.visible for layer in psd] == [True, True, False]
    assert np.array_equal(np.asarray(psd[1].topil())[..., 3], lines[..., 3])
    assert np.abs(np.asarray(psd[2].topil().convert("RGB"), dtype=np.int16) - page).max() == 0
    assert np.abs(np.asarray(psd[0].topil().convert("RGB"), dtype=np.int16) - flat).max() == 0


def _hint_layer(size, box, colour) -> bytes:
    rgba = np.zeros((*size, 4), np.uint8)
    rgba[box] = (*colour, 255)
    buf = io.BytesIO()
    Image.fromarray(rgba, "RGBA").save(buf, "PNG")
    return buf.getvalue()


def test_a_volumes_hints_come_from_the_archive_or_the_volume_hints_folder(model, tmp_path):
    box = (slice(40, 46), slice(30, 36))
    pages = {"ch1/p1.png": _png(1), "ch1/p2.png": _png(2), "ch1/p3.png": _png(3), "ch1/p4.png": _png(4)}
    plain = colorize([_volume(tmp_path / "plain.cbz", pages)], tmp_path / "plain", model=model, progress=False)
    assert not plain.errors
    src = _volume(tmp_path / "vol.cbz", {**pages, "ch1/p1_hints.png": _hint_layer((96, 72), box, (255, 0, 0)),
                                        "ch1/p4_hints.json": b'[{"x": 1}]'})
    (tmp_path / "vol_hints").mkdir()
    (tmp_path / "vol_hints" / "p2_hints.json").write_text('[{"x": 32, "y": 42, "colour": "#0000ff", "radius": 3}]')
    report = colorize([src], tmp_path / "out", model=model, progress=False)
    assert len(report.errors) == 1 and "vol.cbz/ch1/p4_hints.json: point 0" in report.errors[0]  # bad: its page
    with zipfile.ZipFile(tmp_path / "out" / "vol.cbz") as z, zipfile.ZipFile(tmp_path / "plain" / "plain.cbz") as p:
        assert z.namelist() == ["ch1/p1.png", "ch1/p2.png", "ch1/p3.png"]  # hint entries are not pages

        def page(archive, name):
            return np.asarray(Image.open(io.BytesIO(archive.read(name))), np.float32)[box].mean((0, 1)) / 255

        red, blue = page(z, "ch1/p1.png") - page(p, "ch1/p1.png"), page(z, "ch1/p2.png") - page(p, "ch1/p2.png")
        assert red[0] - red[1:].mean() > 0.05 and blue[2] - blue[:2].mean() > 0.05, (red, blue)  # its own hint
        assert np.array_equal(np.asarray(Image.open(io.BytesIO(z.read("ch1/p3.png")))),
                              np.asarray(Image.open(io.BytesIO(p.read("ch1/p3.png")))))  # no hints: as before
