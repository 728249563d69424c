"""Exact resume: a stage stopped after k steps and resumed ends where an uninterrupted run ends."""

import lightning as L
import torch

from dualflow.cli import main
from tests.conftest import fit_args


class StopAt(L.Callback):
    """Stops training after ``step`` optimizer steps, like a killed job (the last checkpoint is on disk)."""

    def __init__(self, step: int):
        self.step = step

    def on_train_batch_end(self, trainer, *args) -> None:
        if trainer.global_step >= self.step:
            trainer.should_stop = True


def _weights(ckpt_path):
    ckpt = torch.load(ckpt_path, weights_only=True)
    return ckpt["global_step"], {k: v for k, v in ckpt["state_dict"].items() if k.startswith("net.")}


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
