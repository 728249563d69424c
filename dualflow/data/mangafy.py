"""mangafy: any colour image → B&W manga page (XDoG line art, tone quantisation, dot screentone).

This is what makes a folder of colour illustrations a training set: the B&W side is rendered the same way
SynthManga renders its pages, so models trained on one transfer to the other.
"""

import numpy as np
from scipy.ndimage import gaussian_filter

from dualflow.data.synth import _screen


def xdog(lum: np.ndarray, sigma: float = 0.8, k: float = 1.6, tau: float = 0.98, eps: float = 0.02,
         phi: float = 40.0) -> np.ndarray:
    """Extended difference of Gaussians (Winnemöller 2012) → (H,W) float in [0,1], ink near 0."""
    d = gaussian_filter(lum, sigma) - tau * gaussian_filter(lum, sigma * k)
    return np.where(d >= eps, 1.0, 1.0 + np.tanh(phi * (d - eps))).astype(np.float32)


def mangafy(rgb: np.ndarray, levels: int = 6, period: float = 3.5, line_threshold: float = 0.5,
            sigma: float = 0.8) -> np.ndarray:
    """(H,W,3) RGB in [0,1] → (H,W) float32 B&W page: XDoG lines in black, the rest as a dot screentone whose
    ink share follows the quantised darkness (``levels`` tone sheets), light areas left white."""
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"mangafy expects an (H,W,3) RGB array, got shape {rgb.shape}")
    lum = (rgb.astype(np.float32) @ np.array([0.299, 0.587, 0.114], dtype=np.float32)).astype(np.float32)
    dark = np.clip((1.0 - gaussian_filter(lum, 0.7) - 0.1) / 0.75, 0.0, 1.0)
    dark = np.round(dark * levels) / levels
    h, w = lum.shape
    bw = (dark <= _screen(h, w, float(period), 45.0, "dots")).astype(np.float32)
    bw[xdog(lum, sigma=sigma) < line_threshold] = 0.0
    return bw
