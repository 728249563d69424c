"""Batch colouring that no single file can break: a hostile folder, and a killed batch resumed."""

import os
import signal
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualflow.data.io import ImageReadError, read_image
from dualflow.data.synth import SynthManga
from dualflow.inference import main

REPO = Path(__file__).resolve().parents[1]


def _bw(h: int, w: int, seed: int = 0) -> np.ndarray:
    return (SynthManga(seed)(0, (max(h, 16), max(w, 16))).bw[:h, :w] * 255).astype(np.uint8)


def _bomb(path: Path, side: int = 40000) -> None:
    """A valid little PNG whose header claims side×side pixels (a decompression bomb of ~100 bytes)."""
    raw = zlib.compress(b"\x00" * 2)
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
    ihdr = struct.pack(">IIBBBBB", side, side, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", raw) + chunk(b"IEND", b""))


def _hostile_folder(root: Path) -> dict[str, tuple[int, int]]:
    """Good pages (output name → (W, H)) among files that must each fail by name without stopping the batch."""
    good: dict[str, tuple[int, int]] = {}

    def save(rel: str, img: Image.Image, out: str | None = None, **kw) -> None:
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        img.save(path, **kw)
        good[out or str(Path(rel).with_suffix(".png"))] = img.size

    page = Image.fromarray(_bw(120, 90))
    save("plain.png", page)
    save("palette.png", page.convert("P"))
    save("onebit.png", page.convert("1"))
    save("sixteen.png", Image.fromarray(np.asarray(page, np.uint16) * 257).convert("I;16"))
    save("la.png", Image.merge("LA", (page, Image.new("L", page.size, 255))))
    save("cmyk.jpg", page.convert("CMYK"), quality=95)
    save("lossy.webp", page)
    save("old.bmp", page)
    save("one pixel.png", Image.new("L", (1, 1), 255))
    save("strip.png", Image.fromarray(_bw(1400, 97, seed=3)))
    save("ページ 1.png", page)
    save("vol 1/ch 2/deep.tif", page)
    save("x.png/inside.png", page)  # a folder named like an image, holding a page
    frames = [Image.fromarray(_bw(100 + 10 * i, 70, seed=i)) for i in range(3)]
    frames[0].save(root / "scan.tiff", save_all=True, append_images=frames[1:])
    for i, f in enumerate(frames):
        good[f"scan_p{i + 1:03d}.png"] = f.size
    gif = [Image.fromarray(_bw(60, 50, seed=7)).convert("P"), Image.new("P", (50, 60), 3)]
    gif[0].save(root / "anim.gif", save_all=True, append_images=gif[1:])
    good["anim.png"] = (50, 60)
    # Bad files, each to be named with its reason.
    _bomb(root / "bomb.png")
    full = (root / "plain.png").read_bytes()
    (root / "truncated.png").write_bytes(full[: len(full) // 2])
    (root / "empty.png").write_bytes(b"")
    (root / "text.png").write_text("this is not a picture")
    (root / "readme.txt").write_text("skipped for its extension")
    return good


def test_a_hostile_folder_never_stops_the_batch(tiny_experiment, tmp_path, capsys):
    root, out = tmp_path / "in", tmp_path / "out"
    good = _hostile_folder(root)
    code = main([str(root), "--out", str(out), "--experiment", "tiny", "--runs_dir", str(tiny_experiment),
                 "--device", "cpu"])
    captured = capsys.readouterr()
    assert code == 1  # some pages failed
    for rel, size in good.items():
        img = Image.open(out / rel)
        assert img.size == size and img.mode == "RGB", rel
    written = {str(p.relative_to(out)) for p in out.rglob("*.png") if p.is_file()}
    assert written == set(good)
    errors = [line for line in captured.err.splitlines() if line.startswith("error:")]
    for bad, reason in (("bomb.png", "40000x40000"), ("truncated.png", "not a readable image"),
                        ("empty.png", "empty file"), ("text.png", "not a readable image")):
        assert any(bad in line and reason in line for line in errors), (bad, errors)
    assert len(errors) == 4
    assert any("readme.txt" in line and "extension" in line for line in captured.err.splitlines())
    assert "Traceback" not in captured.err + captured.out
    assert f"wrote {len(good)} page(s)" in captured.out and "4 failed; 1 skipped" in captured.out


def test_page_size_limit_is_a_choice_and_applies_to_training_data(tmp_path):
    _bomb(tmp_path / "bomb.png", side=3000)
    with pytest.raises(ImageReadError, match="9 MP is over the page limit of 5 MP"):
        read_image(tmp_path / "bomb.png", 1, max_pixels=5_000_000)
    Image.fromarray(_bw(40, 30)).save(tmp_path / "ok.png")
    assert read_image(tmp_path / "ok.png", 1, max_pixels=1200).shape == (40, 30)
    with pytest.raises(ImageReadError, match="over the page limit"):
        read_image(tmp_path / "ok.png", 1, max_pixels=1199)
    from dualflow.data.datasets import ColorFolderDataset, collate_skipping

    color = tmp_path / "color"
    color.mkdir()
    Image.fromarray(np.zeros((40, 30, 3), np.uint8)).save(color / "small.png")
    Image.fromarray(np.zeros((400, 300, 3), np.uint8)).save(color / "large.png")
    data = ColorFolderDataset(color, max_pixels=10_000)
    with pytest.warns(UserWarning, match="large.png.*over the page limit"):
        batch = collate_skipping([data[i] for i in range(len(data))])
    assert batch["bw"].shape[0] == 1 and int(batch["skipped"]) == 1


def test_a_killed_batch_resumes_with_skip_existing(tiny_experiment, tmp_path, capsys):
    pages = tmp_path / "pages"
    pages.mkdir()
    gen = SynthManga(5)
    n = 30
    for i in range(n):
        Image.fromarray((gen(i, (724, 512)).bw * 255).astype(np.uint8)).save(pages / f"p{i:02d}.png")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "dualflow", "colorize", str(pages), "--out", str(out), "--experiment", "tiny",
           "--runs_dir", str(tiny_experiment), "--device", "cpu"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env={**os.environ, "PYTHONUNBUFFERED": "1"})
    deadline = time.monotonic() + 240
    while len(list(out.glob("p*.png"))) < 3 and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = sorted(out.glob("p*.png"))
    assert 3 <= len(done) < n, "the batch should have been killed mid-way"
    for p in done:  # whatever a kill interrupts, no truncated PNG under a final name
        Image.open(p).load()
    before = {p: p.stat().st_mtime_ns for p in done}
    capsys.readouterr()
    code = main([str(pages), "--out", str(out), "--experiment", "tiny", "--runs_dir", str(tiny_experiment),
                 "--device", "cpu", "--skip_existing"])
    summary = capsys.readouterr().out
    assert code == 0
    assert f"wrote {n - len(done)} page(s)" in summary and f"0 failed; {len(done)} skipped" in summary
    assert sorted(p.name for p in out.glob("p*.png")) == [f"p{i:02d}.png" for i in range(n)]
    assert {p: p.stat().st_mtime_ns for p in done} == before  # pages already done were not rewritten
