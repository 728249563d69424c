"""ONNX export and the ONNX Runtime engine: every size the networks take, the whole pipeline against PyTorch,
a check that fails, no Lightning at run time, a clear message without onnxruntime."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow.data.synth import SynthManga
from dualflow.export import EXAMPLES, SPECS, ExportCheckError, ImportanceOfView, export_experiment, export_net
from dualflow.loader import load_page_colorizer
from dualflow.models import AttentionNet, UNet
from dualflow.onnx_engine import OnnxNet, load_onnx_colorizer, require_onnxruntime

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def exported(tiny_experiment, tmp_path_factory) -> Path:
    """The tiny experiment exported from the command line (exit code 0 when the check passes)."""
    from dualflow.cli import main as cli_main

    out = tmp_path_factory.mktemp("onnx")
    assert cli_main(["export", "tiny", "--runs_dir", str(tiny_experiment), "--out", str(out)]) == 0
    return out


@pytest.mark.parametrize("name, net, sizes", [
    ("attention", ImportanceOfView(AttentionNet(dim=32, depth=2, heads=4, window=4, page_scale=0.5)),
     [(1, 1, 96, 72), (2, 1, 50, 37), (1, 1, 200, 131)]),
    ("primary", UNet(in_channels=2, base=8, depth=3, attn_heads=2, norm="batch"),
     [(3, 2, 64, 64), (1, 2, 37, 91), (5, 2, 128, 96)]),
    ("secondary", UNet(in_channels=6, base=8, depth=3, attn_heads=2, chroma_grid=8),
     [(1, 6, 72, 52), (2, 6, 33, 65)]),
])
def test_exported_net_matches_torch_at_every_size(tmp_path, name, net, sizes):
    """Batch, height and width are dynamic: sizes that need padding (and a mask in the window attention) and
    sizes that do not give PyTorch's outputs, including a chroma-grid head and a tile's origin."""
    torch.manual_seed(0)
    net = net.eval()
    path = tmp_path / f"{name}.onnx"
    export_net(net, SPECS[name], EXAMPLES[name], path)
    onnx = OnnxNet(path)
    for size in sizes:
        x = torch.rand(size)
        extra = {"origin": torch.tensor([3.0, 5.0])} if SPECS[name].origin else {}  # a tile's place in the page
        with torch.no_grad():
            ref = net(x, *extra.values())
        out = onnx(x, **extra)
        assert out.shape == ref.shape, size
        assert float((out - ref).abs().max()) < 1e-4, size


def test_export_writes_manifest_and_engine_matches_pytorch(exported, tiny_experiment):
    manifest = json.loads((exported / "manifest.json").read_text())
    assert {p.name for p in exported.glob("*.onnx")} == {"attention.onnx", "primary.onnx", "secondary.onnx"}
    assert manifest["nets"]["primary"]["input"] == "patches" and manifest["opset"] >= 17
    assert manifest["check"]["max_abs"] <= 4 / 255 and manifest["plan"]["patch_budget"] > 0
    # A page of a size and aspect it was not exported or checked on: same pipeline, same page.
    from dualflow.inference import load_colorizer

    torch_model = load_colorizer("tiny", str(tiny_experiment), device="cpu")
    onnx_model = load_onnx_colorizer(exported)
    bw = torch.from_numpy(SynthManga(5)(0, (150, 97)).bw)[None]
    ref, out = torch_model.colorize_page(bw), onnx_model.colorize_page(bw)
    assert len(out["plan"]) == len(ref["plan"]) > 0
    diff = (out["rgb"] - ref["rgb"]).abs()
    assert float(diff.mean()) < 1 / 255 and float(diff.max()) < 4 / 255


def test_failed_check_writes_no_manifest(tiny_experiment, tmp_path, monkeypatch, capsys):
    """An exported network that does not compute what PyTorch does (its weights tampered with after export) fails
    the check at the default tolerance (`dualflow export` exits 1 and says so) and leaves no manifest, so the
    engine refuses the folder."""
    import onnx
    from onnx import numpy_helper

    from dualflow import export

    def tampered(net, spec, example, path, opset):
        export_net(net, spec, example, path, opset)
        if spec.file == "secondary.onnx":
            model = onnx.load(path)
            for weight in model.graph.initializer:  # every weight off by a half
                values = numpy_helper.to_array(weight)
                if values.dtype == np.float32 and values.size > 1:
                    weight.CopyFrom(numpy_helper.from_array(values * 1.5, weight.name))
            onnx.save(model, path)

    monkeypatch.setattr(export, "export_net", tampered)
    with pytest.raises(ExportCheckError, match="not usable"):
        export_experiment("tiny", tmp_path, runs_dir=str(tiny_experiment))
    assert not (tmp_path / "manifest.json").exists()
    assert export.main(["tiny", "--runs_dir", str(tiny_experiment), "--out", str(tmp_path)]) == 1
    assert "not usable (no manifest written)" in capsys.readouterr().err
    assert not (tmp_path / "manifest.json").exists()
    with pytest.raises(FileNotFoundError, match="no ONNX export here"):
        load_onnx_colorizer(tmp_path)


def test_colorize_onnx_engine_needs_no_lightning_or_checkpoint(exported, tiny_experiment, tmp_path):
    """``colorize --engine onnx`` from the export folder alone: no checkpoint is read and Lightning is never
    imported; the page equals the PyTorch engine's within the goal's tolerance."""
    page = tmp_path / "page.png"
    Image.fromarray((SynthManga(3)(0, (120, 88)).bw * 255).astype(np.uint8)).save(page)
    code = ("import sys; from dualflow.inference import main; "
            f"rc = main([{str(page)!r}, '--out', {str(tmp_path / 'out')!r}, '--engine', 'onnx', "
            f"'--onnx', {str(exported)!r}, '--runs_dir', '/nonexistent']); "
            "assert rc == 0, rc; assert not [m for m in sys.modules if m.startswith(('lightning', "
            "'pytorch_lightning'))], 'lightning imported'")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-2000:]
    written = np.asarray(Image.open(tmp_path / "out" / "page.png"), np.float32) / 255
    bw = torch.from_numpy(np.asarray(Image.open(page), np.float32) / 255)
    reference = load_page_colorizer("tiny", str(tiny_experiment), device="cpu").colorize_page(bw)["rgb"]
    diff = np.abs(written - reference.permute(1, 2, 0).numpy())
    assert diff.mean() < 1 / 255 and diff.max() < 5 / 255  # the PyTorch engine's page, within the export's check


def test_missing_onnxruntime_says_how_to_install(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(ImportError, match=r"pip install 'dualflow\[onnx\]'"):
        require_onnxruntime()
    from dualflow.inference import main

    assert main([str(tmp_path), "--out", str(tmp_path / "o"), "--engine", "onnx", "--onnx", str(tmp_path)]) == 2
    assert "pip install 'dualflow[onnx]'" in capsys.readouterr().err


def test_torn_or_mismatched_checkpoints_and_exports_name_the_file(exported, tiny_experiment, tmp_path, capsys):
    """``colorize`` from a torn checkpoint, a checkpoint of the wrong stage, a torn ONNX network or a torn export
    manifest: exit code 2 and a message naming the file and what is wrong, never a traceback."""
    import shutil

    from dualflow.inference import main
    from dualflow.manifest import read_manifest

    stages = read_manifest("tiny", str(tiny_experiment))["stages"]
    ckpts = {name: Path(stages[name]["best_ckpt"]) for name in ("attention", "primary", "secondary")}
    torn = tmp_path / "torn.ckpt"
    torn.write_bytes(ckpts["primary"].read_bytes()[:5000])
    copy = tmp_path / "onnx"
    shutil.copytree(exported, copy)
    secondary_onnx = copy / json.loads((copy / "manifest.json").read_text())["nets"]["secondary"]["file"]
    secondary_onnx.write_bytes(secondary_onnx.read_bytes()[:3000])
    torn_manifest = tmp_path / "onnx_manifest"
    shutil.copytree(exported, torn_manifest)
    (torn_manifest / "manifest.json").write_text((exported / "manifest.json").read_text()[:40])
    out = ["--out", str(tmp_path / "out")]
    cases = [
        (["--ckpt", str(ckpts["attention"]), str(torn), str(ckpts["secondary"])], f"{torn}: cannot load as a primary"),
        (["--ckpt", str(ckpts["attention"]), str(ckpts["secondary"]), str(ckpts["secondary"])],
         "expected a primary checkpoint, found secondary"),
        (["--ckpt", str(ckpts["attention"]), str(tmp_path / "gone.ckpt"), str(ckpts["secondary"])],
         f"primary checkpoint not found: {tmp_path / 'gone.ckpt'}"),
        (["--engine", "onnx", "--onnx", str(copy)], f"{secondary_onnx}: not a loadable ONNX network"),
        (["--engine", "onnx", "--onnx", str(torn_manifest)], "manifest.json: not a whole export manifest"),
    ]
    for flags, message in cases:
        assert main([str(tmp_path), *out, *flags]) == 2, flags
        err = capsys.readouterr().err
        assert message in err and "Traceback" not in err, (flags, err)


def test_the_bench_exports_again_over_an_older_format(exported, tiny_experiment, tmp_path):
    """An export of an older format (before the attention graph took a tile's origin) is refused by the engine
    and replaced by the bench's ``export_folder``."""
    import shutil

    from dualflow.bench.inference import export_folder
    from dualflow.onnx_engine import FORMAT, read_export_manifest

    runs = tmp_path / "runs"
    shutil.copytree(tiny_experiment / "tiny", runs / "tiny", ignore=shutil.ignore_patterns("onnx"))
    shutil.copytree(exported, runs / "tiny" / "onnx")
    manifest = runs / "tiny" / "onnx" / "manifest.json"
    manifest.write_text(manifest.read_text().replace(FORMAT, "dualflow-onnx/1"))
    with pytest.raises(ValueError, match="format 'dualflow-onnx/1'"):
        read_export_manifest(manifest.parent)
    assert export_folder("tiny", str(runs)) == str(manifest.parent)
    assert read_export_manifest(manifest.parent)["format"] == FORMAT
