"""The scan resolution of a B&W page, read from the page itself: the pitch of its finest screentone.

Printed manga's fine tones are 55–75 lpi (SynthManga's fine dot screen and hatching: 3–4 pen units, a unit being
dpi/227 px), so the period in pixels of the finest screen that covers a fair share of the page says its dpi
within the spread of rulings (±14 %). Tiles vote for their dominant period (which screen is the finest one
present); the page's whole spectrum then gives that period to a fraction of a pixel. A page with no screen to
read falls back to the given or trained dpi, and says so."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from dualflow.data.synth import PEN_DPI

FINE_UNITS = 3.5  # pen units of the middle fine ruling (65 lpi): a period of p px means a page of p·227/3.5 dpi
DPI_LIMITS = (72.0, 1200.0)  # pages outside are refused: a thumbnail has no detail left, a bigger scan is wasted
PERIODS = (1.9, 16.0)  # screen periods (px) looked for, eight a tile: 123–1040 dpi (pages above 4 Mpx are halved: 2080)
TILE, STRIDE = 128, 96  # tiles of the vote: eight periods of the coarsest screen at 600 dpi, overlapping
MAX_TILES = 300
HALVE_ABOVE = 4_000_000  # pixels
MIN_SHARE = 0.2  # a screen needs this share of the voting tiles to count (a pasted sticker, a texture do not)
SAME_SCREEN = 0.06  # periods within ±6 % are one screen (a tile's peak, zero-padded twice, is within ±3 %)
PROMINENCE = 12.0  # a peak stands this far above its frequency ring's geometric mean, or it is no screen


class DpiError(ValueError):
    """A page's resolution (given or estimated) outside :data:`DPI_LIMITS`."""


@dataclass(frozen=True)
class DpiEstimate:
    """``dpi`` (None: nothing to go on), the screen ``period`` (px) it was read from, and the share of the page's
    screened tiles that carry that screen."""

    dpi: float | None
    period: float | None = None
    share: float = 0.0


def _spectrum(x: np.ndarray, pad: int = 1) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Windowed magnitude spectrum (rfft2, zero-padded ``pad`` times) of a tile, its radial frequency
    (cycles/px) and each bin's prominence over the geometric mean of its frequency ring, zero outside
    :data:`PERIODS`."""
    x = (x - x.mean()) * np.outer(np.hanning(x.shape[0]), np.hanning(x.shape[1])).astype(np.float32)
    h, w = pad * x.shape[0], pad * x.shape[1]
    mag = np.abs(np.fft.rfft2(x, s=(h, w)))
    r = np.hypot(np.fft.fftfreq(h)[:, None], np.fft.rfftfreq(w)[None])
    rings = np.minimum((r * 2 * max(h, w)).astype(np.int64), max(h, w)).ravel()
    log_mag = np.log(mag + 1e-6).ravel()
    mean = np.bincount(rings, log_mag) / np.maximum(np.bincount(rings), 1)
    band = (r >= 1 / PERIODS[1]) & (r <= 1 / PERIODS[0])
    prominence = np.where(band, mag / np.exp(mean[rings]).reshape(mag.shape), 0.0)
    return mag, r, prominence


def _tile_periods(bw: np.ndarray) -> np.ndarray:
    """The dominant screen period (px) of each tile that has one (the tile's strongest prominent peak)."""
    h, w = bw.shape
    # A large scan votes with a grid of MAX_TILES spread over the page: more would cost time, not accuracy.
    stride = max(STRIDE, int(np.sqrt((h - TILE) * (w - TILE) / MAX_TILES)) + 1)
    periods = []
    for y in range(0, h - TILE + 1, stride):
        for x in range(0, w - TILE + 1, stride):
            tile = bw[y:y + TILE, x:x + TILE]
            if tile.std() < 0.05:  # paper or solid black: nothing to read
                continue
            mag, r, prominence = _spectrum(tile, pad=2)
            peaks = prominence > PROMINENCE
            if peaks.any():
                peak = np.unravel_index(np.argmax(np.where(peaks, mag, 0.0)), mag.shape)
                if _isolated(mag, peak):
                    periods.append(1.0 / r[peak])
    return np.asarray(periods)


def _isolated(mag: np.ndarray, peak: tuple[int, int], contrast: float = 3.0) -> bool:
    """Whether a peak of an rfft2 magnitude stands ``contrast`` times above the spectrum at 0.8 and 1.25 times
    its frequency in the same direction: a screen's repeat is a point, where one line or edge spreads a ridge
    along the direction across it."""
    h = mag.shape[0]
    fy, fx = (peak[0] + h // 2) % h - h // 2, peak[1]  # signed row frequency (bins)
    for k in (0.8, 1.25):
        y, x = int(round(fy * k)), int(round(fx * k))
        if abs(y) > h // 2 or x >= mag.shape[1]:  # beyond the Nyquist frequency: nothing to compare with
            continue
        if mag[peak] < contrast * mag[y % h, x]:
            return False
    return True


def finest_screen(periods: np.ndarray) -> tuple[float, float] | None:
    """(period, share) of the finest screen that enough tiles vote for (:data:`SAME_SCREEN`); None when no
    screen has :data:`MIN_SHARE` of the votes (and two tiles)."""
    if len(periods) == 0:
        return None
    for p in np.sort(periods):
        votes = np.abs(periods / p - 1.0) <= SAME_SCREEN
        if votes.sum() >= max(2, MIN_SHARE * len(periods)):
            return float(np.median(periods[votes])), float(votes.mean())
    return None


def estimate_dpi(bw: np.ndarray | torch.Tensor, crop: int = 2048) -> DpiEstimate:
    """The page's dpi from its finest screentone (``bw`` (H,W) or (1,H,W), [0,1]); the period is refined on the
    spectrum of the page's centre (at most ``crop``²)."""
    page = bw.detach().float().cpu().numpy() if isinstance(bw, torch.Tensor) else np.asarray(bw, np.float32)
    page = page.reshape(page.shape[-2:])
    # A large scan is read at half its resolution (2×2 means keep every screen of 300 dpi and up readable).
    halved = page.size > HALVE_ABOVE
    if halved:
        h, w = (page.shape[0] // 2) * 2, (page.shape[1] // 2) * 2
        page = page[:h, :w].reshape(h // 2, 2, w // 2, 2).mean(axis=(1, 3))
    found = finest_screen(_tile_periods(page))
    if found is None:
        return DpiEstimate(None)
    period, share = found
    h, w = page.shape
    ch, cw = min(h, crop), min(w, crop)
    mag, r, prominence = _spectrum(page[(h - ch) // 2:(h - ch) // 2 + ch, (w - cw) // 2:(w - cw) // 2 + cw])
    near = (prominence > PROMINENCE) & (np.abs(r * period - 1.0) <= SAME_SCREEN)
    if near.any():
        period = float(1.0 / r.ravel()[np.argmax(np.where(near, mag, 0.0))])
    period *= 2 if halved else 1
    return DpiEstimate(period * PEN_DPI / FINE_UNITS, period, share)


def resolve_dpi(bw: np.ndarray | torch.Tensor, given: float | None, trained: float,
                estimate: DpiEstimate | None = None) -> tuple[float, str]:
    """The dpi a page is coloured as, and a line for the log saying where it came from. A ``given`` dpi is
    checked against :data:`DPI_LIMITS` (:class:`DpiError`) and wins over the estimate (a contradiction is said);
    with no given dpi the estimate is used, and where it has nothing to go on or reads outside the limits, the
    ``trained`` dpi (nothing is resampled). ``estimate``: the page's, when already made."""
    low, high = DPI_LIMITS
    if given is not None and not low <= given <= high:
        raise DpiError(f"{given:g} dpi is outside the {low:g}–{high:g} dpi this colorizer takes: downscale a larger "
                       f"scan to 300–600 dpi; a page under {low:g} dpi has no line art left to colour")
    estimate = estimate or estimate_dpi(bw)
    read = (f"{estimate.dpi:.0f} dpi estimated from a {estimate.period:.2f}-px screentone on {estimate.share:.0%} "
            f"of the page") if estimate.dpi else ""
    if given is not None:
        if estimate.dpi and abs(np.log(estimate.dpi / given)) > np.log(1.35):
            return given, f"{given:g} dpi as given, though its screentone reads {read}: check --dpi"
        return given, f"{given:g} dpi as given" + (f" ({read})" if read else "")
    if estimate.dpi is None:
        return trained, f"no screentone to read the scale from: coloured as {trained:g} dpi (give --dpi)"
    if not low <= estimate.dpi <= high:
        return trained, f"{read}, outside {low:g}–{high:g} dpi: not trusted, coloured as {trained:g} dpi (give --dpi)"
    return estimate.dpi, read


def to_scale(x: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(B,C,H,W) resampled to ``size``: area averages when shrinking (no aliased screentone), bilinear when
    enlarging. Training pages of a dpi range and pages at inference go through this one resampling."""
    if tuple(x.shape[-2:]) == tuple(size):
        return x
    if size[0] <= x.shape[-2] and size[1] <= x.shape[-1]:
        return F.adaptive_avg_pool2d(x, size)
    return F.interpolate(x, size=size, mode="bilinear", align_corners=False)


def net_size(size: tuple[int, int], dpi: float | None, trained: float, tolerance: float = 0.2) -> tuple[int, int]:
    """(H, W) a page of ``size`` scanned at ``dpi`` has at the ``trained`` dpi; the page's own size when either
    is unknown (0 / None) or they differ by at most ``tolerance``: the estimate's own spread is ±14 %, and
    resampling a 300-dpi page by it cost 0.37 ΔE2000 on the tuning pages (bench/analyses/scan_dpi)."""
    if not dpi or not trained or abs(dpi / trained - 1.0) <= tolerance:
        return size
    return max(1, round(size[0] * trained / dpi)), max(1, round(size[1] * trained / dpi))
