"""`dualflow colorize` on odd inputs: every good page written with its stem, bad files reported by name, exit 1."""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow.data.synth import SynthManga
from dualflow.inference import load_colorizer, main
from dualflow.loader import load_page_colorizer
from dualflow.manifest import read_manifest


def test_colorize_odd_inputs(tiny_experiment, tmp_path, capsys):
    pages = tmp_path / "pages"
    pages.mkdir()
    page = SynthManga(9)(0, (96, 80))
    Image.fromarray((page.bw * 255).astype(np.uint8)).save(pages / "grey.png")
    Image.fromarray(np.full((5, 7), 255, np.uint8)).save(pages / "tiny.png")
    Image.fromarray((SynthManga(9)(1, (24, 700)).bw * 255).astype(np.uint8)).save(pages / "wide.png")
    rgba = np.concatenate([np.repeat((page.bw * 255).astype(np.uint8)[..., None], 3, 2),
                           np.full((96, 80, 1), 255, np.uint8)], axis=2)
    Image.fromarray(rgba, "RGBA").save(pages / "rgba.png")
    Image.fromarray((page.color * 255).astype(np.uint8)).save(pages / "colour_page.png")
    (pages / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    (pages / "empty.png").write_bytes(b"")
    (pages / "notes.txt").write_text("not an image, not listed")
    out = tmp_path / "out"
    code = main([str(pages), "--out", str(out), "--experiment", "tiny", "--runs_dir", str(tiny_experiment),
                 "--debug"])
    err = capsys.readouterr().err
    assert code == 1
    assert "corrupt.png" in err and "empty.png" in err and "colour page" in err
    for stem, size in (("grey", (80, 96)), ("tiny", (7, 5)), ("wide", (700, 24)), ("rgba", (80, 96)),
                       ("colour_page", (80, 96))):
        img = Image.open(out / f"{stem}.png")
        assert img.size == size and img.mode == "RGB", stem
        assert (out / f"{stem}_debug.png").is_file()
    assert not (out / "corrupt.png").exists()


def test_colorize_missing_experiment_is_a_clear_error(tmp_path, capsys):
    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--experiment", "ghost", "--runs_dir",
                 str(tmp_path)]) == 2
    assert "make train-stage1 EXP=ghost" in capsys.readouterr().err


def test_large_page_runs_in_tiles_and_matches_untiled_attention(tiny_experiment):
    """Tiles are encoded at their place in the page and start on the window grid: they agree with a whole-page
    pass (tiles that each restart at position 0, the control, do not), and so does the coloured page."""
    from dualflow.pipeline import importance_tiled

    model = load_colorizer("tiny", str(tiny_experiment), device="cpu", attention_tile=128)
    bw = torch.from_numpy(SynthManga(3)(0, (600, 520)).bw)[None, None]
    net = model.frozen["attention"]
    assert max(net.view(bw).shape[-2:]) > 2 * 128  # several tiles, most not at the page's origin

    class RestartingTiles(torch.nn.Module):  # the control: every tile encoded as if it were the page
        stride, window = net.stride, net.window

        def view(self, page):
            return net.view(page)

        def importance_of_view(self, view, origin=None):
            return net.importance_of_view(view)

    with torch.inference_mode():
        tiled = importance_tiled(net, bw, tile=128)
        restarted = importance_tiled(RestartingTiles(), bw, tile=128)
        whole = net.importance(bw)
    assert tiled.shape == whole.shape
    error = (tiled - whole).abs().mean()
    assert error < 0.1 * (restarted - whole).abs().mean() and (tiled - whole).abs().max() < 0.05
    out = model.colorize_page(bw[0])
    untiled = load_colorizer("tiny", str(tiny_experiment), device="cpu", attention_tile=4096).colorize_page(bw[0])
    assert out["rgb"].shape == (3, 600, 520) and 0 <= out["rgb"].min() and out["rgb"].max() <= 1
    assert (out["rgb"] - untiled["rgb"]).abs().mean() < 0.005  # the tiled page is the untiled one


def test_secondary_keeps_its_training_working_ratio_up_to_the_cap(tiny_experiment):
    from dualflow.pipeline import inference_long_side

    meta = torch.load(Path(read_manifest("tiny", str(tiny_experiment))["stages"]["secondary"]["best_ckpt"]),
                      map_location="cpu", weights_only=False)["dualflow"]
    assert meta["trained_long_side"] == 64 and meta["working_size"] == 32  # tiny configs: 64-px pages
    assert inference_long_side((300, 200), meta, cap=512) == 150  # half size, as in training
    assert inference_long_side((3000, 2000), meta, cap=512) == 512  # capped: memory stays bounded
    assert inference_long_side((300, 200), {**meta, "trained_long_side": 0}, cap=512) == 32  # older checkpoints


def _pages(folder: Path, corrupt: bool = False) -> Path:
    folder.mkdir()
    for i in range(2):
        Image.fromarray((SynthManga(9)(i, (96, 80)).bw * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    if corrupt:
        (folder / "p2.png").write_bytes(b"\x89PNG\r\n\x1a\n garbage")
    return folder


def _read(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path), dtype=np.float32) / 255


def test_the_python_api_colours_a_folder_and_reports_per_file(tiny_experiment, tmp_path):
    import dualflow

    pages = _pages(tmp_path / "pages", corrupt=True)
    report = dualflow.colorize([pages], tmp_path / "out", experiment="tiny", runs_dir=str(tiny_experiment),
                               progress=False)
    assert sorted(p.name for p in report.written) == ["p0.png", "p1.png"]
    assert len(report.errors) == 1 and "p2.png" in report.errors[0]
    with pytest.raises(RuntimeError, match="p2.png"):  # strict: the first failure stops the batch
        dualflow.colorize([pages], tmp_path / "strict", experiment="tiny", runs_dir=str(tiny_experiment),
                          progress=False, strict=True)


def test_colorize_options_reach_the_pipeline(tiny_experiment, tmp_path, capsys):
    pages = _pages(tmp_path / "pages")
    runs = str(tiny_experiment)
    ckpts = [read_manifest("tiny", runs)["stages"][s]["best_ckpt"] for s in ("attention", "primary", "secondary")]
    assert main([str(pages), "--out", str(tmp_path / "exp"), "--experiment", "tiny", "--runs_dir", runs]) == 0
    # Explicit checkpoints need no experiment, and are the experiment's own: the same pages come out.
    assert main([str(pages), "--out", str(tmp_path / "ckpt"), "--experiment", "ghost", "--runs_dir", runs,
                 "--ckpt", *ckpts]) == 0
    assert np.array_equal(_read(tmp_path / "exp" / "p0.png"), _read(tmp_path / "ckpt" / "p0.png"))
    # The patch budget bounds the primary flow's patches (--debug prints each page's count).
    capsys.readouterr()
    for budget in (0, 2):
        assert main([str(pages / "p0.png"), "--out", str(tmp_path / f"b{budget}"), "--experiment", "tiny",
                     "--runs_dir", runs, "--budget", str(budget), "--debug"]) == 0
    out = capsys.readouterr().out
    assert "0 patches" in out and "2 patches" in out
    assert not np.array_equal(_read(tmp_path / "b0" / "p0.png"), _read(tmp_path / "b2" / "p0.png"))
    # bf16-mixed runs the networks in bfloat16: close to float32's page, not equal to it.
    assert main([str(pages), "--out", str(tmp_path / "bf16"), "--experiment", "tiny", "--runs_dir", runs,
                 "--precision", "bf16-mixed"]) == 0
    full, half = _read(tmp_path / "exp" / "p0.png"), _read(tmp_path / "bf16" / "p0.png")
    assert not np.array_equal(full, half) and np.abs(full - half).mean() < 0.05
    with pytest.raises(RuntimeError, match="garbage.png"):  # --strict re-raises the first failure
        (pages / "garbage.png").write_bytes(b"not a png")
        main([str(pages), "--out", str(tmp_path / "strict"), "--experiment", "tiny", "--runs_dir", runs, "--strict"])


@pytest.mark.parametrize("size", [(1, 300), (300, 1), (1, 1), (5, 200), (200, 5), (20, 15), (90, 181)])
def test_strips_specks_small_pages_and_spreads_are_coloured(tiny_experiment, size):
    """Pages thinner than the attention stride, smaller than a patch or the working size, and a landscape
    double-page spread: each comes back coloured at its own size, never a crash."""
    model = load_colorizer("tiny", str(tiny_experiment), device="cpu")
    bw = (torch.rand(1, *size, generator=torch.Generator().manual_seed(0)) > 0.5).float()
    rgb = model.colorize_page(bw)["rgb"]
    assert rgb.shape == (3, *size) and torch.isfinite(rgb).all() and 0 <= rgb.min() and rgb.max() <= 1


def test_colorize_imports_no_lightning_and_colours_as_the_composite(tiny_experiment, tmp_path):
    """``colorize`` (PyTorch engine) loads the page colorizer without the training machinery: no Lightning module
    is imported, and its page is the composite LightningModule's, pixel for pixel."""
    bw = SynthManga(3)(0, (120, 88)).bw
    Image.fromarray((bw * 255).astype(np.uint8)).save(tmp_path / "page.png")
    code = ("import sys; from dualflow.inference import main; "
            f"rc = main([{str(tmp_path / 'page.png')!r}, '--out', {str(tmp_path / 'out')!r}, '--experiment', 'tiny', "
            f"'--runs_dir', {str(tiny_experiment)!r}, '--device', 'cpu']); assert rc == 0, rc; "
            "assert not [m for m in sys.modules if m.startswith(('lightning', 'pytorch_lightning'))], 'lightning'")
    result = subprocess.run([sys.executable, "-c", code], cwd=Path(__file__).resolve().parents[1],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    page = torch.from_numpy(np.asarray(Image.open(tmp_path / "page.png"), np.float32) / 255)
    light = load_page_colorizer("tiny", str(tiny_experiment), device="cpu").colorize_page(page)["rgb"]
    composite = load_colorizer("tiny", str(tiny_experiment), device="cpu").colorize_page(page)["rgb"]
    assert torch.equal(light, composite)
    written = np.asarray(Image.open(tmp_path / "out" / "page.png"), np.float32) / 255
    assert np.abs(written - light.permute(1, 2, 0).numpy()).max() <= 1 / 255

