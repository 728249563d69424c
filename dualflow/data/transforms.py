"""albumentations pipelines: one geometry for bw, color and label masks, and bw-only degradations.

Geometry is applied to all targets at once so they stay pixel-aligned. Pixel-level transforms in the same
Compose would also hit the colour page (an additional *image* target), so degradations of the B&W input live
in a second pipeline. Shrinking uses INTER_AREA, which keeps screentone density (nearest and cubic alias it).
"""

from __future__ import annotations

import os

os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

import albumentations as A  # noqa: E402
import cv2  # noqa: E402
import numpy as np  # noqa: E402


def geometry(crop: tuple[int, int] | None, hflip: bool, scale_range: tuple[float, float] = (1.0, 1.0),
             center: bool = False) -> A.Compose:
    """Random down-scale (area), pad-and-crop to ``crop`` (H,W) (random, or centred for evaluation),
    horizontal flip; the same parameters on every target."""
    ops: list = []
    lo, hi = scale_range
    if (lo, hi) != (1.0, 1.0):
        if hi > 1.0:
            raise ValueError(f"scale_range {scale_range}: only shrinking is supported (upscaling blurs screentone)")
        ops.append(A.RandomScale(scale_limit=(lo - 1.0, hi - 1.0), interpolation=cv2.INTER_AREA,
                                 mask_interpolation=cv2.INTER_NEAREST, p=1.0))
    if crop is not None:
        ops += [A.PadIfNeeded(min_height=crop[0], min_width=crop[1], border_mode=cv2.BORDER_CONSTANT, fill=1.0,
                              fill_mask=0, p=1.0),
                (A.CenterCrop if center else A.RandomCrop)(height=crop[0], width=crop[1], p=1.0)]
    if hflip:
        ops.append(A.HorizontalFlip(p=0.5))
    return A.Compose(ops, additional_targets={"color": "image"})


def bw_degradation(p: float) -> A.Compose:
    """Input-only degradations (scan blur and noise) applied to the B&W page alone."""
    return A.Compose([A.GaussianBlur(blur_limit=(3, 3), sigma_limit=(0.3, 0.8), p=p),
                      A.GaussNoise(std_range=(0.01, 0.04), p=p)])


def apply_pair(tf: A.Compose, bw: np.ndarray, color: np.ndarray, labels: np.ndarray | None = None):
    """Apply ``tf`` to an aligned (bw (H,W), color (H,W,3), labels (H,W)) triple; returns the same triple."""
    kwargs = {"image": bw, "color": color}
    if labels is not None:
        kwargs["mask"] = labels
    out = tf(**kwargs)
    return out["image"], out["color"], out.get("mask")
