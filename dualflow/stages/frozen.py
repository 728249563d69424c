"""The one freezing mechanism shared by stage 2, stage 3 and the composite.

Earlier stages load from their own checkpoints (``torch.load(weights_only=True)``), are frozen
(``requires_grad_(False)``), stay in eval mode whatever the Trainer does, and are never copied into the later
stage's checkpoint: the manifest links stages instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from dualflow.models import AttentionNet, UNet
from dualflow.stage_table import STAGES, StageCheckpointError

NETS = {"attention": AttentionNet, "primary": UNet, "secondary": UNet, "baseline": UNet, "resize_baseline": UNet}
WRAPPER_PREFIXES = ("module.", "_orig_mod.")


def _strip(key: str) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in WRAPPER_PREFIXES:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def load_stage_net(path: str | Path, stage: str) -> tuple[nn.Module, dict[str, Any]]:
    """Build the network of ``stage`` from a dualflow stage checkpoint and load its weights strictly.

    Returns (network, the checkpoint's ``dualflow`` metadata). Missing or unexpected keys are an error that
    lists them, never a silent partial load."""
    path = Path(path)
    hint = f"{STAGES[stage].hint()} produces it"
    if not path.is_file():
        raise StageCheckpointError(f"{stage} checkpoint not found: {path} ({hint})")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means the same thing to the user
        raise StageCheckpointError(f"{path}: cannot load as a {stage} checkpoint ({e}); {hint}") from e
    meta = ckpt.get("dualflow") if isinstance(ckpt, dict) else None
    if not meta or meta.get("stage") != stage:
        found = meta.get("stage") if meta else "no dualflow stage metadata"
        raise StageCheckpointError(f"{path}: expected a {stage} checkpoint, found {found}; {hint}")
    net = NETS[stage](**meta["net"])
    prefix = "net."
    state = {_strip(k)[len(prefix):]: v for k, v in ckpt["state_dict"].items() if _strip(k).startswith(prefix)}
    result = net.load_state_dict(state, strict=False)
    if result.missing_keys or result.unexpected_keys:
        raise StageCheckpointError(
            f"{path}: {stage} weights do not fit the network: missing keys {result.missing_keys[:8]} "
            f"(of {len(result.missing_keys)}), unexpected keys {result.unexpected_keys[:8]} "
            f"(of {len(result.unexpected_keys)}); {hint}"
        )
    return freeze(net), meta


def freeze(module: nn.Module) -> nn.Module:
    """No gradients, eval mode (BatchNorm uses its running statistics, Dropout is off)."""
    module.requires_grad_(False)
    return module.eval()


class FrozenStagesMixin:
    """For LightningModules that hold earlier stages in ``self.frozen`` (an ``nn.ModuleDict``).

    - ``train(mode)`` keeps ``self.frozen`` in eval mode (Lightning or user code may call ``train()``).
    - Checkpoints drop the frozen stages and metric backbones (keys under ``NOT_SAVED``); on load they are
      put back from the live module, so resuming stays strict about everything else."""

    NOT_SAVED = ("frozen.", "val_metrics.", "test_metrics.", "val_fid.", "lpips_loss.")

    def train(self, mode: bool = True):
        super().train(mode)  # type: ignore[misc]
        if hasattr(self, "frozen"):
            self.frozen.eval()
        return self

    def _is_not_saved(self, key: str) -> bool:
        return key.startswith(self.NOT_SAVED)

    def strip_not_saved(self, checkpoint: dict) -> None:
        checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if not self._is_not_saved(k)}

    def restore_not_saved(self, checkpoint: dict) -> None:
        live = {k: v for k, v in self.state_dict().items() if self._is_not_saved(k)}  # type: ignore[attr-defined]
        checkpoint["state_dict"] = {**live, **checkpoint["state_dict"]}
