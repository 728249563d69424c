"""Colour hints: read from the formats colourists use (with clear errors), carried to every resolution without
losing a point, drawn deterministically for training, and given to every colorizer."""

import json
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow import hint_clicks
from dualflow import hints as H
from dualflow.color import rgb_to_nlab
from dualflow.data.synth import SynthManga
from dualflow.inference import main as colorize_main
from tests.conftest import fit_args

RED = (1.0, 0.0, 0.0)


def _nlab(rgb) -> torch.Tensor:
    return rgb_to_nlab(torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1)).view(3)


def test_a_one_pixel_hint_survives_downsampling_with_its_exact_colour():
    hint_map = H.paint([H.Hint(517.0, 301.0, RED, radius=0.5)], (1000, 700))
    assert hint_map[3].sum() == 1  # one pixel
    small = H.downsample(hint_map[None], (64, 45))[0]
    assert small[3].sum() == 1 and small[3].max() == 1  # max-pooled mask: the point is still there
    cell = small[3].nonzero()[0]
    assert torch.allclose(small[:3, cell[0], cell[1]], _nlab(RED), atol=1e-5)  # not averaged with the zeros
    assert small[:3][:, small[3] == 0].abs().max() == 0  # no colour where there is no hint
    bilinear = torch.nn.functional.interpolate(hint_map[None, 3:], size=(64, 45), mode="bilinear")
    assert bilinear.max() < 0.05  # what the max-pool avoids: bilinear all but erases the point


def test_paint_draws_discs_clips_to_the_page_and_lets_later_hints_win():
    hint_map = H.paint([H.Hint(10, 10, RED, 3), H.Hint(10, 12, (0.0, 0.0, 1.0), 3), H.Hint(-2, 50, RED, 4)],
                       (40, 60))
    assert hint_map[3, 10, 7] == 1 and hint_map[3, 10, 6] == 0  # radius 3
    assert torch.allclose(hint_map[:3, 10, 12], _nlab((0.0, 0.0, 1.0)), atol=1e-5)  # painted over the red
    assert hint_map[3, 0:2, 48:53].all()  # the part of the clipped disc inside the page


def test_json_points_in_pixels_or_fractions_with_a_palette(tmp_path):
    palette = tmp_path / "palette.json"
    palette.write_text(json.dumps({"hair": "#d04a2a", "sky": "#8cf"}))
    points = tmp_path / "p_hints.json"
    points.write_text(json.dumps([{"x": 10, "y": 20, "colour": "hair", "radius": 2},
                                  {"x": 0.5, "y": 1.0, "color": "#00ff00"}]))
    hints = H.read_points(points, (101, 201), H.read_palette(palette))
    assert hints[0] == H.Hint(20.0, 10.0, (0xd0 / 255, 0x4a / 255, 0x2a / 255), 2.0)
    assert (hints[1].x, hints[1].y, hints[1].rgb) == (100.0, 100.0, (0.0, 1.0, 0.0))  # fractions of the page
    assert H.read_palette(palette)["sky"] == (0x88 / 255, 0xcc / 255, 1.0)


@pytest.mark.parametrize(("content", "message"), [
    ('[{"x": 1, "y": 2, "colour": "teal"}]', "unknown colour name 'teal'"),
    ('[{"x": 1, "y": 2, "colour": "#12345"}]', "is not a colour"),
    ('[{"x": 1, "colour": "#123456"}]', 'needs "x", "y" and "colour"'),
    ('[{"x": "a", "y": 2, "colour": "#123456"}]', "'a' is not a number"),
    ('[{"x": 1, "y": 2, "colour": "#123456", "radius": 0}]', "radius 0 must be a positive"),
    ('{"x": 1}', "a hint list is a JSON list"),
    ("[{", "not a readable JSON hint list"),
    (json.dumps([{"x": 1, "y": 1, "colour": "#000000"}] * (H.MAX_POINTS + 1)), "more than 10000"),
])
def test_bad_hint_lists_are_refused_naming_the_file_and_the_problem(tmp_path, content, message):
    path = tmp_path / "bad_hints.json"
    path.write_text(content)
    with pytest.raises(H.HintError) as err:
        H.read_points(path, (50, 50))
    assert str(err.value).startswith(str(path)) and message in str(err.value)


def test_empty_lists_and_points_outside_the_page_warn_and_are_ignored(tmp_path):
    path = tmp_path / "p_hints.json"
    path.write_text("[]")
    with pytest.warns(UserWarning, match="empty hint list"):
        assert H.read_points(path, (50, 50)) == []
    path.write_text(json.dumps([{"x": 500, "y": 5, "colour": "#ff0000"}, {"x": 5, "y": 5, "colour": "#ff0000"}]))
    with pytest.warns(UserWarning, match="1 point"):
        assert len(H.read_points(path, (50, 50))) == 1


def _layer(path, size, paint=None):
    rgba = np.zeros((*size, 4), np.uint8)
    if paint is not None:
        rgba[paint] = (255, 0, 0, 255)
    Image.fromarray(rgba, "RGBA").save(path)


def test_a_hint_layer_is_scaled_to_the_page_and_refused_at_another_aspect(tmp_path):
    _layer(tmp_path / "half.png", (50, 40), (slice(10, 12), slice(20, 22)))
    hint_map = H.read_layer(tmp_path / "half.png", (100, 80))  # half the page's size: scaled, nearest
    assert hint_map[3].sum() == 16 and hint_map[3, 20:24, 40:44].all()
    assert torch.allclose(hint_map[:3, 21, 41], _nlab(RED), atol=1e-5)
    _layer(tmp_path / "wide.png", (50, 80))
    with pytest.raises(H.HintError, match="another aspect") as err:
        H.read_layer(tmp_path / "wide.png", (100, 80))
    assert str(tmp_path / "wide.png") in str(err.value)
    _layer(tmp_path / "full.png", (50, 40), (slice(None), slice(None)))
    with pytest.raises(H.HintError, match="opaque everywhere"):
        H.read_layer(tmp_path / "full.png", (100, 80))
    _layer(tmp_path / "none.png", (50, 40))
    with pytest.warns(UserWarning, match="fully transparent"):
        assert H.read_layer(tmp_path / "none.png", (100, 80))[3].sum() == 0
    (tmp_path / "junk.png").write_bytes(b"not a png")
    with pytest.raises(H.HintError, match="not a readable image"):
        H.read_layer(tmp_path / "junk.png", (100, 80))


def test_a_psd_layer_named_hints_is_read(tmp_path):
    from psd_tools import PSDImage

    psd = PSDImage.new("RGB", (40, 30))
    psd.create_pixel_layer_from_array(np.full((30, 40, 3), 200, np.uint8), name="page")
    rgba = np.zeros((30, 40, 4), np.uint8)
    rgba[5:8, 6:9] = (0, 0, 255, 255)
    psd.create_pixel_layer_from_array(rgba, name="hints")
    psd.save(tmp_path / "p.psd")
    hint_map = H.read_hints(tmp_path / "p.psd", (30, 40))
    assert hint_map[3].sum() == 9 and torch.allclose(hint_map[:3, 6, 7], _nlab((0.0, 0.0, 1.0)), atol=1e-5)
    psd = PSDImage.new("RGB", (40, 30))
    psd.create_pixel_layer_from_array(np.full((30, 40, 3), 200, np.uint8), name="page")
    psd.save(tmp_path / "q.psd")
    with pytest.raises(H.HintError, match="no layer named 'hints'"):
        H.read_hints(tmp_path / "q.psd", (30, 40))


def test_clicks_go_inside_the_largest_flat_regions_with_their_colour():
    page = SynthManga(1)(0, (181, 128))
    labels, areas, _ = hint_clicks.flat_regions(page.color)
    clicks = hint_clicks.click_hints(page.color, 8)
    largest = set(np.argsort(-areas)[:8].tolist())
    assert len(clicks) == 8 and clicks == hint_clicks.click_hints(page.color, 8)  # deterministic
    assert {int(labels[int(c.y), int(c.x)]) for c in clicks} == largest  # one in each of the 8 largest
    for c in clicks:
        assert np.allclose(c.rgb, page.color[int(c.y), int(c.x)])


def test_simulated_hints_are_deterministic_and_mix_the_protocols():
    page = SynthManga(2)(0, (128, 96)).color
    draws = [hint_clicks.simulate(page, np.random.default_rng(s)) for s in range(400)]
    assert draws[:20] == [hint_clicks.simulate(page, np.random.default_rng(s)) for s in range(20)]
    empty = sum(not d for d in draws) / len(draws)
    assert 0.07 < empty < 0.2  # about 1/8 of the pages train the automatic case
    sizes = [len(d) for d in draws if d]
    assert np.median(sizes) >= 4 and max(sizes) > 20  # a geometric count (strokes add points)
    radii = {h.radius for d in draws for h in d}
    assert radii == {1.0, 2.0, 3.0, 4.0, 5.0}


def test_the_training_batch_carries_hints_and_the_nets_learn_from_them(tmp_path):
    """--data.hints=mix puts a hint map in the batch; the stage-2 net reads 6 channels, and one training step
    moves the weights that read the 4 hint channels (they are trained, not ignored). --model.hints=false with
    --data.hints=none trains the automatic net of 2 channels."""
    from dualflow.cli import main as cli_main

    runs = tmp_path / "runs"
    cli_main(fit_args("stage1", runs, "h"))
    attention = f"--model.attention_ckpt={runs / 'h' / 'attention' / 'checkpoints' / 'best.ckpt'}"
    cli = cli_main(fit_args("stage2", runs, "h", "--trainer.max_steps=1"))
    batch = next(iter(cli.datamodule.train_dataloader()))
    assert batch["hints"].shape[1] == H.HINT_CHANNELS and batch["hints"][:, 3].sum() > 0
    cli_main(fit_args("stage2", runs, "h0", "--trainer.max_steps=1", "--model.lr=0", attention))  # same seed, unmoved

    def first_conv(experiment: str) -> torch.Tensor:
        ckpt = torch.load(runs / experiment / "primary" / "checkpoints" / "last.ckpt", weights_only=True)
        return next(v for k, v in ckpt["state_dict"].items() if k.startswith("net.") and v.dim() == 4)

    trained, initial = first_conv("h"), first_conv("h0")
    assert trained.shape[1] == 6 and cli.model.extra_meta()["hints"] is True
    assert (trained[:, 2:] - initial[:, 2:]).abs().max() > 0  # the hint channels' weights learned
    cli_main(fit_args("stage2", runs, "h2", "--trainer.max_steps=1", "--model.hints=false", "--data.hints=none",
                      f"--model.attention_ckpt={runs / 'h' / 'attention' / 'checkpoints' / 'best.ckpt'}"))
    plain = torch.load(runs / "h2" / "primary" / "checkpoints" / "last.ckpt", weights_only=True)
    assert plain["dualflow"]["hints"] is False and plain["dualflow"]["net"]["in_channels"] == 2


def test_a_hint_reaches_the_nets_input_at_every_stage(tiny_experiment):
    """The composite's nets see the hint: their inputs differ with and without it, and the coloured page does."""
    from dualflow.inference import load_colorizer

    model = load_colorizer("tiny", str(tiny_experiment), device="cpu").page_colorizer()
    assert model.takes_hints
    page = torch.from_numpy(SynthManga(4)(0, (96, 64)).bw)[None]
    seen = {}
    for name in ("primary", "secondary"):
        getattr(model, name).register_forward_hook(lambda m, i, o, name=name: seen.setdefault(name, []).append(i[0]))
    auto = model.colorize_page(page)["rgb"]
    hint_map = H.paint([H.Hint(48, 32, (0.0, 1.0, 0.0), 6)], (96, 64))
    hinted = model.colorize_page(page, hints=hint_map)["rgb"]
    for name in ("primary", "secondary"):
        without, with_hint = seen[name]
        assert without.shape[1] == with_hint.shape[1] and without[:, -1].sum() == 0 < with_hint[:, -1].sum(), name
    assert not torch.equal(auto, hinted)


def test_colorize_reads_hint_files_and_reports_bad_ones(tiny_experiment, tmp_path, capsys):
    folder = tmp_path / "in"
    folder.mkdir()
    for name in ("a", "b", "c"):
        Image.fromarray((SynthManga(5)(0, (96, 64)).bw * 255).astype(np.uint8)).save(folder / f"{name}.png")
    _layer(folder / "a_hints.png", (96, 64), (slice(40, 50), slice(20, 30)))
    (folder / "b_hints.json").write_text('[{"x": 3, "y": 4, "colour": "nosuch"}]')
    args = [str(folder), "--out", str(tmp_path / "out"), "--runs_dir", str(tiny_experiment), "--experiment",
            "tiny", "--device", "cpu"]
    assert colorize_main(args) == 1
    err = capsys.readouterr().err
    assert f"{folder / 'b.png'}: {folder / 'b_hints.json'}: point 0: unknown colour name 'nosuch'" in err
    written = sorted(p.name for p in (tmp_path / "out").iterdir())
    assert written == ["a.png", "c.png"]  # hint files are not pages; the bad one fails only its page
    assert colorize_main([*args, "--hints_optional", "--skip_existing"]) == 0
    assert "coloured without hints (--hints_optional)" in capsys.readouterr().err
    assert (tmp_path / "out" / "b.png").is_file()


def test_the_psd_keeps_the_pages_hints_as_a_hidden_layer_that_reads_back(tiny_experiment, tmp_path):
    from psd_tools import PSDImage

    Image.fromarray((SynthManga(5)(0, (96, 64)).bw * 255).astype(np.uint8)).save(tmp_path / "a.png")
    _layer(tmp_path / "a_hints.png", (96, 64), (slice(40, 50), slice(20, 30)))
    assert colorize_main([str(tmp_path / "a.png"), "--out", str(tmp_path / "out"), "--runs_dir",
                          str(tiny_experiment), "--experiment", "tiny", "--device", "cpu", "--layers"]) == 0
    psd = tmp_path / "out" / "a.psd"
    assert [(layer.name, layer.visible) for layer in PSDImage.open(psd)][-1] == ("hints", False)
    given, kept = H.read_hints(tmp_path / "a_hints.png", (96, 64)), H.read_hints(psd, (96, 64))
    assert torch.equal(kept[3], given[3]) and (kept[:3] - given[:3]).abs().max() < 0.01


def test_models_trained_without_hints_colour_as_before_and_refuse_hints(tiny_experiment, tmp_path):
    from dualflow.cli import main as cli_main
    from dualflow.inference import load_colorizer

    runs = tmp_path / "runs"
    import shutil

    shutil.copytree(tiny_experiment / "tiny" / "attention", runs / "auto" / "attention")
    manifest = json.loads((tiny_experiment / "tiny" / "manifest.json").read_text())
    record = manifest["stages"]["attention"]
    record["best_ckpt"] = str(runs / "auto" / "attention" / "checkpoints" / "best.ckpt")
    (runs / "auto" / "manifest.json").write_text(json.dumps({"experiment": "auto", "stages": {"attention": record}}))
    for stage in ("stage2", "stage3"):
        cli_main(fit_args(stage, runs, "auto", "--model.hints=false", "--data.hints=none"))
    model = load_colorizer("auto", str(runs), device="cpu")
    assert not model.page_colorizer().takes_hints
    page = torch.from_numpy(SynthManga(4)(0, (96, 64)).bw)[None]
    assert model.colorize_page(page)["rgb"].shape == (3, 96, 64)
    with pytest.raises(H.HintError, match="trained without colour hints"):
        model.colorize_page(page, hints=H.empty((96, 64)))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        H.for_net(None, page[None], False)


def test_hints_spread_across_the_region_their_ink_lines_enclose_and_no_further():
    """A box drawn in ink: a hint inside colours the whole inside and nothing outside; two hints of different
    colours in one region each take the pixels nearest them."""
    bw = torch.ones(1, 80, 120)
    bw[:, 10:12, 10:60] = bw[:, 60:62, 10:60] = 0  # a closed box, 2-px lines
    bw[:, 10:62, 10:12] = bw[:, 10:62, 58:60] = 0
    inside = H.propagate(bw, H.paint([H.Hint(30, 30, RED, 2)], (80, 120)))
    assert inside[3, 14:58, 14:56].all() and not inside[3, :, 64:].any() and not inside[3, :8].any()
    assert torch.allclose(inside[:3, 50, 20], _nlab(RED), atol=1e-5)
    blue = (0.0, 0.0, 1.0)
    both = H.propagate(bw, H.paint([H.Hint(5, 70, RED, 1), H.Hint(70, 115, blue, 1)], (80, 120)))
    assert torch.allclose(both[:3, 5, 75], _nlab(RED), atol=1e-5)  # the outside is one region: nearest wins
    assert torch.allclose(both[:3, 75, 110], _nlab(blue), atol=1e-5)
    assert not both[3, 20:50, 20:50].any()  # no hint inside the box: left to the nets
    assert H.propagate(bw, H.empty((80, 120)))[3].sum() == 0


def test_the_fused_page_takes_the_propagated_hint_over_the_nets_colour():
    from dualflow.fusion import Fusion, FusionConfig
    from dualflow.patching import plan_patches

    bw = torch.ones(1, 64, 64)
    bw[:, 20:22, :] = 0  # a line across the page: two regions
    fill = torch.zeros(3, 64, 64)
    fill[0] = 0.8
    plan = plan_patches(torch.zeros(1, 1), (64, 64), budget=0)
    page = Fusion(FusionConfig(white_margins=False))(torch.zeros(0, 3, 1, 1), plan, fill, bw, rgb=True,
                                                     hints=H.paint([H.Hint(40, 30, RED, 2)], (64, 64))).page
    assert torch.allclose(page[:, 50, 10], torch.tensor(RED), atol=0.02)  # the hint's region: red
    assert (page[:, 5, 10] - page[:, 5, 10].mean()).abs().max() < 0.02  # the other region: the nets' grey
