"""Per-stage costs of a trained experiment: stage-1 inference per page size, stage-2 inference per patch batch,
the metric suite per page, and each stage's training throughput at its trained configuration."""

from __future__ import annotations

import math
from typing import Any

import torch

from dualflow.bench.probes import timed
from dualflow.hints import without_hints


def bench_stages(experiment: str, runs_dir: str, repeats: int, sizes, batch: int = 4) -> dict[str, Any]:
    """Stage-1 inference (tiled) per page size, stage-2 inference per patch batch, and training throughput
    of each stage (optimizer steps on SynthManga batches at the trained configuration)."""
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
        if name not in stages or not stages[name].get("best_ckpt"):
            continue
        batches = _trained_batches(stages[name]["config"].get("data", {}), batch)
        out[f"train_{name}"] = _train_throughput(stages[name], batches, repeats)
    return out


def _trained_batches(data: dict, batch: int) -> list[dict]:
    """Three batches of the pages a stage was trained on: its page size and drawing scale, cropped to its
    training crop (from the top-left corner), read through the page cache it used."""
    from dualflow.data.datasets import SynthMangaDataset, collate_skipping
    from dualflow.data.synth import PrintScale

    size = data.get("image_size", 256)
    size = (size, size) if isinstance(size, int) else tuple(size)
    scale = PrintScale.at_dpi(data["dpi"]) if data.get("dpi") else None
    pages = SynthMangaDataset(batch * 3, size, seed=5, scale=scale, cache=data.get("cache"))
    crop = data.get("crop_size")

    def sample(i: int) -> dict:
        s = pages[i]
        return {k: v[..., :crop, :crop] if crop and torch.is_tensor(v) else v for k, v in s.items()}

    return [collate_skipping([sample(i) for i in range(j * batch, (j + 1) * batch)]) for j in range(3)]


def _metric_cost(repeats: int) -> float:
    """Seconds for the full page metric suite (LPIPS included, FID excluded) on one 512² page."""
    from dualflow.metrics.suite import build_suite, update_suite

    suite = build_suite("page", "bench", lpips=True, allow_random_backbone=True)
    g = torch.Generator().manual_seed(0)
    preds, target = torch.rand(1, 3, 512, 512, generator=g), torch.rand(1, 3, 512, 512, generator=g)
    masks = (torch.rand(1, 1, 512, 512, generator=g) > 0.5).float()
    return timed(lambda: update_suite(suite, preds=preds, target=target, bw=masks, transition=masks, seams=masks,
                                      detailed=masks), repeats)


def _train_throughput(entry: dict, batches: list[dict], repeats: int) -> dict[str, float]:
    from dualflow.stage_table import load_class

    cfg = entry["config"]["model"]
    module = load_class(cfg["class_path"])(**cfg["init_args"])
    module.train()
    opt = torch.optim.AdamW([p for p in module.net.parameters() if p.requires_grad], lr=1e-4)

    def step():
        for i, b in enumerate(batches):
            loss = module.training_step(b, i)
            opt.zero_grad()
            loss.backward()
            opt.step()

    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # self.log outside a Trainer
        seconds = timed(step, repeats)
    pages = sum(b["bw"].shape[0] for b in batches) / seconds
    plan = getattr(module, "plan_settings", None)
    if entry["config"]["model"]["class_path"].endswith("PrimaryModule"):
        planned = plan.budget(tuple(batches[0]["bw"].shape[-2:]))
        per_page = planned + math.ceil(planned * module.hparams.random_share)
        return {"pages_per_s": pages, "patches_per_s": pages * per_page}
    return {"pages_per_s": pages}
