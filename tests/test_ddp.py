"""Multi-process training on CPU: stages 1 and 2 with 2 gloo DDP processes, through the orchestrator."""

import json
import os
import subprocess
import sys

from tests.conftest import CONF, REPO
from tests.wandb_offline import read_run


def _train(stage: str, runs, *extra: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "dualflow", "train", "--stage", stage, "--experiment", "ddp", "--preset", "none",
           "--runs_dir", str(runs), "--config", str(CONF / "tiny_common.yaml"), "--config",
           str(CONF / f"tiny_stage{stage}.yaml"), "--config", str(CONF / "tiny_wandb.yaml"),
           "--trainer.accelerator=cpu", "--trainer.devices=2", "--trainer.strategy=ddp",
           *extra]  # (SyncBatchNorm is GPU-only in torch: the ddp preset turns it on for GPUs)
    env = {**os.environ, "WANDB_MODE": "offline", "OMP_NUM_THREADS": "1"}
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=400, env=env)


def test_stages_1_and_2_train_with_two_ddp_processes(tmp_path):
    for stage in ("1", "2"):
        result = _train(stage, tmp_path)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    manifest = json.loads((tmp_path / "ddp" / "manifest.json").read_text())["stages"]
    for name in ("attention", "primary"):
        entry = manifest[name]
        assert entry["best_ckpt"] and entry["global_step"] == 4 and entry["metrics"]["val/loss"] > 0
        assert str(entry["config"]["trainer"]["devices"]) == "2" and entry["config"]["trainer"]["strategy"] == "ddp"
        runs = list((tmp_path / "ddp" / name / "wandb").glob("offline-run-*"))
        assert len(runs) == 1, runs  # rank 0 logs; rank 1 does not start a run
        run = read_run(runs[0])
        assert run["exited"] and run["id"] == entry["wandb"]["id"]
    assert "val/attention/auroc" in manifest["attention"]["metrics"]
    assert "val/color/delta_e2000" in manifest["primary"]["metrics"]
