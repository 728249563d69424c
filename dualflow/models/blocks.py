"""Building blocks: conv blocks, 2D sinusoidal positions, windowed multi-head self-attention."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import nn


def exporting() -> bool:
    """True while ONNX export traces a model: branches on a shape must then take their general form (pad, mask),
    which holds for every size, since the traced graph keeps only the branch it saw."""
    return torch.onnx.is_in_onnx_export() or torch.compiler.is_exporting()


def norm2d(kind: str, channels: int) -> nn.Module:
    """``batch`` (SyncBatchNorm-convertible) or ``group`` (batch-size independent) normalisation."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(math.gcd(8, channels), channels)  # up to 8 groups that divide the channels
    raise ValueError(f"norm must be 'batch' or 'group', got {kind!r}")


class ConvBlock(nn.Sequential):
    """Two 3×3 convolutions with normalisation and SiLU."""

    def __init__(self, cin: int, cout: int, norm: str = "group", stride: int = 1):
        super().__init__(
            nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False), norm2d(norm, cout), nn.SiLU(),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), norm2d(norm, cout), nn.SiLU(),
        )


def positional_encoding_2d(h: int, w: int, dim: int, device=None, dtype=None,
                           origin: torch.Tensor | None = None) -> torch.Tensor:
    """(1,dim,h,w) sinusoidal encoding of (y, x), half the channels each; defined for any grid size, so a
    model trained on small pages runs on large ones. ``origin`` (2,): the grid's first (y, x) token when it is a
    tile of a larger grid, so a tile is encoded as the same tokens of the whole grid are."""
    if dim % 4:
        raise ValueError(f"positional encoding needs dim divisible by 4, got {dim}")
    quarter = dim // 4
    freq = torch.exp(torch.arange(quarter, device=device, dtype=torch.float32) * (-math.log(1000.0) / quarter))
    ys = torch.arange(h, device=device, dtype=torch.float32)
    xs = torch.arange(w, device=device, dtype=torch.float32)
    if origin is not None:
        origin = origin.to(device=device, dtype=torch.float32)
        ys, xs = ys + origin[0], xs + origin[1]
    ys, xs = ys[:, None] * freq, xs[:, None] * freq  # (h, q), (w, q)
    pe_y = torch.cat([ys.sin(), ys.cos()], dim=1).T[:, :, None].expand(-1, h, w)
    pe_x = torch.cat([xs.sin(), xs.cos()], dim=1).T[:, None, :].expand(-1, h, w)
    return torch.cat([pe_y, pe_x], dim=0)[None].to(dtype or torch.float32)


class WindowAttentionBlock(nn.Module):
    """Pre-norm transformer block whose self-attention runs inside ``window``×``window`` token windows
    (optionally shifted by half a window, Swin-style, so information crosses window borders). Memory grows
    linearly with the number of tokens, which keeps large pages affordable."""

    def __init__(self, dim: int, heads: int, window: int, shift: bool = False, mlp_ratio: float = 2.0):
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads, self.window, self.shift = heads, window, shift
        self.norm1, self.norm2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def _attend(self, x: torch.Tensor) -> torch.Tensor:
        b, h, w, c = x.shape
        ws = self.window
        pad_h, pad_w = (-h) % ws, (-w) % ws
        if self.shift:
            x = torch.roll(x, shifts=(-(ws // 2), -(ws // 2)), dims=(1, 2))
        x = F.pad(x, (0, 0, 0, pad_w, 0, pad_h))
        hp, wp = h + pad_h, w + pad_w
        win = x.view(b, hp // ws, ws, wp // ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(-1, ws * ws, c)
        valid = F.pad(torch.ones(h, w, device=x.device, dtype=torch.bool), (0, pad_w, 0, pad_h))
        valid = valid.view(hp // ws, ws, wp // ws, ws).permute(0, 2, 1, 3).reshape(1, -1, 1, 1, ws * ws)
        qkv = self.qkv(win).view(win.shape[0], ws * ws, 3, self.heads, c // self.heads).permute(2, 0, 3, 1, 4)
        masked = pad_h or pad_w or exporting()
        mask = valid.expand(b, -1, -1, -1, -1).reshape(-1, 1, 1, ws * ws) if masked else None
        out = F.scaled_dot_product_attention(qkv[0], qkv[1], qkv[2], attn_mask=mask)
        out = self.proj(out.transpose(1, 2).reshape(-1, ws * ws, c))
        out = out.view(b, hp // ws, wp // ws, ws, ws, c).permute(0, 1, 3, 2, 4, 5).reshape(b, hp, wp, c)
        out = out[:, :h, :w]
        if self.shift:
            out = torch.roll(out, shifts=(ws // 2, ws // 2), dims=(1, 2))
        return out

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B,C,H,W) → (B,C,H,W)."""
        t = x.permute(0, 2, 3, 1)
        t = t + self._attend(self.norm1(t))
        t = t + self.mlp(self.norm2(t))
        return t.permute(0, 3, 1, 2).contiguous()


def pad_to_multiple(x: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Replicate-pad H and W up to a multiple; returns the padded tensor and the original (H, W)."""
    h, w = x.shape[-2:]
    ph, pw = (-h) % multiple, (-w) % multiple
    if ph or pw or exporting():
        x = F.pad(x, (0, pw, 0, ph), mode="replicate")
    return x, (h, w)
