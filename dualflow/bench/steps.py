"""Where a training step's time goes, stage by stage, at a preset's sizes on whatever device runs it: waiting
for data, the frozen earlier stages, building the step's inputs (targets, planning, cropping, canvas), the
trained network's forward and backward pass, and the optimizer; the FLOPs of that forward and backward pass
(``torch.utils.flop_counter``) and the FLOP/s achieved against the device's measured matmul peak; and the data
loader alone, which should deliver at least twice what the step consumes.

Each stage runs as ``dualflow fit`` runs it: the CLI merges its config files, a Lightning ``Trainer`` drives
the steps, and :class:`StepPhases` (a callback) times them. Stage N's checkpoint, written by that Trainer after
its few steps, is what stage N+1 loads, as in training. Networks start randomly initialised at the preset's
sizes (the timing does not depend on their weights), so this runs on any machine without a trained experiment;
metric backbones are random for the same reason.
"""

from __future__ import annotations

import contextlib
import io
import os
import statistics
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any

import lightning as L
import torch
import yaml
from torch.utils.flop_counter import FlopCounterMode

from dualflow.bench.probes import matmul_peak, sync
from dualflow.stage_table import PIPELINE, STAGES, config_files

PHASES = ("data", "frozen", "inputs", "forward_backward", "optimizer")

# Small models and pages for tests (`dualflow bench --tiny`), as CLI overrides.
TINY = {
    "model": {"attention": dict(dim=16, depth=1, heads=2, window=4, stem_channels=8),
              "primary": dict(base=8, depth=2, attn_heads=2, window=4, patch_size=32, patch_budget=2, lpips_weight=0.0),
              "secondary": dict(base=8, depth=2, attn_heads=2, window=4, working_size=32)},
    "data": dict(image_size=64, crop_size=64, batch_size=2, num_workers=0, n_train=16, dpi=0, cache="null"),
}


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


class StepPhases(L.Callback):
    """Seconds of each phase of every training step a Trainer runs, from synchronised marks: data (from the
    end of one step to the start of the next: fetching, moving the batch, the loop's bookkeeping), the frozen
    stages and the rest of ``training_inputs``, the optimizers' steps (from ``on_before_optimizer_step`` to the
    step's end, grad clipping included), and the forward and backward pass (the rest of the step). The first
    step is a warm-up (``warm_seconds``); on the last, untimed (the counter slows it down), ``flops`` counts the
    trained network's forward and backward pass, losses included, the frozen stages not
    (``torch.utils.flop_counter``)."""

    def __init__(self):
        self.times: dict[str, list[float]] = {k: [] for k in PHASES}
        self.warm_seconds, self.flops = 0.0, 0
        self._marks: dict[str, float] = {}
        self._optimizer = 0.0
        self._counter: FlopCounterMode | None = None
        self._counting = False

    def _now(self, module) -> float:
        sync(module.device)
        return time.perf_counter()

    def on_train_start(self, trainer, pl_module) -> None:
        self._frozen = FrozenTimer(pl_module, pl_module.device)
        build = pl_module.training_inputs

        def training_inputs(batch):
            out = build(batch)
            self._marks["inputs"] = self._now(pl_module)
            if self._counting:
                self._counter = FlopCounterMode(display=False)
                self._counter.__enter__()
            return out

        pl_module.training_inputs = training_inputs  # an instance attribute, removed at train end

        def after_step(*_):
            self._optimizer += self._now(pl_module) - self._marks.pop("optimizer")

        self._handles = [opt.register_step_post_hook(after_step) for opt in trainer.optimizers]

    def _stop_counting(self) -> None:
        if self._counter is not None:
            self._counter.__exit__(None, None, None)
            self.flops, self._counter = self._counter.get_total_flops(), None

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        self._stop_counting()
        self._marks["optimizer"] = self._now(pl_module)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        start = self._now(pl_module)
        self._marks["data"] = start - self._marks.get("end", start)
        self._marks["start"] = start
        self._counting = 0 < batch_idx == trainer.num_training_batches - 1
        self._frozen.take()
        self._optimizer = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._stop_counting()
        end = self._now(pl_module)
        marks, frozen = self._marks, self._frozen.take()
        if "end" not in marks:
            self.warm_seconds = end - marks["start"]
        elif not self._counting:
            values = (marks["data"], frozen, marks["inputs"] - marks["start"] - frozen,
                      end - marks["inputs"] - self._optimizer, self._optimizer)
            for key, value in zip(PHASES, values, strict=True):
                self.times[key].append(max(0.0, value))
        marks["end"] = end

    def on_train_end(self, trainer, pl_module) -> None:
        self._frozen.remove()
        for handle in self._handles:
            handle.remove()
        del pl_module.training_inputs

    def medians(self) -> dict[str, float]:
        return {k: statistics.median(v) for k, v in self.times.items()}


def resolved_config(args: list[str]) -> dict[str, Any]:
    """The config ``dualflow fit ARGS`` would run with, as the CLI merges it (its ``--print_config``)."""
    from dualflow.cli import lightning_main

    printed = io.StringIO()
    try:
        with contextlib.redirect_stdout(printed):
            lightning_main(["fit", *args, "--print_config"])
    except SystemExit as e:
        if e.code:
            raise ValueError(f"dualflow fit {' '.join(args)}: the CLI refused this config (above)") from None
    return yaml.safe_load(printed.getvalue())


def fit_steps(configs: list[str | Path], overrides: list[str], steps: int, folder: Path,
              data: dict[str, Any] | None = None):
    """``dualflow fit`` with ``configs`` and ``overrides`` for a warm-up step, ``steps`` timed ones and one
    whose FLOPs are counted (no validation, no logger, run folder under ``folder``; the pages a few epochs of such
    steps need, loader workers no more than this machine's cores), on CUDA when visible (bf16 as configured) else
    the CPU in float32.
    ``data``: the run's data settings when already known (a saved ``config.yaml``), else the CLI resolves them.
    Returns the finished CLI object and its :class:`StepPhases`."""
    from dualflow.cli import lightning_main

    cuda = torch.cuda.is_available()
    args = [*(a for c in configs for a in ("--config", str(c))), *overrides]
    data = data or resolved_config(args)["data"]
    cores = os.cpu_count() or 1
    args += [f"--data.n_train={min(int(data['n_train']), 16 * int(data['batch_size']))}",
             f"--data.num_workers={min(int(data['num_workers']), cores)}",
             f"--data.cache_workers={min(int(data['cache_workers']), cores)}",
             "--experiment", "bench", "--runs_dir", str(folder), "--ckpt_path=null",
             "--trainer.default_root_dir=null",  # a saved config names its own run's folder: write under ``folder``
             f"--trainer.accelerator={'cuda' if cuda else 'cpu'}", "--trainer.devices=1", "--trainer.strategy=auto",
             *([] if cuda else ["--trainer.precision=32-true"]),
             "--trainer.logger=false", "--trainer.max_epochs=1", "--trainer.max_steps=-1",
             f"--trainer.limit_train_batches={steps + 2}", "--trainer.limit_val_batches=0",
             f"--trainer.val_check_interval={steps + 2}", "--trainer.num_sanity_val_steps=0",
             "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
             "--trainer.callbacks+=dualflow.bench.steps.StepPhases"]
    with warnings.catch_warnings():  # no validation here, by design: the checkpoint callback's missing monitor
        warnings.filterwarnings("ignore", message=".*(could not find the monitored key|val_dataloader|"
                                                  "ModelCheckpoint).*")
        cli = lightning_main(["fit", *args])
    phases = next(c for c in cli.trainer.callbacks if isinstance(c, StepPhases))
    return cli, phases


def _endless(loader):
    """Batches of ``loader`` epoch after epoch (a benchmark may need more than one epoch holds)."""
    while True:
        yield from loader


def loader_pages_per_s(loader, batches: int) -> float:
    """Pages/s the data loader delivers alone, in steady state: after its workers start and the batches they
    prefetch meanwhile are drained (timing those would measure a queue, not the loader)."""
    it = _endless(loader)
    workers = int(getattr(loader, "num_workers", 0) or 0)
    for _ in range(1 + workers * int(getattr(loader, "prefetch_factor", None) or 0)):
        next(it)
    batches = max(batches, 2 * workers)
    start, pages = time.perf_counter(), 0
    for _ in range(batches):
        pages += int(next(it)["bw"].shape[0])
    return pages / (time.perf_counter() - start)


def _overrides(stage: str, tiny: bool, folder: Path) -> list[str]:
    """CLI overrides of a breakdown run: random metric backbones, the earlier stages' checkpoints written in
    ``folder``, the page count the timed steps need, and the tiny sizes for tests."""
    args = [f"--model.{STAGES[s].ckpt_arg}={folder / s}.ckpt" for s in STAGES[stage].needs]
    if STAGES[stage].needs:
        args.append("--model.allow_random_backbone=true")
    if tiny:
        args += [f"--model.{k}={v}" for k, v in TINY["model"][stage].items()]
        args += [f"--data.{k}={v}" for k, v in TINY["data"].items()]
    return args


def breakdown_stage(stage: str, preset: str, steps: int, tiny: bool, loader_batches: int, folder: Path,
                    peaks: dict[str, float] | None = None) -> dict[str, Any]:
    """Median seconds of each phase of ``steps`` training steps (after one warm-up step), their shares, it/s,
    the forward and backward pass's FLOPs and achieved FLOP/s (against ``peaks``, the measured matmul FLOP/s
    per dtype), and the data loader's pages/s alone. Leaves the stage's checkpoint in ``folder``."""
    cli, phases = fit_steps(config_files(stage, preset), _overrides(stage, tiny, folder), steps, folder,
                            {**TINY["data"], "cache_workers": 1} if tiny else None)
    trainer, module, data = cli.trainer, cli.model, cli.datamodule
    trainer.save_checkpoint(folder / f"{stage}.ckpt")
    precision = str(trainer.precision)
    seconds = phases.medians()
    total = sum(seconds.values())
    flops, pages = phases.flops, int(data.hparams.batch_size)
    out: dict[str, Any] = {"seconds": seconds, "share": {k: v / total for k, v in seconds.items()},
                           "step_seconds": total, "it_per_s": 1.0 / total, "pages_per_step": pages,
                           "warm_up_seconds": phases.warm_seconds,
                           "precision": precision, "device": str(module.device),
                           "num_workers": data.hparams.num_workers, "page_size": data.hparams.image_size,
                           "forward_backward_flops": flops,
                           "forward_backward_flops_per_s": flops / max(seconds["forward_backward"], 1e-9)}
    peak = (peaks or {}).get("bfloat16" if precision.startswith("bf16") else "float32")
    if peak:
        out["share_of_matmul_peak"] = out["forward_backward_flops_per_s"] / peak
    out["loader_pages_per_s"] = loader_pages_per_s(data.train_dataloader(), loader_batches)
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
    with tempfile.TemporaryDirectory(prefix="dualflow-bench-") as folder:
        for stage in PIPELINE:
            key = f"stage{STAGES[stage].key}"
            print(f"[bench] step breakdown {key} ({preset} preset, {device.type}): {steps} timed steps", flush=True)
            results[key] = breakdown_stage(stage, preset, steps, tiny, loader_batches, Path(folder), peaks)
            print(f"[bench] step breakdown {key} ({preset} preset): {results[key]}", flush=True)
    return {"preset": preset, "steps": steps, "matmul_peak_flops_per_s": peaks, **results}
