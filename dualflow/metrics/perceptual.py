"""Global quality: LPIPS and FID, with an explicit policy for their pretrained backbones.

Policy: the backbone loads from the standard torch hub cache (``$TORCH_HOME/hub/checkpoints``) when the file
is there. When it is not, it is downloaded there on first use from its published URL (or from the mirror
``$DUALFLOW_BACKBONE_URL/<file>``), checked against the SHA-256 prefix in its file name (torch hub's naming
convention) and moved into place atomically. When that fails (no network), the error names the file, the URL
and where to put it. A randomly initialised backbone is the explicit opt-in ``allow_random_backbone=True``:
then nothing is downloaded, the metric runs on a seeded random backbone when the file is not cached, and its
logged name carries ``_randinit`` so nobody mistakes it for the real figure.
"""

from __future__ import annotations

import hashlib
import os
import re
import sys
import urllib.request
import warnings
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance

MIRROR_ENV = "DUALFLOW_BACKBONE_URL"


@dataclass(frozen=True)
class Backbone:
    """A pretrained weights file: its torch hub cache name (``name-<sha256 prefix>.ext``) and published URL."""

    file: str
    url: str

    @property
    def sha256_prefix(self) -> str:
        match = re.search(r"-([0-9a-f]{8,})\.", self.file)
        if not match:
            raise ValueError(f"{self.file}: no '-<sha256 prefix>.' in the file name")
        return match.group(1)


BACKBONES = {
    # torchvision AlexNet, used by lpips(net="alex") (its linear heads ship with the lpips package)
    "lpips": Backbone("alexnet-owt-7be5be79.pth", "https://download.pytorch.org/models/alexnet-owt-7be5be79.pth"),
    # torch-fidelity's FID Inception (the TF-compatible weights published FIDs use)
    "fid": Backbone("weights-inception-2015-12-05-6726825d.pth",
                    "https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/"
                    "weights-inception-2015-12-05-6726825d.pth"),
}


class BackboneWeightsMissing(FileNotFoundError):
    """A metric's pretrained backbone is neither in the local torch hub cache nor downloadable now."""


def hub_checkpoint(metric: str) -> Path:
    """Where the backbone of ``metric`` (lpips | fid) is expected in the torch hub cache."""
    return Path(torch.hub.get_dir()) / "checkpoints" / BACKBONES[metric].file


def backbone_url(metric: str) -> str:
    """The published URL of the backbone, or its place under ``$DUALFLOW_BACKBONE_URL`` when that is set."""
    mirror = os.environ.get(MIRROR_ENV)
    return f"{mirror.rstrip('/')}/{BACKBONES[metric].file}" if mirror else BACKBONES[metric].url


def _download(url: str, dest: Path, timeout: float) -> str:
    """Stream ``url`` into ``dest``; returns the SHA-256 of what was written."""
    sha = hashlib.sha256()
    request = urllib.request.Request(url, headers={"User-Agent": "dualflow"})
    with urllib.request.urlopen(request, timeout=timeout) as response, open(dest, "wb") as out:
        for chunk in iter(lambda: response.read(1 << 20), b""):
            sha.update(chunk)
            out.write(chunk)
    return sha.hexdigest()


def fetch_backbone(metric: str, timeout: float = 60.0) -> Path:
    """Download the backbone of ``metric`` into the torch hub cache, hash-checked; returns its path.

    Raises :class:`BackboneWeightsMissing` naming the file, its URL and where to put it when the download
    fails, and when what arrived is not the published file (nothing is left in the cache then)."""
    backbone, dest, url = BACKBONES[metric], hub_checkpoint(metric), backbone_url(metric)
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(f"{dest.name}.{os.getpid()}.partial")  # own name per process: DDP ranks race
    print(f"[dualflow] downloading the {metric.upper()} backbone {url} → {dest}", file=sys.stderr, flush=True)
    try:
        digest = _download(url, partial, timeout)
    except (OSError, ValueError) as e:  # URLError and socket timeouts are OSErrors; ValueError: a bad URL
        partial.unlink(missing_ok=True)
        raise BackboneWeightsMissing(_missing(metric, f"the download from {url} failed ({e})")) from e
    if not digest.startswith(backbone.sha256_prefix):
        partial.unlink(missing_ok=True)
        raise BackboneWeightsMissing(_missing(
            metric, f"{url} gave a file with SHA-256 {digest[:16]}…, not the published {backbone.sha256_prefix}… "
                    f"(a corrupt download or a wrong mirror; nothing was kept)"))
    os.replace(partial, dest)
    return dest


def _missing(metric: str, reason: str) -> str:
    path, name = hub_checkpoint(metric), metric.upper()
    return (f"{name} needs its pretrained backbone {path.name}, not in the torch hub cache: {reason}. Without "
            f"internet, download {BACKBONES[metric].url} elsewhere and copy it to {path} "
            f"(TORCH_HOME={os.environ.get('TORCH_HOME', '~/.cache/torch')}), or set ${MIRROR_ENV} to a folder or "
            f"server that holds it; or set allow_random_backbone: true to run {metric} on a randomly initialised "
            f"backbone (logged as {metric}_randinit).")


def backbone_is_pretrained(metric: str, allow_random_backbone: bool) -> bool:
    """True: the pretrained weights are cached (downloaded now if needed). False: they are not cached and a
    random backbone is allowed (then nothing is downloaded). Raises :class:`BackboneWeightsMissing` when the
    weights are needed and cannot be had."""
    if hub_checkpoint(metric).is_file():
        return True
    if allow_random_backbone:
        return False
    fetch_backbone(metric)
    return True


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
