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


def test_interrupted_and_resumed_run_matches_uninterrupted(tiny_experiment, tmp_path):
    # Stage 2 draws random patches from the global RNG and crosses an epoch boundary (4 batches an epoch):
    # both must be restored exactly.
    attention = f"--model.attention_ckpt={tiny_experiment / 'tiny' / 'attention' / 'checkpoints' / 'best.ckpt'}"
    common = [attention, "--trainer.max_steps=7", "--checkpoint_every_n_steps=1", "--model.random_share=0.5"]
    main(fit_args("stage2", tmp_path / "a", "r", *common))
    main(fit_args("stage2", tmp_path / "b", "r", *common, "--trainer.callbacks+=tests.test_resume.StopAt",
                  "--trainer.callbacks.init_args.step=5"))
    step_b, _ = _weights(tmp_path / "b" / "r" / "primary" / "checkpoints" / "last.ckpt")
    assert step_b == 5
    main(fit_args("stage2", tmp_path / "b", "r", *common, "--ckpt_path=last"))
    step_a, wa = _weights(tmp_path / "a" / "r" / "primary" / "checkpoints" / "last.ckpt")
    step_b, wb = _weights(tmp_path / "b" / "r" / "primary" / "checkpoints" / "last.ckpt")
    assert step_a == step_b == 7
    for k in wa:
        assert torch.allclose(wa[k], wb[k], atol=1e-6), k
    # A run whose random patches differ ends elsewhere: the comparison above can fail.
    main(fit_args("stage2", tmp_path / "c", "r", *common, "--seed_everything=1"))
    _, wc = _weights(tmp_path / "c" / "r" / "primary" / "checkpoints" / "last.ckpt")
    assert any(not torch.allclose(wa[k], wc[k], atol=1e-6) for k in wa)
