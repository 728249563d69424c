"""Stages through the real CLI: stage 1 records its checkpoint, later stages freeze earlier ones bitwise,
checkpoints hold only what the stage trained, and bad or missing checkpoints fail clearly."""

import json

import pytest
import torch

from dualflow.cli import main
from dualflow.stages.frozen import StageCheckpointError, load_stage_net
from tests.conftest import fit_args


def _manifest(runs, exp="tiny"):
    return json.loads((runs / exp / "manifest.json").read_text())


def test_manifest_records_every_stage(tiny_experiment):
    stages = _manifest(tiny_experiment)["stages"]
    for name, number in (("attention", 1), ("primary", 2), ("secondary", 3)):
        entry = stages[name]
        assert entry["stage"] == number and entry["best_ckpt"].endswith("best.ckpt") and not entry["stale"]
        assert entry["metrics"]["val/loss"] > 0 and entry["config"]["model"]["class_path"]
        assert entry["started"] <= entry["finished"] and entry["global_step"] == 4
    assert "val/attention/auroc" in stages["attention"]["metrics"]
    assert "val/color/delta_e2000" in stages["primary"]["metrics"]
    assert "val/transition/seam" in stages["secondary"]["metrics"]


def test_the_untrained_reference_is_the_untrained_models_score(tiny_experiment, tmp_path):
    """Stage 2's acceptance figure is relative to the untrained model, measured before training: validating a
    freshly initialised stage 2 (same seed, same pages) must give the recorded figure, and training moves it."""
    import shutil

    shutil.copytree(tiny_experiment / "tiny", tmp_path / "tiny")  # validate may touch the manifest
    primary = _manifest(tiny_experiment)["stages"]["primary"]
    args = fit_args("stage2", tmp_path, "tiny")
    cli = main(["validate", *args[1:]])
    fresh = float(cli.trainer.callback_metrics["val/color/delta_e2000"])
    untrained = primary["untrained_metrics"]["val/color/delta_e2000"]
    assert fresh == pytest.approx(untrained, rel=1e-4)
    assert primary["metrics"]["val/color/delta_e2000"] != untrained


def test_checkpoints_hold_only_the_trained_stage(tiny_experiment):
    stages = _manifest(tiny_experiment)["stages"]
    for name in ("primary", "secondary"):
        ckpt = torch.load(stages[name]["best_ckpt"], weights_only=True)
        prefixes = {k.split(".")[0] for k in ckpt["state_dict"]}
        assert prefixes == {"net"}, prefixes  # no frozen stages, no metric backbones
        assert ckpt["dualflow"]["stage"] == name


def _snapshot(module):
    return {k: v.clone() for k, v in module.state_dict().items()}


def test_stage2_leaves_stage1_bitwise_untouched(tiny_experiment, tmp_path):
    from dualflow.stages.primary import PrimaryModule

    attention_ckpt = _manifest(tiny_experiment)["stages"]["attention"]["best_ckpt"]
    cli = main(fit_args("stage2", tmp_path, "frz", f"--model.attention_ckpt={attention_ckpt}",
                        "--trainer.max_steps=3"))
    module: PrimaryModule = cli.model
    frozen = module.frozen["attention"]
    reference, _ = load_stage_net(attention_ckpt, "attention")
    after = frozen.state_dict()
    assert any("running_mean" in k for k in after)  # BatchNorm statistics are part of the check
    for k, v in reference.state_dict().items():
        assert torch.equal(after[k], v), k
    assert all(not p.requires_grad for p in frozen.parameters())
    opt_params = {id(p) for group in cli.trainer.optimizers[0].param_groups for p in group["params"]}
    assert not opt_params & {id(p) for p in frozen.parameters()}
    assert opt_params == {id(p) for p in module.net.parameters()}
    module.train()
    assert not frozen.training and all(not m.training for m in frozen.modules()) and module.net.training


def test_stage3_leaves_stages_1_and_2_bitwise_untouched(tiny_experiment, tmp_path):
    stages = _manifest(tiny_experiment)["stages"]
    cli = main(fit_args("stage3", tmp_path, "frz3", "--trainer.max_steps=2",
                        f"--model.attention_ckpt={stages['attention']['best_ckpt']}",
                        f"--model.primary_ckpt={stages['primary']['best_ckpt']}"))
    for name in ("attention", "primary"):
        reference, _ = load_stage_net(stages[name]["best_ckpt"], name)
        live = cli.model.frozen[name].state_dict()
        for k, v in reference.state_dict().items():
            assert torch.equal(live[k], v), (name, k)
    assert {id(p) for g in cli.trainer.optimizers[0].param_groups for p in g["params"]} == {
        id(p) for p in cli.model.net.parameters()}


def test_missing_and_incompatible_stage_checkpoints_fail_clearly(tiny_experiment, tmp_path):
    with pytest.raises(FileNotFoundError, match="make train-stage1"):
        main(fit_args("stage2", tmp_path, "empty"))
    with pytest.raises(StageCheckpointError, match="make train-stage1"):
        load_stage_net(tmp_path / "nope.ckpt", "attention")
    primary = _manifest(tiny_experiment)["stages"]["primary"]["best_ckpt"]
    with pytest.raises(StageCheckpointError, match="expected a attention checkpoint, found primary"):
        load_stage_net(primary, "attention")
    ckpt = torch.load(primary, weights_only=True)
    ckpt["state_dict"]["module.net.extra.weight"] = torch.zeros(1)
    del ckpt["state_dict"]["net.out.weight"]
    bad = tmp_path / "bad.ckpt"
    torch.save(ckpt, bad)
    expected = r"missing keys \['out.weight'\].*unexpected keys \['extra.weight'\]"
    with pytest.raises(StageCheckpointError, match=expected):
        load_stage_net(bad, "primary")


def test_wrapper_prefixes_are_stripped(tiny_experiment, tmp_path):
    primary = _manifest(tiny_experiment)["stages"]["primary"]["best_ckpt"]
    ckpt = torch.load(primary, weights_only=True)
    ckpt["state_dict"] = {f"_orig_mod.module.{k}": v for k, v in ckpt["state_dict"].items()}
    torch.save(ckpt, tmp_path / "wrapped.ckpt")
    net, meta = load_stage_net(tmp_path / "wrapped.ckpt", "primary")
    assert meta["plan"]["patch_size"] == 32 and not net.training


def test_retraining_a_stage_marks_later_stages_stale(tiny_experiment, tmp_path):
    import shutil

    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny")
    main(fit_args("stage1", runs, "tiny", "--trainer.max_steps=1", "--trainer.val_check_interval=1"))
    stages = _manifest(runs)["stages"]
    assert not stages["attention"]["stale"] and stages["primary"]["stale"] and stages["secondary"]["stale"]


def test_adversarial_option_trains_generator_and_discriminator(tiny_experiment, tmp_path):
    attention_ckpt = _manifest(tiny_experiment)["stages"]["attention"]["best_ckpt"]
    cli = main(fit_args("stage2", tmp_path, "gan", f"--model.attention_ckpt={attention_ckpt}",
                        "--model.gan_weight=0.1", "--trainer.max_steps=2", "--trainer.val_check_interval=1"))
    module = cli.model
    assert not module.automatic_optimization and module.disc is not None
    # Two training steps count two, not four: the discriminator's steps are not global steps.
    assert len(cli.trainer.optimizers) == 2 and cli.trainer.global_step == 2
    # Both trained: every parameter of the generator and the discriminator took both AdamW steps.
    for optimizer in cli.trainer.optimizers:
        steps = {int(state["step"]) for state in optimizer.state.values()}
        assert steps == {2} and len(optimizer.state) == sum(len(g["params"]) for g in optimizer.param_groups)
    assert "train/d_loss" in cli.trainer.callback_metrics and "train/g_adv" in cli.trainer.callback_metrics
    ckpt = torch.load(tmp_path / "gan" / "primary" / "checkpoints" / "last.ckpt", weights_only=True)
    assert any(k.startswith("disc.") for k in ckpt["state_dict"])  # trained by this stage: kept


def test_load_class_imports_what_a_config_names_and_refuses_what_is_not_a_class_path():
    from dualflow.stage_table import load_class
    from dualflow.stages.primary import PrimaryModule

    assert load_class("dualflow.stages.primary.PrimaryModule") is PrimaryModule
    with pytest.raises(ValueError, match="not a class path"):
        load_class("PrimaryModule")
