"""The one loader of a page colorizer from an experiment's checkpoints, without the training machinery: the frozen
stage networks and their checkpoint metadata become a :class:`colorizer.PageColorizer` (no Lightning, no optimiser,
no metrics). ``colorize``, ``serve`` and ``export`` colour through it; the composite LightningModule (the
composite test) builds its pipeline from the same helpers."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import torch
from torch import nn

from dualflow.colorizer import PageColorizer
from dualflow.fusion import Fusion, FusionConfig
from dualflow.models.chroma import ChromaBins
from dualflow.pipeline import PlanSettings
from dualflow.stage_table import PIPELINE, STAGES
from dualflow.stages.frozen import load_stage_net

CKPT_FLAG = "--ckpt ATTENTION PRIMARY SECONDARY"  # how colorize and export take explicit checkpoints


def stage_paths(experiment: str, runs_dir: str, ckpts: list[str] | None = None) -> dict[str, str]:
    """``<stage>_ckpt`` → checkpoint path of the three pipeline stages: from the experiment's manifest, or the
    explicit (attention, primary, secondary) paths."""
    from dualflow.manifest import stage_checkpoint

    if ckpts:
        if len(ckpts) != 3:
            raise ValueError(f"--ckpt takes 3 paths (attention, primary, secondary), got {len(ckpts)}")
        return dict(zip((STAGES[s].ckpt_arg for s in PIPELINE), ckpts, strict=True))
    return {STAGES[s].ckpt_arg: str(stage_checkpoint(experiment, s, runs_dir, CKPT_FLAG)) for s in PIPELINE}


def set_chroma_temperature(nets: list[nn.Module], temperature: float) -> None:
    """Set the decoding temperature of every chroma head in ``nets``; an error when none has one."""
    heads = [m for net in nets for m in net.modules() if isinstance(m, ChromaBins)]
    if not heads:
        raise ValueError("chroma_temperature needs colorizers trained with a chroma grid (--model.chroma_grid=16); "
                         "these regress ab directly")
    if temperature <= 0:
        raise ValueError(f"chroma_temperature must be positive, got {temperature}")
    for head in heads:
        head.temperature = float(temperature)


def plan_settings(primary_meta: dict[str, Any], patch_budget: int | None = None,
                  patch_threshold: float | None = None, patch_density: float | None = None) -> PlanSettings:
    """Stage 2's patch plan from its checkpoint metadata, with the overrides of inference: ``patch_budget`` is a
    fixed count of patches a page (it replaces a plan sized by the page; 0: no primary), ``patch_density``
    patches per megapixel, ``patch_threshold`` the importance a window needs."""
    plan = PlanSettings.from_meta(primary_meta["plan"])
    changes = {k: v for k, v in (("patch_threshold", patch_threshold), ("patch_density", patch_density))
               if v is not None}
    if patch_budget is not None:
        changes.update(patch_budget=patch_budget, patch_density=0.0)
    return replace(plan, **changes)


def load_page_colorizer(experiment: str = "default", runs_dir: str = "runs", ckpts: list[str] | None = None,
                        device: str | None = None, patch_budget: int | None = None,
                        patch_threshold: float | None = None, patch_density: float | None = None,
                        max_working_size: int = 512,
                        chroma_temperature: float | None = None, fusion: FusionConfig | None = None,
                        patch_batch: int = 16, attention_tile: int = 1024) -> PageColorizer:
    """The experiment's page colorizer on ``device`` (default: cuda when there is one); the settings are the
    composite's (:class:`stages.composite.DualFlowColorizer`)."""
    paths = stage_paths(experiment, runs_dir, ckpts)
    nets, metas = {}, {}
    for stage in PIPELINE:
        nets[stage], metas[stage] = load_stage_net(paths[STAGES[stage].ckpt_arg], stage)
    if chroma_temperature is not None:
        set_chroma_temperature([nets["primary"], nets["secondary"]], chroma_temperature)
    if "trained_dpi" not in metas["secondary"] and not ckpts:  # checkpoints from before the page's dpi was kept
        from dualflow.manifest import trained_page

        metas["secondary"]["trained_dpi"] = trained_page(experiment, runs_dir)[1]
    target = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    for net in nets.values():
        net.to(target)
    return PageColorizer(nets["attention"], nets["primary"], nets["secondary"],
                         plan_settings(metas["primary"], patch_budget, patch_threshold, patch_density),
                         metas["secondary"],
                         Fusion(fusion or FusionConfig()), target, patch_batch, attention_tile, max_working_size,
                         bool(metas["primary"].get("hints", False)))

