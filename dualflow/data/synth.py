"""SynthManga: procedural colour manga pages, their B&W manga rendering and region labels.

Each page is a pure function of ``(seed, index)``. Panels (slanted borders, bleeds, insets) each get a scene
(sky by time of day, a street or a room in perspective, a park with trees, a crowd, a pattern, focus or speed
lines, or plain paper), characters built from parts in varied poses and framings (:mod:`synth_figures`), speech
and thought balloons with lettering and sound effects (:mod:`synth_layout`). The B&W page is the manga
rendering of the colour page: ink lines (bold outlines, thin inner lines), screentones of several pitches and
angles whose density follows lightness, hatching and cross-hatching, solid blacks and white highlights.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np

from dualflow.data.draw import Canvas, grid, polygon, put
from dualflow.data.palette import CLASS_ID, CLASSES, DETAILED_CLASSES, DETAILED_IDS, STYLE, TIMES
from dualflow.data.synth_figures import Look, draw_figures, random_look
from dualflow.data.synth_layout import balloon, panels, sound_effect
from dualflow.data.synth_scenes import OUTDOOR, SCENE_P, SCENES

__all__ = ["CLASSES", "CLASS_ID", "DETAILED_CLASSES", "DETAILED_IDS", "PEN_DPI", "PRINT_DPI", "STYLE", "Look",
           "PrintScale", "Screens", "SynthManga", "SynthPage", "TONE_LEVELS", "render_bw", "screen_tone", "tone_level"]

PRINT_DPI = 300.0  # the scan resolution print-scale pages are drawn at (dpi)
PEN_DPI = 227.0  # a pen unit is dpi/227 px: the fine dot screen's 3.5 units are a 65-lpi ruling


@dataclass(frozen=True)
class PrintScale:
    """Drawing sizes of a page, relative to the generator's units (a 256-px thumbnail page is drawn at 1, 1).

    ``pen``: strokes, screentone pitch and patterns; ``letter``: lettering, balloons, sound effects and gutters.
    A thumbnail page scales both with its size; a print-scale page (:meth:`at_dpi`) keeps them physical."""

    pen: float
    letter: float

    @staticmethod
    def at_dpi(dpi: float = PRINT_DPI) -> PrintScale:
        """Sizes of a page scanned at ``dpi``. Pen: the fine dot screen is 3–4 units, 65 lpi at 3.5 → a unit is
        dpi/227 px (fine tones 57–75 lpi, coarse 38–45 lpi, outlines 1.5 units = 0.17 mm). Letter: a lettering
        cell is 5 units and tankōbon dialogue is set at about 7.5 pt (2.6 mm) → dpi/49 px (gutters 6 units =
        3.1 mm, balloons up to 40 units = 21 mm tall)."""
        return PrintScale(pen=dpi / PEN_DPI, letter=dpi / 49.0)


@dataclass
class SynthPage:
    """One generated page: ``bw`` (H,W) float32 in [0,1], ``color`` (H,W,3) float32, ``labels`` (H,W) uint8 and
    ``identity`` (H,W) uint8, the cast member each pixel belongs to (1-based; 0: nobody, ink lines included):
    with the labels it names each character's hair, skin and clothes, for evaluation only."""

    bw: np.ndarray
    color: np.ndarray
    labels: np.ndarray
    identity: np.ndarray

    @property
    def detailed(self) -> np.ndarray:
        """(H,W) bool: pixels of a detailed class."""
        return np.isin(self.labels, DETAILED_IDS)


@lru_cache(maxsize=48)
def _screen(h: int, w: int, period: float, angle_deg: float, kind: str) -> np.ndarray:
    """Threshold map in [0,1]: a pixel is inked where darkness > threshold (dot screen or line hatching)."""
    yy, xx = grid(h, w)
    a = np.deg2rad(angle_deg)
    u = (xx * np.cos(a) + yy * np.sin(a)) / period
    v = (-xx * np.sin(a) + yy * np.cos(a)) / period
    if kind == "dots":
        t = 0.5 - 0.25 * (np.cos(2 * np.pi * u) + np.cos(2 * np.pi * v))
    else:
        t = np.abs(2.0 * (u - np.floor(u)) - 1.0)
    t = t.astype(np.float32)
    t.setflags(write=False)
    return t


@dataclass(frozen=True)
class Screens:
    """A page's screentone sheets: fine and coarse dots (pitch in pixels, angle in degrees) and hatching."""

    fine: tuple[float, float] = (3.5, 45.0)
    coarse: tuple[float, float] = (5.5, 45.0)
    hatch: tuple[float, float] = (3.0, 45.0)

    @staticmethod
    def draw(rng: np.random.Generator, scale: float) -> Screens:
        s = max(1.0, scale)
        return Screens(fine=(float(rng.choice([3.0, 3.5, 4.0])) * s, float(rng.choice([45.0, 30.0]))),
                       coarse=(float(rng.choice([5.0, 6.0])) * s, float(rng.choice([45.0, 15.0, 75.0]))),
                       hatch=(float(rng.choice([3.0, 4.0])) * s, float(rng.choice([45.0, 135.0]))))


TONE_LEVELS = 8  # darkness is rendered in steps of 1/8: paper, seven tone sheets, solid black


def tone_level(color: np.ndarray) -> np.ndarray:
    """(H,W,3) colour page → (H,W) int64 in 0..TONE_LEVELS: the tone sheet the B&W rendering gives each pixel
    (light colours → 0, white paper; dark ones → 8, solid black)."""
    lum = color @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dark = np.clip((1.0 - lum - 0.1) / 0.75, 0.0, 1.0)
    return np.round(dark * TONE_LEVELS).astype(np.int64)


def render_bw(color: np.ndarray, style: np.ndarray, ink: np.ndarray, screens: Screens | None = None) -> np.ndarray:
    """Manga rendering of a colour page: each pixel's darkness (:func:`tone_level`) becomes ink through its
    style's screen (:func:`screen_tone`); ink lines black. Returns (H,W) float32 in [0,1], all pixels black or
    white."""
    bw = screen_tone((tone_level(color) / TONE_LEVELS).astype(np.float32), style, screens or Screens())
    bw[ink] = 0.0
    return bw


def screen_tone(dark: np.ndarray, style: np.ndarray, screens: Screens) -> np.ndarray:
    """(H,W) darkness in [0,1] → (H,W) float32 B&W (1: paper), inked through each pixel's style: fine or coarse
    dots, hatching, cross-hatching, or flat (paper or solid black)."""
    h, w = style.shape
    hatch = _screen(h, w, screens.hatch[0], screens.hatch[1], "lines")
    cross = np.minimum(hatch, _screen(h, w, screens.hatch[0], screens.hatch[1] + 90.0, "lines"))
    thresholds = (_screen(h, w, *screens.fine, "dots"), _screen(h, w, *screens.coarse, "dots"), hatch, cross,
                  np.full((h, w), 0.55, np.float32))
    # Cross-hatching inks 1-(1-d)² of the area at darkness d: remap so that its ink share follows darkness too.
    dark = np.where(style == STYLE["cross"], 1.0 - np.sqrt(1.0 - dark), dark)
    threshold = np.take_along_axis(np.stack(thresholds), style[None].astype(np.intp), 0)[0]  # 2× np.choose's speed
    return (dark <= threshold).astype(np.float32)


class SynthManga:
    """Deterministic generator: ``SynthManga(seed)(index, size)`` → :class:`SynthPage`."""

    def __init__(self, seed: int = 0):
        self.seed = int(seed)

    def __call__(self, index: int, size: int | tuple[int, int] = 256, scale: float | PrintScale | None = None,
                 cast: list[Look] | None = None) -> SynthPage:
        """Page ``index`` of ``size`` (H, W). ``scale`` is the size of the drawing relative to a 256-px page:
        by default min(H, W)/256, a 256-px page drawn larger (a thumbnail page); a number fixes strokes, tones
        and lettering alike; a :class:`PrintScale` (``PrintScale.at_dpi()``) draws at a physical scale, so a
        larger page holds a larger physical page at the same detail size. ``cast``: the characters to draw from
        (recurring ones); new ones by default."""
        h, w = (size, size) if isinstance(size, int) else size
        rng = np.random.default_rng([self.seed, int(index)])
        if not isinstance(scale, PrintScale):
            scale = float(min(h, w) / 256.0 if scale is None else scale)
            scale = PrintScale(scale, scale)
        pen, letter = scale.pen, scale.letter
        cv = Canvas(h, w, CLASS_ID["gutter"], STYLE["flat"])
        screens = Screens.draw(rng, pen)
        cast = cast or [random_look(rng) for _ in range(3)]
        for panel in panels(rng, h, w, gutter=max(3.0, 6 * letter)):
            self._panel(cv, rng, panel, cast, scale)
        ink = cv.ink | cv.outlines(max(2, int(round(1.5 * pen))))
        cv.color[ink] *= 0.3  # line art is dark in the colour page too
        cv.owner[ink] = 0
        bw = render_bw(cv.color, cv.style, ink, screens)
        return SynthPage(bw=bw, color=np.clip(cv.color, 0, 1), labels=cv.labels, identity=cv.owner)

    def cast(self, chapter: int, size: int = 3) -> list[Look]:
        """The recurring characters of ``chapter``: the same looks on every page of it."""
        rng = np.random.default_rng([self.seed, 7_777_777, int(chapter)])
        return [random_look(rng) for _ in range(size)]

    def chapter_page(self, chapter: int, page: int, pages: int, size: int | tuple[int, int] = 256,
                     scale: float | PrintScale | None = None) -> SynthPage:
        """Page ``page`` of chapter ``chapter`` (chapters of ``pages`` pages): the chapter's cast in this page's
        own layout, scenes, poses and framings."""
        return self(chapter * pages + page, size, scale, cast=self.cast(chapter))

    @staticmethod
    def _panel(cv: Canvas, rng: np.random.Generator, panel, cast: list[Look], scale: PrintScale) -> None:
        """One panel: scene, characters, time-of-day light, balloons and sound effects, kept to its polygon."""
        pen, letter = scale.pen, scale.letter
        saved = cv.snapshot(panel.sl)
        cv.clip = panel.sl
        box = panel.box
        names = list(SCENE_P)
        scene = names[int(rng.choice(len(names), p=list(SCENE_P.values())))]
        time = str(rng.choice(["day", "sunset", "night"], p=[0.65, 0.2, 0.15])) if scene in OUTDOOR else "indoor"
        SCENES[scene](cv, rng, box, time, pen)
        _, _, light, tint = (np.asarray(c, np.float32) for c in TIMES[time])
        n = int(rng.choice([0, 1, 2, 3], p=[0.25, 0.5, 0.2, 0.05])) or int(scene == "plain")  # never empty paper
        chosen = [int(i) for i in rng.choice(len(cast), min(n, len(cast)), replace=False)]
        heads = draw_figures(cv, rng, box, [cast[i] for i in chosen], (-1, int(rng.choice([-1, 1]))), tint, pen,
                             ids=[i + 1 for i in chosen])
        region = polygon(cv.g, panel.corners).within(panel.sl).placed(panel.sl)
        if time in ("sunset", "night") or rng.random() < 0.3:
            lit = cv.color[panel.sl]
            put(lit, region, lit * light)
        for k in range(int(rng.choice([0, 1, 2], p=[0.35, 0.45, 0.2]))):
            balloon(cv, rng, box, heads[k] if k < len(heads) else None, letter, pen)
        if rng.random() < 0.2:
            sound_effect(cv, rng, box, letter)
        cv.restore_outside(saved, panel.sl, region)
        cv.clip = (slice(0, cv.h), slice(0, cv.w))
