"""The command line: every experiment config runs (tiny, CPU), overrides reach the model, the sweep command
runs as `wandb agent` would build it, the orchestrator refuses to skip stages."""

import json
import os
import subprocess
import sys

import pytest
import torch
import yaml

from dualflow.cli import main
from dualflow.orchestrator import main as train_main
from tests.conftest import CONF, REPO, fit_args


def _stage_ckpts(runs, exp="tiny"):
    stages = json.loads((runs / exp / "manifest.json").read_text())["stages"]
    return {name: stages[name]["best_ckpt"] for name in ("attention", "primary", "secondary")}


def test_overrides_reach_model_hyperparameters(tmp_path):
    cli = main(fit_args("stage1", tmp_path, "ov", "--model.lr=0.0042", "--model.depth=1", "--data.batch_size=2",
                        "--trainer.max_steps=1"))
    assert cli.model.hparams.lr == pytest.approx(0.0042) and len(cli.model.net.blocks) == 1
    assert cli.datamodule.hparams.batch_size == 2


def test_baseline_config_runs_and_records(tmp_path):
    main(fit_args("baseline", tmp_path, "bl"))
    entry = json.loads((tmp_path / "bl" / "manifest.json").read_text())["stages"]["baseline"]
    assert "val/color/delta_e2000_detailed" in entry["metrics"] and entry["best_ckpt"]


def test_composite_config_tests_the_full_pipeline(tiny_experiment):
    cli = main(["test", "--config", str(REPO / "experiments" / "composite.yaml"), "--config",
                str(CONF / "tiny_common.yaml"), "--config", str(CONF / "tiny_composite.yaml"),
                "--experiment", "tiny", "--runs_dir", str(tiny_experiment)])
    metrics = cli.model.last_metrics
    for key in ("test/color/delta_e2000", "test/transition/seam", "test/edge/f1", "test/global/fid_randinit",
                "test/global/lpips_randinit", "test/color/delta_e2000_detailed"):
        assert key in metrics
    entry = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())["stages"]["composite"]
    assert entry["metrics"]["test/color/delta_e2000"] == pytest.approx(metrics["test/color/delta_e2000"])


def test_predict_colours_the_test_pages_as_colorize_does(tiny_experiment):
    """``dualflow predict`` with the composite config: every test page coloured, the pages `colorize` would write."""
    from dualflow.loader import load_page_colorizer

    cli = main(["predict", "--config", str(REPO / "experiments" / "composite.yaml"), "--config",
                str(CONF / "tiny_common.yaml"), "--config", str(CONF / "tiny_composite.yaml"),
                "--experiment", "tiny", "--runs_dir", str(tiny_experiment)])
    batches = cli.trainer.predict_loop.predictions
    assert sum(b["rgb"].shape[0] for b in batches) == 4 and batches[0]["rgb"].shape[1:] == (3, 64, 64)
    page = next(iter(cli.datamodule.predict_dataloader()))["bw"][0]
    reference = load_page_colorizer("tiny", str(tiny_experiment), device="cpu").colorize_page(page)["rgb"]
    assert (batches[0]["rgb"][0] - reference).abs().max() < 1e-4


def test_a_missing_metric_backbone_is_one_message_not_a_traceback(tiny_experiment, capsys):
    """Offline, without the opt-in, the composite test stops before running: exit code 2 and what to fetch."""
    code = main(["test", "--config", str(REPO / "experiments" / "composite.yaml"), "--config",
                 str(CONF / "tiny_common.yaml"), "--config", str(CONF / "tiny_composite.yaml"),
                 "--model.allow_random_backbone=false", "--experiment", "tiny", "--runs_dir", str(tiny_experiment)])
    err = capsys.readouterr().err
    assert code == 2 and "Traceback" not in err
    assert "error: LPIPS needs its pretrained backbone alexnet-owt-7be5be79.pth" in err
    assert "allow_random_backbone" in err


def test_sweep_command_runs_as_the_agent_builds_it(tmp_path):
    sweep = yaml.safe_load((REPO / "experiments" / "sweeps" / "stage1.yaml").read_text())
    params = sweep["parameters"]
    args = [f"--{k}={v['min'] if 'min' in v else v['values'][0]}" for k, v in params.items()]
    # What the agent appends for us: the sampled parameters; we add tiny CPU settings the same way.
    tiny = ["--config", str(CONF / "tiny_common.yaml"), "--model.heads=2", "--model.window=4",
            "--trainer.max_steps=2", f"--runs_dir={tmp_path}", "--experiment=sweep"]
    cmd = []
    for part in sweep["command"]:
        if part == "${env}":
            cmd.append("/usr/bin/env")
        elif part == "${interpreter}":
            cmd.append(sys.executable)
        elif part == "${args}":
            cmd += args + tiny
        else:
            cmd.append(part)
    result = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "WANDB_MODE": "offline", "WANDB_SWEEP_ID": "abc123"})
    assert result.returncode == 0, result.stderr[-3000:]
    # A sweep run gets its own folder and manifest record; the experiment's stage entry is left alone.
    records = json.loads((tmp_path / "sweep" / "manifest.json").read_text())["stages"]
    assert "attention" not in records and len(records) == 1
    (name, entry), = records.items()
    assert name.startswith("attention/sweep-abc123/") and "/sweeps/abc123/" in entry["best_ckpt"]
    ckpt = torch.load(entry["last_ckpt"], weights_only=True)
    hp = ckpt["hyper_parameters"]
    assert hp["lr"] == pytest.approx(params["model.lr"]["min"]) and hp["dim"] == params["model.dim"]["values"][0]
    for name in ("stage2", "stage3"):
        s = yaml.safe_load((REPO / "experiments" / "sweeps" / f"{name}.yaml").read_text())
        assert f"experiments/{name}.yaml" in s["command"] and "${args}" in s["command"]
        assert s["metric"]["name"] == "val/color/delta_e2000"


def test_orchestrator_refuses_stage_without_its_predecessor(tmp_path, capsys):
    assert train_main(["--stage", "2", "--experiment", "none", "--runs_dir", str(tmp_path)]) == 2
    assert "make train-stage1 EXP=none" in capsys.readouterr().err


def test_orchestrator_runs_a_stage_as_its_own_process(tiny_experiment, tmp_path):
    ckpt = _stage_ckpts(tiny_experiment)["attention"]
    code = train_main(["--stage", "2", "--experiment", "orch", "--runs_dir", str(tmp_path), "--preset", "none",
                       "--config", str(CONF / "tiny_common.yaml"), "--config", str(CONF / "tiny_stage2.yaml"),
                       f"--model.attention_ckpt={ckpt}", "--trainer.max_steps=2"])
    assert code == 0
    assert json.loads((tmp_path / "orch" / "manifest.json").read_text())["stages"]["primary"]["best_ckpt"]


def test_sample_pages_are_drawn_at_the_scale_stage_3_was_trained_at(tiny_experiment):
    from dualflow.orchestrator import training_scale

    # tiny configs train on 64-px thumbnail pages; print-scale pages are drawn at the dpi stage 3 trained at
    assert training_scale("tiny", str(tiny_experiment)) == ["--scale", "0.25"]


def test_sample_pages_of_a_dpi_range_are_drawn_at_the_300_dpi_its_nets_work_at(tiny_experiment, tmp_path):
    from dualflow.orchestrator import training_scale

    for dpi, drawn in ((450, "450"), ([150, 600], "300")):
        manifest = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())
        manifest["stages"]["secondary"]["config"]["data"]["dpi"] = dpi
        (tmp_path / "tiny").mkdir(exist_ok=True)
        (tmp_path / "tiny" / "manifest.json").write_text(json.dumps(manifest))
        assert training_scale("tiny", str(tmp_path)) == ["--dpi", drawn]


def test_compare_lists_headline_figures_and_differing_config(tiny_experiment, tmp_path, capsys):
    import shutil

    from dualflow.bench.compare import main as compare_main

    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny")
    main(fit_args("stage1", runs, "fast", "--model.lr=0.01", "--data.batch_size=2"))
    out = tmp_path / "cmp.md"
    capsys.readouterr()
    assert compare_main(["tiny", "fast", "--runs_dir", str(runs), "--out", str(out)]) == 0
    text = out.read_text()
    assert text == capsys.readouterr().out.split("[dualflow] written")[0].rstrip("\n") + "\n"
    rows = {line.split(" | ")[0].lstrip("| "): line for line in text.splitlines() if line.startswith("| ")}
    assert "attention: model.init_args.lr" in rows and "| 0.001 | 0.01 |" in rows["attention: model.init_args.lr"]
    assert "attention: data.batch_size" in rows
    assert not any("experiment" in k or "_ckpt" in k or "default_root_dir" in k or "group" in k for k in rows)
    assert "attention: val/attention/auroc" in rows and "secondary: val/color/delta_e2000" in rows
    assert rows["secondary: val/color/delta_e2000"].endswith("| — |")  # 'fast' has no stage 3
    assert compare_main(["tiny", "ghost", "--runs_dir", str(runs)]) == 2
