"""The batched primary flow: the same boxes, crops, canvases and bands for training as for the per-page plans of
inference, and a training step of every stage that never waits on the host (what keeps a GPU busy)."""

import json
import sys

import pytest
import torch
import torch.nn.functional as F
from torchvision.ops import nms

from dualflow.data.datasets import SynthMangaDataset, collate_skipping
from dualflow.filters import bilinear_windows
from dualflow.patching import blend_ramps, crop_pages, paste, paste_pages, select_boxes, transition_band
from dualflow.pipeline import PlanSettings, primary_flow, primary_inputs


def _maps(b=5, h=23, w=31, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 1, h, w, generator=g)


@pytest.mark.parametrize("stride,max_overlap", [(8, 0.4), (16, 0.0), (5, 0.9)])
def test_select_boxes_keeps_what_torchvision_nms_keeps(stride, max_overlap):
    page, patch, budget, threshold = (180, 250), 32, 7, 0.45
    imp = _maps()
    boxes, scores, valid = select_boxes(imp, page, patch, stride, budget, threshold, max_overlap)
    from dualflow.patching import box_scores, candidate_boxes

    cand = candidate_boxes(page, (patch, patch), stride)
    for i in range(imp.shape[0]):
        s = box_scores(imp[i], cand, page)[0]
        keep = s >= threshold
        iou = max_overlap / (2 - max_overlap)
        ref = cand[keep][nms(cand[keep].float(), s[keep], iou)[:budget]]
        assert torch.equal(boxes[i][valid[i]], ref), i
        assert (scores[i][valid[i]] >= threshold).all() and not valid[i][valid[i].sum():].any()  # valid first


def test_diagonal_neighbours_at_exactly_the_overlap_bound_are_not_both_kept():
    # On the default half-patch stride, diagonal neighbours overlap by exactly 25 % of a patch.
    imp = torch.zeros(1, 1, 8, 8)
    imp[..., 0:4, 0:4] = 1.0
    imp[..., 2:6, 2:6] = 0.95
    boxes, _, valid = select_boxes(imp, (64, 64), patch_size=32, budget=4, threshold=0.5, max_overlap=0.25)
    kept = boxes[0][valid[0]].tolist()
    assert [0, 0, 32, 32] in kept and [16, 16, 48, 48] not in kept


def test_batched_crops_windows_and_pastes_equal_the_per_box_ones():
    g = torch.Generator().manual_seed(1)
    pages = torch.rand(3, 3, 70, 90, generator=g)
    imp = torch.rand(3, 1, 9, 12, generator=g)
    boxes = torch.tensor([[0, 0, 24, 24], [46, 66, 70, 90], [10, 30, 34, 54], [5, 5, 29, 29]])
    page = torch.tensor([0, 2, 2, 1])
    crops = crop_pages(pages, boxes, page, (24, 24))
    up = F.interpolate(imp, size=(70, 90), mode="bilinear", align_corners=False)
    windows = bilinear_windows(imp, (70, 90), boxes, page, (24, 24))
    for n, (y0, x0, y1, x1) in enumerate(boxes.tolist()):
        assert torch.equal(crops[n], pages[page[n], :, y0:y1, x0:x1])
        assert torch.allclose(windows[n], up[page[n], :, y0:y1, x0:x1], atol=1e-5)
    pasted = paste_pages(crops, boxes, page, 3, (70, 90))
    for i in range(3):
        acc, _ = paste(crops[page == i], boxes[page == i], torch.ones(int((page == i).sum()), 1, 24, 24), (70, 90))
        assert torch.allclose(pasted[i], acc, atol=1e-6)


def test_the_primary_flow_gives_training_and_inference_the_same_plan():
    """One primary flow: the page-sized canvas, coverage and band of stage-3 training are those of the per-page
    plans that evaluation and inference fuse, and both equal a box-by-box reference (paste, box-wise band)."""
    imp = _maps(b=3, h=12, w=16, seed=4)
    page_size, band = (96, 128), 8
    settings = PlanSettings(patch_size=32, patch_budget=5, patch_threshold=0.5, band_width=band)
    bw = torch.rand(3, 1, *page_size, generator=torch.Generator().manual_seed(5))
    net = torch.nn.Conv2d(2, 3, 3, padding=1)
    flow = primary_flow(net, bw, imp, settings)
    canvas, coverage = flow.canvas()
    bands = flow.transition()
    for i, (patches, plan) in enumerate(flow.plans()):
        boxes, scores, valid = select_boxes(imp[i:i + 1], page_size, 32, budget=5, threshold=0.5)
        assert torch.equal(plan.boxes, boxes[0][valid[0]]) and len(plan) == len(patches) > 0
        ry, rx = blend_ramps(plan.boxes, page_size, (32, 32), settings.feather)
        weights = (ry[:, :, None] * rx[:, None, :])[:, None]
        reference = net(primary_inputs(bw, imp, plan.boxes, torch.full_like(plan.boxes[:, 0], i), (32, 32)))
        assert torch.allclose(patches, reference, atol=1e-5)
        acc, wsum = paste(reference, plan.boxes, weights, page_size)
        assert torch.allclose(plan.weights, weights) and torch.allclose(plan.coverage, wsum.clamp(0, 1), atol=1e-6)
        assert torch.allclose(coverage[i], plan.coverage, atol=1e-6)
        inside = wsum > 1e-3
        assert torch.allclose(canvas[i][:, inside[0]], (acc / wsum.clamp_min(1e-6))[:, inside[0]], atol=1e-4)
        assert torch.equal(plan.transition, bands[i])
        assert torch.equal(transition_band(plan.coverage, plan.boxes, band), bands[i]) and bands[i].sum() > 0
    hidden = flow.valid.clone()
    hidden[0, 0] = False  # a dropped patch is excluded from the canvas the secondary sees
    _, less = flow.canvas(hidden)
    assert less[0].sum() < coverage[0].sum() and torch.equal(less[1:], coverage[1:])


# ---- host synchronisation -------------------------------------------------------------------------------
SYNCING_METHODS = ("item", "tolist", "cpu", "numpy", "nonzero", "unique", "masked_select", "argwhere", "__bool__",
                   "__int__", "__float__", "__index__")
SYNCING_FUNCTIONS = ("nonzero", "unique", "masked_select", "argwhere")


class HostSyncs:
    """Records every call that makes a GPU wait for the host: reading values back (``item``, ``tolist``,
    ``bool(t)``...), data-dependent shapes (``nonzero``, ``unique``, boolean-mask indexing). On a CPU nothing
    waits, so this is how a CPU test finds what ``torch.cuda.set_sync_debug_mode`` reports on a GPU."""

    def __init__(self, monkeypatch):
        self.calls: list[str] = []
        self.where: list[str] = []
        for name in SYNCING_METHODS:
            monkeypatch.setattr(torch.Tensor, name, self._wrap(getattr(torch.Tensor, name), f"Tensor.{name}"))
        for name in SYNCING_FUNCTIONS:
            monkeypatch.setattr(torch, name, self._wrap(getattr(torch, name), f"torch.{name}"))
        for name in ("__getitem__", "__setitem__"):
            original = getattr(torch.Tensor, name)

            def indexed(t, index, *rest, _original=original, _name=name):
                items = index if isinstance(index, tuple) else (index,)
                if any(torch.is_tensor(i) and i.dtype == torch.bool for i in items):
                    self._record(f"Tensor.{_name} with a boolean mask")
                return _original(t, index, *rest)

            monkeypatch.setattr(torch.Tensor, name, indexed)

    def _record(self, label: str) -> None:
        caller = sys._getframe(2)
        self.calls.append(label)
        self.where.append(f"{label} at {caller.f_code.co_filename}:{caller.f_lineno}")

    def _wrap(self, fn, label):
        def wrapper(*args, **kwargs):
            self._record(label)
            return fn(*args, **kwargs)

        return wrapper


def _stage_module(tiny_experiment, stage, **overrides):
    import importlib

    cfg = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())["stages"][stage]["config"]["model"]
    module_name, _, cls = cfg["class_path"].rpartition(".")
    return getattr(importlib.import_module(module_name), cls)(**{**cfg["init_args"], **overrides})


DEVICES = ["cpu", pytest.param("cuda", marks=pytest.mark.skipif(not torch.cuda.is_available(), reason="no GPU"))]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stage", ["attention", "primary", "secondary", "primary+chroma", "secondary+chroma"])
def test_a_training_step_makes_no_host_sync(tiny_experiment, monkeypatch, stage, device):
    stage, _, chroma = stage.partition("+")
    module = _stage_module(tiny_experiment, stage, **({"chroma_grid": 8} if chroma else {})).to(device).train()
    data = SynthMangaDataset(4, 64, seed=3)
    batch = collate_skipping([data[i] for i in range(4)])
    batch = {k: v.to(device) if torch.is_tensor(v) else v for k, v in batch.items()}
    module.training_step(batch, 0)  # warm-up: lazily built caches may sync once
    if device == "cuda":
        torch.cuda.set_sync_debug_mode("error")
        try:
            module.training_step(batch, 0).backward()
        finally:
            torch.cuda.set_sync_debug_mode("default")
        return
    syncs = HostSyncs(monkeypatch)
    loss = module.training_step(batch, 0)
    loss.backward()
    monkeypatch.undo()
    assert syncs.calls == [], f"{stage}: host syncs in the training step: {sorted(set(syncs.where))}"
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_the_sync_detector_detects(monkeypatch):
    syncs = HostSyncs(monkeypatch)
    x = torch.arange(6.0)
    x[x > 2]
    float(x.sum())
    x.nonzero()
    monkeypatch.undo()
    assert syncs.calls == ["Tensor.__getitem__ with a boolean mask", "Tensor.__float__", "Tensor.nonzero"]
