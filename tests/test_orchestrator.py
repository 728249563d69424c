"""`dualflow train` as a user runs it: every stage in its own process with the preset picked for the machine,
then the finishing step (sample pages and the composite test); the baseline through the same orchestrator."""

import json

import numpy as np
import torch
from PIL import Image
from scipy import ndimage

from dualflow.orchestrator import composite_overrides, main

GPU = torch.cuda.is_available()

# Small pages and two steps on top of whatever preset `auto` picks: only --data.* / --trainer.* overrides reach
# every stage (and the composite test), as with `make train ARGS=...`.
SMALL = ["--trainer.max_steps=2", "--trainer.val_check_interval=2", "--trainer.logger=false",
         "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false", "--data.image_size=64",
         "--data.dpi=0", "--data.cache=null", "--data.crop_size=64", "--data.n_train=8", "--data.n_val=2",
         "--data.n_test=2", "--data.n_fid=2",
         "--data.batch_size=2", "--data.num_workers=0"]


def test_train_all_runs_three_stages_samples_and_the_composite_test_then_the_baseline(tmp_path):
    common = ["--experiment", "all", "--runs_dir", str(tmp_path), "--preset", "auto"]
    assert main(["--stage", "all", *common, "--samples", "2", "--sample_size", "96", *SMALL]) == 0
    stages = json.loads((tmp_path / "all" / "manifest.json").read_text())["stages"]
    for name, number in (("attention", 1), ("primary", 2), ("secondary", 3)):
        assert stages[name]["stage"] == number and stages[name]["global_step"] == 2, name
        # `auto` is the preset for this machine: cpu without a GPU (its model sizes, not the stage files' GPU sizes).
        assert stages[name]["config"]["trainer"]["accelerator"] == ("gpu" if GPU else "cpu")
    if not GPU:
        assert stages["attention"]["config"]["model"]["init_args"]["dim"] == 48  # experiments/presets/cpu/stage1.yaml
        assert stages["secondary"]["config"]["model"]["init_args"]["working_size"] == 256
    composite = stages["composite"]["metrics"]  # the finishing test ran on the stages' small pages
    assert 0 < composite["test/color/delta_e2000"] < 100 and "test/global/fid_randinit" in composite
    samples = tmp_path / "all" / "samples"
    assert len(list(samples.glob("*_debug.png"))) == 2
    assert len([p for p in samples.glob("*.png") if not p.stem.endswith(("_debug", "_hints16"))]) == 2
    # The models take hints: each sample also automatic | 16 clicks, and the clicks as a hint layer to replay.
    for panel_path in sorted(samples.glob("*_hints16.png")):
        stem = panel_path.stem.removesuffix("_hints16")
        auto, both = np.asarray(Image.open(samples / f"{stem}.png")), np.asarray(Image.open(panel_path))
        assert both.shape[1] == 2 * auto.shape[1] + 2 and both.shape[0] > auto.shape[0]  # two columns, labels
        assert np.array_equal(both[-auto.shape[0]:, :auto.shape[1]], auto)  # the automatic page as written
        layer = np.asarray(Image.open(samples / "input" / "hints" / f"{stem}_hints.png"))
        assert layer.shape == (*auto.shape[:2], 4) and 0 < ndimage.label(layer[..., 3] > 127)[1] <= 16
    assert len(list(samples.glob("*_hints16.png"))) == 2

    assert main(["--stage", "baselines", *common, *SMALL]) == 0  # `make train-baseline`: both baselines
    stages = json.loads((tmp_path / "all" / "manifest.json").read_text())["stages"]
    for name in ("baseline", "resize_baseline"):
        baseline = stages[name]
        assert baseline["global_step"] == 2 and baseline["metrics"]["val/color/delta_e2000"] > 0
        assert GPU or baseline["config"]["model"]["init_args"]["base"] == 22  # the cpu preset
    assert GPU or stages["resize_baseline"]["config"]["model"]["init_args"]["working_size"] == 256


def test_only_shared_overrides_reach_the_composite_test():
    overrides = ["--model.lr=0.1", "--data.source", "stream", "--trainer.devices=2", "--model.base", "8",
                 "--data.root=s3://b/x", "--model.allow_random_backbone", "true"]
    assert composite_overrides(overrides) == ["--data.source", "stream", "--trainer.devices=2", "--data.root=s3://b/x",
                                              "--model.allow_random_backbone", "true"]
