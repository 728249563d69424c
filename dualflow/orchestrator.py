"""``python -m dualflow train --stage 1|2|3|all|baseline --experiment NAME [--preset P] [--resume] [overrides]``

Runs each stage as its own ``python -m dualflow fit`` process: Lightning's DDP launcher re-runs the command
line on every rank, so orchestrating several stages in one process would run them once per rank. Stage N
refuses to start without stage N−1 of the same experiment (unless its checkpoint is passed explicitly).
After stage 3 sample pages are written to ``runs/<NAME>/samples/`` (automatic, and beside them with 16 clicks
when the models take hints) and the composite is tested (metrics into
the manifest and into a W&B run of its own, with the samples)."""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from dualflow import manifest
from dualflow.stage_table import BY_KEY, PIPELINE, STAGES, config_files


def pick_preset(preset: str, gpus: int | None) -> str:
    """``auto``: ``ddp`` for several GPUs, ``gpu`` when CUDA is visible, else ``cpu`` (sized for 2 cores)."""
    if preset != "auto":
        return preset
    if gpus and gpus > 1:
        return "ddp"
    import torch

    return "gpu" if torch.cuda.is_available() else "cpu"


def configs(stage: str, preset: str) -> list[str]:
    """``--config`` arguments of a stage (by name) under a preset (:func:`stage_table.config_files`)."""
    return [arg for path in config_files(stage, preset) for arg in ("--config", str(path))]


def stage_command(stage: str, experiment: str, preset: str, runs_dir: str, resume: bool, gpus: int | None,
                  overrides: list[str]) -> list[str]:
    cmd = [sys.executable, "-m", "dualflow", "fit", *configs(stage, preset),
           "--experiment", experiment, "--runs_dir", runs_dir]
    if gpus:
        cmd.append(f"--trainer.devices={gpus}")
    cmd += overrides
    if resume:
        cmd += ["--ckpt_path", "last"]
    return cmd


def check_previous(stage: str, experiment: str, runs_dir: str, overrides: list[str]) -> None:
    """Every earlier stage ``stage`` needs is in the manifest, unless its checkpoint is passed explicitly."""
    for prev in STAGES[stage].needs:
        if not any(o.startswith(f"--model.{STAGES[prev].ckpt_arg}") for o in overrides):
            manifest.stage_checkpoint(experiment, prev, runs_dir)  # raises with the make target to run


def run_stage(key: str, args, overrides: list[str]) -> int:
    name = BY_KEY[key].name
    check_previous(name, args.experiment, args.runs_dir, overrides)
    ckpt_dir = Path(args.runs_dir) / args.experiment / name / "checkpoints"
    # The stage itself picks last.ckpt, or the newest intact checkpoint when last.ckpt is torn.
    resume = args.resume and any(ckpt_dir.glob("*.ckpt"))
    if args.resume and not resume:
        print(f"[dualflow] no checkpoint in {ckpt_dir} to resume from: training {name} from scratch")
    if not resume and ckpt_dir.is_dir():
        shutil.rmtree(ckpt_dir)  # a fresh run: old checkpoints must not pass for this run's
    cmd = stage_command(name, args.experiment, args.preset, args.runs_dir, resume, args.gpus, overrides)
    print(f"[dualflow] stage {key} ({name}): {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd).returncode


def training_scale(experiment: str, runs_dir: str) -> list[str]:
    """``dualflow synth`` options that draw sample pages at the detail scale stage 3 was trained at (its print
    dpi, or its page size / 256 for thumbnail pages), whatever their size: the models only know the detail
    sizes they were trained on."""
    from dualflow.data.scan import nets_dpi

    data = manifest.read_manifest(experiment, runs_dir)["stages"]["secondary"]["config"].get("data", {})
    if data.get("dpi"):  # a dpi range's nets work at 300 dpi
        return ["--dpi", f"{nets_dpi(data['dpi']):g}"]
    size = data.get("image_size", 256)
    return ["--scale", str(min(size if isinstance(size, list) else [size]) / 256.0)]


# Overrides the composite test shares with the stages: their data source, accelerator... and the choice of a
# randomly initialised metric backbone (offline, full-size configs); other model options are per stage.
SHARED_WITH_COMPOSITE = ("--data.", "--trainer.", "--model.allow_random_backbone")


def composite_overrides(overrides: list[str]) -> list[str]:
    """The overrides (with their values, ``--k=v`` or ``--k v``) that reach the composite test."""
    out, keep = [], False
    for token in overrides:
        if keep:
            out.append(token)
        keep = False
        if token.startswith(SHARED_WITH_COMPOSITE):
            out.append(token)
            keep = "=" not in token
    return out


def hinted_samples(inputs: Path, samples: Path, experiment: str, runs_dir: str) -> None:
    """The sample pages automatic beside 16 clicks (:mod:`dualflow.samples`), for models trained with hints."""
    from dualflow.loader import load_page_colorizer
    from dualflow.samples import write_hinted_samples

    colorizer = load_page_colorizer(experiment, runs_dir)
    if colorizer.takes_hints:
        for path in write_hinted_samples(inputs, samples, colorizer):
            print(f"[dualflow] sample with hints: {path}", flush=True)


def finish(args, overrides: list[str]) -> int:
    """Sample pages under runs/<NAME>/samples/, then the composite test (on the stages' overrides that it shares,
    :data:`SHARED_WITH_COMPOSITE`): its metrics go into the manifest and, with the sample pages, a per-page table
    and debug panels, into a W&B run (job_type ``composite``)."""
    exp_dir = Path(args.runs_dir) / args.experiment
    inputs = exp_dir / "samples" / "input"
    from dualflow.data.synth_cli import main as synth_main

    scale = ["--scale", str(args.sample_scale)] if args.sample_scale else training_scale(args.experiment,
                                                                                        args.runs_dir)
    synth_main([str(inputs), "--n", str(args.samples), "--seed", "424242", "--size", str(args.sample_size), *scale])
    from dualflow.inference import main as colorize_main

    samples_code = colorize_main([str(inputs / "bw"), "--out", str(exp_dir / "samples"), "--experiment",
                                  args.experiment, "--runs_dir", args.runs_dir, "--debug"])
    hinted_samples(inputs, exp_dir / "samples", args.experiment, args.runs_dir)
    cmd = [sys.executable, "-m", "dualflow", "test", *configs("composite", args.preset),
           "--experiment", args.experiment, "--runs_dir", args.runs_dir,
           f"--model.samples_dir={exp_dir / 'samples'}", *composite_overrides(overrides)]
    print(f"[dualflow] composite test: {' '.join(cmd[1:])}", flush=True)
    return subprocess.run(cmd).returncode or samples_code


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow train", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--stage", choices=[*(STAGES[s].key for s in PIPELINE), "all", "baseline", "resize_baseline",
                                            "baselines"], default="all",
                        help="baselines: the single-flow baseline, then the resize baseline")
    parser.add_argument("--experiment", default="default")
    parser.add_argument("--preset", default="auto", help="auto | cpu | gpu | ddp | none (experiments/presets/)")
    parser.add_argument("--gpus", type=int, default=None, help="devices per node (several → ddp preset)")
    parser.add_argument("--resume", action="store_true",
                        help="continue from the stage's last.ckpt (or its newest intact checkpoint), exactly")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--samples", type=int, default=6, help="sample pages written after stage 3")
    parser.add_argument("--sample_size", default="1024x1448", help="sample page size, N or WxH")
    parser.add_argument("--sample_scale", type=float, default=None,
                        help="detail scale of the sample pages (default: the scale stage 3 was trained at)")
    args, overrides = parser.parse_known_args(argv)
    args.preset = pick_preset(args.preset, args.gpus)
    stages = {"all": [STAGES[s].key for s in PIPELINE], "baselines": ["baseline", "resize_baseline"]}.get(
        args.stage, [args.stage])
    try:
        for stage in stages:
            code = run_stage(stage, args, overrides)
            if code:
                print(f"[dualflow] stage {stage} failed (exit {code})", file=sys.stderr)
                return code
        if stages[-1] == STAGES[PIPELINE[-1]].key:
            return finish(args, overrides)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
