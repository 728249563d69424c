"""``runs/<experiment>/manifest.json``: how the stages of an experiment link up.

Format (JSON, one object)::

    {"experiment": "default",
     "stages": {
       "attention": {"stage": 1, "best_ckpt": "runs/default/attention/checkpoints/best.ckpt",
                     "monitor": "val/loss", "best_score": 0.31, "metrics": {"val/attention/auroc": 0.9, ...},
                     "config": {...resolved config...}, "wandb": {"id": ..., "url": ..., "dir": ..., "mode": ...},
                     "git_commit": "abc123", "started": "2026-...", "finished": "2026-...", "stale": false},
       "primary": {...}, "secondary": {...}, "composite": {"metrics": {...}}, "baseline": {...}}}

A stage reads its predecessors' ``best_ckpt`` from here; retraining a stage marks the later ones ``stale``.
Writes are atomic (temp file + rename in the same folder).
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from dualflow.data.io import atomic_path
from dualflow.stage_table import PIPELINE, STAGES


def manifest_path(experiment: str, runs_dir: str = "runs") -> Path:
    return Path(runs_dir) / experiment / "manifest.json"


def read_manifest(experiment: str, runs_dir: str = "runs") -> dict[str, Any]:
    path = manifest_path(experiment, runs_dir)
    if not path.is_file():
        return {"experiment": experiment, "stages": {}}
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not valid JSON ({e}); fix or delete it") from e


def write_manifest(manifest: dict[str, Any], experiment: str, runs_dir: str = "runs") -> Path:
    path = manifest_path(experiment, runs_dir)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True, default=str))
    return path


def update_stage(experiment: str, stage: str, entry: dict[str, Any], runs_dir: str = "runs") -> Path:
    """Merge ``entry`` into the stage's record."""
    manifest = read_manifest(experiment, runs_dir)
    manifest.setdefault("stages", {}).setdefault(stage, {}).update(entry)
    return write_manifest(manifest, experiment, runs_dir)


def mark_later_stale(experiment: str, stage: str, runs_dir: str = "runs") -> None:
    """Retraining ``stage`` invalidates every stage built on it (and the composite's figures)."""
    if stage not in PIPELINE:
        return
    manifest = read_manifest(experiment, runs_dir)
    changed = False
    for name, record in manifest.get("stages", {}).items():
        if name in STAGES and STAGES[name].number > STAGES[stage].number:
            record["stale"] = True
            changed = True
    if changed:
        write_manifest(manifest, experiment, runs_dir)


def stage_checkpoint(experiment: str, stage: str, runs_dir: str = "runs",
                     alternative: str | None = "--model.{ckpt_arg}=PATH") -> str:
    """Best checkpoint of ``stage`` in this experiment, or a clear error naming the make target and
    ``alternative``, the calling command's own flag for an explicit checkpoint (None: it has none)."""
    record = read_manifest(experiment, runs_dir).get("stages", {}).get(stage)
    if not record or not record.get("best_ckpt"):
        instead = f", or pass {alternative.format(ckpt_arg=STAGES[stage].ckpt_arg)}" if alternative else ""
        raise FileNotFoundError(
            f"experiment {experiment!r} has no trained {stage} stage in {manifest_path(experiment, runs_dir)}: "
            f"run {STAGES[stage].hint(experiment)} first{instead}"
        )
    if not Path(record["best_ckpt"]).is_file():
        raise FileNotFoundError(
            f"{record['best_ckpt']} (the {stage} checkpoint recorded for {experiment!r}) is missing: "
            f"run {STAGES[stage].hint(experiment)} again"
        )
    return record["best_ckpt"]


def git_commit() -> str | None:
    try:
        out = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None


def trained_page(experiment: str, runs_dir: str = "runs", stage: str = "secondary") -> tuple[tuple[int, int], float]:
    """(H, W) of the pages ``stage`` was trained on and the dpi its nets work at (:func:`data.scan.nets_dpi`; 0:
    thumbnail pages), from the manifest's resolved config."""
    from dualflow.data.scan import nets_dpi

    data = read_manifest(experiment, runs_dir)["stages"].get(stage, {}).get("config", {}).get("data", {})
    size = data.get("image_size", [1448, 1024])
    size = (size, size) if isinstance(size, int) else tuple(size)
    return size, nets_dpi(data.get("dpi") or 0)
