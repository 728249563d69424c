"""Checkpoints a kill cannot tear: written to a temporary file beside the target and renamed into place, and
checked before a run resumes from one (a torn ``last.ckpt`` falls back to the newest intact checkpoint)."""

from __future__ import annotations

import os
import warnings
import zipfile
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.utilities.cloud_io import _is_local_file_protocol
from lightning.pytorch.plugins.io import TorchCheckpointIO

from dualflow.data.io import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """Local checkpoints are serialised into a temporary file in the target's own folder, flushed to disk and
    renamed over the target (``os.replace``: atomic on one filesystem), so a kill or a full disk leaves either
    the old checkpoint or the new one, never half of one. Other URLs (buckets) go through Lightning's writer."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        if not _is_local_file_protocol(path):
            return super().save_checkpoint(checkpoint, path, storage_options)
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as f:
            torch.save(checkpoint, f)
            f.flush()
            os.fsync(f.fileno())


def is_intact(path: str | Path) -> bool:
    """Whether ``path`` is a whole checkpoint file: a readable zip (torch's format) whose every entry matches
    its CRC. A file cut short by a kill loses its central directory and fails here."""
    try:
        with zipfile.ZipFile(path) as archive:
            return archive.testzip() is None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError):
        return False


class TornCheckpointError(RuntimeError):
    """A run was asked to resume and no checkpoint it could resume from is whole."""


def resume_point(folder: str | Path) -> Path | None:
    """The checkpoint to resume a stage from: ``last.ckpt`` when intact; otherwise, with a warning naming the
    torn file, the newest intact checkpoint in ``folder``; None when there is no checkpoint at all. Raises
    :class:`TornCheckpointError` when checkpoints exist and none is intact."""
    folder = Path(folder)
    last = folder / "last.ckpt"
    if last.is_file() and is_intact(last):
        return last
    found = sorted(folder.glob("*.ckpt"), key=lambda p: p.stat().st_mtime, reverse=True)
    if not found:
        return None
    others = [p for p in found if p != last]  # last.ckpt, when there, is already known torn
    good = [p for p in others if is_intact(p)]  # each file read once: checkpoints can be large
    torn = [p for p in found if p not in good]
    if not good:
        raise TornCheckpointError(f"no intact checkpoint to resume from in {folder}: {', '.join(map(str, torn))} "
                           "cannot be read (cut short by a kill or a full disk?); delete them to train from scratch")
    message = f"{last} is torn (not a whole checkpoint file)" if last in torn else f"{last} is missing"
    warnings.warn(f"{message}: resuming from {good[0]}, the newest intact checkpoint", stacklevel=2)
    return good[0]
