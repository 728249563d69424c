"""`dualflow bench` on a tiny configuration: it runs and writes valid JSON with every field."""

import json
import shutil

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow.bench.run import main
from dualflow.cli import main as cli_main
from tests.conftest import fit_args


def test_bench_writes_every_field(tiny_experiment, tmp_path):

    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny")
    cli_main(fit_args("baseline", runs, "tiny", "--trainer.max_steps=2"))
    cli_main(fit_args("resize_baseline", runs, "tiny", "--trainer.max_steps=2"))
    out = tmp_path / "bench"
    configs = [*(tiny_experiment / "tiny").glob("*/config.yaml"), *(runs / "tiny").glob("*/config.yaml")]
    saved = [path.read_bytes() for path in configs]
    assert main(["--experiment", "tiny", "--runs_dir", str(runs), "--out", str(out), "--tiny"]) == 0
    # Its training steps run in folders of their own: the trained runs' saved configs (which name their own
    # run folders) are left as they were.
    assert len(configs) >= 8 and [path.read_bytes() for path in configs] == saved
    results = json.loads((out / "results.json").read_text())
    assert {"cpu", "cores", "torch", "date", "gpu"} <= set(results["machine"])
    assert results["data"]["synth_pages_per_s_256x256"] > 0 and results["data"]["synth_pages_per_s_512x724"] > 0
    for source in ("synth", "color", "stream"):
        assert results["data"][f"{source}_pages_per_s_64"] > 0
    for key in ("stage1_inference_seconds_128x181", "stage1_inference_seconds_256x362",
                "stage2_inference_seconds_per_16_patches"):
        assert results["stages"][key] > 0
    for stage in ("attention", "secondary", "baseline", "resize_baseline"):
        assert results["stages"][f"train_{stage}"]["pages_per_s"] > 0
    assert results["stages"]["train_primary"]["patches_per_s"] > 0
    assert set(results["quality"]) == {"64x64", "48x72"}  # one table per page size, named WxH
    assert results["quality"]["48x72"]["page_size"] == "48x72"
    quality = results["quality"]["64x64"]
    for name in ("dualflow", "secondary_only", "baseline", "resize_baseline"):
        for key in ("color/delta_e2000", "color/delta_e2000_detailed", "global/lpips_randinit", "color/delta_cf",
                    "color/tone_residue",
                    "transition/seam", "edge/chroma_on_ink", "edge/f1"):
            assert key in quality[name], (name, key)
    assert quality["metric_suite_seconds_per_page"] > 0
    for name in ("dualflow", "secondary_only", "baseline", "resize_baseline", "oracle_median", "oracle_sample"):
        assert quality[name]["class_colour_distance"] > 0, name  # SynthManga's classes: every quality row
    assert "| class_colour_distance |" in (out / "results.md").read_text()
    for name in ("oracle_median", "oracle_sample"):  # given the true class and tone: what the figures can reach
        assert 0 <= quality[name]["color/delta_e2000"] < quality["dualflow"]["color/delta_e2000"], name
    assert quality["oracle_pages"] == 2
    cover = quality["dualflow"]  # what the primary covers: of the page, of its detailed pixels
    assert 0 < cover["coverage/page"] <= 1 and 0 <= cover["coverage/detailed"] <= 1
    assert quality["secondary_only"]["coverage/page"] == 0  # no priority patch
    curve = results["quality_hints"]["64x64"]  # quality against the number of hints, hints kept beside
    assert set(curve["clicks"]) == {"0", "16"} and curve["random"]["0"] == curve["clicks"]["0"]  # --tiny: 2 counts
    assert curve["models_with_hints"]["dualflow"] is True and curve["models_with_hints"]["baseline"] is True
    for protocol in ("clicks", "random"):
        for row in ("dualflow", "secondary_only", "baseline", "resize_baseline", "levin_propagation", "oracle_median"):
            assert 0 < curve[protocol]["16"][row]["color/delta_e2000"] < 100, (protocol, row)
    assert curve["clicks"]["16"]["dualflow"] != curve["clicks"]["0"]["dualflow"]  # the hints reached the model
    drawn = json.loads((out / curve["hints_file"]).read_text())
    assert len(drawn["hints"]["clicks"]["16"]) == 2 and len(drawn["hints"]["random"]["16"][0]) == 16
    assert "**Hint curve at 64x64**" in (out / "results.md").read_text()
    chart = np.asarray(Image.open(out / "hint_curve.png").convert("RGB"))
    assert chart.shape[1] == 2 * 560 and (chart != 255).any(axis=2).mean() > 0.02  # two panels, lines drawn
    prof = results["profile"]["64x64"]  # where a page's time goes: every pipeline step, the top operations
    assert set(prof["steps"]) == {"attention", "primary", "plan", "canvas", "secondary", "fusion"}
    assert 0.5 < sum(s["share"] for s in prof["steps"].values()) <= 1.01 and prof["top_ops"][0]["self_seconds"] > 0
    assert "**Profile of a page**" in (out / "results.md").read_text()
    cover = results["coverage"]  # the plan at several densities: what the primary covers, quality, cost
    sized, trained = cover["automatic"]["density 2000"], cover["automatic"]["trained plan"]
    assert sized["coverage/page"] > trained["coverage/page"]
    assert sized["coverage/detailed"] >= trained["coverage/detailed"]
    assert sized["seconds_per_page"] > 0 and "color/delta_e2000_detailed" in cover["clicks 16"]["density 2000"]
    assert "**Coverage/cost curve at 64x96**" in (out / "results.md").read_text()
    assert (out / "coverage_curve.png").is_file()
    transfer = results["transfer"]  # real photographs (scikit-image's samples) rendered B&W by mangafy
    assert transfer["pages"] == 5 and transfer["page_size"] == 64 and "astronaut" in transfer["images"]
    for name in ("dualflow", "secondary_only", "baseline", "resize_baseline"):
        assert 0 < transfer[name]["color/delta_e2000"] < 100 and "color/delta_cf" in transfer[name]
    assert "**Transfer** to 5 real photographs" in (out / "results.md").read_text()
    consistency = results["consistency"]  # recurring characters across the pages of SynthManga chapters
    assert consistency["chapters"] == 2 and consistency["pages_per_chapter"] == 3 and consistency["page_size"] == 128
    # The colour pages vary between pages (lighting, shading); a two-step tiny model may be more uniform than
    # them, so only the range is a property here (the bench's own models are compared in bench/results.md).
    assert 0 < consistency["truth"] < 100 and 0 <= consistency["dualflow_per_page"] < 100
    assert results["stages"]["metric_suite_seconds_per_page_512"] > 0
    assert results["stage1_inference"]["256x362"]["attention"]["peak_rss_mib"] > 0
    for size in ("128x181", "256x362"):
        row = results["inference"][size]
        for kind in ("dualflow", "dualflow_onnx", "baseline", "primary_whole_page"):
            assert row[kind]["seconds"] > 0 and row[kind]["peak_rss_mib"] > 0, (size, kind, row[kind])
        assert row["time_ratio_vs_baseline"] > 0 and row["memory_ratio_vs_primary_whole_page"] > 0
    assert results["onnx_export"]["max_abs"] <= 4 / 255  # exported on the way, checked against PyTorch
    volume = results["volume"]  # a .cbz through colorize end to end, both engines
    for engine in ("torch", "onnx"):
        assert volume[engine]["pages"] == volume["pages"] == 3 and volume[engine]["errors"] == 0
        assert volume[engine]["pages_per_min"] > 0 and volume[engine]["cbz_mib"] > 0
    table = (out / "results.md").read_text()
    assert "**Volume** of 3 pages 128x181" in table and "**ONNX export** checked" in table
    assert "| color/delta_e2000 |" in table and "256x362" in table and "oracle_median | oracle_sample |" in table
    assert "**Quality at 48x72**" in table and "resize_baseline" in table
    breakdown = results["breakdown"]
    for stage in ("stage1", "stage2", "stage3"):
        r = breakdown[stage]
        assert set(r["seconds"]) == {"data", "frozen", "inputs", "forward_backward", "optimizer"}
        assert r["seconds"]["forward_backward"] > 0 and r["loader_pages_per_s"] > 0
        assert 0 < r["share_of_matmul_peak"] < 1.5  # achieved FLOP/s of the step against the measured matmul rate
    # Only the later stages run frozen networks, and stage 3 runs two of them.
    assert breakdown["stage1"]["seconds"]["frozen"] == 0 < breakdown["stage2"]["seconds"]["frozen"]
    assert breakdown["stage3"]["seconds"]["frozen"] > 0 and breakdown["matmul_peak_flops_per_s"]["float32"] > 1e9
    assert "Training step breakdown" in table and "GFLOP/s (share of peak)" in table


def test_bench_breakdown_alone_needs_no_experiment(tmp_path):
    out = tmp_path / "bench"
    assert main(["--only", "breakdown", "--tiny", "--breakdown_steps", "1", "--runs_dir", str(tmp_path),
                 "--out", str(out)]) == 0
    results = json.loads((out / "results.json").read_text())
    assert set(results) == {"machine", "experiment", "breakdown"} and results["breakdown"]["preset"] == "gpu"


@pytest.mark.parametrize("stage", ["attention", "secondary"])
def test_step_flops_count_the_trained_networks_forward_and_backward(stage, tmp_path, monkeypatch):
    """Forward and backward of the trained network cost two to three forwards (the backward pass computes
    input and weight gradients, except the input gradient of the first layer), plus a little for the loss's own
    ops (stage 3's guided filter and colour conversions); the frozen stages that build the step's inputs, which
    cost over two more forwards in the tiny stage 3, are not counted. The steps run through ``dualflow fit``."""
    from torch.utils.flop_counter import FlopCounterMode

    from dualflow.bench.steps import StepPhases, _overrides, fit_steps
    from dualflow.stage_table import STAGES, config_files

    inputs = []  # what the trained network was given on each step (a stage calls its forward, or its features)
    start = StepPhases.on_train_start

    def watching(self, trainer, module):
        start(self, trainer, module)
        for name in ("forward", "features"):
            if hasattr(module.net, name):
                original = getattr(module.net, name)
                setattr(module.net, name, lambda *args, _original=original: inputs.append(args) or _original(*args))

    monkeypatch.setattr(StepPhases, "on_train_start", watching)
    for earlier in STAGES[stage].needs:  # the earlier stages' checkpoints, written by their own short runs
        fit_steps(config_files(earlier, "gpu"), _overrides(earlier, True, tmp_path), 1, tmp_path)[0] \
            .trainer.save_checkpoint(tmp_path / f"{earlier}.ckpt")
    cli, phases = fit_steps(config_files(stage, "gpu"), _overrides(stage, True, tmp_path), 1, tmp_path)
    assert len(phases.times["forward_backward"]) == 1  # the warm-up step and the counted one are not timed
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        cli.model.net(*inputs[-1])  # the counted step is the last
    forward = counter.get_total_flops()
    assert forward > 0 and 2 * forward <= phases.flops <= 3.5 * forward


def test_bench_only_quality_and_only_inference_write_just_their_figures(tiny_experiment, tmp_path):
    args = ["--experiment", "tiny", "--runs_dir", str(tiny_experiment), "--tiny", "--pages", "2", "--sizes", "64x64",
            "--dpi", "0", "--cache", "none", "--transfer_size", "64", "--repeats", "1"]
    assert main([*args, "--only", "quality", "--out", str(tmp_path / "q")]) == 0
    quality = json.loads((tmp_path / "q" / "results.json").read_text())
    assert set(quality) == {"machine", "experiment", "quality", "transfer", "consistency"}
    table = quality["quality"]["64x64"]
    assert table["dualflow"]["color/delta_e2000"] > 0 and "baseline" not in table
    assert main([*args, "--only", "inference", "--out", str(tmp_path / "i")]) == 0
    inference = json.loads((tmp_path / "i" / "results.json").read_text())
    assert set(inference) == {"machine", "experiment", "inference", "stage1_inference", "onnx_export"}
    assert inference["inference"]["256x362"]["dualflow"]["seconds"] > 0


def test_bench_ablation_scores_experiments_that_share_stage1_side_by_side(tiny_experiment, tmp_path):
    """Two experiments on one stage 1, differing in the colorizers' colourfulness loss: one row each (and the
    oracles), the differing options named, their costs measured; experiments on different stage-1 models are
    refused."""
    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny")
    shutil.copytree(tiny_experiment / "tiny", runs / "vivid")
    for stage in ("stage2", "stage3"):
        cli_main(fit_args(stage, runs, "vivid", "--model.colourfulness_weight=0.5"))
    args = ["--runs_dir", str(runs), "--tiny", "--pages", "2", "--dpi", "0", "--cache", "none", "--repeats", "1",
            "--out", str(tmp_path / "out"), "--only", "ablation"]
    assert main([*args, "--experiments", "tiny"]) == 2
    assert main([*args, "--experiments", "tiny,vivid"]) == 0
    result = json.loads((tmp_path / "out" / "ablation.json").read_text())
    assert result["options"] == {"tiny": {},
                                 "vivid": {"primary.colourfulness_weight": 0.5, "secondary.colourfulness_weight": 0.5}}
    quality = result["quality"]
    assert quality["tiny"]["color/delta_e2000"] != quality["vivid"]["color/delta_e2000"]
    assert quality["oracle_median"]["class_colour_distance"] < quality["tiny"]["class_colour_distance"]
    assert all(result["training"][e]["secondary"]["wall_seconds"] > 0 for e in ("tiny", "vivid"))
    assert all(result["page_seconds"][e] > 0 for e in ("tiny", "vivid"))
    assert result["samples"]["pages"] == [1]
    from dualflow.data.io import read_image

    sheet = read_image(tmp_path / "out" / "ablation_samples.png", 3)
    assert sheet.shape == (45, 4 * 32 + 3 * 2, 3)  # quarter-size 128×181: B&W, 2 models, colour
    table = (tmp_path / "out" / "ablation.md").read_text()
    assert "| vivid | colourfulness_weight=0.5 |" in table and "| tiny | — |" in table
    manifest = json.loads((runs / "vivid" / "manifest.json").read_text())
    manifest["stages"]["attention"]["best_ckpt"] = manifest["stages"]["secondary"]["best_ckpt"]
    (runs / "vivid" / "manifest.json").write_text(json.dumps(manifest))
    assert main([*args, "--experiments", "tiny,vivid"]) == 2
