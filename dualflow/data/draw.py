"""Raster drawing for SynthManga: shapes as boolean masks inside their bounding boxes, and the canvas they are
painted on (colour, class, instance and B&W style per pixel, ink strokes).

Every shape is evaluated only inside its bounding box (clipped to the page), so a page costs what its shapes
cover, not shapes × page pixels; what remains is Python overhead, tens of microseconds a shape.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np

Box = tuple[slice, slice]


def put(dst: np.ndarray, mask: np.ndarray, src) -> None:
    """``dst[mask] = src`` for an (h, w) or (h, w, C) ``dst`` and a value, a (C,) vector or an image like ``dst``,
    through ``np.putmask`` per channel: no gather of the masked pixels, 2–4× faster than boolean indexing on the
    shapes a page is drawn from (the same values)."""
    src = np.asarray(src, dtype=dst.dtype)  # the rounding boolean indexing would do
    if dst.ndim == 2:
        np.putmask(dst, mask, src)
        return
    if src.ndim == 0:
        src = np.broadcast_to(src, dst.shape[-1:])
    for k in range(dst.shape[-1]):
        np.putmask(dst[..., k], mask, src[..., k])


@lru_cache(maxsize=8)
def grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel-centre coordinates (y, x) of an (h, w) page, float32, shared and read-only."""
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    yy.setflags(write=False)
    xx.setflags(write=False)
    return yy, xx


def clip_box(y0: float, x0: float, y1: float, x1: float, h: int, w: int) -> Box:
    """Slices of the page covering [y0, y1) × [x0, x1), clipped to it (possibly empty)."""
    ys, xs = min(h, max(0, math.floor(y0))), min(w, max(0, math.floor(x0)))  # a box off the page is empty
    ye, xe = min(h, math.ceil(y1)), min(w, math.ceil(x1))
    return slice(ys, ye if ye > ys else ys), slice(xs, xe if xe > xs else xs)


@dataclass
class Shape:
    """A mask ``m`` (bool) that lives in the page box ``sl``."""

    sl: Box
    m: np.ndarray

    @property
    def empty(self) -> bool:
        return self.m.size == 0 or not self.m.any()

    def within(self, sl: Box) -> Shape:
        """This shape restricted to the box ``sl``."""
        (ys, xs), (ya, xa) = self.sl, sl
        if ys.start >= ya.start and xs.start >= xa.start and ys.stop <= ya.stop and xs.stop <= xa.stop:
            return self
        y0, x0 = max(ys.start, ya.start), max(xs.start, xa.start)
        y1, x1 = max(y0, min(ys.stop, ya.stop)), max(x0, min(xs.stop, xa.stop))
        m = self.m[y0 - ys.start:y1 - ys.start, x0 - xs.start:x1 - xs.start]
        return Shape((slice(y0, y1), slice(x0, x1)), m)

    def placed(self, sl: Box) -> np.ndarray:
        """This mask placed in the (larger) box ``sl``."""
        out = np.zeros((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), dtype=bool)
        y, x = self.sl[0].start - sl[0].start, self.sl[1].start - sl[1].start
        out[y:y + self.m.shape[0], x:x + self.m.shape[1]] = self.m
        return out

    def __or__(self, other: Shape) -> Shape:
        sl = (slice(min(self.sl[0].start, other.sl[0].start), max(self.sl[0].stop, other.sl[0].stop)),
              slice(min(self.sl[1].start, other.sl[1].start), max(self.sl[1].stop, other.sl[1].stop)))
        return Shape(sl, self.placed(sl) | other.placed(sl))

    def __sub__(self, other: Shape) -> Shape:
        return Shape(self.sl, self.m & ~other.within(self.sl).placed(self.sl))

    def __and__(self, other: Shape) -> Shape:
        return Shape(self.sl, self.m & other.within(self.sl).placed(self.sl))

    def shifted(self, dy: int, dx: int) -> Shape:
        """The same mask moved by (dy, dx) pixels, kept in this box (what moves out is dropped)."""
        m = np.zeros_like(self.m)
        h, w = m.shape
        if abs(dy) >= h or abs(dx) >= w:
            return Shape(self.sl, m)
        m[max(0, dy):h + min(0, dy), max(0, dx):w + min(0, dx)] = \
            self.m[max(0, -dy):h - max(0, dy), max(0, -dx):w - max(0, dx)]
        return Shape(self.sl, m)

    def shadow(self, dy: int, dx: int) -> Shape:
        """The crescent of this shape facing away from a light at (−dy, −dx): the part its own copy moved
        towards the light does not cover."""
        return Shape(self.sl, self.m & ~self.shifted(-dy, -dx).m)


def ellipse(g, cy: float, cx: float, ry: float, rx: float, angle: float = 0.0) -> Shape:
    """Filled ellipse, rotated by ``angle`` degrees."""
    yy, xx = g
    r = max(ry, rx)
    sl = clip_box(cy - r, cx - r, cy + r + 1, cx + r + 1, *yy.shape)
    dy, dx = yy[sl] - cy, xx[sl] - cx
    if angle:
        a = np.deg2rad(angle)
        dy, dx = dy * np.cos(a) - dx * np.sin(a), dy * np.sin(a) + dx * np.cos(a)
    return Shape(sl, (dy / max(ry, 0.5)) ** 2 + (dx / max(rx, 0.5)) ** 2 <= 1.0)


def polygon(g, pts) -> Shape:
    """Filled polygon (even-odd rule) through ``pts`` [(y, x), ...]."""
    yy, xx = g
    p = np.asarray(pts, dtype=np.float32)
    sl = clip_box(p[:, 0].min(), p[:, 1].min(), p[:, 0].max() + 1, p[:, 1].max() + 1, *yy.shape)
    a, b = p, np.roll(p, -1, axis=0)
    keep = a[:, 0] != b[:, 0]  # horizontal edges cross no scanline
    (y1, x1), (y2, x2) = (a[keep].T[..., None, None], b[keep].T[..., None, None])
    py, px = yy[sl], xx[sl]
    crosses = ((y1 > py) != (y2 > py)) & (px < (x2 - x1) * (py - y1) / (y2 - y1) + x1)  # (edges, h, w)
    return Shape(sl, np.logical_xor.reduce(crosses, axis=0) if len(crosses) else np.zeros(py.shape, bool))


def capsule(g, p0, p1, r0: float, r1: float | None = None) -> Shape:
    """A segment from ``p0`` to ``p1`` (y, x) swept by a disc whose radius goes from ``r0`` to ``r1``: limbs,
    strokes and strands."""
    yy, xx = g
    r1 = r0 if r1 is None else r1
    (y0, x0), (y1, x1) = p0, p1
    r = max(r0, r1)
    sl = clip_box(min(y0, y1) - r, min(x0, x1) - r, max(y0, y1) + r + 1, max(x0, x1) + r + 1, *yy.shape)
    py, px = yy[sl] - y0, xx[sl] - x0
    dy, dx = y1 - y0, x1 - x0
    t = np.minimum(np.maximum((py * dy + px * dx) * (1.0 / max(dy * dy + dx * dx, 1e-6)), 0.0), 1.0)
    dist2 = (py - t * dy) ** 2 + (px - t * dx) ** 2
    return Shape(sl, dist2 <= (r0 + t * (r1 - r0)) ** 2)


def rect(g, y0: float, x0: float, y1: float, x1: float) -> Shape:
    sl = clip_box(y0, x0, y1, x1, *g[0].shape)
    return Shape(sl, np.ones((sl[0].stop - sl[0].start, sl[1].stop - sl[1].start), dtype=bool))


def polyline(g, pts, width: float) -> Shape:
    """A stroke of ``width`` pixels through ``pts``."""
    shape = capsule(g, pts[0], pts[1], width / 2)
    for a, b in zip(pts[1:-1], pts[2:], strict=True):
        shape = shape | capsule(g, a, b, width / 2)
    return shape


class Canvas:
    """Mutable page state: colour, class, instance id (outlines are drawn where it changes), bold-outline flag,
    B&W style (which screen renders the pixel's tone), extra ink strokes, and the character each pixel belongs
    to (for chapter-consistency evaluation)."""

    def __init__(self, h: int, w: int, background_class: int, style: int = 0):
        self.h, self.w = h, w
        self.g = grid(h, w)
        self.color = np.ones((h, w, 3), dtype=np.float32)
        self.labels = np.full((h, w), background_class, dtype=np.uint8)
        self.inst = np.zeros((h, w), dtype=np.int32)
        self.thick = np.zeros((h, w), dtype=bool)
        self.style = np.full((h, w), style, dtype=np.uint8)
        self.ink = np.zeros((h, w), dtype=bool)
        self.clip: Box = (slice(0, h), slice(0, w))  # what is drawn is kept inside this box (the panel's)
        self.owner = np.zeros((h, w), dtype=np.uint8)  # which character a pixel belongs to (0: none)
        self.owner_id = 0  # the character being drawn now
        self._next = 1

    def fill(self, shape: Shape, color, cls: int, style: int | None = None, outline: bool = True,
             bold: bool = False) -> None:
        """Paint ``shape`` with a colour vector, or with a function of the shape's box coordinates (yy, xx)
        → (h, w, 3) colour image."""
        shape = shape.within(self.clip)
        sl, m = shape.sl, shape.m
        if m.size == 0:
            return
        put(self.color[sl], m, color(self.g[0][sl], self.g[1][sl]) if callable(color) else color)
        put(self.labels[sl], m, cls)
        put(self.owner[sl], m, self.owner_id)
        if style is not None:
            put(self.style[sl], m, style)
        if outline:
            put(self.inst[sl], m, self._next)
            self._next += 1
            put(self.thick[sl], m, bold)

    def shade(self, shape: Shape, tint: np.ndarray, style: int | None = None) -> None:
        """Darken ``shape`` in place by the multiplicative ``tint`` (a shadow hue, not just darker), within
        the same instance: no outline between light and shadow, as in coloured manga."""
        shape = shape.within(self.clip)
        sl, m = shape.sl, shape.m
        if m.size:
            box = self.color[sl]
            put(box, m, box * tint)
            if style is not None:
                put(self.style[sl], m, style)

    def stroke(self, shape: Shape) -> None:
        """Ink a stroke (black in both pages)."""
        shape = shape.within(self.clip)
        self.ink[shape.sl] |= shape.m

    def snapshot(self, sl: Box) -> tuple[np.ndarray, ...]:
        return tuple(a[sl].copy() for a in self._layers())

    def _layers(self) -> tuple[np.ndarray, ...]:
        return self.color, self.labels, self.inst, self.thick, self.style, self.ink, self.owner

    def restore_outside(self, saved: tuple[np.ndarray, ...], sl: Box, keep: np.ndarray) -> None:
        """Undo what was drawn in ``sl`` outside the ``keep`` mask (a panel's polygon)."""
        for a, old in zip(self._layers(), saved, strict=True):
            put(a[sl], ~keep, old)

    def outlines(self, bold_px: int) -> np.ndarray:
        """Ink where the instance id changes; bold instances get lines ``bold_px`` wide."""
        inst = self.inst
        edge = np.zeros(inst.shape, dtype=bool)
        edge[1:, :] |= inst[1:, :] != inst[:-1, :]
        edge[:, 1:] |= inst[:, 1:] != inst[:, :-1]
        bold = edge & self.thick
        grown = bold.copy()
        for _ in range(max(0, bold_px - 1)):
            grown[:-1, :] |= grown[1:, :]
            grown[:, :-1] |= grown[:, 1:]
        return edge | grown
