"""``dualflow bench --only ablation --experiments A,B,...``: experiments that share stage 1 and differ in how
their colorizers were trained, scored on the bench's held-out pages beside the oracles, with what each cost to
train and costs to run: the table a default is chosen from (#28)."""

from __future__ import annotations

import inspect
from datetime import datetime
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.bench.compare import config_differences, flatten
from dualflow.bench.probes import timed
from dualflow.bench.quality import QUALITY_SEED
from dualflow.stage_table import load_class

COLORIZERS = ("primary", "secondary")
STAMP = "%Y-%m-%dT%H:%M:%S%z"
SAMPLE_PAGES = (1, 4, 9)  # held-out pages of the sample sheet (the first ones when fewer pages are scored)


def shared_attention(manifests: dict[str, dict[str, Any]]) -> str:
    """The one stage-1 checkpoint every experiment uses; an ablation of the colorizers compares like with like
    only on the same importance maps and plans, so experiments with different stage-1 models are refused."""
    ckpts = {exp: m.get("stages", {}).get("attention", {}).get("best_ckpt") for exp, m in manifests.items()}
    if len(set(ckpts.values())) != 1 or None in ckpts.values():
        raise ValueError(f"the ablation's experiments must share one stage-1 checkpoint; they use {ckpts}")
    return next(iter(ckpts.values()))


def options(manifests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """experiment → {"stage.option": value} for the colorizers' model options that differ between experiments
    and are set away from their module's default (a checkpoint from before an option existed has it off)."""
    differing = {key for key in config_differences(manifests)
                 if key.split(": ")[0] in COLORIZERS and ".init_args." in key}
    out: dict[str, dict[str, Any]] = {}
    for exp, manifest in manifests.items():
        out[exp] = {}
        for key in sorted(differing):
            stage, path = key.split(": ")
            config = manifest["stages"].get(stage, {}).get("config") or {}
            value, option = flatten(config).get(path), path.rpartition(".")[2]
            if value is not None and value != module_default(config, option):
                out[exp][f"{stage}.{option}"] = value
    return out


def module_default(config: dict[str, Any], option: str) -> Any:
    """The default of ``option`` in the signature of the stage's LightningModule (``model.class_path``)."""
    class_path = config.get("model", {}).get("class_path", "")
    if "." not in class_path:
        return None
    parameter = inspect.signature(load_class(class_path)).parameters.get(option)
    return None if parameter is None else parameter.default


def training_cost(manifest: dict[str, Any]) -> dict[str, Any]:
    """Wall seconds (start to finish, validation included) and steps of each colorizer stage as it was trained."""
    out: dict[str, Any] = {}
    for stage in COLORIZERS:
        record = manifest.get("stages", {}).get(stage, {})
        if record.get("started") and record.get("finished"):
            seconds = (datetime.strptime(record["finished"], STAMP) - datetime.strptime(record["started"], STAMP))
            out[stage] = {"wall_seconds": seconds.total_seconds(), "steps": record.get("global_step")}
    return out


def page_seconds(model, bw: torch.Tensor, repeats: int) -> float:
    """Median seconds of ``colorize_page`` on one page after a warm-up call."""
    with torch.inference_mode():
        return timed(lambda: model.colorize_page(bw), repeats)


def sample_sheet(models: dict[str, Any], samples: list[dict], scale: float) -> np.ndarray:
    """Rows of (B&W, each model's page, colour page), each picture shrunk by ``scale``: H×W×3 float in [0, 1]."""
    from dualflow.panels import panel

    shrink = lambda img: F.interpolate(img[None], scale_factor=scale, mode="area")[0]  # noqa: E731
    rows = []
    with torch.inference_mode():
        for s in samples:
            pages = [model.colorize_page(s["bw"])["rgb"] for model in models.values()]
            rows.append(panel(*(shrink(img) for img in (s["bw"], *pages, s["color"]))))
            rows.append(np.full((4, rows[-1].shape[1], 3), 255, np.uint8))
    return np.concatenate(rows[:-1]).astype(np.float32) / 255


def bench_ablation(experiments: list[str], runs_dir: str, pages: int, size: tuple[int, int], dpi: float | None,
                   cache: str | None, repeats: int, oracle_pages: int = 16,
                   sample_scale: float = 0.25, seed: int = QUALITY_SEED) -> dict[str, Any]:
    """Quality of each experiment's composite on the bench's ``pages`` held-out pages of ``size`` (H, W) with the
    oracles, the options that tell the experiments apart, their training cost and page inference time, all
    measured in this one process on the same pages, and a sample sheet (``samples["sheet"]``, see
    :func:`sample_sheet`); ``seed``: the pages' seed (default: the bench's held-out pages)."""
    from dualflow.bench.quality import bench_quality
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import PrintScale
    from dualflow.loader import load_page_colorizer
    from dualflow.manifest import read_manifest

    manifests = {exp: read_manifest(exp, runs_dir) for exp in experiments}
    attention = shared_attention(manifests)
    models = {exp: load_page_colorizer(exp, runs_dir, device="cpu") for exp in experiments}
    quality = bench_quality(models, pages, size, dpi, oracle_pages, cache, seed=seed)
    pages_data = SynthMangaDataset(pages, size, seed=seed, scale=PrintScale.at_dpi(dpi) if dpi else None,
                                   cache=cache)
    shown = [i for i in SAMPLE_PAGES if i < pages] or list(range(min(3, pages)))
    sheet = sample_sheet(models, [pages_data[i] for i in shown], sample_scale)
    return {"experiments": experiments, "attention_ckpt": attention, "quality": quality,
            "samples": {"pages": shown, "sheet": sheet},
            "options": options(manifests),
            "training": {exp: training_cost(m) for exp, m in manifests.items()},
            "page_seconds": {exp: page_seconds(model, pages_data[0]["bw"], repeats) for exp, model in models.items()}}
