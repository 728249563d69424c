"""mangafy: any colour image → a B&W page that looks like a scanned manga page.

Line art comes from lightness edges (XDoG) and from colour edges (a difference of Gaussians on the chroma
channels, so a red sleeve on a green coat of equal lightness still gets its line); the tone is quantised into
screentone sheets of a chosen pitch and angle, dark tones are cross-hatched, light areas (balloons, highlights)
stay white paper; optional scan degradations (paper texture, blur, JPEG, a small rotation) make it a scan. This
is what makes a folder of colour illustrations a training set, rendered as SynthManga renders its pages.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy.ndimage import gaussian_filter

from dualflow.data.synth import STYLE, Screens, screen_tone


@dataclass(frozen=True)
class MangafyOptions:
    """Every knob of the conversion (the data module exposes each as ``--data.mangafy_<name>``)."""

    period: float = 4.0          # screentone dot pitch, pixels
    angle: float = 45.0          # screentone angle, degrees
    levels: int = 6              # tone sheets (quantisation of darkness)
    hatch_from: float = 0.8      # darkness from which tone is cross-hatched instead of dotted (> 1: never)
    line_threshold: float = 0.5  # XDoG response under which a pixel is a lightness line
    line_sigma: float = 0.8      # scale of the line detector, pixels
    chroma_lines: float = 0.06   # chroma difference-of-Gaussians that draws a colour-edge line (0: none)
    white: float = 0.9           # lightness from which the page stays white paper
    paper: float = 0.0           # paper texture strength (0: clean white), e.g. 0.15
    blur: float = 0.0            # scan blur sigma, pixels, e.g. 0.6
    jpeg: int = 0                # JPEG quality of a compression round trip (0: none), e.g. 75
    rotate: float = 0.0          # largest page rotation, degrees (each page draws one in ±rotate)


def xdog(lum: np.ndarray, sigma: float = 0.8, k: float = 1.6, tau: float = 1.0, eps: float = 0.0,
         phi: float = 40.0) -> np.ndarray:
    """Extended difference of Gaussians (Winnemöller 2012) → (H,W) float in [0,1], ink near 0. With τ = 1 and
    ε = 0 a flat area of any lightness is paper (its tone is the screentone's job) and the dark side of every
    edge is ink; τ < 1 would also ink flat areas under some lightness."""
    d = gaussian_filter(lum, sigma) - tau * gaussian_filter(lum, sigma * k)
    return np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps))).astype(np.float32)


def _chroma_edges(rgb: np.ndarray, sigma: float, threshold: float) -> np.ndarray:
    """Lines where the colour changes: the magnitude of a difference of Gaussians of the Lab chroma channels
    (in units of 110) above ``threshold``; a lightness-only detector misses edges between equally light hues."""
    lab = cv2.cvtColor(np.ascontiguousarray(rgb, dtype=np.float32), cv2.COLOR_RGB2Lab)
    edges = np.zeros(rgb.shape[:2], dtype=bool)
    for c in (1, 2):
        ch = lab[..., c] / 110.0
        dog = gaussian_filter(ch, sigma) - gaussian_filter(ch, 1.6 * sigma)
        edges |= np.abs(dog) > threshold
    return edges


def mangafy(rgb: np.ndarray, options: MangafyOptions | None = None) -> np.ndarray:
    """(H,W,3) RGB in [0,1] → (H,W) float32 B&W page: lines in black, tone as dots (cross-hatching for dark
    tones), light areas white; no scan degradation (see :func:`scan`)."""
    o = options or MangafyOptions()
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"mangafy expects an (H,W,3) RGB array, got shape {rgb.shape}")
    rgb = rgb.astype(np.float32)
    lum = rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    dark = np.clip((o.white - gaussian_filter(lum, 0.7)) / (o.white - 0.15), 0.0, 1.0)
    dark = np.round(dark * o.levels) / o.levels
    style = np.where(dark >= o.hatch_from, STYLE["cross"], STYLE["dots"]).astype(np.uint8)
    screens = Screens(fine=(float(o.period), float(o.angle)), hatch=(max(3.0, 0.8 * o.period), float(o.angle)))
    bw = screen_tone(dark, style, screens)
    lines = xdog(lum, sigma=o.line_sigma) < o.line_threshold
    if o.chroma_lines > 0:
        lines |= _chroma_edges(rgb, o.line_sigma, o.chroma_lines)
    bw[lines] = 0.0
    return bw


def rotate_page(image: np.ndarray, degrees: float, fill: float) -> np.ndarray:
    """``image`` rotated about its centre, same size, uncovered corners filled with ``fill`` (paper)."""
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), degrees, 1.0)
    border = (fill,) * (image.shape[2] if image.ndim == 3 else 1)
    return cv2.warpAffine(image, m, (w, h), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def scan(rgb: np.ndarray, options: MangafyOptions, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A colour image as a scanned manga page: (bw, rgb), both rotated alike (so the pair stays aligned), the
    B&W side also given paper texture, blur and JPEG as ``options`` say."""
    o = options
    if o.rotate > 0:
        rgb = np.clip(rotate_page(rgb.astype(np.float32), float(rng.uniform(-o.rotate, o.rotate)), 1.0), 0, 1)
    bw = mangafy(rgb, o)
    if o.paper > 0:  # fibres and uneven grey of the paper, on the white only
        fibres = gaussian_filter(rng.standard_normal(bw.shape).astype(np.float32), 1.5)
        fibres = (fibres - fibres.min()) / max(1e-6, float(np.ptp(fibres)))
        bw = bw * (1.0 - o.paper * fibres)
    if o.blur > 0:
        bw = gaussian_filter(bw, o.blur)
    if o.jpeg > 0:
        ok, data = cv2.imencode(".jpg", np.clip(bw * 255 + 0.5, 0, 255).astype(np.uint8),
                                [cv2.IMWRITE_JPEG_QUALITY, int(o.jpeg)])
        bw = cv2.imdecode(data, cv2.IMREAD_GRAYSCALE).astype(np.float32) / 255.0
    return np.clip(bw, 0, 1).astype(np.float32), rgb
