"""``python -m dualflow export EXP --out DIR``: an experiment's three networks as ONNX files with dynamic batch
and page size, a ``manifest.json`` that holds everything ``colorize --engine onnx`` needs besides them (plan,
secondary and fusion settings, input and output names and ranges), and a check on a real page: the whole
pipeline run by ONNX Runtime against PyTorch, failing past a tolerance (then no manifest is written, so the
folder cannot be used).

The TorchScript-based exporter (``dynamo=False``) is used: ``torch.export`` specialises the UNet's padded
sizes to the example's, while the traced graph with :func:`models.blocks.exporting` branches holds for every
size (checked per network on several sizes in the tests)."""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn

from dualflow.colorizer import PageColorizer
from dualflow.data.io import atomic_path
from dualflow.onnx_engine import FORMAT, OPSET, load_onnx_colorizer, require_onnxruntime

TOLERANCE_MEAN = 1 / 255  # mean |ONNX − PyTorch| over the checked page's RGB
TOLERANCE_MAX = 4 / 255  # largest difference of any pixel


class ImportanceOfView(nn.Module):
    """The attention net as exported: a page already at its working resolution → importance in [0, 1]."""

    def __init__(self, net: nn.Module):
        super().__init__()
        self.net = net

    def forward(self, view: torch.Tensor, origin: torch.Tensor) -> torch.Tensor:
        return self.net.importance_of_view(view, origin)


@dataclass
class NetSpec:
    """One exported network: its file, input and output names with their (symbolic) shapes and ranges."""

    file: str
    input: str
    input_shape: list[str]
    input_range: str
    output: str
    output_shape: list[str]
    output_range: str
    origin: str = ""  # a second input, (2,) float32: a tile's first token (y, x) in the whole view


SPECS = {
    "attention": NetSpec("attention.onnx", "view", ["batch", 1, "height", "width"],
                         "B&W page at the net's working resolution (page_scale), [0, 1]", "importance",
                         ["batch", 1, "height/stride", "width/stride"], "[0, 1]", origin="origin"),
    "primary": NetSpec("primary.onnx", "patches", ["patches", 2, "height", "width"],
                       "B&W patch and its importance (bilinear), [0, 1]", "lab", ["patches", 3, "height", "width"],
                       "normalised Lab: L/100 in [0, 1], ab/110 in [-1, 1]"),
    "secondary": NetSpec("secondary.onnx", "page", ["batch", 6, "height", "width"],
                         "at the working size: B&W page, primary canvas (normalised Lab), coverage, importance",
                         "lab", ["batch", 3, "height", "width"], "normalised Lab: L/100 in [0, 1], ab/110 in [-1, 1]"),
}
EXAMPLES = {"attention": (2, 1, 96, 72), "primary": (3, 2, 64, 64), "secondary": (2, 6, 72, 52)}


def net_spec(name: str, net: nn.Module) -> NetSpec:
    """:data:`SPECS`' entry for ``name``, with the hint map's 4 channels after the others when ``net`` was
    trained with colour hints (its ``in_channels``)."""
    spec = SPECS[name]
    channels = getattr(net, "in_channels", spec.input_shape[1])
    if channels == spec.input_shape[1]:
        return spec
    return replace(spec, input_shape=[spec.input_shape[0], channels, *spec.input_shape[2:]],
                   input_range=f"{spec.input_range}; then the hint map: normalised Lab (0 where no hint) and its "
                               f"{{0,1}} mask")


class ExportCheckError(RuntimeError):
    """ONNX Runtime's page differs from PyTorch's by more than the tolerance."""


def export_net(net: nn.Module, spec: NetSpec, example: tuple[int, ...], path: Path, opset: int = OPSET) -> None:
    """One network to ONNX with dynamic batch, height and width (the example's sizes are only a trace)."""
    dims = {0: "batch", 2: "height", 3: "width"}
    with torch.no_grad(), warnings.catch_warnings():
        # The trace warns at every shape-dependent branch; blocks.exporting() makes each take its general form.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        inputs = (torch.rand(example), torch.zeros(2)) if spec.origin else (torch.rand(example),)
        names = [spec.input, spec.origin] if spec.origin else [spec.input]
        torch.onnx.export(net.eval(), inputs, str(path), input_names=names,
                          output_names=[spec.output], dynamic_axes={spec.input: dims, spec.output: dims},
                          opset_version=opset, dynamo=False)


def check_page(size: tuple[int, int], dpi: float, seed: int = 0) -> torch.Tensor:
    """A SynthManga page (1,H,W) drawn at print scale, of the size the experiment was trained on."""
    from dualflow.data.synth import PrintScale, SynthManga

    page = SynthManga(seed)(0, size, PrintScale.at_dpi(dpi) if dpi else None)
    return torch.from_numpy(page.bw)[None]


def compare_pages(reference: PageColorizer, exported: PageColorizer, bw: torch.Tensor) -> dict[str, float]:
    """Mean and max |ONNX − PyTorch| of the colour page, with each engine's seconds."""
    start = time.perf_counter()
    ref = reference.colorize_page(bw)["rgb"].float()
    mid = time.perf_counter()
    out = exported.colorize_page(bw)["rgb"].float()
    end = time.perf_counter()
    diff = (out - ref).abs()
    return {"mean_abs": float(diff.mean()), "max_abs": float(diff.max()), "torch_s": mid - start,
            "onnx_s": end - mid}


def export_experiment(experiment: str, out: str | Path, runs_dir: str = "runs", opset: int = OPSET,
                      page: torch.Tensor | None = None, tolerance: tuple[float, float] = (TOLERANCE_MEAN,
                                                                                          TOLERANCE_MAX),
                      ckpts: list[str] | None = None) -> dict[str, Any]:
    """Export, then check on ``page`` (1,H,W) (default: a SynthManga page of the trained size); returns the
    manifest written to ``out/manifest.json``. Raises :class:`ExportCheckError` past ``tolerance``."""
    from dualflow.loader import load_page_colorizer
    from dualflow.manifest import git_commit

    require_onnxruntime()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "manifest.json").unlink(missing_ok=True)  # no manifest until the check passes
    reference = load_page_colorizer(experiment, runs_dir, ckpts, device="cpu")
    nets = {"attention": ImportanceOfView(reference.attention), "primary": reference.primary,
            "secondary": reference.secondary}
    specs = {name: net_spec(name, net) for name, net in nets.items()}
    for name, net in nets.items():
        example = (EXAMPLES[name][0], specs[name].input_shape[1], *EXAMPLES[name][2:])
        export_net(net, specs[name], example, out / specs[name].file, opset)
    attention = reference.attention
    manifest = {
        "format": FORMAT, "experiment": experiment, "commit": git_commit(), "opset": opset,
        "torch": torch.__version__, "exported": time.strftime("%Y-%m-%dT%H:%M:%S"),
        "nets": {name: asdict(spec) for name, spec in specs.items()},
        "attention": {"stride": attention.stride, "page_scale": attention.page_scale, "window": attention.window},
        "plan": asdict(reference.plan_settings), "secondary": dict(reference.secondary_meta),
        "fusion": asdict(reference.fusion.config),
        "composite": {"patch_batch": reference.patch_batch, "attention_tile": reference.attention_tile,
                      "max_working_size": reference.max_working_size, "primary_hints": reference.primary_hints},
    }
    from dualflow.manifest import trained_page

    size, dpi = trained_page(experiment, runs_dir)
    bw = page if page is not None else check_page(size, dpi)
    exported = load_onnx_colorizer(out, manifest=manifest)
    check = compare_pages(reference, exported, bw)
    manifest["check"] = {"page": list(bw.shape[-2:]), **check, "tolerance_mean": tolerance[0],
                         "tolerance_max": tolerance[1]}
    if check["mean_abs"] > tolerance[0] or check["max_abs"] > tolerance[1]:
        raise ExportCheckError(
            f"ONNX Runtime's page differs from PyTorch's by {check['mean_abs'] * 255:.3f}/255 (mean) and "
            f"{check['max_abs'] * 255:.3f}/255 (max), beyond {tolerance[0] * 255:.1f}/255 and "
            f"{tolerance[1] * 255:.1f}/255: the ONNX files in {out} are not usable (no manifest written)")
    _write_json(out / "manifest.json", manifest)
    return manifest


def _write_json(path: Path, value: dict) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, default=str))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="dualflow export", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("experiment", nargs="?", default="default", help="runs/<experiment>/manifest.json")
    parser.add_argument("--out", default=None, help="output folder (default runs/<experiment>/onnx)")
    parser.add_argument("--runs_dir", default="runs")
    parser.add_argument("--ckpt", nargs=3, metavar=("ATTENTION", "PRIMARY", "SECONDARY"),
                        help="explicit stage checkpoints instead of the experiment's")
    parser.add_argument("--opset", type=int, default=OPSET)
    parser.add_argument("--page", default=None, help="check on this B&W page (default: a SynthManga page)")
    args = parser.parse_args(argv)
    out = Path(args.out or Path(args.runs_dir) / args.experiment / "onnx")
    try:
        page = None
        if args.page:
            from dualflow.data.io import read_image

            page = torch.from_numpy(read_image(args.page, channels=1))[None]
        manifest = export_experiment(args.experiment, out, args.runs_dir, args.opset, page, ckpts=args.ckpt)
    except (FileNotFoundError, ValueError, RuntimeError, ImportError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    c = manifest["check"]
    print(f"exported {args.experiment} to {out} (opset {args.opset}); check on a {c['page'][1]}x{c['page'][0]} "
          f"page: |ONNX - PyTorch| mean {c['mean_abs'] * 255:.4f}/255, max {c['max_abs'] * 255:.4f}/255; "
          f"PyTorch {c['torch_s']:.2f} s, ONNX Runtime {c['onnx_s']:.2f} s")
    return 0
