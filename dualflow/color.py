"""Colour conventions: RGB in [0, 1] ↔ normalised Lab (L/100, ab/110), as pure batched tensor functions.
Conversions always compute in float32, also inside a bf16 autocast region. They are kornia's sRGB ↔ CIE Lab
(D65, 2°; equal to it within float rounding, tested) written with Python-number constants: kornia builds its
matrices with ``torch.tensor(..., device=...)``, a blocking host-to-device copy on every call on a GPU."""

import torch

from dualflow.precision import float32

L_SCALE = 100.0
AB_SCALE = 110.0
RGB_TO_XYZ = ((0.412453, 0.357580, 0.180423), (0.212671, 0.715160, 0.072169), (0.019334, 0.119193, 0.950227))
XYZ_TO_RGB = ((3.2404813432005266, -1.5371515162713185, -0.4985363261688878),
              (-0.9692549499965682, 1.8759900014898907, 0.0415559265582928),
              (0.0556466391351772, -0.2040413383665112, 1.0573110696453443))
WHITE_D65 = (0.95047, 1.0, 1.08883)


def _mix(x: torch.Tensor, matrix: tuple[tuple[float, ...], ...]) -> torch.Tensor:
    """(...,3,H,W) channels times a constant 3×3 matrix, without a constant tensor on the device."""
    c = x.unbind(-3)
    return torch.stack([row[0] * c[0] + row[1] * c[1] + row[2] * c[2] for row in matrix], dim=-3)


@float32
def rgb_to_lab(rgb: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) RGB in [0,1] → (B,3,H,W) CIE Lab (L in [0,100], ab roughly [-110,110])."""
    rgb = rgb.clamp(0, 1)
    linear = torch.where(rgb > 0.04045, ((rgb.clamp_min(0.04045) + 0.055) / 1.055).pow(2.4), rgb / 12.92)
    x, y, z = (v / white for v, white in zip(_mix(linear, RGB_TO_XYZ).unbind(-3), WHITE_D65, strict=True))
    fx, fy, fz = (torch.where(v > 0.008856, v.clamp_min(0.008856).pow(1 / 3), 7.787 * v + 4 / 29) for v in (x, y, z))
    return torch.stack([116 * fy - 16, 500 * (fx - fy), 200 * (fy - fz)], dim=-3)


@float32
def lab_to_rgb(lab: torch.Tensor) -> torch.Tensor:
    """(B,3,H,W) CIE Lab → RGB clamped to [0,1] (out-of-gamut colours are clipped)."""
    lightness, a, b = lab.unbind(-3)
    fy = (lightness + 16) / 116
    f = (a / 500 + fy, fy, (fy - b / 200).clamp_min(0))
    xyz = torch.stack([torch.where(v > 0.2068966, v.pow(3), (v - 4 / 29) / 7.787) * white
                       for v, white in zip(f, WHITE_D65, strict=True)], dim=-3)
    linear = _mix(xyz, XYZ_TO_RGB)
    rgb = torch.where(linear > 0.0031308, 1.055 * linear.clamp_min(0.0031308).pow(1 / 2.4) - 0.055, 12.92 * linear)
    return rgb.clamp(0, 1)


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
    return 0.299 * rgb[:, 0:1] + 0.587 * rgb[:, 1:2] + 0.114 * rgb[:, 2:3]
