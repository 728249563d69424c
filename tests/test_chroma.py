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
