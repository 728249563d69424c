"""``colorize --engine onnx``: the networks of an exported experiment (``dualflow export``) run by ONNX Runtime
behind the calls :class:`colorizer.PageColorizer` makes, so planning, fusion and post-processing are unchanged.
Needs no checkpoint and no Lightning; ``onnxruntime`` is the optional extra ``pip install dualflow[onnx]``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from dualflow.fusion import Fusion, FusionConfig
from dualflow.models.attention_net import area_view

FORMAT = "dualflow-onnx/2"  # 2: the attention graph takes the origin of a tile
OPSET = 18
MISSING = "the ONNX engine needs onnxruntime (and onnx to export): pip install 'dualflow[onnx]'"


def require_onnxruntime():
    """The onnxruntime module, or an ImportError that says how to install it."""
    try:
        import onnxruntime
    except ImportError as e:
        raise ImportError(MISSING) from e
    return onnxruntime


class OnnxNet:
    """An ONNX network as a callable on torch tensors: float32 in, float32 out on the input's device."""

    def __init__(self, path: str | Path, threads: int | None = None, providers: list[str] | None = None):
        ort = require_onnxruntime()
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads or torch.get_num_threads()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        try:
            self.session = ort.InferenceSession(str(path), options, providers=providers or ["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - onnxruntime's errors are its own pybind types, none a ValueError
            raise ValueError(f"{path}: not a loadable ONNX network ({str(e).strip()[:200]}); export the "
                             f"experiment again") from e
        self.input = self.session.get_inputs()[0].name

    def __call__(self, x: torch.Tensor, **extra: torch.Tensor) -> torch.Tensor:
        feeds = {name: t.detach().float().cpu().contiguous().numpy() for name, t in {self.input: x, **extra}.items()}
        return torch.from_numpy(self.session.run(None, feeds)[0]).to(x.device)


class OnnxAttention(OnnxNet):
    """The attention net's interface (:class:`models.AttentionNet`): ``view``, ``importance_of_view``,
    ``stride``; the exported graph includes the sigmoid."""

    def __init__(self, path: str | Path, stride: int, page_scale: float, window: int, **kwargs):
        super().__init__(path, **kwargs)
        self.stride, self.page_scale, self.window = stride, page_scale, window

    def view(self, page: torch.Tensor) -> torch.Tensor:
        return area_view(page, self.page_scale)

    def importance_of_view(self, view: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
        return self(view, origin=torch.zeros(2) if origin is None else origin)


def read_export_manifest(folder: str | Path) -> dict[str, Any]:
    """``folder/manifest.json`` of a passed export, or a clear error naming the folder."""
    path = Path(folder) / "manifest.json"
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no ONNX export here (run `dualflow export EXP --out {folder}`; an "
                                f"export whose check failed writes no manifest)")
    try:
        manifest = json.loads(path.read_text())
    except json.JSONDecodeError as e:
        raise ValueError(f"{path}: not a whole export manifest ({e}); export the experiment again") from e
    if manifest.get("format") != FORMAT:
        raise ValueError(f"{path}: format {manifest.get('format')!r}, this dualflow reads {FORMAT!r}")
    return manifest


def load_onnx_colorizer(folder: str | Path, manifest: dict[str, Any] | None = None, threads: int | None = None,
                        providers: list[str] | None = None, **overrides):
    """:class:`colorizer.PageColorizer` over the ONNX files of ``folder``; ``overrides`` change the composite's
    settings (``patch_budget``, ``patch_threshold``, ``patch_density``, ``max_working_size``) as for the PyTorch
    engine, through the same :func:`loader.plan_settings`."""
    from dualflow.colorizer import PageColorizer
    from dualflow.loader import plan_settings

    require_onnxruntime()
    folder = Path(folder)
    manifest = manifest or read_export_manifest(folder)
    kw = {"threads": threads, "providers": providers}
    nets = manifest["nets"]
    missing = [n["file"] for n in nets.values() if not (folder / n["file"]).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder}: missing {', '.join(missing)} named by its manifest")
    attention = OnnxAttention(folder / nets["attention"]["file"], **manifest["attention"], **kw)
    plan = plan_settings({"plan": manifest["plan"]}, overrides.get("patch_budget"), overrides.get("patch_threshold"),
                         overrides.get("patch_density"))
    composite = dict(manifest["composite"])
    if overrides.get("max_working_size") is not None:
        composite["max_working_size"] = overrides["max_working_size"]
    return PageColorizer(attention, OnnxNet(folder / nets["primary"]["file"], **kw),
                         OnnxNet(folder / nets["secondary"]["file"], **kw), plan,
                         manifest["secondary"], Fusion(FusionConfig(**manifest["fusion"])), torch.device("cpu"),
                         **composite)
