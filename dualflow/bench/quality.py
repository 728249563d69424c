"""Quality on held-out pages: the page metric suite of the dual flow, the dual flow without priority patches, the
single-flow baseline and the oracles; the same on real photographs (transfer) and across the pages of chapters
(consistency)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch


def bench_models(experiment: str, runs_dir: str, has_baseline: bool,
                 chroma_temperature: float | None = None) -> dict[str, Any]:
    """The models the quality figures compare, loaded once: the composite, the same composite with no priority
    patches (what the primary flow adds is the difference) and, when trained, the single-flow baseline.
    ``chroma_temperature``: decoding temperature of models with a chroma grid (None: the trained one)."""
    from dualflow.inference import load_colorizer
    from dualflow.manifest import stage_checkpoint
    from dualflow.stages.composite import set_chroma_temperature
    from dualflow.stages.frozen import load_stage_net

    extra = {} if chroma_temperature is None else {"chroma_temperature": chroma_temperature}
    models = {"dualflow": load_colorizer(experiment, runs_dir, device="cpu", allow_random_backbone=True, **extra),
              "secondary_only": load_colorizer(experiment, runs_dir, device="cpu", allow_random_backbone=True,
                                               patch_budget=0, **extra)}
    if has_baseline:
        models["baseline"] = load_stage_net(stage_checkpoint(experiment, "baseline", runs_dir), "baseline")[0]
        if chroma_temperature is not None and models["baseline"].chroma is not None:
            set_chroma_temperature([models["baseline"]], chroma_temperature)
    return models


def bench_quality(models: dict[str, Any], pages: int, size: int, oracle_pages: int = 128) -> dict[str, Any]:
    """The metric suite on held-out SynthManga pages: dual flow, secondary only, baseline, and the two oracles
    (:mod:`dualflow.oracle`, fitted on ``oracle_pages`` other pages) that show how far the figures can go."""
    from dualflow.bench.oracle import ClassToneOracle
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import SynthManga

    oracle = ClassToneOracle.fit(SynthManga(0)(i, size) for i in range(oracle_pages))
    rng = np.random.default_rng(0)
    truth = lambda s: (s["color"].permute(1, 2, 0).numpy(), s["labels"][0].numpy())  # noqa: E731
    references = {"oracle_median": lambda s: oracle.median_page(*truth(s)),
                  "oracle_sample": lambda s: oracle.sampled_page(*truth(s), rng)}
    data = SynthMangaDataset(pages, size, seed=31337)
    result = _quality([data[i] for i in range(pages)], models, references)
    result["pages"], result["page_size"], result["oracle_pages"] = pages, size, oracle_pages
    return result


def bench_transfer(models: dict[str, Any], size: int, crops: int) -> dict[str, Any]:
    """The same suite on real colour photographs rendered B&W by mangafy (:mod:`dualflow.data.real`): what the
    models carry from SynthManga to pictures they were not drawn from."""
    from dualflow.data.real import REAL_IMAGES, real_pages

    pages = real_pages(size, crops)
    result = _quality(pages, models)
    result["pages"], result["page_size"], result["images"] = len(pages), size, list(REAL_IMAGES)
    return result


def bench_consistency(models: dict[str, Any], chapters: int, pages: int, size: int) -> dict[str, Any]:
    """Cross-page consistency (:class:`ChapterConsistency`) on SynthManga chapters with recurring characters:
    of the colour pages themselves (time of day and shading vary, so it is not 0) and of the dual flow colouring
    each page on its own."""
    from dualflow.data.palette import PARTS, part_ids
    from dualflow.data.synth import SynthManga
    from dualflow.metrics.consistency import ChapterConsistency

    model = models["dualflow"]
    gen = SynthManga(4242)
    truth, per_page = ChapterConsistency(len(PARTS)), ChapterConsistency(len(PARTS))
    with torch.inference_mode():
        for c in range(chapters):
            for p in range(pages):
                page = gen.chapter_page(c, p, pages, size)
                maps = {"identity": torch.from_numpy(page.identity)[None, None],
                        "parts": torch.from_numpy(part_ids(page.labels))[None, None], "chapter": torch.tensor([c])}
                truth.update(torch.from_numpy(page.color).permute(2, 0, 1)[None], **maps)
                per_page.update(model.colorize_page(torch.from_numpy(page.bw)[None])["rgb"][None], **maps)
    return {"chapters": chapters, "pages_per_chapter": pages, "page_size": size,
            "truth": float(truth.compute()), "dualflow_per_page": float(per_page.compute())}


def _quality(samples: list[dict], models: dict[str, Any], references: dict[str, Any] | None = None) -> dict[str, Any]:
    """The page suite of every model on ``samples``; ``references``: name → function of a sample giving its RGB
    page (1,3,H,W), scored beside the models (the oracles)."""
    from dualflow.color import nlab_to_rgb
    from dualflow.metrics.suite import build_suite, compute_logged, page_inputs, update_suite

    model, secondary_only, baseline = models["dualflow"], models["secondary_only"], models.get("baseline")
    references = references or {}
    names = list(models) + list(references)
    suites = {name: build_suite("page", "bench", lpips=True, allow_random_backbone=True) for name in names}
    metric_seconds = []
    with torch.inference_mode():
        for s in samples:
            batch = {k: s[k][None] for k in ("bw", "color", "labels", "detailed") if k in s}
            out = model.colorize_page(s["bw"])
            common = page_inputs(batch, [out["plan"]])
            start = time.perf_counter()
            update_suite(suites["dualflow"], preds=out["rgb"][None], **common)
            metric_seconds.append(time.perf_counter() - start)
            update_suite(suites["secondary_only"], preds=secondary_only.colorize_page(s["bw"])["rgb"][None], **common)
            if baseline is not None:
                update_suite(suites["baseline"], preds=nlab_to_rgb(baseline(batch["bw"])), **common)
            for name, reference in references.items():
                update_suite(suites[name], preds=reference(s), **common)
    result: dict[str, Any] = {name: {k.removeprefix("bench/"): float(v) for k, v in compute_logged(suite).items()}
                              for name, suite in suites.items()}
    result["metric_suite_seconds_per_page"] = statistics.median(metric_seconds)
    return result
