"""What a new user hits first: no page lost to a name clash, commands that list themselves, hints that name real
flags, progress a log can read, outputs the umask allows, make targets with spaces, SynthManga folders."""

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from dualflow.cli import COMMANDS, lightning_main
from dualflow.cli import main as cli_main
from dualflow.data.synth import SynthManga
from dualflow.inference import main as colorize_main
from dualflow.pages import collect

REPO = Path(__file__).resolve().parents[1]


def _page(path: Path, seed: int = 0, size: tuple[int, int] = (72, 56)) -> np.ndarray:
    path.parent.mkdir(parents=True, exist_ok=True)
    bw = (SynthManga(seed)(0, size).bw * 255).astype(np.uint8)
    Image.fromarray(bw).save(path)
    return bw


def _flags(text: str) -> set[str]:
    """The ``--flag`` names a message mentions (``--model.x=PATH`` → ``--model.x``)."""
    return set(re.findall(r"--[a-z][a-z0-9_.]*", text))


def test_two_inputs_that_would_write_one_page_are_refused_before_anything_is_coloured(tiny_experiment, tmp_path,
                                                                                        capsys):
    for folder, seed in (("A", 0), ("B", 1)):
        _page(tmp_path / folder / "page_00000.png", seed)
        _page(tmp_path / folder / f"only_{folder}.png", seed)
    out = tmp_path / "out"
    code = colorize_main([str(tmp_path / "A"), str(tmp_path / "B"), "--out", str(out), "--runs_dir",
                          str(tiny_experiment), "--experiment", "tiny", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 2 and not out.exists()  # nothing coloured, nothing overwritten
    assert f"{out / 'page_00000.png'}: {tmp_path / 'A' / 'page_00000.png'} and {tmp_path / 'B' / 'page_00000.png'}" \
           in err and "only_" not in err  # names both inputs, and only the clash
    # Each folder into its own --out: every page written.
    for folder in ("A", "B"):
        assert colorize_main([str(tmp_path / folder), "--out", str(out / folder), "--runs_dir",
                              str(tiny_experiment), "--experiment", "tiny", "--device", "cpu"]) == 0
    assert len(list(out.rglob("*.png"))) == 4


def test_a_page_never_overwrites_one_written_in_the_same_run(tiny_experiment, tmp_path, capsys):
    """A two-page TIFF writes scan_p001.png and scan_p002.png; a file called scan_p001.png beside it would write
    the same output: it is reported, and the TIFF's first page stays as written."""
    folder = tmp_path / "in"
    folder.mkdir()
    frames = [Image.fromarray(_page(tmp_path / f"f{i}.png", seed=i)) for i in range(2)]
    frames[0].save(folder / "scan.tif", save_all=True, append_images=frames[1:])
    _page(folder / "scan_p001.png", seed=7, size=(40, 40))
    out = tmp_path / "out"
    code = colorize_main([str(folder), "--out", str(out), "--runs_dir", str(tiny_experiment),
                          "--experiment", "tiny", "--device", "cpu"])
    err = capsys.readouterr().err
    assert code == 1
    assert f"{folder / 'scan_p001.png'}: would overwrite {out / 'scan_p001.png'}, written from {folder / 'scan.tif'}" \
           in err
    assert Image.open(out / "scan_p001.png").size == frames[0].size  # the TIFF's page, not the 40×40 one
    assert sorted(p.name for p in out.iterdir()) == ["scan_p001.png", "scan_p002.png"]


def test_dualflow_lists_every_command_under_its_own_name(capsys):
    assert cli_main([]) == 2  # bare: the list, and a usage exit code
    bare = capsys.readouterr().out
    assert cli_main(["--help"]) == 0 and capsys.readouterr().out == bare
    for name in (*COMMANDS, "colorize", "export", "synth", "bench", "compare", "prepare", "train"):
        assert re.search(rf"^  {name} +\S", bare, re.M), name
    assert bare.startswith("usage: dualflow ")
    assert cli_main(["nosuch"]) == 2 and "unknown command 'nosuch'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        lightning_main(["fit", "--nosuch_flag"])
    err = capsys.readouterr().err
    assert "usage: dualflow" in err and "__main__" not in err


@pytest.mark.parametrize("command", ["colorize", "export"])
def test_missing_checkpoint_hints_name_flags_the_command_has(command, tmp_path, capsys):
    args = {"colorize": [str(tmp_path), "--out", str(tmp_path / "o"), "--experiment", "nosuch"],
            "export": ["nosuch"]}[command]
    assert cli_main([command, *args, "--runs_dir", str(tmp_path)]) != 0
    err = capsys.readouterr().err
    flags = _flags(err)
    assert flags and "make train" in err, err
    with pytest.raises(SystemExit):
        cli_main([command, "--help"])
    accepted = _flags(capsys.readouterr().out)
    assert flags <= accepted, (flags - accepted, err)


def test_train_hint_names_a_flag_that_fit_accepts(tmp_path, capsys):
    """`train --stage 2` without stage 1 suggests --model.attention_ckpt=PATH: stage 2's fit parser takes it."""
    assert cli_main(["train", "--stage", "2", "--experiment", "nosuch", "--runs_dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    [flag] = [f for f in _flags(err) if f.startswith("--model.")]
    with pytest.raises(SystemExit) as done:  # --print_config exits 0 after parsing every argument
        lightning_main(["fit", "--config", "experiments/stage2.yaml", f"{flag}=x.ckpt", "--print_config"])
    assert done.value.code in (0, None)


def test_colorize_prints_a_progress_line_per_page_when_not_a_terminal(tiny_experiment, tmp_path):
    for i in range(3):
        _page(tmp_path / "in" / f"p{i}.png", seed=i)
    run = subprocess.run([sys.executable, "-m", "dualflow", "colorize", str(tmp_path / "in"), "--out",
                          str(tmp_path / "out"), "--runs_dir", str(tiny_experiment), "--experiment", "tiny",
                          "--device", "cpu"], capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stderr
    lines = [line for line in run.stderr.splitlines() if line.startswith("colorize: ")]
    assert [line.split(",")[0] for line in lines] == ["colorize: 1/3 pages", "colorize: 2/3 pages",
                                                     "colorize: 3/3 pages"], run.stderr
    assert "pages/min" in lines[0] and "left" in lines[0] and "(p2.png)" in lines[-1]
    assert "\r" not in run.stderr and run.stdout.startswith("wrote 3 page(s)")


@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002])
def test_outputs_get_the_mode_the_umask_gives(umask, tmp_path):
    code = ("import numpy as np, sys; from pathlib import Path\n"
            "from dualflow.data.io import save_image\nfrom dualflow.manifest import write_manifest\n"
            "from dualflow.layers import write_layers\n"
            "out = Path(sys.argv[1]); page = np.full((16, 16, 3), 0.5, np.float32)\n"
            "save_image(out / 'p.png', page)\nwrite_layers(out / 'p.png', page, page[..., 0])\n"
            "write_manifest({'stages': {}}, 'e', str(out))\n")
    subprocess.run(["sh", "-c", f'umask {umask:03o} && "$0" -c "$1" "$2"', sys.executable, code, str(tmp_path)],
                   check=True, cwd=REPO)
    written = [tmp_path / n for n in ("p.png", "p_flats.png", "p_lines.png", "p.psd", "e/manifest.json")]
    assert {oct(p.stat().st_mode & 0o777) for p in written} == {oct(0o666 & ~umask)}


@pytest.mark.skipif(shutil.which("make") is None, reason="needs make")
def test_make_colorize_takes_a_path_with_spaces(tiny_experiment, tmp_path):
    _page(tmp_path / "vol 1" / "first page.png")
    out = tmp_path / "out dir"
    venv = Path(sys.prefix)
    run = subprocess.run(["make", "-o", str(venv / ".installed-stamp"), "colorize", f"VENV={venv}",
                          f"IN={tmp_path / 'vol 1' / 'first page.png'}", f"OUT={out}", "EXP=tiny",
                          f"ARGS=--runs_dir {tiny_experiment} --device cpu"],
                         capture_output=True, text=True, cwd=REPO, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
    assert (out / "first page.png").is_file()


def test_colorize_takes_only_the_bw_pages_of_a_synth_folder(tmp_path, capsys):
    from dualflow.data.synth_cli import main as synth_main

    assert synth_main([str(tmp_path / "synth"), "--n", "2", "--size", "48", "--chapter", "2"]) == 0
    said = capsys.readouterr().out
    assert "identity/" in said and "synth.json" in said
    drawn = json.loads((tmp_path / "synth" / "synth.json").read_text())
    assert drawn["pages"] == 2 and drawn["size"] == [48, 48] and drawn["dpi"] is None
    found = collect([tmp_path / "synth"], tmp_path / "out")
    assert [s.path.relative_to(tmp_path / "synth").as_posix() for s in found.sources] == \
           ["bw/ch000_p00.png", "bw/ch000_p01.png"]
    assert not found.skipped and not found.errors


def test_make_synth_draws_at_the_default_experiments_scale():
    """The Makefile's synth target draws what the presets train on: 1024×1448 pages at 300 dpi."""
    recipe = subprocess.run(["make", "-n", "-o", ".venv/.installed-stamp", "synth", "OUT=o"], capture_output=True,
                            text=True, cwd=REPO).stdout
    assert "--size 1024x1448 --dpi 300" in recipe
    import yaml

    data = yaml.safe_load((REPO / "experiments" / "base.yaml").read_text())["data"]
    assert data["image_size"] == [1448, 1024] and data["dpi"] == 300


def test_colorize_warns_when_a_page_is_far_smaller_than_the_training_pages(tiny_experiment, tmp_path, capsys):
    from dualflow.inference import load_colorizer

    trained = load_colorizer("tiny", str(tiny_experiment), device="cpu").page_colorizer()
    long_side = trained.secondary_meta["trained_long_side"]
    _page(tmp_path / "in" / "small.png", size=(long_side // 3, long_side // 4))
    _page(tmp_path / "in" / "right.png", size=(long_side, long_side * 3 // 4))
    assert colorize_main([str(tmp_path / "in"), "--out", str(tmp_path / "out"), "--runs_dir",
                          str(tiny_experiment), "--experiment", "tiny", "--device", "cpu"]) == 0
    warnings = [line for line in capsys.readouterr().err.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "small.png" in warnings[0] and f"{long_side}-px" in warnings[0]


def test_debug_panel_columns_are_labelled():
    import torch

    from dualflow.panels import panel

    images = [torch.full((1, 80, 40), 0.5), torch.full((3, 80, 40), 0.5)]
    plain, labelled = panel(*images), panel(*images, labels=["B&W page", "fused"])
    strip = labelled[: labelled.shape[0] - plain.shape[0]]
    assert strip.shape[0] > 0 and (labelled[strip.shape[0]:] == plain).all()
    left, right = strip[:, :40].min(axis=2), strip[:, 42:].min(axis=2)
    assert (left < 100).sum() > 20 and (right < 100).sum() > 20  # text in each column's header
    with pytest.raises(ValueError, match="2 images"):
        panel(*images, labels=["one"])


def test_bench_breakdown_warns_before_a_preset_too_heavy_for_the_cpu(monkeypatch, capsys):
    from dualflow.bench import steps

    monkeypatch.setattr(steps, "breakdown_stage", lambda *a, **k: {})
    monkeypatch.setattr(steps, "matmul_peak", lambda *a, **k: 1e11)
    steps.breakdown("gpu", 1)
    assert "warning: the step breakdown runs the 'gpu' preset's sizes on the CPU" in capsys.readouterr().out
    steps.breakdown("cpu", 1)
    assert "warning" not in capsys.readouterr().out

