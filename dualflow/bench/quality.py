"""Quality on held-out pages: the page metric suite of the dual flow, the dual flow without priority patches, the
single-flow baseline and the oracles; the same on real photographs (transfer) and across the pages of chapters
(consistency)."""

from __future__ import annotations

import statistics
import time
from typing import Any

import numpy as np
import torch

from dualflow.progress import ProgressLog


def bench_models(experiment: str, runs_dir: str, chroma_temperature: float | None = None) -> dict[str, Any]:
    """The models the quality figures compare, loaded once: the composite, the same composite with no priority
    patches (what the primary flow adds is the difference) and, where trained, the single-flow baselines behind
    the composite's fusion step (:class:`SingleFlowColorizer`: every row is post-processed alike).
    ``chroma_temperature``: decoding temperature of models with a chroma grid (None: the trained one)."""
    from dualflow.loader import load_page_colorizer, set_chroma_temperature
    from dualflow.manifest import read_manifest, stage_checkpoint, trained_page
    from dualflow.stages.baseline import SingleFlowColorizer
    from dualflow.stages.frozen import load_stage_net

    extra = {} if chroma_temperature is None else {"chroma_temperature": chroma_temperature}
    models = {"dualflow": load_page_colorizer(experiment, runs_dir, device="cpu", **extra),
              "secondary_only": load_page_colorizer(experiment, runs_dir, device="cpu", patch_budget=0, **extra)}
    trained = read_manifest(experiment, runs_dir).get("stages", {})
    for name in BASELINES:
        if name in trained:
            net, meta = load_stage_net(stage_checkpoint(experiment, name, runs_dir, None), name)
            if "trained_dpi" not in meta:  # checkpoints from before the page's dpi was kept
                meta["trained_dpi"] = trained_page(experiment, runs_dir, name)[1]
            if chroma_temperature is not None and net.chroma is not None:
                set_chroma_temperature([net], chroma_temperature)
            models[name] = SingleFlowColorizer(net, meta, models["dualflow"].fusion.config,
                                               models["dualflow"].max_working_size)
    return models


BASELINES = ("baseline", "resize_baseline")
QUALITY_SEED = 31337  # the bench's held-out pages: no training, validation or tuning run draws this seed
TUNING_SEED = 2718  # pages to choose settings on (``bench --seed``), drawn by no training run and not the bench's


CORE_METRICS = ("color/delta_e2000", "color/delta_e2000_detailed", "color/delta_cf", "color/tone_residue",
                "color/psnr")


def bench_quality(models: dict[str, Any], pages: int, size: tuple[int, int], dpi: float | None,
                  oracle_pages: int = 16, cache: str | None = None,
                  full_suite_max_pixels: int = 1 << 21, seed: int = QUALITY_SEED) -> dict[str, Any]:
    """The metric suite on ``pages`` held-out SynthManga pages of ``size`` (H, W), drawn at print scale
    (``dpi``) or as thumbnails (None): every model, and the two oracles (:mod:`dualflow.bench.oracle`, fitted on
    ``oracle_pages`` training pages of the same kind) that show how far the figures can go. Pages above
    ``full_suite_max_pixels`` get the colour metrics only (:data:`CORE_METRICS`; the whole suite costs about
    a minute per page and row at 2048×2896 on 2 cores). ``seed``: which pages (:data:`TUNING_SEED` to tune on)."""
    from dualflow.data.datasets import SynthMangaDataset
    from dualflow.data.synth import PrintScale

    scale = PrintScale.at_dpi(dpi) if dpi else None
    references = oracle_references(oracle_pages, size, scale, cache)
    data = SynthMangaDataset(pages, size, seed=seed, scale=scale, cache=cache)
    data.fill_cache(2)
    only = None if size[0] * size[1] <= full_suite_max_pixels else CORE_METRICS
    samples = ({**data[i], "identity": data.page(i).identity} for i in range(pages))
    result = _quality(samples, models, references, only, ProgressLog(f"bench quality {size[1]}x{size[0]}", pages))
    result.update(metrics="full" if only is None else "colour", pages=pages, page_size=f"{size[1]}x{size[0]}",
                  dpi=dpi or 0, oracle_pages=oracle_pages, seed=seed,
                  drawing={"pen": scale.pen, "letter": scale.letter} if scale else "thumbnail")
    return result


def oracle_references(oracle_pages: int, size: tuple[int, int], scale, cache: str | None) -> dict[str, Any]:
    """The two oracles (:mod:`dualflow.bench.oracle`), fitted on ``oracle_pages`` training pages of the kind
    scored, as functions of a sample giving its RGB page: what the figures can reach."""
    from dualflow.bench.oracle import ClassToneOracle
    from dualflow.data.datasets import SynthMangaDataset

    fit = SynthMangaDataset(oracle_pages, size, seed=0, scale=scale, cache=cache)
    fit.fill_cache(2)
    oracle = ClassToneOracle.fit(fit.page(i) for i in range(oracle_pages))
    rng = np.random.default_rng(0)
    truth = lambda s: (s["color"].permute(1, 2, 0).numpy(), s["labels"][0].numpy())  # noqa: E731
    return {"oracle_median": lambda s: oracle.median_page(*truth(s)),
            "oracle_sample": lambda s: oracle.sampled_page(*truth(s), rng)}


def bench_transfer(models: dict[str, Any], size: int, crops: int) -> dict[str, Any]:
    """The same suite on real colour photographs rendered B&W by mangafy (:mod:`dualflow.data.real`): what the
    models carry from SynthManga to pictures they were not drawn from."""
    from dualflow.data.mangafy import MangafyOptions
    from dualflow.data.real import REAL_IMAGES, real_pages
    from dualflow.data.synth import PEN_DPI
    from dualflow.scan_dpi import FINE_UNITS, estimate_dpi, resolve_dpi

    pages = real_pages(size, crops)
    trained = getattr(models["dualflow"], "trained_dpi", 0)
    estimates = [estimate_dpi(p["bw"]).dpi for p in pages]
    if trained:  # each photograph at its own size, coloured at the scale its screentone reads (as colorize does)
        pages = [{**p, "dpi": resolve_dpi(p["bw"], None, trained)[0]} for p in pages]
    result = _quality(pages, models, progress=ProgressLog("bench transfer", len(pages)))
    result["pages"], result["page_size"], result["images"] = len(pages), size, list(REAL_IMAGES)
    # Mangafy's screen period read as the middle fine ruling: the dpi the estimate should find.
    result["screen_dpi"] = MangafyOptions().period * PEN_DPI / FINE_UNITS
    result["estimated_dpi"] = [round(e, 1) if e else None for e in estimates]
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


class Coverage:
    """What the primary covers over a set of pages: ``coverage/page``, the mean share of a page inside its priority
    patches, and ``coverage/detailed``, the share of all detailed pixels (SynthManga's labels, bench-only) inside
    them."""

    def __init__(self):
        self.pages, self.detailed_in, self.detailed = [], 0.0, 0.0

    def update(self, plan, detailed: torch.Tensor | None) -> None:
        inside = plan.inside()
        self.pages.append(float(inside.float().mean()))
        if detailed is not None:
            self.detailed_in += float(detailed.reshape(inside.shape)[inside].sum())
            self.detailed += float(detailed.sum())

    def compute(self) -> dict[str, float]:
        out = {"coverage/page": statistics.fmean(self.pages)} if self.pages else {}
        if self.detailed:
            out["coverage/detailed"] = self.detailed_in / self.detailed
        return out


def _colour(model, sample: dict) -> dict[str, Any]:
    """``model.colorize_page`` on a sample, with its ``hints`` (the hint curve) when the model was trained with
    hints (a model trained without them colours the page automatically), and at its ``dpi`` where it has one."""
    hints = sample.get("hints") if getattr(model, "takes_hints", False) else None
    extra = {"hints": hints} if hints is not None else {}
    if sample.get("dpi"):  # a page scanned at another resolution (bench --only dpi)
        extra["dpi"] = sample["dpi"]
    return model.colorize_page(sample["bw"], **extra)


def _quality(samples, models: dict[str, Any], references: dict[str, Any] | None = None,
             only: tuple[str, ...] | None = None, progress: ProgressLog | None = None) -> dict[str, Any]:
    """The page suite of every model on ``samples`` (an iterable: print-scale pages are held one at a time);
    ``references``: name → function of a sample giving its RGB page (1,3,H,W), scored beside the models (the
    oracles). Every model's ``colorize_page`` includes the same fusion and post-processing; the first model's
    patch plan is the one the transition metrics score every row on. ``progress`` counts the pages."""
    from dualflow.bench.plausibility import ClassColourDistance
    from dualflow.metrics.suite import build_suite, compute_logged, page_inputs, update_suite

    lead = next(iter(models))
    references = references or {}
    names = list(models) + list(references)
    suites = {name: build_suite("page", "bench", lpips=True, allow_random_backbone=True, only=only)
              for name in names}
    plausible = {name: ClassColourDistance() for name in names}
    metric_seconds, coverage = [], {name: Coverage() for name in models}
    with torch.inference_mode():
        for s in samples:
            batch = {k: s[k][None] for k in ("bw", "color", "labels", "detailed") if k in s}
            outs = {name: _colour(m, s) for name, m in models.items()}
            # A page coloured at the nets' scale has its plan there: no transition or seam to score on its pixels.
            common = page_inputs(batch, None if "scale" in outs[lead] else [outs[lead]["plan"]])
            preds = {}
            for name, out in outs.items():
                preds[name] = out["rgb"][None]
                start = time.perf_counter()
                update_suite(suites[name], preds=preds[name], **common)
                metric_seconds.append(time.perf_counter() - start)
                if "scale" not in out:
                    coverage[name].update(out["plan"], s.get("detailed"))
            for name, reference in references.items():
                preds[name] = reference(s)
                update_suite(suites[name], preds=preds[name], **common)
            if "identity" in s:  # SynthManga pages: region colours per class
                for name, pred in preds.items():
                    plausible[name].update(pred, batch["color"], s["labels"][0].numpy(), s["identity"])
            if progress is not None:
                progress.step()
    result: dict[str, Any] = {name: {k.removeprefix("bench/"): float(v) for k, v in compute_logged(suite).items()}
                              for name, suite in suites.items()}
    for name, metric in plausible.items():
        if any(metric.truth):
            result[name].update(metric.compute())
    result["metric_suite_seconds_per_page"] = statistics.median(metric_seconds)
    for name, cover in coverage.items():
        result[name].update(cover.compute())
    return result
