"""W&B, offline: assert what the runs really logged by reading their transaction logs."""

import json
from pathlib import Path

from dualflow.cli import main
from tests.conftest import CONF, fit_args
from tests.wandb_offline import read_run


def _run_dir(runs: Path, exp: str, stage: str) -> Path:
    dirs = sorted((runs / exp / stage / "wandb").glob("offline-run-*"))
    assert len(dirs) == 1, dirs
    return dirs[0]


def test_offline_runs_log_config_metrics_panels_and_best_summaries(tiny_experiment, tmp_path):
    ckpts = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())["stages"]
    wandb = ["--config", str(CONF / "tiny_wandb.yaml"), "--trainer.max_steps=6"]
    main(fit_args("stage1", tmp_path, "wb", *wandb))
    main(fit_args("stage3", tmp_path, "wb", *wandb, f"--model.attention_ckpt={ckpts['attention']['best_ckpt']}",
                  f"--model.primary_ckpt={ckpts['primary']['best_ckpt']}"))
    stage1 = read_run(_run_dir(tmp_path, "wb", "attention"))
    stage3 = read_run(_run_dir(tmp_path, "wb", "secondary"))
    for run, job in ((stage1, "attention"), (stage3, "secondary")):
        assert run["exited"] and run["group"] == "wb" and run["job_type"] == job
        assert run["config"]["model"]["init_args"]["lr"] > 0 and run["config"]["experiment"] == "wb"
        assert run["config"]["data"]["image_size"] == 64
    logged = set().union(*stage1["history"], *stage3["history"])
    for key in ("val/attention/auroc", "val/attention/iou", "val/color/delta_e2000", "val/color/psnr",
                "val/transition/seam", "val/transition/delta_e2000", "val/edge/f1", "val/edge/chroma_on_ink",
                "val/global/lpips_randinit", "train/loss", "data/skipped"):
        assert key in logged, key
    panels = [h for h in stage3["history"] if h.get("val/panels/secondary/_type") == "images/separated"]
    assert panels
    media = _run_dir(tmp_path, "wb", "secondary") / "files" / panels[0]["val/panels/secondary/filenames"][0]
    assert media.is_file() and media.stat().st_size > 1000
    # Summaries keep the best value, not the last one.
    losses = [h["val/loss"] for h in stage1["history"] if "val/loss" in h]
    assert len(losses) == 3 and stage1["summary"]["val/loss"] == {"min": min(losses)}
    aurocs = [h["val/attention/auroc"] for h in stage1["history"] if "val/attention/auroc" in h]
    assert stage1["summary"]["val/attention/auroc"] == {"max": max(aurocs)}
    manifest = json.loads((tmp_path / "wb" / "manifest.json").read_text())["stages"]
    assert manifest["attention"]["wandb"]["id"] == stage1["id"] and manifest["attention"]["wandb"]["mode"] == "offline"
