"""Pages at the resolution people have: the dpi read from the screentone, what happens when there is nothing to
read or the dpi is out of range, colouring at the trained scale and back, and training pages across a dpi range."""

import numpy as np
import pytest
import torch

from dualflow.data.scan import DpiRange, dpi_setting, nets_dpi, scanned, size_at
from dualflow.data.synth import SynthManga
from dualflow.scan_dpi import DpiError, estimate_dpi, net_size, resolve_dpi, to_scale

SIZE = (724, 512)  # the physical page: 724×512 px at 300 dpi


@pytest.mark.parametrize("dpi", [150.0, 300.0, 600.0])
def test_the_dpi_is_read_from_the_screentone_within_the_spread_of_rulings(dpi):
    gen = SynthManga(5)
    for index in (1, 2):
        page = scanned(gen, index, SIZE, dpi)
        assert page.bw.shape == size_at(SIZE, dpi)
        estimate = estimate_dpi(page.bw)
        # Fine tones are 3-4 pen units (57-75 lpi): read as the middle ruling, any page is within ±14.3 %.
        assert abs(estimate.dpi / dpi - 1) <= 0.15, (index, estimate)
        assert estimate.share >= 0.2


def test_a_scan_below_300_dpi_is_the_drawing_downsampled_with_grey_dots():
    gen = SynthManga(5)
    drawn, low = scanned(gen, 1, SIZE, 300.0), scanned(gen, 1, SIZE, 150.0)
    assert set(np.unique(drawn.bw)) == {0.0, 1.0}
    assert ((low.bw > 0.05) & (low.bw < 0.95)).mean() > 0.05  # a scanner's grey, not re-drawn black and white
    assert abs(low.bw.mean() - drawn.bw.mean()) < 0.01  # the same ink, averaged
    assert set(np.unique(low.labels)) <= set(np.unique(drawn.labels))


def test_a_page_with_nothing_to_read_falls_back_to_the_trained_dpi_and_says_so():
    paper = np.ones((600, 400), np.float32)
    paper[100:104, 50:350] = 0.0  # a thin line: no screen
    assert estimate_dpi(paper).dpi is None
    dpi, line = resolve_dpi(paper, None, 300.0)
    assert dpi == 300.0 and "no screentone" in line and "--dpi" in line
    assert resolve_dpi(paper, 450.0, 300.0) == (450.0, "450 dpi as given")


def test_a_given_dpi_wins_over_the_estimate_and_a_contradiction_is_said():
    page = scanned(SynthManga(5), 1, SIZE, 600.0)
    dpi, line = resolve_dpi(page.bw, 150.0, 300.0)
    assert dpi == 150.0 and "check --dpi" in line
    dpi, line = resolve_dpi(page.bw, 560.0, 300.0)
    assert dpi == 560.0 and "check" not in line and "estimated" in line


def test_out_of_range_resolutions_are_refused_given_and_not_trusted_estimated():
    with pytest.raises(DpiError, match="10 dpi is outside"):
        resolve_dpi(np.ones((64, 64), np.float32), 10.0, 300.0)
    with pytest.raises(DpiError, match="2400 dpi is outside"):
        resolve_dpi(np.ones((64, 64), np.float32), 2400.0, 300.0)
    # A screen of 15 px is a 970-dpi page's middle ruling; at 2x2 px per unit beyond the limits: a 2000-dpi scan.
    yy, xx = np.mgrid[0:1024, 0:1024]
    dots = (0.5 - 0.25 * (np.cos(2 * np.pi * xx / 14.0) + np.cos(2 * np.pi * yy / 14.0)) > 0.5).astype(np.float32)
    assert abs(estimate_dpi(dots).dpi - 14.0 * 227 / 3.5) < 10
    big = np.kron(dots, np.ones((2, 2), np.float32))  # 4 Mpx and more: read at half resolution
    dpi, line = resolve_dpi(big, None, 300.0)
    assert dpi == 300.0 and "not trusted" in line


def test_a_page_that_mixes_scales_is_read_at_its_finest_screen():
    gen = SynthManga(5)
    fine, coarse = scanned(gen, 1, SIZE, 300.0).bw, scanned(gen, 2, SIZE, 600.0).bw
    pasted = coarse.copy()
    pasted[: fine.shape[0], : fine.shape[1]] = fine  # a 300-dpi panel pasted on a 600-dpi page
    assert abs(estimate_dpi(pasted).dpi / 300.0 - 1) <= 0.15


def test_resampling_keeps_the_page_and_skips_what_is_near_the_trained_scale():
    assert net_size((1448, 1024), 600.0, 300.0) == (724, 512)
    assert net_size((362, 256), 150.0, 300.0) == (724, 512)
    assert net_size((1448, 1024), 340.0, 300.0) == (1448, 1024)  # within the estimate's spread: as it is
    assert net_size((1448, 1024), 400.0, 300.0) == (1086, 768)
    assert net_size((1448, 1024), None, 300.0) == net_size((1448, 1024), 600.0, 0.0) == (1448, 1024)
    x = torch.rand(1, 3, 40, 60)
    assert torch.allclose(to_scale(x, (20, 30)), x.reshape(1, 3, 20, 2, 30, 2).mean((3, 5)))
    assert to_scale(x, (80, 120)).shape[-2:] == (80, 120)


def test_a_dpi_range_scans_each_page_at_its_own_dpi_and_brings_it_to_300(tmp_path):
    from dualflow.data.datasets import SynthMangaDataset

    scans = DpiRange(150.0, 600.0)
    dpis = [scans.dpi(3, k) for k in range(200)]
    assert 150 <= min(dpis) and max(dpis) <= 600 and 250 < np.exp(np.mean(np.log(dpis))) < 350  # log-uniform
    assert dpis == [DpiRange(150.0, 600.0).dpi(3, k) for k in range(200)]  # a pure function of seed and index
    data = SynthMangaDataset(2, (362, 256), seed=3, scale=scans, cache=tmp_path)
    first = [data[i] for i in range(2)]
    for sample in first:
        assert sample["bw"].shape == (1, 362, 256) and sample["color"].shape == (3, 362, 256)
    assert len(list(data.cache.folder.glob("*.npz"))) == 2 and "dpi150-600" in data.cache.folder.name
    again = SynthMangaDataset(2, (362, 256), seed=3, scale=scans, cache=tmp_path)[1]
    assert torch.equal(again["bw"], first[1]["bw"])  # read back from the cache, normalised alike


def test_data_dpi_takes_a_number_or_a_range():
    from dualflow.data.datamodule import MangaDataModule

    assert nets_dpi(0) == 0 and nets_dpi(450) == 450 and nets_dpi([150, 600]) == 300
    assert isinstance(dpi_setting([150, 600]), DpiRange)
    for bad in ([600, 150], [150], -1):
        with pytest.raises(ValueError):
            MangaDataModule(dpi=bad)
    dm = MangaDataModule(image_size=[90, 64], dpi=[150, 600], n_train=2, n_val=1, n_test=1, num_workers=0)
    dm.setup("fit")
    assert isinstance(dm.train_set.scale, DpiRange)
    assert dm.val_set.scale.pen == pytest.approx(300 / 227)  # held-out pages at the scale the nets work at


def test_colouring_at_the_trained_scale_brings_the_colour_back_to_the_page(tiny_experiment):
    from dualflow.hints import Hint, paint
    from dualflow.loader import load_page_colorizer

    model = load_page_colorizer("tiny", str(tiny_experiment), device="cpu")
    assert model.trained_dpi == 0  # the tiny experiment draws thumbnail pages: nothing is resampled
    bw = torch.from_numpy(scanned(SynthManga(5), 1, (96, 64), 600.0).bw)[None]
    assert "scale" not in model.colorize_page(bw, dpi=600.0)
    model.secondary_meta["trained_dpi"] = 300.0
    out = model.colorize_page(bw, dpi=600.0, debug=True)
    assert out["scale"]["net_size"] == (96, 64) and out["rgb"].shape == (3, 192, 128)
    assert out["importance"].shape[-2:] != bw.shape[-2:]  # the nets saw the page at 300 dpi
    assert out["rgb"].min() >= 0 and out["rgb"].max() <= 1
    assert model.debug_panel(bw, out).shape[0] > 96
    # The hints are laid over at the page's own pixels: a region the lines enclose takes the hint's colour.
    page = torch.ones(1, 192, 128)
    page[:, 40:42, :] = 0.0
    page[:, 100:102, :] = 0.0
    assert model.takes_hints
    out = model.colorize_page(page, dpi=600.0, hints=paint([Hint(70, 64, (0.9, 0.1, 0.1))], (192, 128)))
    assert torch.allclose(out["rgb"][:, 70, 10], torch.tensor([0.9, 0.1, 0.1]), atol=0.02)
    assert not torch.allclose(out["rgb"][:, 20, 10], torch.tensor([0.9, 0.1, 0.1]), atol=0.05)


def test_colorize_reports_each_pages_dpi_and_refuses_one_out_of_range(tiny_experiment, tmp_path, capsys):
    from dualflow.data.io import save_image
    from dualflow.inference import colorize, main
    from dualflow.loader import load_page_colorizer

    pages = tmp_path / "pages"
    pages.mkdir()
    save_image(pages / "scan600.png", scanned(SynthManga(5), 1, (362, 256), 600.0).bw)
    save_image(pages / "blank.png", np.ones((96, 64), np.float32))
    with pytest.raises(SystemExit) as exit_info:
        main([str(pages), "--out", str(tmp_path / "out"), "--experiment", "tiny", "--runs_dir", str(tiny_experiment),
              "--dpi", "10"])
    assert exit_info.value.code == 2 and "--dpi 10 is outside 72-1200" in capsys.readouterr().err
    model = load_page_colorizer("tiny", str(tiny_experiment), device="cpu")
    model.secondary_meta["trained_dpi"] = 300.0
    report = colorize([pages], tmp_path / "out", model=model, progress=False)
    err = capsys.readouterr().err
    assert len(report.written) == 2 and not report.errors
    assert "scan600.png: " in err and "dpi estimated from a" in err
    assert "blank.png: no screentone to read the scale from: coloured as 300 dpi" in err
    report = colorize([pages / "blank.png"], tmp_path / "given", model=model, progress=False, dpi=150.0)
    assert "blank.png: 150 dpi as given" in capsys.readouterr().err and len(report.written) == 1


def test_the_resolution_table_scores_every_model_at_each_dpi(tiny_experiment, tmp_path):
    from dualflow.bench.report import markdown
    from dualflow.bench.run import main as bench_main
    from dualflow.bench.scales import bench_dpi
    from dualflow.loader import load_page_colorizer

    # Models of thumbnail pages have no scale to bring a page to: the table is refused, with a reason.
    assert bench_main(["--experiment", "tiny", "--runs_dir", str(tiny_experiment), "--out", str(tmp_path),
                       "--only", "dpi", "--tiny"]) == 2
    models = {name: load_page_colorizer("tiny", str(tiny_experiment), device="cpu", **kw)
              for name, kw in (("dualflow", {}), ("secondary_only", {"patch_budget": 0}))}
    for model in models.values():
        model.secondary_meta["trained_dpi"] = 300.0
    r = bench_dpi(models, 1, (724, 512), (150.0, 300.0), seed=9, repeats=1)
    q = r.pop("quality_dpi")
    assert set(q) == {"150", "300"} and set(q["150"]) == {"estimated", "as_scanned"}
    for setting in q["150"].values():
        assert set(models) <= set(setting) and setting["dualflow"]["color/delta_e2000"] > 0
    # At 150 dpi the page is coloured at 300 and brought back: not the figures of colouring it as scanned.
    assert q["150"]["estimated"]["dualflow"] != q["150"]["as_scanned"]["dualflow"]
    assert q["300"]["estimated"]["dualflow"] == q["300"]["as_scanned"]["dualflow"]  # nothing to resample
    assert r["estimate"]["150"]["within_15pct"] == 1.0 and r["estimate"]["300"]["pages"] == 1
    assert r["cost"]["ratio_600_to_300_dpi_given"] > 0
    from dualflow.bench.probes import machine

    table = markdown({"machine": machine(), "experiment": "tiny", "quality_dpi": q, "scan_resolutions": r}, "bench")
    assert "Scan resolutions" in table and "| 150 | 100% (" in table
