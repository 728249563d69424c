"""Colour precision: CIEDE2000 ΔE (vectorised torch), colourfulness difference ΔCF; PSNR/SSIM come from
torchmetrics. Inputs are RGB in [0,1], (B,3,H,W); masks (B,1,H,W) select the pixels that count."""

from __future__ import annotations

import math
from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torchmetrics import Metric

from dualflow.color import rgb_to_lab
from dualflow.filters import box, dilate

_shared: dict | None = None  # the conversions of one suite update (:func:`shared_conversions`)


@contextmanager
def shared_conversions() -> Iterator[None]:
    """While a whole suite updates on the same tensors, each one's Lab conversion and the ΔE2000 map of a
    (preds, target) pair are computed once, not once per metric (on a 2048×2896 page each costs seconds)."""
    global _shared
    previous, _shared = _shared, {}
    try:
        yield
    finally:
        _shared = previous


def _memo(key: tuple, make):
    if _shared is None:
        return make()
    if key not in _shared:
        _shared[key] = make()
    return _shared[key]


def lab_of(rgb: torch.Tensor) -> torch.Tensor:
    """CIE Lab (float32) of an RGB tensor, shared within :func:`shared_conversions`."""
    return _memo(("lab", id(rgb)), lambda: rgb_to_lab(rgb.float()))


def delta_e_map(preds: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-pixel CIEDE2000 (B,1,H,W) between RGB tensors, shared within :func:`shared_conversions`."""
    return _memo(("de", id(preds), id(target)), lambda: delta_e2000(lab_of(preds), lab_of(target))[:, None])


def delta_e2000(lab1: torch.Tensor, lab2: torch.Tensor, dim: int = -3) -> torch.Tensor:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005) between CIE Lab tensors along ``dim``
    (kL = kC = kH = 1). Differentiable almost everywhere; returns the tensor without that dimension."""
    L1, a1, b1 = lab1.unbind(dim)
    L2, a2, b2 = lab2.unbind(dim)
    c_bar = 0.5 * (torch.sqrt(a1 * a1 + b1 * b1) + torch.sqrt(a2 * a2 + b2 * b2))
    c7 = c_bar.pow(7)
    g = 0.5 * (1 - torch.sqrt(c7 / (c7 + 25.0**7)))
    a1p, a2p = (1 + g) * a1, (1 + g) * a2
    c1p, c2p = torch.sqrt(a1p * a1p + b1 * b1), torch.sqrt(a2p * a2p + b2 * b2)
    h1p = torch.atan2(b1, a1p) % (2 * math.pi)
    h2p = torch.atan2(b2, a2p) % (2 * math.pi)
    zero = (c1p * c2p) == 0
    dlp, dcp = L2 - L1, c2p - c1p
    dh = h2p - h1p
    dh = torch.where(dh > math.pi, dh - 2 * math.pi, torch.where(dh < -math.pi, dh + 2 * math.pi, dh))
    dh = torch.where(zero, torch.zeros_like(dh), dh)
    dhp = 2 * torch.sqrt(c1p * c2p) * torch.sin(dh / 2)
    l_bar, cp_bar = 0.5 * (L1 + L2), 0.5 * (c1p + c2p)
    hsum, hdiff = h1p + h2p, (h1p - h2p).abs()
    h_bar = torch.where(hdiff <= math.pi, hsum / 2,
                        torch.where(hsum < 2 * math.pi, (hsum + 2 * math.pi) / 2, (hsum - 2 * math.pi) / 2))
    h_bar = torch.where(zero, hsum, h_bar)
    deg = math.pi / 180
    t = (1 - 0.17 * torch.cos(h_bar - 30 * deg) + 0.24 * torch.cos(2 * h_bar)
         + 0.32 * torch.cos(3 * h_bar + 6 * deg) - 0.20 * torch.cos(4 * h_bar - 63 * deg))
    d_theta = 30 * deg * torch.exp(-(((h_bar / deg - 275) / 25) ** 2))
    cp7 = cp_bar.pow(7)
    r_c = 2 * torch.sqrt(cp7 / (cp7 + 25.0**7))
    s_l = 1 + 0.015 * (l_bar - 50) ** 2 / torch.sqrt(20 + (l_bar - 50) ** 2)
    s_c = 1 + 0.045 * cp_bar
    s_h = 1 + 0.015 * cp_bar * t
    r_t = -torch.sin(2 * d_theta) * r_c
    tl, tc, th = dlp / s_l, dcp / s_c, dhp / s_h
    return torch.sqrt((tl * tl + tc * tc + th * th + r_t * tc * th).clamp_min(0))


class MaskedMean(Metric):
    """Base: mean of a per-pixel quantity over the pixels a mask selects, summed across batches and ranks."""

    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("total", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def _accumulate(self, per_pixel: torch.Tensor, mask: torch.Tensor | None) -> None:
        if mask is None:
            self.total += per_pixel.sum().double()
            self.count += per_pixel.numel()
        else:
            m = mask.expand_as(per_pixel).to(per_pixel.dtype)
            self.total += (per_pixel * m).sum().double()
            self.count += m.sum().double()

    def compute(self) -> torch.Tensor:
        # No selected pixel (e.g. a page with no transition band): NaN, which loggers show as missing.
        return (self.total / self.count).float() if self.count > 0 else torch.tensor(float("nan"))


class DeltaE2000(MaskedMean):
    """Mean per-pixel CIEDE2000 between prediction and target (optionally inside ``mask``)."""

    higher_is_better = False

    def update(self, preds: torch.Tensor, target: torch.Tensor, mask: torch.Tensor | None = None) -> None:
        self._accumulate(delta_e_map(preds, target), mask)


def flat_mask(target_rgb: torch.Tensor, step: float = 3.0, reach: int = 3) -> torch.Tensor:
    """(B,1,H,W) {0,1}: pixels of the colour page with no lightness edge (a step of more than ``step`` L*
    between 4-neighbours) within ``reach`` pixels: flat colour, where the output should be flat too."""
    lightness = lab_of(target_rgb)[:, :1]
    edge = torch.zeros_like(lightness, dtype=torch.bool)
    dx = (lightness[..., :, 1:] - lightness[..., :, :-1]).abs() > step
    dy = (lightness[..., 1:, :] - lightness[..., :-1, :]).abs() > step
    edge[..., :, 1:] |= dx
    edge[..., :, :-1] |= dx
    edge[..., 1:, :] |= dy
    edge[..., :-1, :] |= dy
    return 1.0 - dilate(edge.float(), reach)


class ToneResidue(MaskedMean):
    """Screentone left in the colours: mean |L* − its 5×5 local mean| of the output (L* units) over the pixels
    where the colour page is flat (:func:`flat_mask`). 0 for flat fills; dot texture raises it (a B&W
    screentone page scores ~25). The colour page itself scores ~0 there by construction."""

    higher_is_better = False

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        lightness = lab_of(preds)[:, :1]
        self._accumulate((lightness - box(lightness, 2)).abs(), flat_mask(target))


def colorfulness(rgb: torch.Tensor) -> torch.Tensor:
    """Hasler–Süsstrunk colourfulness per image, (B,3,H,W) in [0,1] → (B,), on the paper's 0–255 scale."""
    r, g, b = (rgb * 255).unbind(1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    std = torch.sqrt(rg.var(1, unbiased=False) + yb.var(1, unbiased=False))
    mean = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return std + 0.3 * mean


class DeltaColorfulness(Metric):
    """ΔCF: mean colourfulness of predictions minus that of targets. 0 is right; negative means greyish
    collapse, positive over-saturation (so neither is rewarded: compare |ΔCF|)."""

    higher_is_better = None
    full_state_update = False

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.add_state("diff", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("n", torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        self.diff += (colorfulness(preds.float()) - colorfulness(target.float())).sum().double()
        self.n += preds.shape[0]

    def compute(self) -> torch.Tensor:
        return (self.diff / self.n).float() if self.n > 0 else torch.tensor(float("nan"))
