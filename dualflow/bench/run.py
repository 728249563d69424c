"""``python -m dualflow bench --experiment NAME``: quality, speed and memory of the dual flow against the
single-flow baseline (and the primary model run alone on whole pages), on the same machine and pages.

Writes ``results.json`` and ``results.md`` (the Markdown table, also printed) into ``--out`` (default
``runs/bench``; ``--out bench`` updates the results committed in the repository). Each timing is the median of
repeated runs after a warm-up; ratios are taken within one run. Peak memory is measured in a fresh process per
(model, page size): process RSS on CPU, ``max_memory_allocated`` on GPU.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dualflow.bench import ablation, costs, coverage, data, inference, profile, quality, scales, steps, volume
from dualflow.bench.probes import machine
from dualflow.bench.report import ablation_markdown, markdown

DEFAULTS = {"pages": 24, "sizes": "1024x1448,2048x2896", "dpi": 300.0, "cache": "runs/cache", "transfer_size": 512,
            "repeats": 3, "coverage_pages": 6, "coverage_size": "2048x2896", "dpis": "150,200,300,600", "dpi_pages": 24,
            "densities": ",".join(f"{d:g}" for d in coverage.DENSITIES)}
TINY_DEFAULTS = {"pages": 2, "sizes": "64x64,48x72", "dpi": 0.0, "cache": "none", "transfer_size": 64, "repeats": 1,
                 "coverage_pages": 2, "coverage_size": "64x96", "densities": "0,2000", "dpis": "150,300",
                 "dpi_pages": 1}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow bench", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--out", default="runs/bench",
                        help="folder for results.json and results.md (bench: update the committed results)")
    parser.add_argument("--pages", type=int, default=None,
                        help="held-out pages per page size for the quality tables (default 24)")
    parser.add_argument("--sizes", default=None,
                        help="page sizes (WxH, comma-separated) of the quality tables: results.json quality[WxH] "
                             "(default 1024x1448,2048x2896)")
    parser.add_argument("--dpi", type=float, default=None,
                        help="drawing scale of the quality pages: print scale at this dpi (0: thumbnail pages; "
                             "default 300)")
    parser.add_argument("--cache", default=None, help="page cache for the quality pages (none: draw; default "
                                                      "runs/cache)")
    parser.add_argument("--transfer_size", type=int, default=None,
                        help="side of the real-photograph crops (default 512)")
    parser.add_argument("--repeats", type=int, default=None, help="timed repeats (default 3)")
    parser.add_argument("--tiny", action="store_true",
                        help="small pages and counts, about 1 min 15 s on 2 cores (for tests and a first look): "
                             f"{', '.join(f'--{k} {v}' for k, v in TINY_DEFAULTS.items())} unless given")
    parser.add_argument("--breakdown_preset", default="gpu",
                        help="preset whose sizes the training-step breakdown uses (experiments/presets/)")
    parser.add_argument("--breakdown_steps", type=int, default=3, help="timed training steps per stage")
    parser.add_argument("--volume_pages", type=int, default=32, help="pages of the volume timed end to end")
    parser.add_argument("--volume_size", default="2048x2896", help="WxH of the volume's pages")
    parser.add_argument("--seed", type=int, default=quality.QUALITY_SEED,
                        help="seed of the quality pages (default: the bench's held-out pages; choose "
                             "settings on others, e.g. quality.TUNING_SEED 2718, never on the bench's)")
    parser.add_argument("--experiments", default="",
                        help="comma-separated experiments sharing stage 1, for --only ablation")
    parser.add_argument("--hint_pages", type=int, default=None,
                        help="pages per size of the hint curve (default: --pages at the first size, at most 8 at "
                             "larger ones: 8 settings a page, every row)")
    parser.add_argument("--hint_counts", default=None,
                        help="hints per page on the hint curve, comma-separated (default 0,4,16,64; --tiny 0,16)")
    parser.add_argument("--coverage_pages", type=int, default=None,
                        help="pages of the coverage/cost curve (default 6; tune with --seed 2718)")
    parser.add_argument("--coverage_size", default=None, help="WxH of the coverage curve's pages (default 2048x2896)")
    parser.add_argument("--densities", default=None,
                        help="priority patches per megapixel on the coverage curve, comma-separated (0: the trained "
                             "plan; default 0,12,40,80,140)")
    parser.add_argument("--dpis", default=None,
                        help="scan resolutions of the resolution table, comma-separated (default 150,200,300,600)")
    parser.add_argument("--dpi_pages", type=int, default=None,
                        help="layouts of the resolution table (default 24; its page size is the first --sizes at "
                             "300 dpi)")
    parser.add_argument("--only", choices=["all", "ablation", "breakdown", "coverage", "dpi", "hints", "inference",
                                           "profile", "quality", "volume"], default="all",
                        help="ablation: the --experiments side by side on the first --sizes page size, with the "
                             "oracles and each one's training and page cost (→ ablation.{json,md}); "
                             "breakdown: only the training-step breakdown (needs no trained experiment); "
                             "coverage: only the coverage/cost curve of the plan (→ coverage_curve.png); "
                             "dpi: only the resolution table (quality_dpi: the layouts scanned at --dpis, coloured by "
                             "the estimated dpi and as scanned; the estimate's error; 600 against 300 dpi cost); "
                             "hints: only the hint curve (quality_hints: clicks and random hints, 0-64 a page); "
                             "inference: only page inference time and memory (PyTorch and ONNX Runtime); "
                             "profile: only torch.profiler on a page per --sizes size (steps' shares, top ops); "
                             "volume: only colorize's pages/min on a .cbz volume; quality: only the quality, "
                             "transfer and chapter-consistency figures (compares experiments in minutes)")
    parser.add_argument("--chroma_temperature", type=float, default=None,
                        help="decoding temperature for models trained with a chroma grid (default: trained value)")
    args = parser.parse_args(argv)
    for name, value in (TINY_DEFAULTS if args.tiny else DEFAULTS).items():
        if getattr(args, name) is None:
            setattr(args, name, value)
    from dualflow.manifest import read_manifest

    results: dict[str, Any] = {"machine": machine(), "experiment": args.experiment}
    if args.only == "breakdown":
        results["breakdown"] = steps.breakdown(args.breakdown_preset, args.breakdown_steps, tiny=args.tiny)
        return _write(results, args.out, argv)
    if args.only == "ablation":
        return _ablation(results, args, argv)
    stages = read_manifest(args.experiment, args.runs_dir).get("stages", {})
    missing = [s for s in ("attention", "primary", "secondary") if s not in stages]
    if missing:
        print(f"error: experiment {args.experiment!r} lacks stages {missing}: run `make train EXP={args.experiment}`")
        return 2
    has_baseline = "baseline" in stages
    if not all(b in stages for b in quality.BASELINES):
        print(f"[bench] {args.experiment!r} lacks a baseline ({', '.join(quality.BASELINES)}): run "
              f"`make train-baseline EXP={args.experiment}` for the ablation; reporting the rest")
    sizes = inference.TINY_SIZES if args.tiny else inference.SIZES
    kinds = ["dualflow", "dualflow_onnx", *(["baseline"] if has_baseline else []), "primary_whole_page"]
    if args.only == "volume":
        return _write(_volume(results, args), args.out, argv)
    if args.only == "inference":
        return _write(_inference(results, args, sizes, kinds), args.out, argv)
    if args.only == "all":
        results["breakdown"] = steps.breakdown(args.breakdown_preset, args.breakdown_steps, tiny=args.tiny)
        _say("data: SynthManga, folder and stream throughput")
        results["data"] = data.bench_data(args.repeats, 4 if args.tiny else 32)
        results["data"].update(data.bench_sources(8 if args.tiny else 128, 64 if args.tiny else 256))
        _say("stages: each stage's training and inference throughput")
        results["stages"] = costs.bench_stages(args.experiment, args.runs_dir, args.repeats, sizes)
    if args.only in ("all", "profile"):
        _say("profile: where a page's time goes")
        results["profile"] = profile.bench_profile(args.experiment, args.runs_dir, parse_sizes(args.sizes),
                                                   args.dpi or None, args.seed)
    if args.only == "profile":
        return _write(results, args.out, argv)
    cache = None if args.cache in ("", "none") else args.cache
    if args.only in ("all", "coverage"):
        results["coverage"] = _coverage(args, cache)
    if args.only == "coverage":
        return _write(results, args.out, argv)
    models = quality.bench_models(args.experiment, args.runs_dir, args.chroma_temperature)
    if args.only in ("all", "dpi") and (models["dualflow"].trained_dpi or args.only == "dpi"):
        _say("scan resolutions: the layouts at several dpi")
        [(h, w)] = parse_sizes(args.sizes.split(",")[0])
        try:
            scan = scales.bench_dpi(models, args.dpi_pages, (h, w), [float(d) for d in args.dpis.split(",")],
                                    args.seed, cache, args.repeats)
        except ValueError as e:
            print(f"error: {e}")
            return 2
        results["quality_dpi"], results["scan_resolutions"] = scan.pop("quality_dpi"), scan
    if args.only == "dpi":
        return _write(results, args.out, argv)
    if args.only in ("all", "hints"):
        results["quality_hints"] = _hint_curve(models, args, cache)
    if args.only == "hints":
        return _write(results, args.out, argv, "hint_curve")
    results["quality"] = {}
    for h, w in parse_sizes(args.sizes):
        results["quality"][f"{w}x{h}"] = quality.bench_quality(models, args.pages, (h, w), args.dpi or None,
                                                               2 if args.tiny else 16, cache,
                                                               seed=args.seed)
    _say("consistency and transfer")
    results["transfer"] = quality.bench_transfer(models, args.transfer_size, 1 if args.tiny else 4)
    results["consistency"] = quality.bench_consistency(models, 2 if args.tiny else 8, 3 if args.tiny else 8,
                                                       128 if args.tiny else 256)
    del models  # the inference figures are taken in fresh processes; free these first
    if args.only == "quality":
        return _write(results, args.out, argv)
    return _write(_volume(_inference(results, args, sizes, kinds), args), args.out, argv)


def _hint_curve(models: dict[str, Any], args: argparse.Namespace, cache: str | None) -> dict[str, Any]:
    """The hint curve at each ``--sizes`` page size (:mod:`dualflow.bench.hint_curve`) for every model row and the
    classical anchor ``levin_propagation`` (on the dual flow's lightness), hints written to --out."""
    from dualflow.bench.hint_curve import COUNTS, bench_hints, plot_hint_curve
    from dualflow.bench.levin import LevinPropagation

    models = {**models, "levin_propagation": LevinPropagation(models["dualflow"])}

    curves = {}
    sizes = parse_sizes(args.sizes)[:1] if args.tiny else parse_sizes(args.sizes)
    counts = tuple(int(n) for n in args.hint_counts.split(",")) if args.hint_counts else (0, 16) if args.tiny \
        else COUNTS
    for i, (h, w) in enumerate(sizes):
        pages = args.hint_pages or (args.pages if i == 0 else min(args.pages, 8))
        _say(f"hint curve {w}x{h}: {pages} pages")
        curves[f"{w}x{h}"] = bench_hints(models, pages, (h, w), args.dpi or None, cache, Path(args.out),
                                         seed=args.seed, oracle_pages=2 if args.tiny else 16,
                                         counts=counts)
    print(f"[bench] wrote {plot_hint_curve(curves, Path(args.out) / 'hint_curve.png')}", flush=True)
    return curves


def _say(section: str) -> None:
    """A line when a bench section starts (the quality tables also count their pages)."""
    print(f"[bench] {section}", flush=True)


def _ablation(results: dict[str, Any], args: argparse.Namespace, argv: list[str] | None) -> int:
    """The experiments' quality and cost side by side: ``ablation.{json,md}`` in ``--out``."""
    experiments = [e for e in args.experiments.split(",") if e]
    if len(experiments) < 2:
        print("error: --only ablation needs --experiments A,B[,...] (two or more experiments sharing stage 1)")
        return 2
    [(h, w)] = parse_sizes("128x181" if args.tiny else args.sizes.split(",")[0])
    cache = None if args.cache in ("", "none") else args.cache
    results.pop("experiment")
    try:
        results.update(ablation.bench_ablation(experiments, args.runs_dir, args.pages, (h, w), args.dpi or None,
                                               cache, args.repeats, 2 if args.tiny else 16, seed=args.seed))
    except ValueError as e:
        print(f"error: {e}")
        return 2
    from dualflow.data.io import save_image

    Path(args.out).mkdir(parents=True, exist_ok=True)
    save_image(Path(args.out) / "ablation_samples.png", results["samples"].pop("sheet"))
    return _write(results, args.out, argv, "ablation", ablation_markdown)


def _export_check(args: argparse.Namespace) -> dict[str, Any]:
    """The experiment's ONNX export (made when missing) and its check against PyTorch."""
    folder = Path(inference.export_folder(args.experiment, args.runs_dir))
    return json.loads((folder / "manifest.json").read_text())["check"]


def _volume(results: dict[str, Any], args: argparse.Namespace) -> dict[str, Any]:
    """``colorize`` end to end on a .cbz volume, PyTorch and ONNX Runtime engines."""
    [(h, w)] = parse_sizes("128x181" if args.tiny else args.volume_size)
    _say("volume: colorize end to end on a .cbz, PyTorch and ONNX Runtime")
    results["onnx_export"] = _export_check(args)
    cache = None if args.cache in ("", "none") else args.cache
    results["volume"] = volume.bench_volume(args.experiment, args.runs_dir, 3 if args.tiny else args.volume_pages,
                                            (h, w), args.dpi or None, cache, ["torch", "onnx"])
    return results


def parse_sizes(text: str) -> list[tuple[int, int]]:
    """``"1024x1448,2048x2896"`` (W×H, comma-separated) → [(H, W), ...]."""
    return [tuple(int(v) for v in size.lower().split("x"))[::-1] for size in text.split(",")]


def _coverage(args: argparse.Namespace, cache: str | None) -> dict[str, Any]:
    """The coverage/cost curve of the plan (:mod:`dualflow.bench.coverage`), plotted into --out."""
    _say("coverage: the plan at several densities, quality against cost")
    [(h, w)] = parse_sizes(args.coverage_size)
    densities = [float(d) for d in args.densities.split(",")]
    result = coverage.bench_coverage(args.experiment, args.runs_dir, args.coverage_pages, (h, w), args.dpi or None,
                                     densities, 16 if args.tiny else 64, args.seed, cache, args.repeats)
    print(f"[bench] wrote {coverage.plot_coverage_curve(result, Path(args.out) / 'coverage_curve.png')}", flush=True)
    return result


def _inference(results: dict[str, Any], args: argparse.Namespace, sizes, kinds: list[str]) -> dict[str, Any]:
    """Whole-page inference time and memory per page size, and stage-1 inference alone."""
    _say("inference: page time and memory, one fresh process per model and size")
    results["onnx_export"] = _export_check(args)
    results["inference"] = inference.bench_inference(args.experiment, args.runs_dir, sizes, args.repeats, kinds)
    results["stage1_inference"] = inference.bench_inference(args.experiment, args.runs_dir, sizes[:2], args.repeats,
                                                  ["attention"])
    return results


def _write(results: dict[str, Any], out: str, argv: list[str] | None, name: str = "results",
           render=markdown) -> int:
    """``<out>/<name>.json`` and its Markdown rendering ``<out>/<name>.md`` (also printed)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{name}.json").write_text(json.dumps(results, indent=2, default=float))
    command = "python -m dualflow bench " + " ".join(argv if argv is not None else [])
    table = render(results, command.strip())
    (out / f"{name}.md").write_text(table)
    print(table)
    return 0
