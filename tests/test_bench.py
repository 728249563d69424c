"""`dualflow bench` on a tiny configuration: it runs and writes valid JSON with every field."""

import json

import pytest

from dualflow.bench.run import main
from dualflow.cli import main as cli_main
from tests.conftest import fit_args


def test_bench_writes_every_field(tiny_experiment, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny")
    cli_main(fit_args("baseline", runs, "tiny", "--trainer.max_steps=2"))
    out = tmp_path / "bench"
    assert main(["--experiment", "tiny", "--runs_dir", str(runs), "--out", str(out), "--tiny", "--pages", "2",
                 "--page_size", "64", "--repeats", "1"]) == 0
    results = json.loads((out / "results.json").read_text())
    assert {"cpu", "cores", "torch", "date", "gpu"} <= set(results["machine"])
    assert results["data"]["synth_pages_per_s_256x256"] > 0 and results["data"]["synth_pages_per_s_512x724"] > 0
    for source in ("synth", "color", "stream"):
        assert results["data"][f"{source}_pages_per_s_64"] > 0
    for key in ("stage1_inference_seconds_128x181", "stage1_inference_seconds_256x362",
                "stage2_inference_seconds_per_16_patches"):
        assert results["stages"][key] > 0
    for stage in ("attention", "secondary", "baseline"):
        assert results["stages"][f"train_{stage}"]["pages_per_s"] > 0
    assert results["stages"]["train_primary"]["patches_per_s"] > 0
    quality = results["quality"]
    for name in ("dualflow", "secondary_only", "baseline"):
        for key in ("color/delta_e2000", "color/delta_e2000_detailed", "global/lpips_randinit", "color/delta_cf",
                    "color/tone_residue",
                    "transition/seam", "edge/chroma_on_ink", "edge/f1"):
            assert key in quality[name], (name, key)
    assert quality["metric_suite_seconds_per_page"] > 0
    for name in ("oracle_median", "oracle_sample"):  # given the true class and tone: what the figures can reach
        assert 0 <= quality[name]["color/delta_e2000"] < quality["dualflow"]["color/delta_e2000"], name
    assert quality["oracle_pages"] == 8
    transfer = results["transfer"]  # real photographs (scikit-image's samples) rendered B&W by mangafy
    assert transfer["pages"] == 5 and transfer["page_size"] == 64 and "astronaut" in transfer["images"]
    for name in ("dualflow", "secondary_only", "baseline"):
        assert 0 < transfer[name]["color/delta_e2000"] < 100 and "color/delta_cf" in transfer[name]
    assert "**Transfer** to 5 real photographs" in (out / "results.md").read_text()
    consistency = results["consistency"]  # recurring characters across the pages of SynthManga chapters
    assert consistency["chapters"] == 2 and consistency["pages_per_chapter"] == 3 and consistency["page_size"] == 128
    assert 0 <= consistency["truth"] < consistency["dualflow_per_page"] < 100
    assert results["stages"]["metric_suite_seconds_per_page_512"] > 0
    assert results["stage1_inference"]["256x362"]["attention"]["peak_rss_mib"] > 0
    for size in ("128x181", "256x362"):
        row = results["inference"][size]
        for kind in ("dualflow", "baseline", "primary_whole_page"):
            assert row[kind]["seconds"] > 0 and row[kind]["peak_rss_mib"] > 0, (size, kind, row[kind])
        assert row["time_ratio_vs_baseline"] > 0 and row["memory_ratio_vs_primary_whole_page"] > 0
    table = (out / "results.md").read_text()
    assert "| color/delta_e2000 |" in table and "256x362" in table and "oracle_median | oracle_sample |" in table
    breakdown = results["breakdown"]
    for stage in ("stage1", "stage2", "stage3"):
        r = breakdown[stage]
        assert set(r["seconds"]) == {"data", "frozen", "inputs", "forward_backward", "optimizer"}
        assert sum(r["share"].values()) == pytest.approx(1.0) and r["it_per_s"] > 0 and r["loader_pages_per_s"] > 0
        assert r["seconds"]["forward_backward"] > 0
    assert breakdown["stage1"]["seconds"]["frozen"] == 0 and breakdown["stage3"]["seconds"]["frozen"] > 0
    assert "Training step breakdown" in table


def test_bench_breakdown_alone_needs_no_experiment(tmp_path):
    out = tmp_path / "bench"
    assert main(["--only", "breakdown", "--tiny", "--breakdown_steps", "1", "--runs_dir", str(tmp_path),
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"machine", "experiment", "breakdown"} and results["breakdown"]["preset"] == "gpu"
