"""Per-stage costs of a trained experiment: stage-1 inference per page size, stage-2 inference per patch batch,
the metric suite per page, and each stage's training throughput at its trained configuration."""

from __future__ import annotations

import math
import tempfile
from pathlib import Path
from typing import Any

import torch
import yaml

from dualflow.bench.probes import timed
from dualflow.hints import without_hints


def bench_stages(experiment: str, runs_dir: str, repeats: int, sizes) -> dict[str, Any]:
    """Stage-1 inference (tiled) per page size, stage-2 inference per patch batch, and training throughput
    of each stage at its trained configuration (:func:`train_throughput`)."""
    from dualflow.manifest import read_manifest
    from dualflow.pipeline import importance_tiled
    from dualflow.stages.frozen import load_stage_net

    stages = read_manifest(experiment, runs_dir)["stages"]
    out: dict[str, Any] = {}
    attention, _ = load_stage_net(stages["attention"]["best_ckpt"], "attention")
    with torch.inference_mode():
        for w, h in sizes[:2]:
            bw = torch.rand(1, 1, h, w).round()
            out[f"stage1_inference_seconds_{w}x{h}"] = timed(lambda bw=bw: importance_tiled(attention, bw), repeats)
        primary, meta = load_stage_net(stages["primary"]["best_ckpt"], "primary")
        p = meta["plan"]["patch_size"]
        x = without_hints(torch.rand(16, 2, p, p), primary.in_channels)
        out["stage2_inference_seconds_per_16_patches"] = timed(lambda: primary(x), repeats)
        out["metric_suite_seconds_per_page_512"] = _metric_cost(repeats)
    for name in ("attention", "primary", "secondary", "baseline", "resize_baseline"):
        if name in stages and stages[name].get("best_ckpt"):
            out[f"train_{name}"] = train_throughput(stages[name], repeats)
    return out


def _metric_cost(repeats: int) -> float:
    """Seconds for the full page metric suite (LPIPS included, FID excluded) on one 512² page."""
    from dualflow.metrics.suite import build_suite, update_suite

    suite = build_suite("page", "bench", lpips=True, allow_random_backbone=True)
    g = torch.Generator().manual_seed(0)
    preds, target = torch.rand(1, 3, 512, 512, generator=g), torch.rand(1, 3, 512, 512, generator=g)
    masks = (torch.rand(1, 1, 512, 512, generator=g) > 0.5).float()
    return timed(lambda: update_suite(suite, preds=preds, target=target, bw=masks, transition=masks, seams=masks,
                                      detailed=masks), repeats)


def train_throughput(entry: dict, steps: int) -> dict[str, float]:
    """Training pages/s of a trained stage at its own configuration (the ``config.yaml`` its run saved, its pages
    and crops; the data wait excluded): ``steps`` optimizer steps through ``dualflow fit`` after a warm-up, and
    for the primary the patches a step trains on."""
    from dualflow.bench.steps import fit_steps
    from dualflow.stages.primary import PrimaryModule

    config = Path(entry["best_ckpt"]).parent.parent / "config.yaml"
    if not config.is_file():
        raise FileNotFoundError(f"{config}: the stage's saved config is missing (written by every `dualflow fit`)")
    with tempfile.TemporaryDirectory(prefix="dualflow-costs-") as folder:
        cli, phases = fit_steps([config], [], steps, Path(folder), yaml.safe_load(config.read_text())["data"])
    seconds = phases.medians()
    pages = cli.datamodule.hparams.batch_size / (sum(seconds.values()) - seconds["data"])
    module, data = cli.model, cli.datamodule.hparams
    if not isinstance(module, PrimaryModule):
        return {"pages_per_s": pages}
    size = data.image_size if isinstance(data.image_size, (list, tuple)) else (data.image_size, data.image_size)
    planned = module.plan_settings.budget((data.crop_size, data.crop_size) if data.crop_size else tuple(size))
    return {"pages_per_s": pages, "patches_per_s": pages * (planned + math.ceil(planned * module.hparams.random_share))}
