"""Simulated colour hints, drawn from the colour page: what training feeds the nets (:func:`simulate`, a mix of
no hints, clicks, points and strokes) and the bench's ``clicks`` protocol (:func:`click_hints`, one click in each
of the n largest flat-colour regions), as :class:`hints.Hint` lists to :func:`hints.paint`."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualflow.hints import Hint


def flat_regions(color: np.ndarray, levels: int = 16) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Regions of flat colour of a colour page (H,W,3): connected pixels whose colour, quantised to ``levels``
    per channel, equals their four neighbours' (a region's border pixels are left out, so no region crosses a
    colour edge). Returns the label map (0: none), each region's area (index = label) and the distance of each
    pixel to the nearest pixel outside its region (to click well inside)."""
    from scipy import ndimage

    q = np.minimum((color * levels).astype(np.int32), levels - 1)
    code = (q[..., 0] * levels + q[..., 1]) * levels + q[..., 2]
    flat = np.ones(code.shape, bool)
    flat[1:] &= code[1:] == code[:-1]
    flat[:-1] &= code[:-1] == code[1:]
    flat[:, 1:] &= code[:, 1:] == code[:, :-1]
    flat[:, :-1] &= code[:, :-1] == code[:, 1:]
    labels, n = ndimage.label(flat)
    areas = np.bincount(labels.ravel(), minlength=n + 1)
    areas[0] = 0
    inside = ndimage.distance_transform_cdt(np.pad(flat, 1), metric="chessboard")[1:-1, 1:-1]  # border: an edge
    return labels, areas, inside


def _mean_colour(color: np.ndarray, y: float, x: float, radius: float) -> tuple[float, float, float]:
    """The colour page's mean over the hint's disc (Zhang et al. 2017: the patch's mean colour)."""
    r = int(np.ceil(radius))
    yi, xi = int(round(y)), int(round(x))
    patch = color[max(0, yi - r):yi + r + 1, max(0, xi - r):xi + r + 1]
    return tuple(float(v) for v in patch.reshape(-1, 3).mean(axis=0))


def click_hints(color: np.ndarray, n: int, radius: float = 3.0) -> list[Hint]:
    """The ``clicks`` protocol: one hint in each of the ``n`` largest flat-colour regions, at the pixel
    farthest inside it, with the colour there. Deterministic (no randomness: every row sees the same hints)."""
    from scipy import ndimage

    if n <= 0:
        return []
    labels, areas, inside = flat_regions(color)
    order = [int(k) for k in np.argsort(-areas, kind="stable")[:n] if areas[k] > 0]
    if not order:
        return []
    where = ndimage.maximum_position(inside, labels, order)
    return [Hint(float(y), float(x), tuple(float(v) for v in color[y, x]), radius) for y, x in where]


def random_hints(color: np.ndarray, n: int, rng: np.random.Generator, radius: float = 3.0) -> list[Hint]:
    """The ``random`` protocol: ``n`` uniform points with the colour page's mean colour over each disc."""
    h, w = color.shape[:2]
    ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
    return [Hint(float(y), float(x), _mean_colour(color, y, x, radius), radius) for y, x in zip(ys, xs, strict=True)]


@dataclass(frozen=True)
class HintMix:
    """How training draws hints from a colour page, mixing the protocols people use: no hints on a share of
    pages (the automatic case keeps training), else a geometric number of hints (Zhang et al. 2017, p = 1/8),
    each a click inside a flat-colour region, a uniform point, or a short stroke inside a region; discs of
    ``radius_min``–``radius_max`` px; colour noise (σ in Lab units) on a share of hints: an imprecise pick."""

    none: float = 0.125
    p: float = 0.125
    max_hints: int = 64
    clicks: float = 0.5
    strokes: float = 0.2
    radius_min: int = 1
    radius_max: int = 5
    noise_share: float = 0.3
    noise_sigma: float = 4.0


def simulate(color: np.ndarray, rng: np.random.Generator, mix: HintMix = HintMix()) -> list[Hint]:
    """Hints drawn from a colour page (H,W,3) by ``mix``; deterministic for a given ``rng`` state."""
    if rng.random() < mix.none:
        return []
    n = int(min(rng.geometric(mix.p), mix.max_hints))
    from scipy import ndimage

    labels, areas, inside = flat_regions(color)
    regions = np.flatnonzero(areas)
    weights = areas[regions] / areas[regions].sum() if len(regions) else None
    boxes, deepest = ndimage.find_objects(labels), inside.max()  # each region's bounding box: scan it, not the page
    h, w = color.shape[:2]
    hints: list[Hint] = []
    for _ in range(n):
        radius = float(rng.integers(mix.radius_min, mix.radius_max + 1))
        kind = rng.random()
        if len(regions) and kind < mix.clicks + mix.strokes:
            region = int(rng.choice(regions, p=weights))
            box = boxes[region - 1]
            own = labels[box] == region
            ys, xs = np.nonzero(own & (inside[box] >= min(radius, deepest)))
            if len(ys) == 0:
                ys, xs = np.nonzero(own)
            ys, xs = ys + box[0].start, xs + box[1].start
            k = int(rng.integers(len(ys)))
            points = [(float(ys[k]), float(xs[k]))]
            if kind >= mix.clicks:  # a stroke: points along a short segment, kept inside the region
                angle, length = rng.uniform(0, np.pi), rng.uniform(4 * radius, 16 * radius)
                for t in np.linspace(0, length, max(2, int(length / radius))):
                    y, x = ys[k] + t * np.sin(angle), xs[k] + t * np.cos(angle)
                    if 0 <= y < h and 0 <= x < w and labels[int(y), int(x)] == region:
                        points.append((float(y), float(x)))
        else:
            points = [(float(rng.integers(h)), float(rng.integers(w)))]
        colour = _mean_colour(color, *points[0], radius)
        if rng.random() < mix.noise_share:
            colour = _jitter(colour, rng, mix.noise_sigma)
        hints += [Hint(y, x, colour, radius) for y, x in points]
    return hints


def _jitter(rgb: tuple[float, ...], rng: np.random.Generator, sigma: float) -> tuple[float, float, float]:
    """``rgb`` moved by Gaussian noise of ``sigma`` Lab units (L*, a*, b*), clamped to RGB [0,1]."""
    from dualflow.color import lab_to_rgb, rgb_to_lab

    lab = rgb_to_lab(torch.tensor(rgb, dtype=torch.float32).view(1, 3, 1, 1))
    lab = lab + torch.from_numpy(rng.normal(0, sigma, 3).astype(np.float32)).view(1, 3, 1, 1)
    return tuple(float(v) for v in lab_to_rgb(lab).clamp(0, 1).view(3))
