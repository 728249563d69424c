"""SynthManga figures: characters built from parts (head, hair, face, neck, torso, arms, hands, legs) in a
random pose, facing and framing (close-up, bust, full body), dressed (sleeves, trousers or skirt, patterns,
folds, seams) and shaded in colour with the panel's shadow hue.

A :class:`Look` is a character's identity (silhouette, hair style, palette): drawing the same look in other
poses and framings is what recurring characters are made of.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from dualflow.data.draw import Canvas, Shape, capsule, ellipse, polygon, polyline
from dualflow.data.palette import CLASS_ID, CLOTH, HAIR, IRIS, SKIN, STYLE, jitter

HAIR_STYLES = ("short", "long", "spiky", "bun", "twintails")
HEADS = ("round", "oval", "pointed")
PATTERNS = ("plain", "stripes", "dots", "check")


@dataclass(frozen=True)
class Look:
    """What stays the same of a character from panel to panel."""

    skin: tuple[float, float, float]
    hair: tuple[float, float, float]
    iris: tuple[float, float, float]
    top: tuple[float, float, float]
    top2: tuple[float, float, float]
    bottom: tuple[float, float, float]
    hair_style: str
    head: str
    pattern: str
    long_sleeves: bool
    skirt: bool
    hatched_hair: bool


def random_look(rng: np.random.Generator) -> Look:
    """A character: class conventions (skin tones, hair and clothing palettes) with per-instance variation."""
    c = rng.choice(len(CLOTH), 3, replace=False)
    return Look(skin=tuple(jitter(rng, SKIN[rng.integers(len(SKIN))], 0.03)),
                hair=tuple(jitter(rng, HAIR[rng.integers(len(HAIR))], 0.05)),
                iris=tuple(jitter(rng, IRIS[rng.integers(len(IRIS))], 0.05)),
                top=tuple(jitter(rng, CLOTH[c[0]], 0.05)), top2=tuple(jitter(rng, CLOTH[c[1]], 0.05)),
                bottom=tuple(jitter(rng, CLOTH[c[2]], 0.05)),
                hair_style=str(rng.choice(HAIR_STYLES)), head=str(rng.choice(HEADS)),
                pattern=str(rng.choice(PATTERNS, p=[0.5, 0.2, 0.15, 0.15])),
                long_sleeves=bool(rng.random() < 0.5), skirt=bool(rng.random() < 0.35),
                hatched_hair=bool(rng.random() < 0.4))


def _eye(ey: float, ex: float, r: float, iris: np.ndarray):
    """Colour function of an eye: white sclera, coloured iris, dark pupil, white glint (one fill)."""
    def paint(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        out = np.ones(yy.shape + (3,), np.float32)
        out[((yy - ey - 0.03 * r) / (0.18 * r)) ** 2 + ((xx - ex) / (0.12 * r)) ** 2 <= 1] = iris
        out[((yy - ey - 0.05 * r) / (0.08 * r)) ** 2 + ((xx - ex) / (0.06 * r)) ** 2 <= 1] = (0.08, 0.06, 0.08)
        out[(yy - ey + 0.05 * r) ** 2 + (xx - ex + 0.05 * r) ** 2 <= (0.045 * r) ** 2] = 1.0
        return out
    return paint


def _pattern(kind: str, a: np.ndarray, b: np.ndarray, period: float, angle: float):
    """Colour function (yy, xx) → image of a clothing pattern in colours ``a`` (ground) and ``b``."""
    def paint(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        if kind == "stripes":
            t = np.cos(np.deg2rad(angle)) * xx + np.sin(np.deg2rad(angle)) * yy
            on = (t / period) % 1.0 < 0.4
        elif kind == "dots":
            on = np.hypot(yy % period - period / 2, xx % period - period / 2) < 0.28 * period
        else:  # check
            on = ((yy // period) + (xx // period)) % 2 == 0
        return np.where(on[..., None], b, a).astype(np.float32)
    return paint


class Figure:
    """One character drawn on a canvas: ``R`` is the head radius in pixels, everything is in units of it."""

    def __init__(self, cv: Canvas, rng: np.random.Generator, look: Look, cy: float, cx: float, r: float,
                 facing: int, light: tuple[int, int], tint: np.ndarray, scale: float):
        self.cv, self.rng, self.look = cv, rng, look
        self.cy, self.cx, self.r, self.f = cy, cx, r, facing
        self.light, self.tint, self.scale = light, tint, scale
        self.thin = max(1.0, 0.06 * r)  # inner line width
        self.detail = r >= 9  # small figures skip what would be a pixel or two (folds, strands, lashes, seams)

    # ---- helpers -------------------------------------------------------------------------------------
    def _part(self, shape: Shape, color, cls: str, shade: bool = True, style: int | None = None) -> Shape:
        self.cv.fill(shape, color, CLASS_ID[cls], style=style, bold=True)
        if shade and self.r >= 6:  # a shadow crescent under 2 px reads as noise
            dy, dx = self.light
            s = max(1, int(0.22 * self.r))
            self.cv.shade(shape.shadow(dy * s, dx * s), self.tint,
                          style=STYLE["hatch"] if style == STYLE["hatch"] else None)
        return shape

    def _folds(self, shape: Shape, n: int) -> None:
        """A few short curved ink strokes inside ``shape``: cloth folds."""
        if not self.detail or shape.empty:
            return
        ys, xs = np.nonzero(shape.m)
        for i in self.rng.integers(0, len(ys), n):
            y, x = ys[i] + shape.sl[0].start, xs[i] + shape.sl[1].start
            length, a = self.r * self.rng.uniform(0.3, 0.7), self.rng.uniform(0, np.pi)
            mid = (y + 0.5 * length * np.sin(a) + self.rng.normal(0, 0.1 * length), x + 0.5 * length * np.cos(a))
            self.cv.stroke(polyline(self.cv.g, [(y, x), mid, (y + length * np.sin(a), x + length * np.cos(a))],
                                    self.thin) & shape)

    # ---- body ----------------------------------------------------------------------------------------
    def limb(self, start, angles, lengths, radii) -> tuple[Shape, Shape, tuple[float, float]]:
        """Two segments (upper, lower) from ``start`` at absolute ``angles`` (degrees, 0 = straight down):
        (upper, lower, far end)."""
        g, r = self.cv.g, self.r
        a1, a2 = np.deg2rad(angles[0]), np.deg2rad(angles[1])
        mid = (start[0] + lengths[0] * r * np.cos(a1), start[1] + lengths[0] * r * np.sin(a1))
        end = (mid[0] + lengths[1] * r * np.cos(a2), mid[1] + lengths[1] * r * np.sin(a2))
        return capsule(g, start, mid, radii[0] * r, radii[1] * r), capsule(g, mid, end, radii[1] * r, radii[2] * r), end

    def body(self) -> None:
        cv, g, r, cy, cx, f, look = self.cv, self.cv.g, self.r, self.cy, self.cx, self.f, self.look
        rng = self.rng
        skin, top, bottom = (np.asarray(c, np.float32) for c in (look.skin, look.top, look.bottom))
        ys, yh = cy + 1.7 * r, cy + 4.6 * r
        lean = rng.uniform(-0.3, 0.3) * r
        # Legs and shoes (behind the torso), trousers or a skirt.
        stance = rng.uniform(5, 25)
        leg, cls = (skin, "skin") if look.skirt else (bottom, "cloth_plain")
        legs = shoes = None
        for side in (-1, 1):
            hip = (yh, cx + lean + side * 0.45 * r)
            knee_a = side * stance + rng.uniform(-15, 15)
            thigh, shin, ankle = self.limb(hip, (knee_a, knee_a + rng.uniform(-20, 20)), (2.4, 2.3),
                                           (0.45, 0.36, 0.26))
            shape = thigh | shin
            shoe = ellipse(g, ankle[0] + 0.1 * r, ankle[1] + side * 0.15 * r, 0.2 * r, 0.42 * r)
            legs, shoes = (shape, shoe) if legs is None else (legs | shape, shoes | shoe)
        self._part(legs, leg, cls)
        cv.fill(shoes, np.array([0.15, 0.12, 0.12], np.float32), CLASS_ID["cloth_plain"], bold=True)
        if look.skirt:
            self._part(polygon(g, [(yh - 0.4 * r, cx + lean - 0.95 * r), (yh - 0.4 * r, cx + lean + 0.95 * r),
                                   (yh + 2.0 * r, cx + lean + 1.5 * r), (yh + 2.0 * r, cx + lean - 1.5 * r)]),
                       bottom, "cloth_plain")
        # Torso (the top), with its pattern, folds and a collar seam.
        torso = polygon(g, [(ys, cx - 1.25 * r), (ys, cx + 1.25 * r), (yh, cx + lean + 0.95 * r),
                            (yh, cx + lean - 0.95 * r)])
        top2 = np.asarray(look.top2, np.float32)
        if look.pattern == "plain":
            self._part(torso, top, "cloth_plain")
        else:
            self._part(torso, _pattern(look.pattern, top, top2, rng.uniform(0.35, 0.6) * r, rng.choice([0, 90, 45])),
                       "cloth_pattern")
        self._folds(torso, int(rng.integers(1, 4)))
        if self.detail:
            self.cv.stroke(polyline(g, [(ys, cx - 0.4 * r), (ys + 0.6 * r, cx + f * 0.1 * r), (ys, cx + 0.4 * r)],
                                    self.thin))
        # Neck.
        self._part(capsule(g, (cy + 0.6 * r, cx + f * 0.1 * r), (ys, cx), 0.3 * r), skin, "skin")
        self.torso_top = ys

    def arms(self) -> None:
        g, r, look, rng = self.cv.g, self.r, self.look, self.rng
        skin, top = np.asarray(look.skin, np.float32), np.asarray(look.top, np.float32)
        for side in (-1, 1):
            shoulder = (self.torso_top + 0.3 * r, self.cx + side * 1.1 * r)
            a1 = side * rng.uniform(-10, 110)
            a2 = a1 + side * rng.uniform(-20, 120)
            upper, lower, wrist = self.limb(shoulder, (a1, a2), (1.6, 1.5), (0.34, 0.28, 0.22))
            if look.long_sleeves:
                self._part(upper | lower, top, "cloth_plain")
            else:
                self._part(lower, skin, "skin")
                self._part(upper, top, "cloth_plain")
            self._part(ellipse(g, wrist[0], wrist[1], 0.3 * r, 0.24 * r, angle=a2), skin, "skin", shade=False)

    # ---- head ----------------------------------------------------------------------------------------
    def back_hair(self) -> None:
        look, g, r, cy, cx = self.look, self.cv.g, self.r, self.cy, self.cx
        hair = np.asarray(look.hair, np.float32)
        style = STYLE["hatch"] if look.hatched_hair else None
        if look.hair_style == "long":
            self._part(polygon(g, [(cy - 0.6 * r, cx - 1.15 * r), (cy - 0.6 * r, cx + 1.15 * r),
                                   (cy + 3.2 * r, cx + 1.45 * r), (cy + 3.0 * r, cx), (cy + 3.2 * r, cx - 1.45 * r)]),
                       hair, "hair", style=style)
        elif look.hair_style == "twintails":
            for side in (-1, 1):
                self._part(capsule(g, (cy - 0.5 * r, cx + side * 1.0 * r), (cy + 2.8 * r, cx + side * 1.7 * r),
                                   0.45 * r, 0.15 * r), hair, "hair", style=style)

    def head(self) -> None:
        look, g, r, cy, cx, f = self.look, self.cv.g, self.r, self.cy, self.cx, self.f
        skin = np.asarray(look.skin, np.float32)
        if look.head == "round":
            face = ellipse(g, cy, cx, r, 0.95 * r)
        elif look.head == "oval":
            face = ellipse(g, cy, cx, 1.1 * r, 0.85 * r)
        else:
            face = ellipse(g, cy, cx, r, 0.9 * r) | polygon(g, [(cy, cx - 0.88 * r), (cy, cx + 0.88 * r),
                                                                 (cy + 1.3 * r, cx + f * 0.2 * r)])
        self._part(face, skin, "skin")
        self.face_features()

    def face_features(self) -> None:
        cv, g, r, cy, cx, f, rng = self.cv, self.cv.g, self.r, self.cy, self.cx, self.f, self.rng
        iris = np.asarray(self.look.iris, np.float32)
        ex0 = cx + f * 0.25 * r
        for side in (-1, 1):
            if f and side == -f and rng.random() < 0.5:
                continue  # the far eye hidden in a near-profile
            ey, ex = cy + 0.15 * r, ex0 + side * 0.4 * r
            sclera = ellipse(g, ey, ex, 0.22 * r, 0.17 * r)
            cv.fill(sclera, _eye(ey, ex, r, iris) if r >= 6 else np.ones(3, np.float32), CLASS_ID["eyes"],
                    style=STYLE["flat"])
            if not self.detail:
                continue
            cv.stroke(capsule(g, (ey - 0.2 * r, ex - 0.2 * r), (ey - 0.22 * r, ex + 0.2 * r), 0.05 * r))  # lashes
            tilt = rng.uniform(-0.1, 0.1) * r
            cv.stroke(capsule(g, (ey - 0.38 * r + side * tilt, ex - 0.18 * r), (ey - 0.4 * r - side * tilt,
                                                                                ex + 0.18 * r), 0.035 * r))  # brows
        if self.detail:
            cv.stroke(capsule(g, (cy + 0.38 * r, ex0 + f * 0.08 * r), (cy + 0.46 * r, ex0 + f * 0.12 * r), 0.03 * r))
            if rng.random() < 0.3:
                cv.fill(ellipse(g, cy + 0.68 * r, ex0, 0.1 * r, 0.16 * r), np.array([0.55, 0.15, 0.18], np.float32),
                        CLASS_ID["skin"], bold=False)
            else:
                cv.stroke(capsule(g, (cy + 0.68 * r, ex0 - 0.14 * r), (cy + 0.7 * r, ex0 + 0.14 * r), 0.03 * r))

    def front_hair(self) -> None:
        look, g, r, cy, cx, f, rng = self.look, self.cv.g, self.r, self.cy, self.cx, self.f, self.rng
        hair = np.asarray(look.hair, np.float32)
        style = STYLE["hatch"] if look.hatched_hair else None
        cap = ellipse(g, cy - 0.25 * r, cx, 1.08 * r, 1.05 * r) - ellipse(g, cy + 0.35 * r, cx + f * 0.1 * r,
                                                                          0.85 * r, 0.9 * r)
        n = int(rng.integers(3, 6)) if self.detail else 2  # fringe locks pointing down over the forehead
        for i in range(n):
            x = cx - 0.8 * r + (i + 0.5) * 1.6 * r / n + f * 0.15 * r
            cap = cap | polygon(g, [(cy - 0.55 * r, x - 0.3 * r), (cy - 0.55 * r, x + 0.3 * r),
                                    (cy + rng.uniform(-0.05, 0.25) * r, x + f * 0.15 * r)])
        if look.hair_style == "spiky":
            for a in np.linspace(-70, 70, 5) + rng.uniform(-10, 10):
                t = np.deg2rad(a)
                base = (cy - 0.25 * r - 0.9 * r * np.cos(t), cx + 0.9 * r * np.sin(t))
                tip = (cy - 0.25 * r - 1.7 * r * np.cos(t), cx + 1.7 * r * np.sin(t))
                cap = cap | polygon(g, [(base[0], base[1] - 0.35 * r), (base[0], base[1] + 0.35 * r), tip])
        elif look.hair_style == "bun":
            cap = cap | ellipse(g, cy - 1.35 * r, cx, 0.45 * r, 0.5 * r)
        self._part(cap, hair, "hair", style=style)
        # A highlight band (lighter, white in the B&W page) and strands.
        ring = ellipse(g, cy - 0.3 * r, cx, 0.85 * r, 0.85 * r) - ellipse(g, cy - 0.3 * r, cx, 0.68 * r, 0.7 * r)
        band = ring & cap
        band = Shape(band.sl, band.m & (self.cv.g[0][band.sl] < cy - 0.45 * r))
        self.cv.fill(band, 0.45 * hair + 0.55, CLASS_ID["hair"], style=STYLE["flat"], outline=False)
        for _ in range(int(rng.integers(2, 5)) if self.detail else 0):
            x = cx + rng.uniform(-0.7, 0.7) * r
            pts = [(cy - 1.0 * r, x), (cy - 0.6 * r, x + rng.uniform(-0.2, 0.2) * r),
                   (cy - 0.2 * r, x + rng.uniform(-0.3, 0.3) * r)]
            self.cv.stroke(polyline(g, pts, self.thin) & cap)

    def draw(self) -> None:
        """Back to front: long hair behind, legs, torso, neck, head and face, fringe, arms (a close-up's body
        is mostly outside the panel)."""
        self.back_hair()
        self.body()
        self.head()
        self.front_hair()
        self.arms()


FRAMINGS = ("close", "bust", "full")


def draw_figures(cv: Canvas, rng: np.random.Generator, box: tuple[int, int, int, int], looks: list[Look],
                 light: tuple[int, int], tint: np.ndarray, scale: float,
                 ids: list[int] | None = None) -> list[tuple[float, float, float]]:
    """Draw ``looks`` in one panel, one framing for the panel (several figures overlap, back to front), each
    owning its pixels as ``ids[k]`` in ``cv.owner``. Returns each figure's head (y, x, radius), for speech-balloon
    tails."""
    y0, x0, y1, x1 = box
    ph, pw = y1 - y0, x1 - x0
    framing = str(rng.choice(FRAMINGS, p=[0.25, 0.45, 0.3] if len(looks) == 1 else [0.05, 0.5, 0.45]))
    heads = []
    slots = np.sort(rng.uniform(0.15, 0.85, len(looks)))
    for k, look in enumerate(looks):
        if framing == "close":
            r = ph * rng.uniform(0.25, 0.38)
            cy = y0 + ph * rng.uniform(0.35, 0.55)
        elif framing == "bust":
            r = ph * rng.uniform(0.12, 0.18) * (1.0 - 0.15 * k)
            cy = y0 + ph * rng.uniform(0.28, 0.42)
        else:
            r = ph * rng.uniform(0.055, 0.075)
            cy = y1 - ph * rng.uniform(0.02, 0.12) - 9.6 * r
        r = min(r, 0.45 * pw)
        if r < 4 * max(1.0, scale):
            continue
        cx = x0 + pw * slots[k] + rng.uniform(-0.05, 0.05) * pw
        facing = int(rng.choice([-1, 0, 1])) if k == 0 else int(np.sign(x0 + pw / 2 - cx))
        cv.owner_id = ids[k] if ids else 0
        Figure(cv, rng, look, cy, cx, r, facing, light, tint, scale).draw()
        cv.owner_id = 0
        heads.append((cy, cx, r))
    return heads
