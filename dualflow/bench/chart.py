"""Line charts for the bench's curves, drawn with PIL (no plotting library in the dependencies): one panel per
figure, one line per row, a legend, and an x axis that can be logarithmic with 0 kept (``log2(1 + x)``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from PIL import Image, ImageDraw, ImageFont

COLOURS = [(31, 119, 180), (214, 39, 40), (44, 160, 44), (255, 127, 14), (148, 103, 189), (140, 86, 75),
           (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207)]


@dataclass
class Panel:
    """One chart: ``lines`` (name → [(x, y), ...]) under ``title`` (which names the y quantity)."""

    title: str
    lines: dict[str, list[tuple[float, float]]]


def _x(value: float, log: bool) -> float:
    return math.log2(1 + value) if log else value


def _ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    """About ``n`` round values within [lo, hi]."""
    raw = (hi - lo) / max(1, n - 1) or 1.0
    step = 10 ** math.floor(math.log10(raw))
    step *= next(m for m in (1, 2, 2.5, 5, 10) if m * step >= raw)
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step) + 1)]


@dataclass
class _Frame:
    """A panel's plotting box in pixels and the data range it shows."""

    box: tuple[float, float, float, float]  # left, top, right, bottom
    x_range: tuple[float, float]
    y_range: tuple[float, float]
    log_x: bool

    def at(self, x: float, y: float) -> tuple[float, float]:
        left, top, right, bottom = self.box
        (x0, x1), (y0, y1) = self.x_range, self.y_range
        fx = (_x(x, self.log_x) - _x(x0, self.log_x)) / ((_x(x1, self.log_x) - _x(x0, self.log_x)) or 1.0)
        return left + fx * (right - left), bottom - (y - y0) / ((y1 - y0) or 1.0) * (bottom - top)


def line_charts(panels: list[Panel], xlabel: str, log_x: bool = True, size: tuple[int, int] = (560, 400),
                ) -> Image.Image:
    """The panels side by side as one RGB image, x ticks at the data's x values, one colour per line name and
    the legend in the last panel."""
    w, h = size
    font, small = ImageFont.load_default(size=15), ImageFont.load_default(size=12)
    image = Image.new("RGB", (w * len(panels), h), "white")
    draw = ImageDraw.Draw(image)
    names = list(dict.fromkeys(name for p in panels for name in p.lines))
    for i, p in enumerate(panels):
        xs = sorted({x for pts in p.lines.values() for x, _ in pts})
        ys = [y for pts in p.lines.values() for _, y in pts if math.isfinite(y)]
        pad = (max(ys) - min(ys)) * 0.08 or 1.0
        frame = _Frame((i * w + 52, 34, i * w + w - 16, h - 50), (xs[0], xs[-1]), (min(ys) - pad, max(ys) + pad),
                       log_x)
        left, top, right, bottom = frame.box
        draw.text((left, 8), p.title, fill="black", font=font)
        draw.rectangle(frame.box, outline=(90, 90, 90))
        for y in _ticks(*frame.y_range):
            py = frame.at(xs[0], y)[1]
            draw.line((left, py, right, py), fill=(228, 228, 228))
            draw.text((left - 6, py), f"{y:g}", fill="black", font=small, anchor="rm")
        for x in xs:
            px = frame.at(x, frame.y_range[0])[0]
            draw.line((px, bottom, px, bottom + 4), fill="black")
            draw.text((px, bottom + 6), f"{x:g}", fill="black", font=small, anchor="mt")
        draw.text(((left + right) / 2, h - 22), xlabel + (" (log scale)" if log_x else ""), fill="black",
                  font=small, anchor="mt")
        for name, pts in p.lines.items():
            colour = COLOURS[names.index(name) % len(COLOURS)]
            points = [frame.at(x, y) for x, y in sorted(pts) if math.isfinite(y)]
            if len(points) > 1:
                draw.line(points, fill=colour, width=3)
            for px, py in points:
                draw.ellipse((px - 4, py - 4, px + 4, py + 4), fill=colour)
    for j, name in enumerate(names):
        x, y = image.width - 200, 42 + 16 * j
        draw.line((x, y + 7, x + 22, y + 7), fill=COLOURS[j % len(COLOURS)], width=3)
        draw.text((x + 28, y), name, fill="black", font=small)
    return image
