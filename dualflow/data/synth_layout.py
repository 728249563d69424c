"""SynthManga page layout: panels with slanted borders, insets and bleeds; balloons (round, spiky, thought,
narration boxes) holding columns of glyph-like strokes, with tails towards a speaker; sound effects as large
lettering."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dualflow.data.draw import Box, Canvas, Shape, capsule, clip_box, ellipse, polygon, put, rect
from dualflow.data.palette import CLASS_ID, SFX, STYLE, WHITE, pick


@dataclass
class Panel:
    """A panel: its polygon (y, x) corners, their bounding box (y0, x0, y1, x1) and page slices."""

    corners: list[tuple[float, float]]
    box: tuple[float, float, float, float]
    sl: Box


def _panel(corners, h: int, w: int) -> Panel:
    ys, xs = [c[0] for c in corners], [c[1] for c in corners]
    box = (min(ys), min(xs), max(ys), max(xs))
    return Panel(corners, box, clip_box(*box, h, w))


def _meet(row_line, col_line) -> tuple[float, float]:
    """Where y = a + b·x (a row border) meets x = c + d·y (a column border)."""
    (a, b), (c, d) = row_line, col_line
    x = (c + d * a) / (1 - d * b)
    return a + b * x, x


def panels(rng: np.random.Generator, h: int, w: int, gutter: float) -> list[Panel]:
    """Rows of panels whose borders may slant; a panel may bleed to the page edge; an inset may sit on top of
    a large panel (drawn last, over it)."""
    margin = gutter * rng.uniform(1.0, 2.0)
    n_rows = int(rng.integers(1, 5)) if h >= 128 else 1
    cuts = np.sort((np.arange(1, n_rows) + rng.uniform(-0.25, 0.25, n_rows - 1)) / n_rows)

    def slant(size: float) -> float:
        """A border's tilt over the page (0 for most borders)."""
        return rng.uniform(-0.08, 0.08) * size if rng.random() < 0.35 else 0.0

    rows = [(margin, 0.0)] + [(margin + c * (h - 2 * margin), slant(h) / w) for c in cuts] + [(h - margin, 0.0)]
    bleed_row = int(rng.integers(n_rows)) if rng.random() < 0.2 else -1
    out = []
    for r in range(n_rows):
        top, bottom = rows[r], rows[r + 1]
        top = (top[0] + (gutter / 2 if r else 0.0) - (margin if r == bleed_row == 0 else 0.0), top[1])
        bottom = (bottom[0] - (gutter / 2 if r < n_rows - 1 else 0.0) + (margin if r == bleed_row == n_rows - 1
                                                                          else 0.0), bottom[1])
        n_cols = 1 if r == bleed_row else (int(rng.integers(1, 4)) if w >= 128 else 1)
        xc = np.sort(rng.uniform(0.25, 0.75, n_cols - 1))
        cols = [(margin - (margin if r == bleed_row else 0.0), 0.0)]
        cols += [(margin + c * (w - 2 * margin), slant(w) / h) for c in xc]
        cols += [(w - margin + (margin if r == bleed_row else 0.0), 0.0)]
        for c in range(n_cols):
            left = (cols[c][0] + (gutter / 2 if c else 0.0), cols[c][1])
            right = (cols[c + 1][0] - (gutter / 2 if c < n_cols - 1 else 0.0), cols[c + 1][1])
            corners = [_meet(top, left), _meet(top, right), _meet(bottom, right), _meet(bottom, left)]
            p = _panel(corners, h, w)
            if p.box[2] - p.box[0] >= 12 and p.box[3] - p.box[1] >= 12:
                out.append(p)
    if out and rng.random() < 0.2:  # an inset in the largest panel
        big = max(out, key=lambda p: (p.box[2] - p.box[0]) * (p.box[3] - p.box[1]))
        y0, x0, y1, x1 = big.box
        ih, iw = (y1 - y0) * rng.uniform(0.3, 0.45), (x1 - x0) * rng.uniform(0.3, 0.45)
        iy, ix = y0 + rng.choice([0.08, 0.92 - ih / (y1 - y0)]) * (y1 - y0), x0 + rng.uniform(0.05, 0.5) * (x1 - x0)
        if ih >= 16 and iw >= 16:
            out.append(_panel([(iy, ix), (iy, ix + iw), (iy + ih, ix + iw), (iy + ih, ix)], h, w))
    return out


@lru_cache(maxsize=16)
def glyphs(cell: int, width: int, n: int = 48) -> tuple[np.ndarray, ...]:
    """``n`` glyph-like bitmaps of ``cell``² pixels: 2-4 strokes (bars, posts, slashes, hooks, dots) each."""
    rng = np.random.default_rng(cell * 1000 + width)
    yy, xx = np.mgrid[0:cell, 0:cell].astype(np.float32)
    g = (yy, xx)
    c = cell - 1
    strokes = [((0.2, 0.15), (0.2, 0.85)), ((0.5, 0.1), (0.5, 0.9)), ((0.85, 0.15), (0.85, 0.85)),
               ((0.1, 0.3), (0.9, 0.3)), ((0.1, 0.5), (0.95, 0.5)), ((0.1, 0.7), (0.9, 0.7)),
               ((0.15, 0.8), (0.9, 0.2)), ((0.2, 0.2), (0.85, 0.8)), ((0.5, 0.5), (0.95, 0.3)),
               ((0.1, 0.5), (0.3, 0.55))]
    out = []
    for _ in range(n):
        m = np.zeros((cell, cell), dtype=bool)
        for k in rng.choice(len(strokes), int(rng.integers(2, 5)), replace=False):
            (a, b), (d, e) = strokes[k]
            m |= capsule(g, (a * c, b * c), (d * c, e * c), width / 2).placed((slice(0, cell), slice(0, cell)))
        out.append(m)
    return tuple(out)


def text_columns(cv: Canvas, rng, area: Shape, scale: float, pen: float | None = None) -> None:
    """Vertical columns of glyphs, right to left, inside ``area`` (as manga lettering): cells of 5 ``scale``
    units, strokes of 0.8 ``pen`` units (default: ``scale``)."""
    cell = max(4, int(round(5 * scale)))
    atlas = glyphs(cell, max(1, int(round(0.8 * (scale if pen is None else pen)))))
    (ys, xs), m = area.sl, area.m
    step = 2 * cell
    for x in range(xs.stop - cell - 1, xs.start, -step):
        length = int(rng.integers(2, 9))
        for y in range(ys.start + 1, ys.stop - cell, cell + max(1, cell // 5))[:length]:
            ly, lx = y - ys.start, x - xs.start
            if m[ly:ly + cell, lx:lx + cell].all():
                glyph = atlas[int(rng.integers(len(atlas)))]
                cv.ink[y:y + cell, x:x + cell] |= glyph
                put(cv.color[y:y + cell, x:x + cell], glyph, 0.05)


def balloon(cv: Canvas, rng, box, speaker: tuple[float, float, float] | None, scale: float,
            pen: float | None = None) -> None:
    """A balloon near the top of the panel, with a tail towards the ``speaker``'s head (y, x, r); sizes in
    lettering units (``scale``), the lettering's strokes in ``pen`` units."""
    y0, x0, y1, x1 = box
    ph, pw = y1 - y0, x1 - x0
    kind = rng.choice(["round", "spiky", "thought", "narration"], p=[0.5, 0.15, 0.15, 0.2])
    ry = min(ph * rng.uniform(0.12, 0.2), 40 * scale)
    rx = min(pw * rng.uniform(0.1, 0.18), 30 * scale, 1.2 * ry)
    cy, cx = y0 + ry + ph * rng.uniform(0.03, 0.12), rng.uniform(x0 + rx + 2, max(x0 + rx + 3, x1 - rx - 2))
    g = cv.g
    if kind == "narration":
        shape = rect(g, y0 + 2 * scale, x1 - 2 * rx - 2 * scale, y0 + 2 * ry, x1 - 2 * scale)
        inner = rect(g, shape.sl[0].start + 2 * scale, shape.sl[1].start + 2 * scale, shape.sl[0].stop - 2 * scale,
                     shape.sl[1].stop - 2 * scale)
    elif kind == "spiky":
        n = int(rng.integers(12, 22))
        ang = np.linspace(0, 2 * np.pi, 2 * n, endpoint=False)
        rad = np.where(np.arange(2 * n) % 2 == 0, 1.25, 0.9)
        shape = polygon(g, np.stack([cy + ry * rad * np.sin(ang), cx + rx * rad * np.cos(ang)], 1))
        inner = ellipse(g, cy, cx, 0.7 * ry, 0.7 * rx)
    elif kind == "thought":
        shape = ellipse(g, cy, cx, 0.85 * ry, 0.85 * rx)
        for a in np.linspace(0, 2 * np.pi, 10, endpoint=False):
            shape = shape | ellipse(g, cy + 0.85 * ry * np.sin(a), cx + 0.85 * rx * np.cos(a), 0.3 * ry, 0.3 * rx)
        inner = ellipse(g, cy, cx, 0.65 * ry, 0.7 * rx)
    else:
        shape = ellipse(g, cy, cx, ry, rx)
        inner = ellipse(g, cy, cx, 0.68 * ry, 0.72 * rx)
    if speaker is not None and kind != "narration":
        sy, sx, sr = speaker
        ty, tx = sy - 1.2 * sr, sx
        if kind == "thought":
            for k, t in enumerate((0.55, 0.75)):
                r = (0.12 - 0.04 * k) * min(ry, rx) + scale
                py, px = cy + (ty - cy) * t, cx + (tx - cx) * t
                cv.fill(ellipse(g, py, px, r, r), WHITE, CLASS_ID["balloon"], style=STYLE["flat"])
        elif ty > cy + ry:
            shape = shape | polygon(g, [(cy + 0.5 * ry, cx - 0.2 * rx), (cy + 0.5 * ry, cx + 0.2 * rx),
                                        (cy + ry + 0.5 * (ty - cy - ry), cx + 0.5 * (tx - cx))])
    cv.fill(shape, WHITE, CLASS_ID["balloon"], style=STYLE["flat"])
    text_columns(cv, rng, inner.within(cv.clip) & shape, scale, pen)


def sound_effect(cv: Canvas, rng, box, scale: float) -> None:
    """Two to four large glyphs, bright in colour with a dark outline, white with a black outline in B&W."""
    y0, x0, y1, x1 = box
    size = int(min(y1 - y0, x1 - x0) * rng.uniform(0.16, 0.26))
    if size < 10:
        return
    atlas = glyphs(32, 5)
    nearest = (np.arange(size) * 32) // size  # the 32-px glyphs resampled to this size
    color = pick(rng, SFX, 0.05)
    y, x = rng.uniform(y0, y1 - size), rng.uniform(x0, x1 - size)
    for _ in range(int(rng.integers(2, 5))):
        glyph = atlas[int(rng.integers(len(atlas)))][np.ix_(nearest, nearest)]
        iy, ix = int(y), int(x)
        if 0 <= iy and 0 <= ix and iy + size <= cv.h and ix + size <= cv.w:
            cv.fill(Shape((slice(iy, iy + size), slice(ix, ix + size)), glyph), color, CLASS_ID["sfx"],
                    style=STYLE["flat"], bold=True)
        y, x = y + rng.uniform(-0.3, 0.4) * size, x + size * rng.uniform(0.8, 1.0)
