"""Global quality: LPIPS and FID, with an explicit policy for their pretrained backbones.

Policy: the backbone loads from the standard torch hub cache (``$TORCH_HOME/hub/checkpoints``) when the file
is there. When it is absent we never download: we fail with a message naming the file and where to put it,
unless the caller opts in with ``allow_random_backbone=True``; then the metric runs on a randomly initialised
backbone and its logged name carries ``_randinit`` so nobody mistakes it for the real figure.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance

BACKBONE_FILES = {
    "lpips": "alexnet-owt-7be5be79.pth",  # torchvision AlexNet, used by lpips(net="alex")
    "fid": "weights-inception-2015-12-05-6726825d.pth",  # torch-fidelity's FID Inception
}


class BackboneWeightsMissing(FileNotFoundError):
    """A metric's pretrained backbone is not in the local torch hub cache."""


def hub_checkpoint(metric: str) -> Path:
    """Where the backbone of ``metric`` (lpips | fid) is expected in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONE_FILES[metric]


def backbone_is_pretrained(metric: str, allow_random_backbone: bool) -> bool:
    """True: the cached pretrained weights exist. False: they do not, and a random backbone is allowed.
    Raises :class:`BackboneWeightsMissing` otherwise."""
    path = hub_checkpoint(metric)
    if path.is_file():
        return True
    if allow_random_backbone:
        return False
    raise BackboneWeightsMissing(
        f"{metric.upper()} needs its pretrained backbone {path.name}, not found at {path}. These machines do not "
        f"download: copy the file there (TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), or set "
        f"allow_random_backbone: true to run {metric} on a randomly initialised backbone (logged as "
        f"{metric}_randinit)."
    )


def metric_name(metric: str, pretrained: bool) -> str:
    return metric if pretrained else f"{metric}_randinit"


def build_lpips(allow_random_backbone: bool) -> tuple[nn.Module, bool]:
    """The ``lpips`` package's AlexNet LPIPS (its linear heads ship with the package), frozen, in eval mode."""
    import lpips

    pretrained = backbone_is_pretrained("lpips", allow_random_backbone)
    # A random backbone must be the same one on every rank and in every run, or figures are not comparable.
    with warnings.catch_warnings(), torch.random.fork_rng():
        warnings.simplefilter("ignore", UserWarning)  # lpips uses torchvision's deprecated `pretrained=`
        torch.manual_seed(0)
        net = lpips.LPIPS(net="alex", pnet_rand=not pretrained, verbose=False).eval()
    net.requires_grad_(False)
    return net, pretrained


class LPIPS(Metric):
    """Mean LPIPS distance between RGB [0,1] predictions and targets (lower is better)."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, allow_random_backbone: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.net, self.pretrained = build_lpips(allow_random_backbone)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        d = self.net(preds.float() * 2 - 1, target.float() * 2 - 1)
        self.total += d.sum().double()
        self.n += d.numel()

    def compute(self) -> torch.Tensor:
        return (self.total / self.n).float() if self.n > 0 else torch.tensor(float("nan"))


class RandomInception(nn.Module):
    """Randomly initialised torchvision Inception-v3 pool features (2048-d), resized to 299²: the opt-in
    stand-in for FID's Inception when its weights are not cached. Figures from it are not comparable to
    published FIDs, which is why they are logged as ``fid_randinit``."""

    num_features = 2048

    def __init__(self, seed: int = 0):
        super().__init__()
        from torchvision.models import inception_v3

        with torch.random.fork_rng():
            torch.manual_seed(seed)
            net = inception_v3(weights=None, aux_logits=False, init_weights=True)
        net.fc = nn.Identity()
        self.net = net.eval().requires_grad_(False)

    def train(self, mode: bool = True) -> RandomInception:
        return super().train(False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.nn.functional.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        # Untrained BatchNorm statistics let activations grow without bound through the network; unit-length
        # features keep the Fréchet distance finite and comparable between runs.
        return torch.nn.functional.normalize(self.net(x * 2 - 1).double(), dim=1).float()


class FID(FrechetInceptionDistance):
    """FID between predictions and targets (RGB [0,1]); its Inception weights come from the hub cache, or a
    random Inception when opted in. ``update(preds, target)`` feeds both sides."""

    def __init__(self, allow_random_backbone: bool = False, **kwargs):
        self.pretrained = backbone_is_pretrained("fid", allow_random_backbone)
        if self.pretrained:
            super().__init__(feature=2048, normalize=True,
                             feature_extractor_weights_path=str(hub_checkpoint("fid")), **kwargs)
        else:
            super().__init__(feature=RandomInception(), normalize=True, **kwargs)

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:  # type: ignore[override]
        super().update(target.float(), real=True)
        super().update(preds.float(), real=False)
