"""Exact resume: a stage stopped after k steps and resumed ends where an uninterrupted run ends; a torn
checkpoint never strands a run."""

import subprocess
import sys

import lightning as L
import pytest
import torch

from dualflow.checkpoints import AtomicCheckpointIO, is_intact
from dualflow.cli import main
from tests.conftest import CONF, REPO, fit_args


class StopAt(L.Callback):
    """Stops training after ``step`` optimizer steps, like a killed job (the last checkpoint is on disk)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _weights(ckpt_path):
    ckpt = torch.load(ckpt_path, weights_only=True)
    return ckpt["global_step"], {k: v for k, v in ckpt["state_dict"].items() if k.startswith(("net.", "disc."))}


def assert_resume_is_exact(stage: str, name: str, root, common: list[str], stop: int, total: int,
                           control: str) -> None:
    """Run ``stage`` for ``total`` steps (a), and stopped after ``stop`` then resumed from last.ckpt (b): the
    weights must be equal. A control run (c) with ``control`` (e.g. another seed) must end elsewhere, so the
    comparison can fail."""
    main(fit_args(stage, root / "a", "r", *common))
    main(fit_args(stage, root / "b", "r", *common, "--trainer.callbacks+=tests.test_resume.StopAt",
                  f"--trainer.callbacks.init_args.step={stop}"))
    assert _weights(root / "b" / "r" / name / "checkpoints" / "last.ckpt")[0] == stop
    main(fit_args(stage, root / "b", "r", *common, "--ckpt_path=last"))
    step_a, wa = _weights(root / "a" / "r" / name / "checkpoints" / "last.ckpt")
    step_b, wb = _weights(root / "b" / "r" / name / "checkpoints" / "last.ckpt")
    assert step_a == step_b == total
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    main(fit_args(stage, root / "c", "r", *common, control))
    _, wc = _weights(root / "c" / "r" / name / "checkpoints" / "last.ckpt")
    assert any(not torch.allclose(wa[k], wc[k], atol=1e-6) for k in wa)


def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_experiment, tmp_path):
    # Stage 2 draws random patches from the global RNG and crosses an epoch boundary (4 batches an epoch):
    # both must be restored exactly. The control run draws other random patches.
    attention = f"--model.attention_ckpt={tiny_experiment / 'tiny' / 'attention' / 'checkpoints' / 'best.ckpt'}"
    common = [attention, "--trainer.max_steps=7", "--checkpoint_every_n_steps=1", "--model.random_share=0.5"]
    assert_resume_is_exact("stage2", "primary", tmp_path, common, stop=5, total=7, control="--seed_everything=1")


def _tear(path) -> None:
    """Cut a checkpoint to half its size, as a kill or a full disk during its write would leave it."""
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def test_a_torn_last_checkpoint_resumes_from_the_newest_intact_one(tmp_path):
    from dualflow.orchestrator import main as train_main

    args = ["--stage", "1", "--experiment", "torn", "--runs_dir", str(tmp_path), "--preset", "none",
            "--config", str(CONF / "tiny_common.yaml"), "--config", str(CONF / "tiny_stage1.yaml")]
    assert train_main([*args, "--trainer.max_steps=2"]) == 0
    ckpts = tmp_path / "torn" / "attention" / "checkpoints"
    _tear(ckpts / "last.ckpt")
    assert not is_intact(ckpts / "last.ckpt") and is_intact(ckpts / "best.ckpt")
    result = subprocess.run([sys.executable, "-m", "dualflow", "train", *args, "--trainer.max_steps=4", "--resume"],
                            cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"{ckpts / 'last.ckpt'} is torn" in result.stderr and "resuming from" in result.stderr
    assert "Restoring states from the checkpoint path at" in result.stdout + result.stderr  # resumed, not restarted
    assert is_intact(ckpts / "last.ckpt") and _weights(ckpts / "last.ckpt")[0] == 4


def test_resume_stops_with_a_message_when_no_checkpoint_is_intact(tmp_path, capsys):
    main(fit_args("stage1", tmp_path, "torn", "--trainer.max_steps=2"))
    ckpts = tmp_path / "torn" / "attention" / "checkpoints"
    for path in ckpts.glob("*.ckpt"):
        _tear(path)
    with pytest.raises(SystemExit, match="no intact checkpoint to resume from") as stop:
        main(fit_args("stage1", tmp_path, "torn", "--ckpt_path=last"))
    assert str(ckpts / "last.ckpt") in str(stop.value) and str(ckpts / "best.ckpt") in str(stop.value)
    with pytest.raises(SystemExit, match="best.ckpt is torn"):
        main(fit_args("stage1", tmp_path, "torn", f"--ckpt_path={ckpts / 'best.ckpt'}"))


def test_a_checkpoint_write_that_fails_leaves_the_previous_checkpoint_whole(tmp_path):
    path = tmp_path / "last.ckpt"
    io = AtomicCheckpointIO()
    io.save_checkpoint({"step": 1, "w": torch.ones(3)}, path)
    with pytest.raises(Exception):  # noqa: B017 - whatever the pickler raises, the write must not tear the file
        io.save_checkpoint({"step": 2, "bad": lambda: None}, path)  # a lambda cannot be pickled: fails mid-write
    assert is_intact(path) and torch.load(path, weights_only=True)["step"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["last.ckpt"]  # no temporary file left behind
