"""Multi-process training on CPU: stages 1 and 2 with 2 gloo DDP processes, through the orchestrator."""

import json
import os
import subprocess
import sys
from pathlib import Path

import lightning as L
import torch

from tests.conftest import CONF, REPO
from tests.wandb_offline import read_run


class RankRecord(L.Callback):
    """Saves, per rank, the (epoch, page name) of every page it trained on and its final trained weights into
    ``folder``."""

    def __init__(self, folder: str):
        self.folder, self.names = Path(folder), []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.names += [(trainer.current_epoch, name) for name in batch["name"]]

    def on_train_end(self, trainer, pl_module) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        torch.save({"names": self.names, "net": pl_module.net.state_dict()},
                   self.folder / f"rank{trainer.global_rank}.pt")


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
        result = _train(stage, tmp_path, "--trainer.callbacks+=tests.test_ddp.RankRecord",
                        f"--trainer.callbacks.init_args.folder={tmp_path / 'ranks' / stage}")
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
        ranks = [torch.load(tmp_path / "ranks" / stage / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
        # In each epoch every rank trained on its own shard of the pages; gradient averaging kept the replicas equal.
        seen = [set(r["names"]) for r in ranks]
        assert len(seen[0]) == len(seen[1]) == 16 and not seen[0] & seen[1]
        for key, value in ranks[0]["net"].items():
            assert torch.equal(value, ranks[1]["net"][key]), (stage, key)
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
