"""AttentionNet: B&W page → importance map (where colour is hard), at 1/stride of the page resolution."""

from __future__ import annotations

import math

import torch
from torch import nn

from dualflow.models.blocks import ConvBlock, WindowAttentionBlock, pad_to_multiple, positional_encoding_2d


class AttentionNet(nn.Module):
    """Convolutional stem (stride 8 or 16) → windowed multi-head self-attention over the tokens, with 2D
    sinusoidal positions → per-token logit. ``forward`` returns logits (B,1,ceil(H/s),ceil(W/s));
    :meth:`importance` the map in [0, 1]."""

    def __init__(self, stride: int = 8, dim: int = 64, depth: int = 4, heads: int = 4, window: int = 8,
                 stem_channels: int = 16):
        super().__init__()
        if stride not in (4, 8, 16):
            raise ValueError(f"stride must be 4, 8 or 16, got {stride}")
        self.stride = stride
        layers, cin = [], 1
        n_down = int(math.log2(stride))
        for i in range(n_down):
            cout = dim if i == n_down - 1 else stem_channels * 2**i
            layers.append(ConvBlock(cin, cout, norm="batch", stride=2))
            cin = cout
        self.stem = nn.Sequential(*layers)
        self.blocks = nn.ModuleList(
            WindowAttentionBlock(dim, heads, window, shift=bool(i % 2)) for i in range(depth)
        )
        self.head = nn.Sequential(nn.Conv2d(dim, dim // 2, 3, padding=1), nn.SiLU(), nn.Conv2d(dim // 2, 1, 1))

    def forward(self, bw: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) B&W page in [0,1] → (B,1,ceil(H/s),ceil(W/s)) importance logits."""
        x, _ = pad_to_multiple(bw * 2.0 - 1.0, self.stride)
        x = self.stem(x)
        x = x + positional_encoding_2d(x.shape[2], x.shape[3], x.shape[1], x.device, x.dtype)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def importance(self, bw: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) → importance in [0, 1] at 1/stride resolution, float32 even under mixed precision (the
        map drives planning and upsampling, which need its digits)."""
        return torch.sigmoid(self(bw).float())
