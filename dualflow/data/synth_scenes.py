"""SynthManga backgrounds: sky by time of day with clouds or stars, streets and rooms in one-point perspective,
trees and foliage, crowds as silhouettes, abstract patterns, speed and focus lines, plain paper."""

from __future__ import annotations

import numpy as np

from dualflow.data.draw import Canvas, Shape, capsule, ellipse, polygon, rect
from dualflow.data.palette import BUILDING, CLASS_ID, CLOTH, FOLIAGE, STYLE, TIMES, WALL, WHITE, jitter, pick

Box4 = tuple[float, float, float, float]


def _gradient(top: np.ndarray, bottom: np.ndarray, y0: float, y1: float):
    def paint(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        t = np.clip((yy - y0) / max(1.0, y1 - y0), 0, 1)[..., None]
        return (top * (1 - t) + bottom * t).astype(np.float32)
    return paint


def sky(cv: Canvas, rng, box: Box4, time: str, scale: float, bottom: float | None = None) -> None:
    """Gradient sky (a screentone gradient in B&W) with clouds by day, stars at night."""
    y0, x0, y1, x1 = box
    y1 = y1 if bottom is None else bottom
    top_c, bottom_c, _, _ = (np.asarray(c, np.float32) for c in TIMES[time])
    cv.fill(rect(cv.g, y0, x0, y1, x1), _gradient(jitter(rng, top_c, 0.04), jitter(rng, bottom_c, 0.03), y0, y1),
            CLASS_ID["sky"], style=STYLE["dots"], bold=True)
    if time == "night":
        for _ in range(int(rng.integers(3, 12))):
            cv.fill(ellipse(cv.g, rng.uniform(y0, y1), rng.uniform(x0, x1), scale, scale), WHITE, CLASS_ID["sky"],
                    style=STYLE["flat"], outline=False)
        return
    for _ in range(int(rng.integers(0, 4))):
        cy, cx, w = rng.uniform(y0, y0 + 0.6 * (y1 - y0)), rng.uniform(x0, x1), rng.uniform(12, 30) * scale
        cloud = ellipse(cv.g, cy, cx, 0.35 * w, w)
        for _ in range(3):
            cloud = cloud | ellipse(cv.g, cy - rng.uniform(0, 0.4) * w, cx + rng.uniform(-0.7, 0.7) * w,
                                    rng.uniform(0.25, 0.45) * w, rng.uniform(0.3, 0.5) * w)
        cv.fill(cloud, WHITE, CLASS_ID["sky"], style=STYLE["flat"])
        cv.shade(Shape(cloud.sl, cloud.m & (cv.g[0][cloud.sl] > cy + 0.1 * w)), np.float32([0.88, 0.9, 0.97]))


def _lerp(a, b, t):
    return (a[0] + (b[0] - a[0]) * t, a[1] + (b[1] - a[1]) * t)


def _facade(ta, tb, ba, bb, cols: int, rows: int, wall: np.ndarray, window_color: np.ndarray):
    """Colour function of a facade between vertical edges at x = ta[1] and tb[1], whose top
    and bottom run from ``ta`` to ``tb`` and ``ba`` to ``bb`` (towards the vanishing point): a grid of windows
    in the facade's own coordinates, so it follows the perspective."""
    def uv(yy: np.ndarray, xx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        u = np.clip((xx - ta[1]) / (tb[1] - ta[1] if tb[1] != ta[1] else 1e-3), 0, 1)
        top, bottom = ta[0] + (tb[0] - ta[0]) * u, ba[0] + (bb[0] - ba[0]) * u
        return u * cols, (yy - top) / np.maximum(bottom - top, 1e-3) * rows

    def paint(yy: np.ndarray, xx: np.ndarray) -> np.ndarray:
        u, v = uv(yy, xx)
        fu, fv = np.abs(u % 1.0 - 0.5), v % 1.0
        window = (fu < 0.25) & (fv > 0.2) & (fv < 0.65)
        frame = (fu < 0.31) & (fv > 0.14) & (fv < 0.71) & ~window
        return np.where(window[..., None], window_color, np.where(frame[..., None], 0.0, wall)).astype(np.float32)

    return paint


def street(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """One-point perspective street: sky, road, buildings on both sides with windows, edges towards the
    vanishing point."""
    y0, x0, y1, x1 = box
    ph, pw = y1 - y0, x1 - x0
    vp = (y0 + ph * rng.uniform(0.3, 0.55), x0 + pw * rng.uniform(0.3, 0.7))
    sky(cv, rng, box, time, scale, bottom=vp[0])
    road = jitter(rng, np.float32([0.62, 0.62, 0.64]), 0.05)
    cv.fill(polygon(cv.g, [vp, (y1 + 1, x1 + pw), (y1 + 1, x0 - pw)]), road, CLASS_ID["wall"], style=STYLE["dots"])
    cv.fill(rect(cv.g, vp[0], x0, y1, x1) - polygon(cv.g, [vp, (y1 + 1, x1 + pw), (y1 + 1, x0 - pw)]),
            jitter(rng, np.float32([0.75, 0.74, 0.72]), 0.04), CLASS_ID["wall"], style=STYLE["dots"])
    for side, edge in ((-1, x0), (1, x1)):
        top = (y0 - ph * rng.uniform(0.0, 0.3), edge)  # the near top corner of this side's facades
        bottom = (vp[0] + (y1 - vp[0]) * rng.uniform(0.75, 0.95), edge)
        cuts = np.sort(rng.uniform(0.05, 0.95, int(rng.integers(1, 4))))
        ts = np.concatenate([[0.0], cuts, [0.96]])  # 0 = near edge, 1 = the vanishing point
        shadow = (side == 1) == (rng.random() < 0.5)
        for a, b in zip(ts[:-1], ts[1:], strict=True):
            h_scale = rng.uniform(0.7, 1.0)
            ta, tb = _lerp(top, vp, a), _lerp(top, vp, b)
            ta = (ta[0] + (1 - h_scale) * (vp[0] - ta[0]) * 0.5, ta[1])
            tb = (tb[0] + (1 - h_scale) * (vp[0] - tb[0]) * 0.5, tb[1])
            ba, bb = _lerp(bottom, vp, a), _lerp(bottom, vp, b)
            color = pick(rng, BUILDING, 0.04) * (0.8 if shadow else 1.0)
            win = np.float32([1.0, 0.9, 0.5]) if time == "night" else jitter(rng, np.float32([0.55, 0.7, 0.85]), 0.05)
            facade = polygon(cv.g, [ta, tb, bb, ba])
            paint = _facade(ta, tb, ba, bb, int(rng.integers(1, 4)), int(rng.integers(2, 6)), color, win)
            cv.fill(facade, paint, CLASS_ID["building"], style=STYLE["hatch"] if shadow else STYLE["dots"], bold=True)
    for t in np.linspace(-1, 1, 3):  # kerbs and road markings, ink towards the vanishing point
        cv.stroke(capsule(cv.g, vp, (y1, vp[1] + t * pw * 0.8), 0.5 * max(1.0, scale)))


def room(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """One-point perspective interior: back wall with a window, side walls, floor boards, ceiling."""
    y0, x0, y1, x1 = box
    ph, pw = y1 - y0, x1 - x0
    vp = (y0 + ph * rng.uniform(0.35, 0.55), x0 + pw * rng.uniform(0.35, 0.65))
    k = rng.uniform(0.3, 0.5)
    back = (vp[0] - k * ph * 0.6, vp[1] - k * pw * 0.6, vp[0] + k * ph * 0.5, vp[1] + k * pw * 0.6)
    by0, bx0, by1, bx1 = back
    wall = pick(rng, WALL, 0.03)
    far = (y0 - ph, x0 - pw, y1 + ph, x1 + pw)
    corners = {"tl": (far[0], far[1]), "tr": (far[0], far[3]), "br": (far[2], far[3]), "bl": (far[2], far[1])}
    parts = [([corners["tl"], corners["tr"], (by0, bx1), (by0, bx0)], wall * 1.05, STYLE["flat"]),
             ([corners["bl"], corners["br"], (by1, bx1), (by1, bx0)], pick(rng, np.float32(
                 [[0.70, 0.52, 0.35], [0.60, 0.60, 0.62], [0.80, 0.70, 0.55]]), 0.04), STYLE["dots"]),
             ([corners["tl"], (by0, bx0), (by1, bx0), corners["bl"]], wall * 0.85, STYLE["dots"]),
             ([corners["tr"], (by0, bx1), (by1, bx1), corners["br"]], wall * 0.92, STYLE["dots"])]
    for pts, color, style in parts:
        cv.fill(polygon(cv.g, pts), np.clip(color, 0, 1), CLASS_ID["wall"], style=style)
    cv.fill(rect(cv.g, *back[:2], *back[2:]), wall, CLASS_ID["wall"], style=STYLE["dots"])
    for t in np.linspace(0.1, 0.9, int(rng.integers(3, 7))):  # floor boards
        cv.stroke(capsule(cv.g, (by1, bx0 + t * (bx1 - bx0)), (y1 + ph, vp[1] + (bx0 + t * (bx1 - bx0) - vp[1]) * 6),
                          0.4 * max(1.0, scale)))
    if rng.random() < 0.7:  # a window on the back wall, with sky behind a cross frame
        wy0, wx0 = by0 + 0.15 * (by1 - by0), bx0 + rng.uniform(0.1, 0.5) * (bx1 - bx0)
        wy1, wx1 = wy0 + 0.45 * (by1 - by0), wx0 + 0.35 * (bx1 - bx0)
        sky(cv, rng, (wy0, wx0, wy1, wx1), "day" if time == "indoor" else time, scale)
        cv.stroke(rect(cv.g, (wy0 + wy1) / 2 - 0.5 * scale, wx0, (wy0 + wy1) / 2 + 0.5 * scale, wx1))
        cv.stroke(rect(cv.g, wy0, (wx0 + wx1) / 2 - 0.5 * scale, wy1, (wx0 + wx1) / 2 + 0.5 * scale))


def park(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """Sky, grass and trees: trunks and canopies of leaf clumps shaded on one side."""
    y0, x0, y1, x1 = box
    ph = y1 - y0
    horizon = y0 + ph * rng.uniform(0.45, 0.7)
    sky(cv, rng, box, time, scale, bottom=horizon)
    cv.fill(rect(cv.g, horizon, x0, y1, x1), pick(rng, FOLIAGE, 0.04) * 1.1, CLASS_ID["wall"], style=STYLE["dots"])
    for _ in range(int(rng.integers(1, 4))):
        tx, size = rng.uniform(x0, x1), ph * rng.uniform(0.15, 0.3)
        base = horizon + rng.uniform(0, 0.2) * ph
        cv.fill(capsule(cv.g, (base, tx), (base - 1.3 * size, tx), 0.12 * size, 0.08 * size),
                jitter(rng, np.float32([0.45, 0.30, 0.18]), 0.04), CLASS_ID["foliage"], style=STYLE["hatch"], bold=True)
        leaf = pick(rng, FOLIAGE, 0.04)
        crown = ellipse(cv.g, base - 1.5 * size, tx, 0.5 * size, 0.6 * size)
        for _ in range(int(rng.integers(4, 8))):
            crown = crown | ellipse(cv.g, base - 1.5 * size + rng.uniform(-0.5, 0.4) * size,
                                    tx + rng.uniform(-0.7, 0.7) * size, rng.uniform(0.2, 0.4) * size,
                                    rng.uniform(0.25, 0.45) * size)
        cv.fill(crown, leaf, CLASS_ID["foliage"], bold=True)
        cv.shade(crown.shadow(int(0.15 * size), int(0.1 * size)), np.float32([0.6, 0.7, 0.75]),
                 style=STYLE["coarse"])
        leaves = crown.m & (rng.random(crown.m.shape) < 0.04)  # leaf strokes: short ticks below sparse points
        for k in range(1, 1 + max(1, int(round(2 * scale)))):
            leaves[k:] |= leaves[:-k] & crown.m[k:]
        cv.stroke(Shape(crown.sl, leaves))


def crowd(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """Rows of silhouettes (heads and shoulders), smaller and paler towards the back."""
    y0, x0, y1, x1 = box
    ph, pw = y1 - y0, x1 - x0
    cv.fill(rect(cv.g, y0, x0, y1, x1), pick(rng, WALL), CLASS_ID["wall"], style=STYLE["flat"], bold=True)
    rows = int(rng.integers(2, 5))
    for row in range(rows):
        depth = (row + 1) / rows  # 1 = front
        r = ph * (0.05 + 0.07 * depth)
        base, step, offset = y0 + ph * (0.35 + 0.55 * depth), 2.2 * r, x0 - r + rng.uniform(0, r)
        fade = 0.55 + 0.45 * depth
        colors = np.clip(CLOTH[rng.integers(len(CLOTH), size=int(pw / step) + 3)] * fade + (1 - fade) * 0.85, 0, 1)
        band = rect(cv.g, base - 2.5 * r, x0, base + 1.4 * r, x1).within(cv.clip)
        yy, xx = cv.g[0][band.sl], cv.g[1][band.sl]
        k = np.clip(np.round((xx - offset) / step), 0, len(colors) - 1).astype(int)  # the nearest person
        dx = xx - (offset + k * step)
        people = (((yy - base) / (1.4 * r)) ** 2 + (dx / (1.1 * r)) ** 2 <= 1) | \
            (((yy - base + 1.7 * r) / (0.75 * r)) ** 2 + (dx / (0.65 * r)) ** 2 <= 1)
        cv.fill(Shape(band.sl, people), lambda _y, _x, k=k, colors=colors: colors[k].astype(np.float32),
                CLASS_ID["crowd"], style=STYLE["coarse"] if depth < 1 else None)
        cv.stroke(Shape(band.sl, people & (np.abs(np.abs(dx) - 1.1 * r) < 0.6) & (yy > base - 0.5 * r)))


def pattern(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """Abstract two-colour pattern backdrop (flowers, stripes), as in emotional panels."""
    y0, x0, y1, x1 = box
    cols = CLOTH[rng.choice(len(CLOTH), 3, replace=False)]
    period, a1, a2 = rng.uniform(6, 12) * scale, rng.uniform(0, 180), rng.uniform(0, 180)

    def paint(yy, xx):
        u = (xx * np.cos(np.deg2rad(a1)) + yy * np.sin(np.deg2rad(a1))) / period
        v = (xx * np.cos(np.deg2rad(a2)) + yy * np.sin(np.deg2rad(a2))) / (1.7 * period)
        return cols[((u % 1) < 0.5).astype(int) + ((v % 1) < 0.35).astype(int)]

    cv.fill(rect(cv.g, y0, x0, y1, x1), paint, CLASS_ID["pattern_bg"], style=STYLE["coarse"], bold=True)


def lines(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """Focus lines towards a centre, or parallel speed lines, on a light ground."""
    y0, x0, y1, x1 = box
    cy, cx = rng.uniform(y0, y1), rng.uniform(x0, x1)
    cols = CLOTH[rng.choice(len(CLOTH), 2, replace=False)]
    focus = rng.random() < 0.6
    ground = pick(rng, WALL)

    def paint(yy, xx):
        if focus:
            ang = np.arctan2(yy - cy, xx - cx)
            streak = np.sin(ang * 40 + 3 * np.sin(ang * 7)) > 0.6
        else:
            streak = np.sin(yy / (2.5 * scale) + 2 * np.sin(yy / (7 * scale))) > 0.8
        return np.where(streak[..., None], cols[(np.abs(xx.astype(int)) // 40) % 2], ground).astype(np.float32)

    panel = rect(cv.g, y0, x0, y1, x1)
    cv.fill(panel, paint, CLASS_ID["speed_lines"], style=STYLE["flat"], bold=True)
    yy, xx = cv.g[0][panel.sl], cv.g[1][panel.sl]
    if focus:
        ang = np.arctan2(yy - cy, xx - cx)
        far = np.hypot(yy - cy, xx - cx) > 0.3 * min(y1 - y0, x1 - x0)
        ink = (np.sin(ang * 40 + 3 * np.sin(ang * 7)) > 0.6) & far
    else:
        ink = np.sin(yy / (2.5 * scale) + 2 * np.sin(yy / (7 * scale))) > 0.8
        ink &= ((xx - x0) / max(1, x1 - x0)) > rng.uniform(0.2, 0.5)
    cv.stroke(Shape(panel.sl, ink & (rng.random(ink.shape) < 0.7)))


def plain(cv: Canvas, rng, box: Box4, time: str, scale: float) -> None:
    """White paper: no background at all (no border either: the panel dissolves into the page)."""
    y0, x0, y1, x1 = box
    cv.fill(rect(cv.g, y0, x0, y1, x1), np.float32([0.98, 0.97, 0.95]), CLASS_ID["wall"], style=STYLE["flat"],
            outline=False)


SCENES = {"sky": sky, "street": street, "room": room, "park": park, "crowd": crowd, "pattern": pattern,
          "lines": lines, "plain": plain}
SCENE_P = {"sky": 0.12, "street": 0.18, "room": 0.2, "park": 0.12, "crowd": 0.08, "pattern": 0.1, "lines": 0.1,
           "plain": 0.1}
OUTDOOR = {"sky", "street", "park"}
