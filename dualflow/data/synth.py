"""SynthManga: procedural colour manga pages, their B&W manga rendering and region labels.

Each page is a pure function of ``(seed, index)``: panels and gutters, backgrounds (sky gradients, interiors,
patterned walls, speed lines), characters (skin, hair with strands, eyes with highlights, plain or patterned
clothes) and speech balloons. Every class has colour conventions (skin is peach, sky is blue...), so colour is
partly inferable from the B&W page, and a B&W style (dot screentone whose density follows lightness, hatching,
ink lines, white areas), so the B&W page looks like manga rather than a grey photo. The label map says which
zones are *detailed* and which are *flat*; it is for evaluating the attention stage, never a training target.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

# Region classes. DETAILED ones have colour that changes a lot over short distances.
CLASSES = (
    "gutter", "sky", "wall", "pattern_bg", "skin", "hair", "eyes", "cloth_plain", "cloth_pattern", "balloon",
    "speed_lines",
)
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
DETAILED_CLASSES = ("pattern_bg", "hair", "eyes", "cloth_pattern", "speed_lines")
DETAILED_IDS = np.array([CLASS_ID[c] for c in DETAILED_CLASSES])

# Colour conventions (RGB in [0,1]); jittered slightly per page. Within each palette the colours have clearly
# different lightness, so each one gets its own screentone density: as a reader infers a character's hair or a
# uniform's colour from its tone, a model can infer the colour from the B&W page (partly: the tone gives the
# palette entry, not the exact shade; flat classes carry their own conventions: blue sky, peach skin).
SKIN = np.array([[0.98, 0.84, 0.72], [0.93, 0.74, 0.60], [0.80, 0.60, 0.45]])
HAIR = np.array([  # luma ≈ 0.12, 0.29, 0.45, 0.69, 0.87
    [0.14, 0.11, 0.12], [0.42, 0.25, 0.12], [0.30, 0.45, 0.85], [0.95, 0.55, 0.72], [0.98, 0.88, 0.50],
])
IRIS = np.array([[0.45, 0.28, 0.15], [0.25, 0.50, 0.95], [0.45, 0.85, 0.40]])  # luma ≈ 0.32, 0.48, 0.68
CLOTH = np.array([  # luma ≈ 0.15, 0.31, 0.43, 0.60, 0.72, 0.88
    [0.10, 0.12, 0.42], [0.80, 0.10, 0.12], [0.10, 0.62, 0.30], [0.98, 0.50, 0.15], [0.40, 0.85, 0.90],
    [0.98, 0.92, 0.40],
])
WALL = np.array([[0.93, 0.88, 0.76], [0.80, 0.86, 0.78], [0.86, 0.82, 0.90], [0.75, 0.72, 0.70]])
SKY_TOP, SKY_BOTTOM = np.array([0.30, 0.55, 0.95]), np.array([0.72, 0.86, 1.00])
WHITE = np.array([1.0, 1.0, 1.0], dtype=np.float32)

# B&W style per class: 0 = dot screentone, 1 = hatching.
_HATCHED = np.zeros(len(CLASSES), dtype=bool)
_HATCHED[[CLASS_ID["hair"], CLASS_ID["pattern_bg"], CLASS_ID["cloth_pattern"]]] = True


@dataclass
class SynthPage:
    """One generated page: ``bw`` (H,W) float32 in [0,1], ``color`` (H,W,3) float32, ``labels`` (H,W) uint8."""

    bw: np.ndarray
    color: np.ndarray
    labels: np.ndarray

    @property
    def detailed(self) -> np.ndarray:
        """(H,W) bool: pixels of a detailed class."""
        return np.isin(self.labels, DETAILED_IDS)


@lru_cache(maxsize=8)
def _grid(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return yy, xx


@lru_cache(maxsize=32)
def _screen(h: int, w: int, period: float, angle_deg: float, kind: str) -> np.ndarray:
    """Threshold map in [0,1]: a pixel is inked where darkness > threshold (dot screen or line hatching)."""
    yy, xx = _grid(h, w)
    a = np.deg2rad(angle_deg)
    u = (xx * np.cos(a) + yy * np.sin(a)) / period
    v = (-xx * np.sin(a) + yy * np.cos(a)) / period
    if kind == "dots":
        t = 0.5 - 0.25 * (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v))
    else:
        t = np.abs(2.0 * (u - np.floor(u)) - 1.0)
    return t.astype(np.float32)


@dataclass
class _Shape:
    """A mask that lives in a bounding box: ``sl`` (slices into the page) and ``m`` (bool, the box's shape).
    Drawing only inside the box keeps generation fast on large pages."""

    sl: tuple[slice, slice]
    m: np.ndarray

    def __and__(self, other: np.ndarray) -> _Shape:
        return _Shape(self.sl, self.m & other[self.sl])

    def full(self, h: int, w: int) -> np.ndarray:
        out = np.zeros((h, w), dtype=bool)
        out[self.sl] = self.m
        return out


def _box(y0, x0, y1, x1, h, w) -> tuple[slice, slice]:
    return slice(max(0, int(y0)), min(h, int(np.ceil(y1)))), slice(max(0, int(x0)), min(w, int(np.ceil(x1))))


class _Canvas:
    """Mutable drawing state: colour, class, instance ids (for outlines) and extra ink strokes."""

    def __init__(self, h: int, w: int):
        self.h, self.w = h, w
        self.color = np.ones((h, w, 3), dtype=np.float32)
        self.labels = np.full((h, w), CLASS_ID["gutter"], dtype=np.uint8)
        self.inst = np.zeros((h, w), dtype=np.int32)
        self.ink = np.zeros((h, w), dtype=bool)
        self.thick = np.zeros((h, w), dtype=bool)  # instances whose outline is drawn bold
        self._next = 1

    def fill(self, shape: _Shape, color, cls: str, outline: bool = True, bold: bool = False) -> None:
        """Paint ``shape`` with a colour vector or a full-page colour image."""
        sl, m = shape.sl, shape.m
        self.color[sl][m] = color if np.ndim(color) == 1 else color[sl][m]
        self.labels[sl][m] = CLASS_ID[cls]
        if outline:
            self.inst[sl][m] = self._next
            self._next += 1
        if bold:
            self.thick[sl][m] = True


def _jitter(rng: np.random.Generator, rgb: np.ndarray, amount: float = 0.02) -> np.ndarray:
    return np.clip(rgb + rng.uniform(-amount, amount, 3), 0, 1).astype(np.float32)


def _pick(rng: np.random.Generator, palette: np.ndarray, amount: float = 0.02) -> np.ndarray:
    return _jitter(rng, palette[rng.integers(len(palette))], amount)


def _ellipse(yy, xx, cy, cx, ry, rx, clip: tuple[slice, slice] | None = None) -> _Shape:
    """Axis-aligned filled ellipse, evaluated only inside its bounding box (and ``clip``, a panel box)."""
    sl = _box(cy - ry, cx - rx, cy + ry + 1, cx + rx + 1, *yy.shape)
    if clip is not None:
        sl = tuple(slice(max(a.start, b.start), max(max(a.start, b.start), min(a.stop, b.stop)))
                   for a, b in zip(sl, clip, strict=True))
    dy, dx = (yy[sl] - cy) / ry, (xx[sl] - cx) / rx
    return _Shape(sl, dy * dy + dx * dx <= 1.0)


def _stripes(yy, xx, period, angle, warp=0.0, warp_freq=0.0) -> np.ndarray:
    """Phase in [0,1) of a (optionally wavy) stripe pattern."""
    a = np.deg2rad(angle)
    u = (xx * np.cos(a) + yy * np.sin(a)) / period
    if warp:
        u = u + warp * np.sin((-xx * np.sin(a) + yy * np.cos(a)) * warp_freq)
    return u - np.floor(u)


def _split_panels(rng: np.random.Generator, h: int, w: int, gutter: int) -> list[tuple[int, int, int, int]]:
    """Rows of panels (y0, x0, y1, x1) separated by gutters, like a manga page layout."""
    margin = max(2, gutter)
    n_rows = int(rng.integers(1, 4)) if h >= 96 else 1
    cuts = (np.arange(1, n_rows) + rng.uniform(-0.2, 0.2, n_rows - 1)) / n_rows
    ys = np.concatenate([[margin], margin + cuts * (h - 2 * margin), [h - margin]]).astype(int)
    panels = []
    for r in range(n_rows):
        n_cols = int(rng.integers(1, 3)) if w >= 96 else 1
        xc = np.sort(rng.uniform(0.3, 0.7, n_cols - 1)) if n_cols > 1 else np.array([])
        xs = np.concatenate([[margin], margin + xc * (w - 2 * margin), [w - margin]]).astype(int)
        for c in range(n_cols):
            y0, y1 = ys[r] + (gutter // 2 if r else 0), ys[r + 1] - (gutter // 2 if r < n_rows - 1 else 0)
            x0, x1 = xs[c] + (gutter // 2 if c else 0), xs[c + 1] - (gutter // 2 if c < n_cols - 1 else 0)
            if y1 - y0 >= 8 and x1 - x0 >= 8:
                panels.append((y0, x0, y1, x1))
    return panels


def _background(cv: _Canvas, rng, yy, xx, box, scale) -> None:
    y0, x0, y1, x1 = box
    pb = _box(y0, x0, y1, x1, cv.h, cv.w)
    panel = _Shape(pb, np.ones((y1 - y0, x1 - x0), dtype=bool))
    py, px = yy[pb], xx[pb]
    kind = rng.choice(["sky", "wall", "pattern", "speed"], p=[0.3, 0.3, 0.25, 0.15])
    img = np.empty((cv.h, cv.w, 3), dtype=np.float32)
    if kind == "sky":
        t = ((py - y0) / max(1, y1 - y0))[..., None]
        top, bottom = _jitter(rng, SKY_TOP, 0.05), _jitter(rng, SKY_BOTTOM, 0.03)
        img[pb] = top * (1 - t) + bottom * t
        cv.fill(panel, img, "sky", bold=True)
        for _ in range(int(rng.integers(0, 3))):  # clouds: white, flat
            cy, cx = rng.uniform(y0, y0 + 0.5 * (y1 - y0)), rng.uniform(x0, x1)
            cv.fill(_ellipse(yy, xx, cy, cx, 6 * scale, 16 * scale, clip=pb), WHITE, "sky")
    elif kind == "wall":
        cv.fill(panel, _pick(rng, WALL), "wall", bold=True)
        floor = panel.m & (py > y0 + rng.uniform(0.6, 0.85) * (y1 - y0))
        cv.fill(_Shape(pb, floor), _pick(rng, WALL, 0.08) * 0.8, "wall")
    elif kind == "pattern":
        cols = CLOTH[rng.choice(len(CLOTH), 3, replace=False)]
        period = rng.uniform(5, 9) * scale
        phase = _stripes(py, px, period, rng.uniform(0, 180))
        phase2 = _stripes(py, px, period * 1.7, rng.uniform(0, 180))
        img[pb] = cols[(phase < 0.5).astype(int) + (phase2 < 0.35).astype(int)]
        cv.fill(panel, img, "pattern_bg", bold=True)
        cv.ink[pb] |= np.abs(phase - 0.5) < 0.06
    else:
        cy, cx = rng.uniform(y0, y1), rng.uniform(x0, x1)
        ang = np.arctan2(py - cy, px - cx)
        streak = np.sin(ang * rng.integers(24, 48) + 3 * np.sin(ang * 7)) > 0.55
        cols = CLOTH[rng.choice(len(CLOTH), 3, replace=False)]
        which = ((ang + np.pi) / (2 * np.pi) * 15).astype(int) % 3
        img[pb] = np.where(streak[..., None], cols[which], _pick(rng, WALL))
        cv.fill(panel, img, "speed_lines", bold=True)
        far = np.hypot(py - cy, px - cx) > 0.25 * min(y1 - y0, x1 - x0)
        cv.ink[pb] |= streak & far & (rng.random(streak.shape) < 0.5)


def _character(cv: _Canvas, rng, yy, xx, box, scale) -> None:
    y0, x0, y1, x1 = box
    pb = _box(y0, x0, y1, x1, cv.h, cv.w)
    ph, pw = y1 - y0, x1 - x0
    r = rng.uniform(0.14, 0.24) * min(ph, pw * 1.2)
    cx, cy = rng.uniform(x0 + r, x1 - r), rng.uniform(y0 + 1.2 * r, y1 - 0.6 * r)
    # Body (clothes): plain or patterned.
    body = _ellipse(yy, xx, cy + 2.3 * r, cx, 1.5 * r, 1.15 * r, clip=pb) & (yy > cy + 0.7 * r)
    if rng.random() < 0.5:
        cv.fill(body, _pick(rng, CLOTH), "cloth_plain", bold=True)
    else:
        c1, c2 = CLOTH[rng.choice(len(CLOTH), 2, replace=False)]
        by, bx = yy[body.sl], xx[body.sl]
        if rng.random() < 0.5:
            on = _stripes(by, bx, rng.uniform(4, 7) * scale, rng.choice([0.0, 90.0, 45.0])) < 0.5
        else:
            p = rng.uniform(5, 8) * scale
            on = np.hypot((by % p) - p / 2, (bx % p) - p / 2) < 0.3 * p
        img = np.empty((cv.h, cv.w, 3), dtype=np.float32)
        img[body.sl] = np.where(on[..., None], c1, c2)
        cv.fill(body, img, "cloth_pattern", bold=True)
    # Head (skin).
    cv.fill(_ellipse(yy, xx, cy, cx, 1.05 * r, 0.9 * r, clip=pb), _pick(rng, SKIN, 0.02), "skin", bold=True)
    # Hair: a cap over the top of the head with wavy strands in two shades of its colour.
    hair = _ellipse(yy, xx, cy - 0.25 * r, cx, 1.05 * r, 1.05 * r, clip=pb)
    hy, hx = yy[hair.sl], xx[hair.sl]
    face = ((hy - cy - 0.25 * r) / (0.8 * r)) ** 2 + ((hx - cx) / (0.78 * r)) ** 2 <= 1.0
    hair = _Shape(hair.sl, hair.m & ~face & (hy < cy + 0.3 * r))
    base = _pick(rng, HAIR)
    shade = base * 0.6  # strands in two shades of one colour: the darker one gets the denser tone
    phase = _stripes(hy, hx, rng.uniform(3, 5) * scale, rng.uniform(60, 120), warp=0.8, warp_freq=0.15 / scale)
    img = np.empty((cv.h, cv.w, 3), dtype=np.float32)
    img[hair.sl] = np.where((phase < 0.45)[..., None], base, shade)
    cv.fill(hair, img, "hair", bold=True)
    cv.ink[hair.sl] |= hair.m & (np.abs(phase - 0.45) < 0.08)
    # Eyes: sclera, coloured iris, dark pupil, white highlight.
    iris_col = _pick(rng, IRIS)
    for side in (-1, 1):
        ey, ex = cy + 0.15 * r, cx + side * 0.38 * r
        eye = _ellipse(yy, xx, ey, ex, 0.2 * r, 0.16 * r, clip=pb)
        eye_full = eye.full(cv.h, cv.w)
        cv.fill(eye, WHITE, "eyes")
        cv.fill(_ellipse(yy, xx, ey + 0.03 * r, ex, 0.16 * r, 0.11 * r) & eye_full, iris_col, "eyes", outline=False)
        pupil = _ellipse(yy, xx, ey + 0.05 * r, ex, 0.07 * r, 0.05 * r) & eye_full
        cv.fill(pupil, np.array([0.08, 0.06, 0.08], np.float32), "eyes", outline=False)
        glint = _ellipse(yy, xx, ey - 0.04 * r, ex - 0.04 * r, 0.04 * r, 0.04 * r) & eye_full
        cv.fill(glint, WHITE, "eyes", outline=False)


def _balloon(cv: _Canvas, rng, yy, xx, box, scale) -> None:
    y0, x0, y1, x1 = box
    ry, rx = rng.uniform(0.12, 0.2) * (y1 - y0), rng.uniform(0.15, 0.3) * (x1 - x0)
    cy, cx = rng.uniform(y0 + ry, y1 - ry), rng.uniform(x0 + rx, x1 - rx)
    cv.fill(_ellipse(yy, xx, cy, cx, ry, rx), WHITE, "balloon", bold=True)
    # "Text": short black bars, ink that carries no colour (detail in B&W, flat in colour).
    inner = _ellipse(yy, xx, cy, cx, 0.55 * ry, 0.6 * rx)
    ty, tx = yy[inner.sl], xx[inner.sl]
    text = inner.m & ((ty - cy) % (5 * scale) < 1.2 * scale) & (_stripes(ty, tx, 6 * scale, 0) < 0.7)
    cv.color[inner.sl][text] = 0.05
    cv.ink[inner.sl] |= text


def _outlines(inst: np.ndarray, thick: np.ndarray) -> np.ndarray:
    """Ink where the instance id changes; bold regions get 2-pixel lines."""
    edge = np.zeros(inst.shape, dtype=bool)
    dy = inst[1:, :] != inst[:-1, :]
    dx = inst[:, 1:] != inst[:, :-1]
    edge[1:, :] |= dy
    edge[:, 1:] |= dx
    bold = edge & thick
    grown = bold.copy()
    grown[:-1, :] |= bold[1:, :]
    grown[:, :-1] |= bold[:, 1:]
    return edge | grown


def render_bw(color: np.ndarray, labels: np.ndarray, ink: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Manga rendering of a colour page: screentone or hatching whose ink share follows darkness, ink lines
    black, light areas white. Returns (H,W) float32 in [0,1], nearly all pixels black or white."""
    h, w = labels.shape
    lum = color @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dark = np.clip((1.0 - lum - 0.1) / 0.75, 0.0, 1.0)  # light colours → white paper, dark → solid black
    dark = np.round(dark * 8) / 8  # screentone sheets come in a few densities
    period = max(3.0, 3.5 * scale)
    dots = _screen(h, w, period, 45.0, "dots")
    hatch = _screen(h, w, period, 30.0, "lines")
    thresh = np.where(_HATCHED[labels], hatch, dots)
    bw = (dark <= thresh).astype(np.float32)
    bw[ink] = 0.0
    return bw


class SynthManga:
    """Deterministic generator: ``SynthManga(seed)(index, size)`` → :class:`SynthPage`."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def __call__(self, index: int, size: int | tuple[int, int] = 256, scale: float | None = None) -> SynthPage:
        """Page ``index`` of ``size`` (H, W). ``scale`` is the size of the drawing (strokes, screentone and
        pattern periods) relative to a 256-px page: by default min(H, W)/256, a 256-px page drawn larger; a
        fixed scale fills a larger page at the same detail size, which is what a model trained at that scale
        expects to see."""
        h, w = (size, size) if isinstance(size, int) else size
        rng = np.random.default_rng([self.seed, int(index)])
        scale = min(h, w) / 256.0 if scale is None else float(scale)
        yy, xx = _grid(h, w)
        cv = _Canvas(h, w)
        for box in _split_panels(rng, h, w, gutter=max(3, int(6 * scale))):
            _background(cv, rng, yy, xx, box, scale)
            for _ in range(int(rng.integers(0, 3))):
                _character(cv, rng, yy, xx, box, scale)
            if rng.random() < 0.5:
                _balloon(cv, rng, yy, xx, box, scale)
        ink = cv.ink | _outlines(cv.inst, cv.thick)
        cv.color[ink] *= 0.3  # line art is dark in the colour page too
        bw = render_bw(cv.color, cv.labels, ink, scale)
        return SynthPage(bw=bw, color=np.clip(cv.color, 0, 1), labels=cv.labels)
