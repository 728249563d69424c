"""The one table of dualflow's stages: what each is called, which config file and make target train it, what it
monitors and which earlier stages it needs. The orchestrator, the CLI, frozen-stage loading, the manifest and
the bench read it here instead of keeping their own copies."""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from pathlib import Path

EXPERIMENTS = Path("experiments")


class StageCheckpointError(RuntimeError):
    """An earlier stage's checkpoint is missing, unreadable or does not fit the network it should load into."""


@dataclass(frozen=True)
class Stage:
    """One trainable stage (or the composite, which only tests)."""

    name: str  # manifest key, runs/<exp>/<name>/, ``<name>_ckpt`` argument of later stages
    key: str  # ``dualflow train --stage KEY``
    number: int  # order: a stage invalidates every stage of a higher number when retrained
    config: str  # experiments/<config>.yaml and experiments/presets/<preset>/<config>.yaml
    make_target: str
    monitor: tuple[str, str] | None = None  # (metric, mode) of the best checkpoint
    needs: tuple[str, ...] = ()  # earlier stages loaded frozen

    @property
    def ckpt_arg(self) -> str:
        """The ``--model.<name>_ckpt`` argument through which later stages receive this one."""
        return f"{self.name}_ckpt"

    def hint(self, experiment: str | None = None) -> str:
        """How to produce this stage: its make target (for ``experiment``)."""
        return f"`{self.make_target}{f' EXP={experiment}' if experiment else ''}`"


COLOUR_MONITOR = ("val/color/delta_e2000", "min")
STAGES: dict[str, Stage] = {s.name: s for s in (
    Stage("attention", "1", 1, "stage1", "make train-stage1", ("val/loss", "min")),
    Stage("primary", "2", 2, "stage2", "make train-stage2", COLOUR_MONITOR, needs=("attention",)),
    Stage("secondary", "3", 3, "stage3", "make train-stage3", COLOUR_MONITOR, needs=("attention", "primary")),
    Stage("composite", "composite", 4, "composite", "make train", needs=("attention", "primary", "secondary")),
    Stage("baseline", "baseline", 0, "baseline", "make train-baseline", COLOUR_MONITOR),
    Stage("resize_baseline", "resize_baseline", 0, "resize_baseline", "make train-baseline", COLOUR_MONITOR),
)}
PIPELINE = ("attention", "primary", "secondary")  # the stages a dual-flow experiment trains, in order
BY_KEY = {s.key: s for s in STAGES.values()}


def load_class(class_path: str) -> type:
    """The class a config's ``class_path`` names (``dualflow.stages.primary.PrimaryModule``), imported."""
    module, _, name = class_path.rpartition(".")
    if not module:
        raise ValueError(f"{class_path!r} is not a class path (module.Class)")
    return getattr(importlib.import_module(module), name)


def stage_number(name: str) -> int | None:
    """The pipeline position (1–3) of a stage recorded under ``name``; None for the baseline, sweeps and others."""
    return STAGES[name].number if name in PIPELINE else None


def require_ckpt(path: str | None, stage: str) -> str:
    """The checkpoint path given for an earlier ``stage``, or an error saying how to get one."""
    if not path:
        raise StageCheckpointError(f"no {stage} checkpoint: run {STAGES[stage].hint()} for this experiment first, "
                                   f"or pass --model.{STAGES[stage].ckpt_arg}=PATH")
    return path


def config_files(stage: str, preset: str) -> list[Path]:
    """The stage's config file, then its preset's file when the preset has one (``none``: no preset)."""
    files = [EXPERIMENTS / f"{STAGES[stage].config}.yaml"]
    if preset != "none":
        folder = EXPERIMENTS / "presets" / preset
        if not folder.is_dir():
            raise FileNotFoundError(f"unknown preset {preset!r}: no folder {folder}")
        if (folder / files[0].name).is_file():
            files.append(folder / files[0].name)
    return files
