"""Line art of a B&W manga page: ink strokes as opposed to screentone dots."""

from __future__ import annotations

from functools import lru_cache

import torch
import torch.nn.functional as F


@lru_cache(maxsize=4)
def _line_kernels(length: int) -> torch.Tensor:
    """(4,1,L,L) kernels: horizontal, vertical and both diagonal lines of ``length`` pixels."""
    k = torch.zeros(4, 1, length, length)
    c = length // 2
    idx = torch.arange(length)
    k[0, 0, c, :] = 1
    k[1, 0, :, c] = 1
    k[2, 0, idx, idx] = 1
    k[3, 0, idx, length - 1 - idx] = 1
    return k


def ink_lines(bw: torch.Tensor, length: int = 5, threshold: float = 0.5) -> torch.Tensor:
    """(B,1,H,W) B&W page → {0,1} mask of strokes: dark pixels that belong to a run of at least ``length``
    dark pixels in one of four directions (a morphological opening by line segments). Screentone dots are
    smaller than that and drop out; outlines, hatching and solid black stay."""
    dark = (bw < threshold).to(torch.float32)
    k = _line_kernels(length).to(bw.device)
    pad = length // 2
    eroded = (F.conv2d(dark, k, padding=pad) >= length - 0.5).to(torch.float32)  # (B,4,H,W)
    opened = F.conv2d(eroded, k, padding=pad, groups=4)  # dilate each direction with its own segment
    return (opened > 0).any(dim=1, keepdim=True).to(bw.dtype)
