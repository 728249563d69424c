"""W&B, offline: assert what the runs really logged by reading their transaction logs."""

import json
from pathlib import Path

import pytest
import torch

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
    # Stage 3 takes hints: its validation also scores the pages with 16 clicks, and the same pages without.
    hinted = [(h["val/hints0/color/delta_e2000"], h["val/hints16/color/delta_e2000"]) for h in stage3["history"]
              if "val/hints16/color/delta_e2000" in h]
    assert hinted and all(with_hints < without - 1.0 for without, with_hints in hinted), hinted
    assert {"val/hints16/transition/seam", "val/hints16/loss"} <= set().union(*stage3["history"])
    assert not any(k.startswith("val/hints") for h in stage1["history"] for k in h)  # attention takes no hints
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


def test_stage3_logs_fid_and_keeps_its_best(tiny_experiment, tmp_path):
    ckpts = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())["stages"]
    main(fit_args("stage3", tmp_path, "fid", "--config", str(CONF / "tiny_wandb.yaml"), "--trainer.max_steps=4",
                  f"--model.attention_ckpt={ckpts['attention']['best_ckpt']}",
                  f"--model.primary_ckpt={ckpts['primary']['best_ckpt']}"))
    run = read_run(_run_dir(tmp_path, "fid", "secondary"))
    fids = [h["val/global/fid_randinit"] for h in run["history"] if "val/global/fid_randinit" in h]
    assert len(fids) == 2 and all(f > 0 for f in fids)  # every validation (fid_every_n_val: 1), on n_fid pages
    assert run["summary"]["val/global/fid_randinit"] == {"min": min(fids)}
    ckpt = torch.load(tmp_path / "fid" / "secondary" / "checkpoints" / "last.ckpt", weights_only=True)
    assert not any(k.startswith("val_fid.") for k in ckpt["state_dict"])  # no Inception in checkpoints


def test_the_composite_is_a_wandb_run_with_table_panels_and_samples(tiny_experiment, tmp_path):
    import shutil

    from PIL import Image

    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny")
    samples = tmp_path / "samples"
    samples.mkdir()
    for name in ("page_a", "page_a_debug", "page_b", "page_b_hints16"):
        Image.new("RGB", (40, 30), (200, 40, 40)).save(samples / f"{name}.png")
    main(["test", "--config", "experiments/composite.yaml", "--config", str(CONF / "tiny_common.yaml"), "--config",
          str(CONF / "tiny_composite.yaml"), "--config", str(CONF / "tiny_wandb.yaml"), "--experiment", "tiny",
          "--runs_dir", str(runs), f"--model.samples_dir={samples}", "--model.log_pages=2"])
    run_dir = _run_dir(runs, "tiny", "composite")
    run = read_run(run_dir)
    assert run["exited"] and run["group"] == "tiny" and run["job_type"] == "composite"
    for key in ("test/color/delta_e2000", "test/global/fid_randinit", "test/global/lpips_randinit",
                "test/transition/seam", "test/edge/f1", "test/coherence/seam_disagreement"):
        assert key in run["summary"], key
    history = {k: v for h in run["history"] for k, v in h.items()}
    assert history["test/pages/_type"] == "table-file"
    table = json.loads((run_dir / "files" / history["test/pages/path"]).read_text())
    assert table["columns"][:5] == ["page", "delta_e2000", "seam", "patches", "seconds"]
    assert len(table["data"]) == 4  # every test page (tiny: n_test 4), worst ΔE2000 first
    des = [row[1] for row in table["data"]]
    assert des == sorted(des, reverse=True) and all(d > 0 for d in des)
    assert history["test/panels/_type"] == "images/separated" and len(history["test/panels/filenames"]) == 2
    assert len(history["test/samples/filenames"]) == 2 and len(history["test/samples_debug/filenames"]) == 1
    assert len(history["test/samples_hints/filenames"]) == 1
    manifest = json.loads((runs / "tiny" / "manifest.json").read_text())["stages"]["composite"]
    assert manifest["wandb"]["id"] == run["id"]
    assert manifest["metrics"]["test/color/delta_e2000"] == pytest.approx(run["summary"]["test/color/delta_e2000"])
