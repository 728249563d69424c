"""SynthManga's region classes, colour conventions and B&W rendering styles.

Every class has colour conventions (skin tones, hair and clothing palettes, sky colours by time of day), jittered
per instance, so colour is partly inferable from the B&W page (a class, a tone density) and partly a choice.
Within each palette the colours differ in lightness, so each gets its own screentone density, as a reader infers a
uniform's colour from its tone. The label map says which zones are *detailed* and which *flat*; it is for
evaluating the attention stage, never a training target.
"""

from __future__ import annotations

import numpy as np

CLASSES = (
    "gutter", "sky", "wall", "pattern_bg", "skin", "hair", "eyes", "cloth_plain", "cloth_pattern", "balloon",
    "speed_lines", "building", "foliage", "crowd", "sfx",
)
CLASS_ID = {name: i for i, name in enumerate(CLASSES)}
DETAILED_CLASSES = ("pattern_bg", "hair", "eyes", "cloth_pattern", "speed_lines", "building", "foliage", "crowd",
                    "sfx")
DETAILED_IDS = np.array([CLASS_ID[c] for c in DETAILED_CLASSES])
# The parts of a character whose colour should not change from page to page (chapter consistency).
PARTS = {"hair": ("hair",), "skin": ("skin",), "clothes": ("cloth_plain", "cloth_pattern")}


def part_ids(labels: np.ndarray) -> np.ndarray:
    """Class labels (any shape) → the index of their :data:`PARTS` entry, -1 where the class is no part."""
    out = np.full(labels.shape, -1, dtype=np.int64)
    for i, classes in enumerate(PARTS.values()):
        out[np.isin(labels, [CLASS_ID[c] for c in classes])] = i
    return out

# How the B&W page renders a pixel's tone: fine or coarse dot screentone, line hatching, cross-hatching, or flat
# (white or solid black, no tone).
STYLE = {"dots": 0, "coarse": 1, "hatch": 2, "cross": 3, "flat": 4}

SKIN = np.array([[0.99, 0.87, 0.77], [0.98, 0.82, 0.70], [0.93, 0.74, 0.60], [0.85, 0.64, 0.48],
                 [0.72, 0.52, 0.38], [0.55, 0.38, 0.27]], dtype=np.float32)
HAIR = np.array([[0.12, 0.10, 0.12], [0.30, 0.18, 0.10], [0.52, 0.32, 0.16], [0.72, 0.22, 0.12],
                 [0.98, 0.86, 0.50], [0.25, 0.40, 0.85], [0.96, 0.58, 0.74], [0.85, 0.86, 0.92],
                 [0.30, 0.60, 0.40]], dtype=np.float32)
IRIS = np.array([[0.45, 0.28, 0.15], [0.25, 0.50, 0.95], [0.35, 0.75, 0.40], [0.55, 0.30, 0.75],
                 [0.85, 0.35, 0.20]], dtype=np.float32)
CLOTH = np.array([[0.10, 0.12, 0.42], [0.80, 0.10, 0.12], [0.10, 0.62, 0.30], [0.98, 0.50, 0.15],
                  [0.40, 0.85, 0.90], [0.98, 0.92, 0.40], [0.95, 0.95, 0.95], [0.15, 0.15, 0.18],
                  [0.55, 0.35, 0.70], [0.95, 0.60, 0.70], [0.45, 0.30, 0.20], [0.60, 0.65, 0.70]],
                 dtype=np.float32)
WALL = np.array([[0.93, 0.88, 0.76], [0.80, 0.86, 0.78], [0.86, 0.82, 0.90], [0.75, 0.72, 0.70],
                 [0.95, 0.93, 0.88]], dtype=np.float32)
BUILDING = np.array([[0.85, 0.80, 0.70], [0.70, 0.72, 0.76], [0.72, 0.40, 0.32], [0.90, 0.88, 0.82],
                     [0.55, 0.60, 0.68]], dtype=np.float32)
FOLIAGE = np.array([[0.25, 0.55, 0.25], [0.40, 0.65, 0.30], [0.20, 0.42, 0.28], [0.55, 0.70, 0.35]],
                   dtype=np.float32)
SFX = np.array([[0.95, 0.20, 0.15], [1.00, 0.85, 0.20], [1.00, 0.55, 0.10], [0.30, 0.55, 1.00]], dtype=np.float32)
WHITE = np.ones(3, dtype=np.float32)

# Time of day: sky gradient (top, bottom), the light that multiplies the whole panel, and the shadow hue.
TIMES = {
    "day": ((0.30, 0.55, 0.95), (0.72, 0.86, 1.00), (1.0, 1.0, 1.0), (0.74, 0.72, 0.86)),
    "sunset": ((0.45, 0.35, 0.70), (1.00, 0.62, 0.35), (1.0, 0.90, 0.80), (0.82, 0.62, 0.64)),
    "night": ((0.05, 0.07, 0.20), (0.20, 0.22, 0.42), (0.62, 0.66, 0.88), (0.58, 0.60, 0.80)),
    "indoor": ((0.30, 0.55, 0.95), (0.72, 0.86, 1.00), (1.0, 0.97, 0.92), (0.80, 0.72, 0.74)),
}


def jitter(rng: np.random.Generator, rgb: np.ndarray, amount: float = 0.02) -> np.ndarray:
    """A colour varied per instance."""
    return np.clip(rgb + rng.uniform(-amount, amount, 3), 0, 1).astype(np.float32)


def pick(rng: np.random.Generator, palette: np.ndarray, amount: float = 0.02) -> np.ndarray:
    return jitter(rng, palette[rng.integers(len(palette))], amount)
