"""UNet colorizer: B&W (+ conditioning channels) → normalised Lab, bounded to the valid range; chroma either
regressed or classified over ab bins (:class:`ChromaBins`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from dualflow.models.blocks import ConvBlock, WindowAttentionBlock, pad_to_multiple
from dualflow.models.chroma import ChromaBins


class UNet(nn.Module):
    """Encoder–decoder with skip connections and windowed self-attention at the bottleneck.

    Input (B, in_channels, H, W) with the B&W page first; output (B,3,H,W) normalised Lab: L/100 in [0,1]
    (sigmoid) and ab/110 in (-1,1) (tanh), so no prediction leaves the Lab range. Any H, W (padded inside).
    With ``chroma_grid`` > 0, ab comes from logits over ``chroma_grid``² ab bins, decoded by their annealed mean
    at ``chroma_temperature``; ``forward(x, with_logits=True)`` also returns the logits, for the loss."""

    def __init__(self, in_channels: int = 1, base: int = 32, depth: int = 3, attn_heads: int = 4,
                 attn_depth: int = 1, window: int = 8, norm: str = "group", chroma_grid: int = 0,
                 chroma_temperature: float = 0.38):
        super().__init__()
        self.depth = depth
        widths = [base * 2**i for i in range(depth + 1)]
        self.inc = ConvBlock(in_channels, widths[0], norm)
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1], norm, stride=2) for i in range(depth))
        self.bottleneck = nn.Sequential(
            *[WindowAttentionBlock(widths[-1], attn_heads, window, shift=bool(i % 2)) for i in range(attn_depth)]
        )
        self.up = nn.ModuleList(ConvBlock(widths[i + 1] + widths[i], widths[i], norm) for i in reversed(range(depth)))
        self.chroma = ChromaBins(chroma_grid, chroma_temperature) if chroma_grid else None
        self.out = nn.Conv2d(widths[0], 1 + (self.chroma.bins if self.chroma else 2), 1)

    def forward(self, x: torch.Tensor, with_logits: bool = False):
        x, (h, w) = pad_to_multiple(x, 2**self.depth)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = self.bottleneck(skips.pop())
        for up in self.up:
            skip = skips.pop()
            y = up(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        y = self.out(y)[..., :h, :w]
        if self.chroma is None:
            lab = torch.cat([torch.sigmoid(y[:, :1]), torch.tanh(y[:, 1:])], dim=1)
            return (lab, None) if with_logits else lab
        logits = y[:, 1:]
        lab = torch.cat([torch.sigmoid(y[:, :1]), self.chroma.decode(logits).to(y.dtype)], dim=1)
        return (lab, logits) if with_logits else lab
