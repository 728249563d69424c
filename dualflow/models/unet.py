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
    With ``chroma_grid`` > 0, ab comes from logits over the in-gamut bins of a ``chroma_grid``² lattice, decoded
    by their annealed mean at ``chroma_temperature`` and trained by :meth:`chroma_loss` on the features."""

    def __init__(self, in_channels: int = 1, base: int = 32, depth: int = 3, attn_heads: int = 4,
                 attn_depth: int = 1, window: int = 8, norm: str = "group", chroma_grid: int = 0,
                 chroma_temperature: float = 0.38):
        super().__init__()
        self.depth, self.in_channels = depth, in_channels
        widths = [base * 2**i for i in range(depth + 1)]
        self.inc = ConvBlock(in_channels, widths[0], norm)
        self.down = nn.ModuleList(ConvBlock(widths[i], widths[i + 1], norm, stride=2) for i in range(depth))
        self.bottleneck = nn.Sequential(
            *[WindowAttentionBlock(widths[-1], attn_heads, window, shift=bool(i % 2)) for i in range(attn_depth)]
        )
        self.up = nn.ModuleList(ConvBlock(widths[i + 1] + widths[i], widths[i], norm) for i in reversed(range(depth)))
        self.chroma = ChromaBins(chroma_grid, chroma_temperature) if chroma_grid else None
        self.out = nn.Conv2d(widths[0], 1 if self.chroma else 3, 1)
        self.chroma_out = nn.Linear(widths[0], self.chroma.bins) if self.chroma else None

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """The last decoder features (B, base, H, W), at the input's size."""
        h, w = x.shape[-2:]
        x, _ = pad_to_multiple(x, 2**self.depth)
        skips = [self.inc(x)]
        for down in self.down:
            skips.append(down(skips[-1]))
        y = self.bottleneck(skips.pop())
        for up in self.up:
            skip = skips.pop()
            y = up(torch.cat([F.interpolate(y, size=skip.shape[-2:], mode="bilinear", align_corners=False), skip], 1))
        return y[..., :h, :w]

    def head(self, features: torch.Tensor, decode: bool = True) -> torch.Tensor:
        """Features → normalised Lab (B,3,H,W); a chroma net with ``decode=False`` gives lightness only
        (B,1,H,W), skipping the per-pixel softmax over its bins when no loss needs the colours."""
        y = self.out(features)
        if self.chroma is None:
            return torch.cat([torch.sigmoid(y[:, :1]), torch.tanh(y[:, 1:])], dim=1)
        if not decode:
            return torch.sigmoid(y)
        ab = self.chroma.decode(self.chroma_out(features.permute(0, 2, 3, 1)))  # bins last: a matmul, a softmax
        return torch.cat([torch.sigmoid(y), ab.permute(0, 3, 1, 2).to(y.dtype)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.features(x))

    def chroma_loss(self, features: torch.Tensor, ab: torch.Tensor, weight: torch.Tensor | None = None,
                    share: float = 0.25) -> torch.Tensor:
        """The chroma head's rebalanced cross-entropy against target ``ab`` (B,2,H,W) (optionally weighted per
        pixel, (B,1,H,W)), on a random ``share`` of each image's pixels: the logits of every pixel would cost
        more than the rest of the step, and neighbouring pixels carry much the same signal."""
        b, c, h, w = features.shape
        n = max(1, int(share * h * w))
        pixels = torch.randint(0, h * w, (b, 1, n), device=features.device)
        pick = lambda t: t.flatten(2).gather(2, pixels.expand(-1, t.shape[1], -1)).transpose(1, 2)  # noqa: E731
        return self.chroma.loss(self.chroma_out(pick(features)), pick(ab), None if weight is None else pick(weight))
