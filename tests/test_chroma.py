"""Chroma classification (Zhang et al. 2016): exact soft encoding, rebalancing, and that it keeps colour where
L1 regression washes it out."""

import torch

from dualflow.color import rgb_to_nlab
from dualflow.models import UNet
from dualflow.models.chroma import ChromaBins


def test_soft_encoding_decodes_back_to_the_colour_at_temperature_one():
    bins = ChromaBins(grid=9, temperature=1.0)
    assert bins.bins < 81  # out-of-gamut lattice bins are left out
    ab = rgb_to_nlab(torch.rand(2, 3, 5, 7))[:, 1:].permute(0, 2, 3, 1)  # any sRGB colour, channels last
    index, weight = bins.encode(ab)
    assert torch.allclose(weight.sum(-1), torch.ones(2, 5, 7))
    probs = torch.zeros(2, 5, 7, bins.bins).scatter_add_(-1, index, weight)
    assert torch.allclose(bins.decode(probs.clamp_min(1e-12).log()), ab, atol=1e-4)


def test_rebalancing_weights_rare_colours_up_and_common_ones_down():
    bins = ChromaBins(grid=8, momentum=0.0)
    assert torch.allclose(bins.class_weights(), torch.ones(bins.bins))  # uniform prior: no rebalancing
    grey_page = torch.zeros(1, 4, 4, 2)
    bins.observe(*bins.encode(grey_page))
    weights = bins.class_weights()
    grey_bins = bins.encode(grey_page)[0].unique()
    rest = torch.ones(bins.bins, dtype=torch.bool)
    rest[grey_bins] = False
    assert weights[grey_bins].max() < 0.1 * weights[rest].min()
    assert torch.isclose((bins.prior * weights).sum(), torch.tensor(1.0))


def _fit(predict, loss_fn, steps: int = 300) -> torch.Tensor:
    params = [p for p in predict.parameters()]
    opt = torch.optim.Adam(params, lr=0.05)
    for _ in range(steps):
        opt.zero_grad()
        loss_fn().backward()
        opt.step()
    return predict


def test_rebalanced_classification_keeps_a_minority_colour_that_l1_regression_turns_grey():
    """Same input, 70 % grey and 30 % saturated red targets: the L1 optimum is the grey median; the rebalanced
    classifier's annealed mean keeps a clearly red colour (the washed-out look of L1, and its remedy)."""
    torch.manual_seed(0)
    red = torch.tensor([0.7, 0.5])
    target = torch.zeros(10, 10, 2)
    target[7:] = red  # 30 % of the pixels
    regression = torch.nn.ParameterDict({"ab": torch.nn.Parameter(torch.zeros(1, 1, 2))})
    _fit(regression, lambda: (regression["ab"] - target).abs().mean())
    bins = ChromaBins(grid=12, momentum=0.0)
    classifier = torch.nn.ParameterDict({"logits": torch.nn.Parameter(torch.zeros(1, 1, bins.bins))})
    _fit(classifier, lambda: bins.loss(classifier["logits"].expand(10, 10, -1), target))
    red_chroma = red.norm()
    assert regression["ab"].norm() < 0.1 * red_chroma
    decoded = bins.decode(classifier["logits"]).flatten()
    assert decoded.norm() > 0.4 * red_chroma and torch.cosine_similarity(decoded, red, dim=0) > 0.95


def test_unet_with_a_chroma_grid_decodes_bounded_lab_and_trains_its_chroma_head_from_features():
    torch.manual_seed(0)
    net = UNet(in_channels=1, base=8, depth=2, attn_heads=2, window=4, chroma_grid=6)
    x = torch.randn(2, 1, 21, 18)
    lab = net(x)
    assert lab.shape == (2, 3, 21, 18)
    assert lab[:, 0].min() >= 0 and lab[:, 0].max() <= 1 and lab[:, 1:].abs().max() <= 1
    features = net.features(x)
    assert torch.equal(net.head(features, decode=False), lab[:, :1])
    assert torch.allclose(net.head(features), lab)
    target = rgb_to_nlab(torch.tensor([0.9, 0.2, 0.1]).view(1, 3, 1, 1).expand(2, 3, 21, 18))[:, 1:]
    opt = torch.optim.Adam(net.parameters(), lr=1e-2)
    for _ in range(30):
        opt.zero_grad()
        net.chroma_loss(net.features(x), target).backward()
        opt.step()
    net.eval()
    assert (net(x)[:, 1:] - target).abs().mean() < 0.1  # the decoded colour is the red it was taught


def test_stages_train_a_chroma_head_and_the_colorizer_decodes_it_at_any_temperature(tiny_experiment, tmp_path,
                                                                                     capsys):
    """Stages 2 and 3 with a chroma grid through the CLI: the running prior learns the data's colours (saved in
    the checkpoint), the composite decodes at the trained or a chosen temperature (lower: more colourful), and
    asking a regression model for a temperature fails with a clear message."""
    import shutil

    from dualflow.cli import main as cli_main
    from dualflow.data.synth import SynthManga
    from dualflow.inference import load_colorizer
    from dualflow.inference import main as colorize_main
    from dualflow.metrics.color import colorfulness
    from tests.conftest import fit_args

    runs = tmp_path / "runs"
    (runs / "chroma").mkdir(parents=True)
    shutil.copytree(tiny_experiment / "tiny" / "attention", runs / "chroma" / "attention")
    manifest = (tiny_experiment / "tiny" / "manifest.json").read_text().replace(str(tiny_experiment / "tiny"),
                                                                               str(runs / "chroma"))
    (runs / "chroma" / "manifest.json").write_text(manifest)
    for stage in ("stage2", "stage3"):
        cli_main(fit_args(stage, runs, "chroma", "--model.chroma_grid=8", "--trainer.max_steps=3"))
    model = load_colorizer("chroma", str(runs), device="cpu", allow_random_backbone=True)
    for name in ("primary", "secondary"):
        prior = model.frozen[name].chroma.prior
        assert not torch.allclose(prior, torch.full_like(prior, 1 / prior.numel()))  # learned from the pages
    bw = torch.from_numpy(SynthManga(3)(0, 64).bw)[None]
    vivid = load_colorizer("chroma", str(runs), device="cpu", allow_random_backbone=True, chroma_temperature=0.1)
    safe = load_colorizer("chroma", str(runs), device="cpu", allow_random_backbone=True, chroma_temperature=2.0)
    trained = model.colorize_page(bw)["rgb"]
    assert not torch.equal(trained, vivid.colorize_page(bw)["rgb"])
    assert colorfulness(vivid.colorize_page(bw)["rgb"][None]) > colorfulness(safe.colorize_page(bw)["rgb"][None])
    page = tmp_path / "page.png"
    from PIL import Image

    Image.fromarray((bw[0].numpy() * 255).astype("uint8")).save(page)
    code = colorize_main([str(page), "--out", str(tmp_path / "out"), "--experiment", "tiny", "--runs_dir",
                          str(tiny_experiment), "--chroma_temperature", "0.5"])
    assert code == 2 and "chroma grid" in capsys.readouterr().err
