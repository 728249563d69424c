"""bf16-mixed: everything that is not a network computes in float32 (CPU autocast does not reproduce the GPU's
stage-1 crash, so the functions get bfloat16 inputs directly), and every stage runs under bf16-mixed."""

import json

import lightning as L
import pytest
import torch

from dualflow.cli import main
from dualflow.data.synth import SynthManga
from dualflow.fusion import Fusion
from dualflow.metrics.suite import build_suite, compute_logged, update_suite
from dualflow.patching import crop, plan_patches
from dualflow.pipeline import GuidedFill, pooled_canvas, primary_inputs
from dualflow.precision import float32
from dualflow.stages.attention import complexity_target
from tests.conftest import fit_args


def _bf16(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(the bfloat16 tensor, the same values in float32): the reference sees exactly what bf16 holds."""
    low = x.bfloat16()
    return low, low.float()


def _autocast():
    return torch.autocast("cpu", dtype=torch.bfloat16)


def test_float32_leaves_autocast_and_casts_half_precision_arguments():
    @float32
    def f(a, b, n=None):
        return (a @ b).dtype, a.dtype, n.dtype

    x = torch.rand(4, 4).bfloat16()
    with _autocast():
        assert (torch.rand(4, 4) @ torch.rand(4, 4)).dtype == torch.bfloat16  # autocast is on here
        assert f(x, x, n=torch.zeros(1, dtype=torch.float64)) == (torch.float32, torch.float32, torch.float64)


def test_complexity_target_from_bfloat16_is_float32_and_matches():
    """The stage-1 crash on an H200: torch.quantile got a bfloat16 map inside autocast."""
    page = SynthManga(1)(0, 64)
    color, ref = _bf16(torch.from_numpy(page.color).permute(2, 0, 1)[None].repeat(2, 1, 1, 1))
    with _autocast():
        target = complexity_target(color, 8)
    assert target.dtype == torch.float32
    assert torch.allclose(target, complexity_target(ref, 8), atol=1e-6)


def test_metric_suite_from_bfloat16_matches_float32():
    g = torch.Generator().manual_seed(0)
    preds, preds_ref = _bf16(torch.rand(2, 3, 48, 48, generator=g))
    target = torch.rand(2, 3, 48, 48, generator=g)
    target[..., :24, :24] = 0.4  # a flat region, where the tone residue is measured
    masks = (torch.rand(2, 1, 48, 48, generator=g) > 0.5).float()
    inputs = dict(target=target, bw=masks, transition=masks, seams=masks, detailed=masks)
    low, high = (build_suite("page", "t", lpips=True, allow_random_backbone=True) for _ in range(2))
    with _autocast():
        update_suite(low, preds=preds, **inputs)
    update_suite(high, preds=preds_ref, **inputs)
    a, b = compute_logged(low), compute_logged(high)
    assert a.keys() == b.keys() and len(a) >= 9
    for k in a:
        assert a[k].dtype == torch.float32 and torch.allclose(a[k], b[k], rtol=1e-4, atol=1e-5), k


def test_planning_inputs_and_fusion_from_bfloat16_match_float32():
    page = (96, 80)
    sample = SynthManga(2)(0, page)
    bw, bw_ref = _bf16(torch.from_numpy(sample.bw)[None])
    imp, imp_ref = _bf16(torch.rand(12, 10, generator=torch.Generator().manual_seed(1)))
    with _autocast():
        plan = plan_patches(imp, page, patch_size=32, budget=4, threshold=0.3, band=8)
    ref_plan = plan_patches(imp_ref, page, patch_size=32, budget=4, threshold=0.3, band=8)
    assert torch.equal(plan.boxes, ref_plan.boxes) and plan.coverage.dtype == torch.float32
    page_idx = torch.zeros(len(plan), dtype=torch.long)
    with _autocast():
        x = primary_inputs(bw[None], imp[None, None], plan.boxes, page_idx, (32, 32))
    x_ref = primary_inputs(bw_ref[None], imp_ref[None, None], plan.boxes, page_idx, (32, 32))
    assert x.dtype == torch.float32 and torch.allclose(x, x_ref, atol=1e-6)
    g = torch.Generator().manual_seed(2)
    fill = GuidedFill(a=torch.rand(1, 3, 24, 20, generator=g), b=torch.rand(1, 3, 24, 20, generator=g) - 0.5,
                      bw=bw_ref[None], tone_radius=2)
    patches, patches_ref = _bf16(crop(fill.full()[0], plan.boxes) + 0.05)
    with _autocast():
        fused = Fusion()(patches, plan, fill, bw, rgb=True)
        canvas, coverage = pooled_canvas(patches, plan.boxes, plan.weights, page, (24, 20))
    ref = Fusion()(patches_ref, plan, fill, bw_ref, rgb=True)
    ref_canvas, _ = pooled_canvas(patches_ref, plan.boxes, plan.weights, page, (24, 20))
    assert fused.page.dtype == torch.float32 and torch.allclose(fused.page, ref.page, atol=1e-5)
    assert fused.report == pytest.approx(ref.report, rel=1e-4, abs=1e-6)
    assert canvas.dtype == torch.float32 and torch.allclose(canvas, ref_canvas, atol=1e-5)


class DtypeProbe(L.Callback):
    """Records, per stage, the dtypes of the trained network's convolution outputs in its training steps: what
    says that bf16-mixed was really in force, not only asked for."""

    seen: dict[str, set] = {}  # the CLI builds the instance; the test reads the class

    def on_train_start(self, trainer, pl_module) -> None:
        self.record, self.active = DtypeProbe.seen.setdefault(pl_module.stage, set()), False
        self.handles = [m.register_forward_hook(self._seen) for m in pl_module.net.modules()
                        if isinstance(m, torch.nn.Conv2d)]

    def _seen(self, module, inputs, output) -> None:
        if self.active:
            self.record.add(output.dtype)

    def on_train_batch_start(self, *args) -> None:
        self.active = True  # training steps only: validation and the untrained reference are not its business

    def on_train_batch_end(self, *args) -> None:
        self.active = False

    def on_train_end(self, trainer, pl_module) -> None:
        for handle in self.handles:
            handle.remove()


@pytest.mark.parametrize("accelerator", ["cpu", pytest.param("gpu", marks=pytest.mark.skipif(
    not torch.cuda.is_available(), reason="no GPU"))])
def test_every_stage_and_the_composite_run_under_bf16_mixed(tmp_path, accelerator):
    """On a GPU too: the metrics the composite test builds per page must live on the pages' device."""
    precision, device = "--trainer.precision=bf16-mixed", f"--trainer.accelerator={accelerator}"
    short = ("--trainer.max_steps=2", "--trainer.val_check_interval=2")
    DtypeProbe.seen.clear()
    for stage in ("stage1", "stage2", "stage3", "baseline"):
        main(fit_args(stage, tmp_path, "bf16", precision, device, *short,
                      "--trainer.callbacks+=tests.test_precision.DtypeProbe"))
    conf = "tests/conf/tiny_composite.yaml"
    main(["test", "--config", "experiments/composite.yaml", "--config", "tests/conf/tiny_common.yaml", "--config",
          conf, "--experiment", "bf16", "--runs_dir", str(tmp_path), precision, device])
    # The trained networks computed in bfloat16 (autocast was on), while losses and metrics stayed finite.
    assert DtypeProbe.seen == {name: {torch.bfloat16} for name in ("attention", "primary", "secondary", "baseline")}
    stages = json.loads((tmp_path / "bf16" / "manifest.json").read_text())["stages"]
    for name in ("attention", "primary", "secondary", "baseline"):
        assert stages[name]["global_step"] == 2 and stages[name]["metrics"], name
        assert all(v == v for v in stages[name]["metrics"].values()), name  # no NaN
    composite = stages["composite"]["metrics"]
    assert 0 < composite["test/color/delta_e2000"] < 100 and "test/global/fid_randinit" in composite


def test_colour_conversions_and_sobel_match_kornia_without_device_constants():
    """Our Lab conversions and Sobel derivatives are kornia's (which build constant tensors on the device each
    call: a blocking copy on a GPU), to float rounding, including the gamut and black/white corners."""
    import kornia.color
    import kornia.filters

    from dualflow.color import lab_to_rgb, rgb_to_lab
    from dualflow.filters import sobel

    g = torch.Generator().manual_seed(0)
    rgb = torch.rand(2, 3, 17, 23, generator=g)
    rgb[0, :, 0, 0], rgb[0, :, 0, 1], rgb[0, :, 0, 2] = 0.0, 1.0, 0.02  # black, white, the linear segment
    assert torch.allclose(rgb_to_lab(rgb), kornia.color.rgb_to_lab(rgb), atol=1e-4)
    lab = torch.cat([torch.rand(2, 1, 9, 9, generator=g) * 100, torch.randn(2, 2, 9, 9, generator=g) * 80], 1)
    assert torch.allclose(lab_to_rgb(lab), kornia.color.lab_to_rgb(lab, clip=True), atol=1e-5)
    assert torch.allclose(lab_to_rgb(rgb_to_lab(rgb)), rgb, atol=1e-4)
    x = torch.rand(2, 2, 13, 19, generator=g)
    assert torch.allclose(sobel(x), kornia.filters.spatial_gradient(x), atol=1e-6)
