"""``python -m dualflow compare EXP [EXP ...] [--out compare.md]``: experiments side by side, without a server.

Reads each experiment's ``runs/<EXP>/manifest.json``: every stage's best validation metrics, the composite's
test metrics, and the configuration values that differ between the experiments (paths and names that are
different by construction left out). Prints a table and writes the same as Markdown."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from dualflow.manifest import read_manifest
from dualflow.stage_table import STAGES

STAGE_ORDER = tuple(STAGES)
# Config keys that differ between any two experiments by construction, not by choice.
INCIDENTAL = ("experiment", "runs_dir", "default_root_dir", "_ckpt", "save_dir", "logger.init_args.name",
              "logger.dict_kwargs.group", "samples_dir", "ckpt_path", "config")


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Nested config → {"model.init_args.lr": 0.001, ...}."""
    if isinstance(config, dict):
        out: dict[str, Any] = {}
        for k, v in config.items():
            out.update(flatten(v, f"{prefix}{k}."))
        return out
    return {prefix[:-1]: config}


def _incidental(key: str) -> bool:
    return any(part in key for part in INCIDENTAL)


def headline(manifest: dict[str, Any]) -> dict[str, float]:
    """``stage: metric`` → value: each stage's best validation metrics and the composite's test metrics."""
    out = {}
    for stage in STAGE_ORDER:
        for key, value in sorted(manifest.get("stages", {}).get(stage, {}).get("metrics", {}).items()):
            out[f"{stage}: {key}"] = value
    return out


def config_differences(manifests: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """``stage: config.key`` → {experiment: value} for the keys whose values differ between the experiments
    that have that stage (a stage only one experiment has is not a difference of settings)."""
    out: dict[str, dict[str, Any]] = {}
    for stage in STAGE_ORDER:
        flat = {exp: flatten(m.get("stages", {}).get(stage, {}).get("config") or {}) for exp, m in manifests.items()}
        flat = {exp: f for exp, f in flat.items() if f}
        if len(flat) < 2:
            continue
        for key in dict.fromkeys(k for f in flat.values() for k in f):
            values = {exp: f.get(key) for exp, f in flat.items()}
            if not _incidental(key) and len({repr(v) for v in values.values()}) > 1:
                out[f"{stage}: {key}"] = values
    return out


def _cell(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def table(experiments: list[str], runs_dir: str = "runs") -> str:
    """The comparison as Markdown: headline figures, then the differing config values."""
    manifests = {exp: read_manifest(exp, runs_dir) for exp in experiments}
    missing = [exp for exp, m in manifests.items() if not m.get("stages")]
    if missing:
        raise FileNotFoundError(f"no manifest with stages for {missing} under {runs_dir}/ (train them first)")
    figures = {exp: headline(m) for exp, m in manifests.items()}
    keys = list(dict.fromkeys(k for f in figures.values() for k in f))
    header = "| | " + " | ".join(experiments) + " |\n|---" + "|---" * len(experiments) + "|\n"
    lines = ["**Metrics** (best validation of each stage; the composite's test)", "", header.rstrip()]
    lines += [f"| {k} | " + " | ".join(_cell(figures[e].get(k)) for e in experiments) + " |" for k in keys]
    diffs = config_differences(manifests)
    lines += ["", "**Configuration that differs**", ""]
    if diffs:
        lines.append(header.rstrip())
        lines += [f"| {k} | " + " | ".join(_cell(v.get(e)) for e in experiments) + " |" for k, v in diffs.items()]
    else:
        lines.append("(none: the experiments share every setting)")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow compare", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiments", nargs="+", help="experiment names (runs/<name>/manifest.json)")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--out", default=None, help="Markdown file (default: <runs_dir>/compare.md)")
    args = parser.parse_args(argv)
    try:
        text = table(args.experiments, args.runs_dir)
    except (FileNotFoundError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    out = Path(args.out or Path(args.runs_dir) / "compare.md")
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(text)
    print(f"[dualflow] written to {out}")
    return 0
