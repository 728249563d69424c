"""Colour that commits: the adversarial and colourfulness losses are options of every colorizer; they train,
log to W&B, count steps right, resume exactly, and old checkpoints load without them."""

import json

import pytest
import torch

from dualflow.cli import main
from dualflow.color import rgb_to_nlab
from dualflow.stages.secondary import SecondaryModule
from tests.conftest import CONF, fit_args
from tests.test_resume import assert_resume_is_exact
from tests.test_wandb import _run_dir
from tests.wandb_offline import read_run


def _earlier(tiny_experiment, stage: str) -> list[str]:
    stages = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())["stages"]
    needs = {"stage2": ["attention"], "stage3": ["attention", "primary"], "baseline": []}[stage]
    return [f"--model.{s}_ckpt={stages[s]['best_ckpt']}" for s in needs]


@pytest.mark.parametrize("stage, name", [("stage2", "primary"), ("stage3", "secondary"), ("baseline", "baseline")])
def test_gan_and_colourfulness_on_every_colorizer(tiny_experiment, tmp_path, stage, name):
    """Both losses switched on: two optimizers, the discriminator trained and kept, ``max_steps`` counted in
    training steps (Lightning would count both optimizers' steps), D and G losses, D accuracy and the
    colourfulness term in the offline W&B run."""
    cli = main(fit_args(stage, tmp_path, "commit", *_earlier(tiny_experiment, stage), "--config",
                        str(CONF / "tiny_wandb.yaml"), "--model.gan_weight=0.1", "--model.colourfulness_weight=0.5",
                        "--trainer.max_steps=3", "--trainer.log_every_n_steps=1"))
    assert not cli.model.automatic_optimization and len(cli.trainer.optimizers) == 2
    assert cli.trainer.global_step == 3
    run = read_run(_run_dir(tmp_path, "commit", name))
    logged = set().union(*run["history"])
    for key in ("train/d_loss", "train/g_adv", "train/d_accuracy", "train/colourfulness", "train/loss"):
        assert key in logged, key
    accuracy = [h["train/d_accuracy"] for h in run["history"] if "train/d_accuracy" in h]
    assert all(0 <= a <= 1 for a in accuracy)
    ckpt = torch.load(tmp_path / "commit" / name / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(k.startswith("disc.") for k in ckpt["state_dict"]) and len(ckpt["optimizer_states"]) == 2


def test_gan_resume_is_exact(tiny_experiment, tmp_path):
    """Generator and discriminator, both optimizers and both schedules resume to the uninterrupted run."""
    common = ["--model.gan_weight=0.1", "--model.colourfulness_weight=0.5", "--trainer.max_steps=5",
              "--checkpoint_every_n_steps=1"]
    assert_resume_is_exact("baseline", "baseline", tmp_path, common, stop=3, total=5, control="--seed_everything=1")


def test_colourfulness_loss_matches_the_target_rather_than_maximising():
    from dualflow.stages.base import StageModule

    torch.manual_seed(0)
    target = torch.rand(2, 3, 32, 32)
    grey = target.mean(1, keepdim=True).expand(-1, 3, -1, -1)
    loss = lambda pred_rgb: StageModule.colourfulness_loss(None, rgb_to_nlab(pred_rgb), target)  # noqa: E731
    assert float(loss(target)) < 1e-4
    assert float(loss(grey)) > 0.2
    vivid = ((target - 0.5) * 1.8 + 0.5).clamp(0, 1)  # more colourful than the page: also a loss
    assert float(loss(vivid)) > 0.1
    pred = rgb_to_nlab(grey).clone().requires_grad_(True)
    StageModule.colourfulness_loss(None, pred, target).backward()
    stepped = (pred - 0.5 * pred.grad).detach()
    assert float(StageModule.colourfulness_loss(None, stepped, target)) < float(loss(grey))


def test_checkpoints_without_the_new_options_load(tiny_experiment, tmp_path):
    path = tiny_experiment / "tiny" / "secondary" / "checkpoints" / "last.ckpt"
    ckpt = torch.load(path, weights_only=False)
    for key in ("gan_weight", "disc_lr", "colourfulness_weight"):
        ckpt["hyper_parameters"].pop(key, None)
    old = tmp_path / "old.ckpt"
    torch.save(ckpt, old)
    module = SecondaryModule.load_from_checkpoint(old, map_location="cpu")
    assert module.hparams.gan_weight == 0 and module.disc is None and module.automatic_optimization
