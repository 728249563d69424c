"""Weights & Biases: offline by default, best-value summaries, artifacts, and earlier stages from artifacts."""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any


def has_credentials() -> bool:
    """A W&B API key in the environment or in ~/.netrc."""
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        return netrc.netrc().authenticators("api.wandb.ai") is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def default_to_offline() -> str:
    """With no credentials, runs go offline (no prompt, no network); ``wandb sync`` uploads them later."""
    if not has_credentials():
        os.environ.setdefault("WANDB_MODE", "offline")
    os.environ.setdefault("WANDB_SILENT", "true")
    os.environ.setdefault("WANDB_CONSOLE", "off")
    return os.environ.get("WANDB_MODE", "online")


def is_offline() -> bool:
    return os.environ.get("WANDB_MODE", "online") in ("offline", "disabled", "dryrun")


def define_summaries(run, directions: dict[str, str]) -> None:
    """Make each run summary keep the best value of a validation metric (``min`` or ``max``)."""
    for key, summary in directions.items():
        run.define_metric(key, summary=summary)


def run_record(logger) -> dict[str, Any]:
    """id, url (online) or offline directory of a WandbLogger's run, for the manifest."""
    run = logger.experiment
    record = {"id": run.id, "project": run.project, "mode": "offline" if is_offline() else "online",
              "dir": str(Path(run.dir).parent.resolve())}
    url = getattr(run, "url", None)
    if url and not is_offline():
        record["url"] = url
    return record


def fetch_artifact_checkpoint(reference: str) -> str:
    """``wandb:entity/project/name:alias`` → local path of the ``.ckpt`` inside that model artifact."""
    if is_offline():
        raise RuntimeError(f"{reference}: W&B artifacts need an online W&B (set WANDB_API_KEY, unset WANDB_MODE)")
    import wandb

    folder = Path(wandb.Api().artifact(reference.removeprefix("wandb:"), type="model").download())
    ckpts = sorted(folder.rglob("*.ckpt"))
    if not ckpts:
        raise FileNotFoundError(f"{reference}: artifact holds no .ckpt file (downloaded to {folder})")
    return str(ckpts[0])
