"""Where a training step's time goes, stage by stage, at a preset's sizes on whatever device runs it: waiting
for data, the frozen earlier stages, building the step's inputs (targets, planning, cropping, canvas), the
trained network's forward and backward pass, and the optimizer; the FLOPs of that forward and backward pass
(``torch.utils.flop_counter``) and the FLOP/s achieved against the device's measured matmul peak; and the data
loader alone, which should deliver at least twice what the step consumes.

Networks are randomly initialised at the preset's sizes (the timing does not depend on their weights), so
this runs on any machine without a trained experiment; metric backbones are random for the same reason.
"""

from __future__ import annotations

import contextlib
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from dualflow.bench.probes import matmul_peak, sync
from dualflow.progress import clock
from dualflow.stage_table import EXPERIMENTS, PIPELINE, STAGES, config_files

PHASES = ("data", "frozen", "inputs", "forward_backward", "optimizer")

# Small models and pages for tests (`dualflow bench --tiny`).
TINY = {
    "model": {"attention": dict(dim=16, depth=1, heads=2, window=4, stem_channels=8),
              "primary": dict(base=8, depth=2, attn_heads=2, window=4, patch_size=32, patch_budget=2, lpips_weight=0.0),
              "secondary": dict(base=8, depth=2, attn_heads=2, window=4, working_size=32)},
    "data": dict(image_size=64, crop_size=64, batch_size=2, num_workers=0, n_train=16, dpi=0, cache=None),
}


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def preset_config(stage: str, preset: str) -> dict[str, Any]:
    """base.yaml ⊕ the stage's file ⊕ the preset's file for it, as LightningCLI would merge them."""
    cfg: dict[str, Any] = {}
    for path in (EXPERIMENTS / "base.yaml", *config_files(stage, preset)):
        if path.is_file():
            cfg = _merge(cfg, yaml.safe_load(path.read_text()) or {})
    return cfg


def _module(stage: str, preset: str, tiny: bool, folder: Path):
    """The stage's LightningModule at the preset's sizes, its earlier stages randomly initialised and saved
    as stage checkpoints in ``folder`` (as later stages load them)."""
    from dualflow.stage_table import load_class

    cfg = preset_config(stage, preset)["model"]
    init = {**cfg.get("init_args", {}), **(TINY["model"][stage] if tiny else {})}
    if STAGES[stage].needs:
        init["allow_random_backbone"] = True
    for earlier in STAGES[stage].needs:
        init[STAGES[earlier].ckpt_arg] = str(_stage_checkpoint(earlier, preset, tiny, folder))
    return load_class(cfg["class_path"])(**init)


def _stage_checkpoint(stage: str, preset: str, tiny: bool, folder: Path) -> Path:
    path = folder / f"{stage}.ckpt"
    if not path.is_file():
        module = _module(stage, preset, tiny, folder)
        torch.save({"state_dict": module.state_dict(), "dualflow": module.stage_meta()}, path)
    return path


def _loader(stage: str, preset: str, tiny: bool):
    from dualflow.data.datamodule import MangaDataModule

    data = dict(preset_config(stage, preset).get("data", {}))
    data = {**data, **(TINY["data"] if tiny else {})}
    data["num_workers"] = min(int(data.get("num_workers", 0)), os.cpu_count() or 1)
    # The pages the timed steps and the loader measurement use (several epochs of them), drawn into the page
    # cache before timing as training does: the loader is timed reading what a training run reads.
    data["n_train"] = min(int(data.get("n_train", 16)), 16 * int(data.get("batch_size", 1)))
    data["cache_workers"] = min(int(data.get("cache_workers", 1)), os.cpu_count() or 1)
    dm = MangaDataModule(**data)
    dm.setup("fit")
    return dm.train_dataloader(), data


def _endless(loader):
    """Batches of ``loader`` epoch after epoch (a benchmark may need more than one epoch holds)."""
    while True:
        yield from loader


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}


class FrozenTimer:
    """Seconds spent inside the frozen earlier-stage networks (forward hooks, synchronised), so that the
    inputs phase can be split into those networks and the planning/cropping around them."""

    def __init__(self, module, device: torch.device):
        self.device, self.seconds, self._start = device, 0.0, 0.0
        self.handles = []
        for net in module.frozen.values():
            self.handles.append(net.register_forward_pre_hook(self._enter))
            self.handles.append(net.register_forward_hook(self._leave))

    def _enter(self, *_):
        sync(self.device)
        self._start = time.perf_counter()

    def _leave(self, *_):
        sync(self.device)
        self.seconds += time.perf_counter() - self._start

    def take(self) -> float:
        seconds, self.seconds = self.seconds, 0.0
        return seconds

    def remove(self) -> None:
        for handle in self.handles:
            handle.remove()


def step_flops(module, batch: dict, autocast) -> int:
    """FLOPs of the trained network's forward and backward pass in one training step (the losses included,
    the frozen stages, which run in ``training_inputs``, not), counted by ``torch.utils.flop_counter``."""
    with autocast():
        inputs = module.training_inputs(batch)
    with FlopCounterMode(display=False) as counter:
        with autocast():
            loss = module.training_loss(batch, inputs)
        loss.backward()
    module.zero_grad(set_to_none=True)
    return counter.get_total_flops()


def breakdown_stage(stage: str, preset: str, steps: int, device: torch.device, tiny: bool,
                    loader_batches: int, peaks: dict[str, float] | None = None) -> dict[str, Any]:
    """Median seconds of each phase of ``steps`` training steps (after one warm-up step), their shares, it/s,
    the forward and backward pass's FLOPs and achieved FLOP/s (against ``peaks``, the measured matmul FLOP/s
    per dtype), and the data loader's pages/s alone."""
    with tempfile.TemporaryDirectory(prefix="dualflow-bench-") as folder:
        module = _module(stage, preset, tiny, Path(folder)).to(device).train()
    loader, data = _loader(stage, preset, tiny)
    precision = str(preset_config(stage, preset).get("trainer", {}).get("precision", "32-true"))
    use_bf16 = precision.startswith("bf16") and device.type == "cuda"
    autocast = (lambda: torch.autocast("cuda", dtype=torch.bfloat16)) if use_bf16 else contextlib.nullcontext
    opt = torch.optim.AdamW([p for p in module.net.parameters() if p.requires_grad], lr=1e-4)
    times: dict[str, list[float]] = {k: [] for k in PHASES}
    frozen_timer = FrozenTimer(module, device)
    it = _endless(loader)
    for step in range(steps + 1):
        marks = [time.perf_counter()]
        batch = _to(next(it), device)
        sync(device)
        marks.append(time.perf_counter())
        frozen_timer.take()
        with autocast():
            inputs = module.training_inputs(batch)
            sync(device)
            marks.append(time.perf_counter())
            frozen = frozen_timer.take()
            loss = module.training_loss(batch, inputs)
        loss.backward()
        sync(device)
        marks.append(time.perf_counter())
        opt.step()
        opt.zero_grad(set_to_none=True)
        sync(device)
        marks.append(time.perf_counter())
        if step == 0:
            flops = step_flops(module, batch, autocast)  # untimed: the counter slows the step down
            warm = marks[-1] - marks[0]
            print(f"[bench] step breakdown stage {STAGES[stage].key} ({preset} preset, {device.type}): warm-up step "
                  f"{warm:.1f} s; {steps} timed steps ≈ {clock(warm * steps)} (m:ss)", flush=True)
            continue  # warm-up: allocator, kernels, worker start
        data_s, inputs_s, fb_s, opt_s = (b - a for a, b in zip(marks, marks[1:], strict=False))
        for key, value in zip(PHASES, (data_s, frozen, inputs_s - frozen, fb_s, opt_s), strict=True):
            times[key].append(max(0.0, value))
    frozen_timer.remove()
    seconds = {k: statistics.median(v) for k, v in times.items()}
    total = sum(seconds.values())
    pages = int(data["batch_size"])
    out: dict[str, Any] = {"seconds": seconds, "share": {k: v / total for k, v in seconds.items()},
                           "step_seconds": total, "it_per_s": 1.0 / total, "pages_per_step": pages,
                           "precision": "bf16-mixed" if use_bf16 else "32-true", "device": str(device),
                           "num_workers": data["num_workers"], "page_size": data.get("image_size"),
                           "forward_backward_flops": flops,
                           "forward_backward_flops_per_s": flops / max(seconds["forward_backward"], 1e-9)}
    peak = (peaks or {}).get("bfloat16" if use_bf16 else "float32")
    if peak:
        out["share_of_matmul_peak"] = out["forward_backward_flops_per_s"] / peak
    # The loader alone, against what the step consumes: first drain the batches its workers prefetched while
    # the steps ran (timing those would measure a queue, not the loader), then time steady-state production.
    workers = int(getattr(loader, "num_workers", 0) or 0)
    for _ in range(workers * int(getattr(loader, "prefetch_factor", None) or 0)):
        next(it)
    loader_batches = max(loader_batches, 2 * workers)
    start = time.perf_counter()
    for _ in range(loader_batches):
        next(it)
    out["loader_pages_per_s"] = loader_batches * pages / (time.perf_counter() - start)
    out["loader_vs_step"] = out["loader_pages_per_s"] / (pages * out["it_per_s"])
    return out


def breakdown(preset: str = "gpu", steps: int = 3, tiny: bool = False, loader_batches: int = 8) -> dict[str, Any]:
    """:func:`breakdown_stage` for stages 1, 2 and 3 on CUDA when visible, else the CPU, with the device's
    measured matmul peak (float32, and bfloat16 on a GPU)."""
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dtypes = {"float32": torch.float32, **({"bfloat16": torch.bfloat16} if device.type == "cuda" else {})}
    peaks = {name: matmul_peak(device, dtype, n=512 if tiny else 2048) for name, dtype in dtypes.items()}
    if device.type == "cpu" and not tiny and preset not in ("cpu", "auto"):
        print(f"[bench] warning: the step breakdown runs the {preset!r} preset's sizes on the CPU: a step can take "
              f"tens of seconds and the breakdown many minutes here (--breakdown_preset cpu measures this "
              f"machine's own preset)", flush=True)
    results = {}
    for stage in PIPELINE:
        key = f"stage{STAGES[stage].key}"
        with warnings.catch_warnings():  # the losses' self.log outside a Trainer: nothing to log to, by design
            warnings.filterwarnings("ignore", message=".*`self.trainer` reference is not registered")
            results[key] = breakdown_stage(stage, preset, steps, device, tiny, loader_batches, peaks)
        print(f"[bench] step breakdown {key} ({preset} preset): {results[key]}", flush=True)
    return {"preset": preset, "steps": steps, "matmul_peak_flops_per_s": peaks, **results}
