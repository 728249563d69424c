"""Shared fixtures: a tiny experiment trained once per session through the real CLI (stages 1→3)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")
# Hermetic metric backbones: an empty torch hub cache, whatever this machine has cached (tests that need cached
# weights make their own TORCH_HOME).
os.environ["TORCH_HOME"] = tempfile.mkdtemp(prefix="dualflow-torch-home-")
# Tests never reach the network: a missing backbone is "downloaded" from an empty local mirror (and fails).
os.environ["DUALFLOW_BACKBONE_URL"] = Path(tempfile.mkdtemp(prefix="dualflow-no-mirror-")).as_uri()
# One pytest worker per core (`make test`: pytest-xdist): each worker and the processes it starts share the cores.
_THREADS = max(1, (os.cpu_count() or 2) // int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
os.environ["OMP_NUM_THREADS"] = str(_THREADS)
torch.set_num_threads(_THREADS)

REPO = Path(__file__).resolve().parents[1]
CONF = REPO / "tests" / "conf"


def fit_args(stage: str, runs: Path, experiment: str = "tiny", *extra: str) -> list[str]:
    """Arguments of ``python -m dualflow fit`` for a tiny run of ``stage`` (stage1|stage2|stage3|baseline)."""
    return ["fit", "--config", str(REPO / "experiments" / f"{stage}.yaml"), "--config", str(CONF / "tiny_common.yaml"),
            "--config", str(CONF / f"tiny_{stage}.yaml"), "--experiment", experiment, "--runs_dir", str(runs), *extra]


@pytest.fixture(autouse=True)
def _repo_cwd(monkeypatch):
    """Run every test from the repository root (where experiments/base.yaml is found), seeded."""
    monkeypatch.chdir(REPO)
    torch.manual_seed(0)
    np.random.seed(0)


@pytest.fixture(scope="session")
def tiny_experiment(tmp_path_factory) -> Path:
    """runs dir with experiment 'tiny': stages 1, 2 and 3 trained for a few steps via dualflow.cli.main."""
    from dualflow.cli import main

    runs = tmp_path_factory.mktemp("runs")
    cwd = os.getcwd()
    os.chdir(REPO)
    try:
        for stage in ("stage1", "stage2", "stage3"):
            main(fit_args(stage, runs))
    finally:
        os.chdir(cwd)
    return runs
