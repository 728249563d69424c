"""AttentionNet: B&W page → importance map (where colour is hard), at 1/stride of the resolution it works at
(the page area-downsampled by ``page_scale``)."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn

from dualflow.models.blocks import ConvBlock, WindowAttentionBlock, pad_to_multiple, positional_encoding_2d


def area_view(page: torch.Tensor, page_scale: float) -> torch.Tensor:
    """A page (B,C,H,W) area-downsampled by ``page_scale`` (unchanged at 1): what the attention net sees."""
    if page_scale >= 1:
        return page
    h, w = page.shape[-2:]
    size = max(1, round(h * page_scale)), max(1, round(w * page_scale))
    return F.adaptive_avg_pool2d(page, size)


class AttentionNet(nn.Module):
    """Convolutional stem (stride 8 or 16) → windowed multi-head self-attention over the tokens, with 2D
    sinusoidal positions → per-token logit. ``forward`` returns logits (B,1,ceil(h/s),ceil(w/s)) of the image it
    is given; :meth:`importance` the map in [0, 1] of a page, seen through :meth:`view` (the page at its working
    resolution: ``page_scale`` < 1 area-downsamples a print-scale page so the model sees whole figures, as in
    training)."""

    def __init__(self, stride: int = 8, dim: int = 64, depth: int = 4, heads: int = 4, window: int = 8,
                 stem_channels: int = 16, page_scale: float = 1.0):
        super().__init__()
        if stride not in (4, 8, 16):
            raise ValueError(f"stride must be 4, 8 or 16, got {stride}")
        if not 0 < page_scale <= 1:
            raise ValueError(f"page_scale must be in (0, 1], got {page_scale}")
        self.stride, self.page_scale = stride, page_scale
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

    @property
    def window(self) -> int:
        """Tokens on a side of an attention window (tiles of a page align to this grid)."""
        return self.blocks[0].window if len(self.blocks) else 1

    def forward(self, bw: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
        """(B,1,H,W) B&W page in [0,1] → (B,1,ceil(H/s),ceil(W/s)) importance logits. ``origin`` (2,): the first
        token's (y, x) when ``bw`` is a tile of a larger image (its positions are the whole image's)."""
        x, _ = pad_to_multiple(bw * 2.0 - 1.0, self.stride)
        x = self.stem(x)
        x = x + positional_encoding_2d(x.shape[2], x.shape[3], x.shape[1], x.device, x.dtype, origin)
        for block in self.blocks:
            x = block(x)
        return self.head(x)

    def view(self, page: torch.Tensor) -> torch.Tensor:
        """A page (B,C,H,W) at the model's working resolution (:func:`area_view`)."""
        return area_view(page, self.page_scale)

    def importance_of_view(self, view: torch.Tensor, origin: torch.Tensor | None = None) -> torch.Tensor:
        """Importance in [0, 1] of an image (or a tile of it, at token ``origin``) already at working
        resolution, float32 even under mixed precision (the map drives planning and upsampling, which need its
        digits)."""
        return torch.sigmoid(self(view, origin).float())

    def importance(self, bw: torch.Tensor) -> torch.Tensor:
        """(B,1,H,W) page → importance in [0, 1] at 1/stride of its working resolution."""
        return self.importance_of_view(self.view(bw))
