"""Image panels for W&B and ``colorize --debug``: tensors to uint8 pictures side by side, boxes outlined."""

from __future__ import annotations

import numpy as np
import torch


def to_uint8(img: torch.Tensor) -> np.ndarray:
    """(C,H,W) float [0,1] (C = 1 or 3) → H×W×3 uint8 (W&B does not rescale floats)."""
    img = img.detach().float().cpu().clamp(0, 1)
    if img.shape[0] == 1:
        img = img.expand(3, -1, -1)
    return (img.permute(1, 2, 0).numpy() * 255 + 0.5).astype(np.uint8)


def panel(*images: torch.Tensor, labels: list[str] | None = None) -> np.ndarray:
    """Images of the same height side by side, with a 2-px grey divider; ``labels`` (one per image) are written
    in a white strip above their columns."""
    parts = []
    for img in images:
        parts.append(to_uint8(img))
        parts.append(np.full((parts[-1].shape[0], 2, 3), 128, np.uint8))
    if labels is None:
        return np.concatenate(parts[:-1], axis=1)
    if len(labels) != len(images):
        raise ValueError(f"panel: {len(labels)} labels for {len(images)} images")
    return np.concatenate([header([p.shape[1] for p in parts[:-1]], [*labels], parts[0].shape[0]),
                           np.concatenate(parts[:-1], axis=1)], axis=0)


def header(widths: list[int], labels: list[str], height: int) -> np.ndarray:
    """A white strip with each label over its column (``widths``: the panel's columns and dividers), its type
    sized to the panel (1/40 of its ``height``, at least 12 px)."""
    from PIL import Image, ImageDraw, ImageFont

    size = max(12, height // 40)
    strip = Image.new("RGB", (sum(widths), round(size * 1.6)), "white")
    draw, font = ImageDraw.Draw(strip), ImageFont.load_default(size=size)
    x = 0
    for i, width in enumerate(widths):
        if i % 2 == 0:
            draw.text((x + size // 2, size // 4), labels[i // 2], fill="black", font=font)
        x += width
    return np.asarray(strip)


def draw_boxes(img: torch.Tensor, boxes: torch.Tensor, color=(1.0, 0.1, 0.1)) -> torch.Tensor:
    """Outline (y0,x0,y1,x1) boxes on a (1|3,H,W) image → (3,H,W)."""
    out = img.expand(3, -1, -1).clone() if img.shape[0] == 1 else img.clone()
    c = torch.tensor(color, dtype=out.dtype).view(3, 1)
    for y0, x0, y1, x1 in boxes.tolist():
        out[:, y0, x0:x1] = c
        out[:, y1 - 1, x0:x1] = c
        out[:, y0:y1, x0] = c
        out[:, y0:y1, x1 - 1] = c
    return out
