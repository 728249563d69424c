"""Colour conventions: RGB in [0, 1] ↔ normalised Lab (L/100, ab/110), as pure batched tensor functions.
Conversions always compute in float32, also inside a bf16 autocast region."""

import kornia.color
import torch

from dualflow.precision import float32

L_SCALE = 100.0
AB_SCALE = 110.0


@float32
def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] → (B,3,H,W) CIE Lab (L in [0,100], ab roughly [-110,110])."""
    return kornia.color.rgb_to_lab(rgb.clamp(0, 1))


@float32
def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) CIE Lab → RGB clamped to [0,1] (out-of-gamut colours are clipped)."""
    return kornia.color.lab_to_rgb(lab, clip=True)


def normalize_lab(lab: torch.Tensor) -> torch.Tensor:
    """CIE Lab → model space: L/100 in [0,1], ab/110 in about [-1,1]."""
    return torch.cat([lab[:, :1] / L_SCALE, lab[:, 1:] / AB_SCALE], dim=1)


def denormalize_lab(lab_n: torch.Tensor) -> torch.Tensor:
    """Model space → CIE Lab."""
    return torch.cat([lab_n[:, :1] * L_SCALE, lab_n[:, 1:] * AB_SCALE], dim=1)


def clamp_nlab(lab_n: torch.Tensor) -> torch.Tensor:
    """Normalised Lab (...,3,H,W) clamped to its valid range: L in [0,1], ab in [-1,1]."""
    return torch.cat([lab_n[..., :1, :, :].clamp(0, 1), lab_n[..., 1:, :, :].clamp(-1, 1)], dim=-3)


def rgb_to_nlab(rgb: torch.Tensor) -> torch.Tensor:
    """RGB [0,1] → normalised Lab (what models predict)."""
    return normalize_lab(rgb_to_lab(rgb))


def nlab_to_rgb(lab_n: torch.Tensor) -> torch.Tensor:
    """Normalised Lab → RGB clamped to [0,1]."""
    return lab_to_rgb(denormalize_lab(lab_n))


def luminance(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB → (B,1,H,W) Rec. 601 luma, the grey a B&W page is judged against."""
    w = rgb.new_tensor([0.299, 0.587, 0.114]).view(1, 3, 1, 1)
    return (rgb * w).sum(dim=1, keepdim=True)
