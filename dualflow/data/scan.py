"""SynthManga pages as scanned at any resolution, and pages brought to the scale the nets were trained at.

A screen finer than a few pixels cannot be drawn in whole pixels, so a page is drawn at :data:`PRINT_DPI` or
more and a lower resolution is that drawing downsampled by area, as a scanner or a web export does (grey dots).
:func:`scan_dpi.to_scale` is the one resampling of both training (:class:`DpiRange` pages) and inference
(:class:`colorizer.PageColorizer`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from dualflow.data.synth import PRINT_DPI, PrintScale, SynthManga, SynthPage
from dualflow.scan_dpi import estimate_dpi, to_scale


def size_at(size: tuple[int, int], dpi: float, reference: float = PRINT_DPI) -> tuple[int, int]:
    """(H, W) of a page that is ``size`` at ``reference`` dpi, scanned at ``dpi``."""
    return max(1, round(size[0] * dpi / reference)), max(1, round(size[1] * dpi / reference))


def _resampled(page: SynthPage, size: tuple[int, int]) -> SynthPage:
    """A page's B&W and colour resampled by :func:`to_scale`, its labels and identities by nearest pixel."""
    def image(a: np.ndarray) -> np.ndarray:
        t = torch.from_numpy(np.ascontiguousarray(a, np.float32))
        t = t[None, None] if t.ndim == 2 else t.permute(2, 0, 1)[None]
        out = to_scale(t, size)[0]
        return (out[0] if a.ndim == 2 else out.permute(1, 2, 0)).numpy()

    def nearest(a: np.ndarray) -> np.ndarray:
        rows = np.minimum((np.arange(size[0]) + 0.5) * a.shape[0] / size[0], a.shape[0] - 1).astype(np.int64)
        cols = np.minimum((np.arange(size[1]) + 0.5) * a.shape[1] / size[1], a.shape[1] - 1).astype(np.int64)
        return a[rows[:, None], cols[None]]

    return SynthPage(bw=image(page.bw), color=image(page.color), labels=nearest(page.labels),
                     identity=nearest(page.identity))


def draw_dpi(dpi: float) -> float:
    """The resolution a page scanned at ``dpi`` is drawn at: itself, or :data:`PRINT_DPI` below it."""
    return max(float(dpi), PRINT_DPI)


def scanned(gen: SynthManga, index: int, size: tuple[int, int], dpi: float,
            drawn: SynthPage | None = None) -> SynthPage:
    """Page ``index`` of a physical page that is ``size`` (H, W) at 300 dpi, scanned at ``dpi``: drawn at
    :func:`draw_dpi` and area-downsampled below 300 dpi; or ``drawn``, a drawing of it at ``dpi`` or above (from
    a cache; one drawing scanned at several dpi is one layout at each)."""
    target = size_at(size, dpi)
    if drawn is None:
        at = draw_dpi(dpi)
        drawn = gen(index, size_at(size, at), PrintScale.at_dpi(at))
    return drawn if drawn.bw.shape == target else _resampled(drawn, target)


def fit(page: SynthPage, size: tuple[int, int], paper_label: int) -> SynthPage:
    """A page centre-cropped or padded with white paper (label ``paper_label``, nobody's) to ``size``."""
    def placed(a: np.ndarray, fill: float) -> np.ndarray:
        out = np.full((*size, *a.shape[2:]), fill, a.dtype)
        h, w = min(size[0], a.shape[0]), min(size[1], a.shape[1])
        sy, sx = (a.shape[0] - h) // 2, (a.shape[1] - w) // 2
        dy, dx = (size[0] - h) // 2, (size[1] - w) // 2
        out[dy:dy + h, dx:dx + w] = a[sy:sy + h, sx:sx + w]
        return out

    return SynthPage(bw=placed(page.bw, 1.0), color=placed(page.color, 1.0), labels=placed(page.labels, paper_label),
                     identity=placed(page.identity, 0))


@dataclass(frozen=True)
class DpiRange:
    """Training pages scanned at resolutions drawn log-uniformly in [``low``, ``high``] dpi, one per page index
    (a pure function of seed and index), then brought to :data:`PRINT_DPI` by the dpi the page's screentone
    says (:func:`scan_dpi.estimate_dpi`), as inference does: the nets learn the resampling and the estimate's
    error, not one scale."""

    low: float
    high: float

    def __post_init__(self) -> None:
        if not 0 < self.low <= self.high:
            raise ValueError(f"a dpi range needs 0 < low <= high, got [{self.low}, {self.high}]")

    def dpi(self, seed: int, index: int) -> float:
        u = np.random.default_rng([seed, 5_550_555, int(index)]).random()
        return float(np.exp(np.log(self.low) + u * (np.log(self.high) - np.log(self.low))))

    def normalised(self, gen: SynthManga, index: int, size: tuple[int, int], drawn: SynthPage,
                   paper_label: int, read: dict[int, float] | None = None) -> SynthPage:
        """Page ``index`` scanned at its dpi (``drawn``: its drawing at :func:`draw_dpi`), resampled to 300 dpi
        by the estimate (the scan's own dpi when the page has no screen to read) and fitted to ``size``.
        ``read``: the estimates already made, by index (a page's estimate never changes: epochs reuse it)."""
        dpi = self.dpi(gen.seed, index)
        page = scanned(gen, index, size, dpi, drawn)
        estimate = read.get(index) if read is not None else None
        if estimate is None:
            estimate = estimate_dpi(page.bw).dpi or dpi
            if read is not None:
                read[index] = estimate
        return fit(_resampled(page, size_at(page.bw.shape, PRINT_DPI, estimate)), size, paper_label)


def dpi_setting(dpi: float | list[float] | tuple[float, float]) -> float | DpiRange:
    """``data.dpi`` as drawn: a number (0: thumbnail pages) or a :class:`DpiRange` from ``[low, high]``."""
    if isinstance(dpi, list | tuple):
        if len(dpi) != 2:
            raise ValueError(f"data.dpi takes a number or a range [low, high], got {dpi}")
        return DpiRange(float(dpi[0]), float(dpi[1]))
    if dpi < 0:
        raise ValueError(f"data.dpi must be positive (0: thumbnail pages), got {dpi}")
    return float(dpi)


def nets_dpi(dpi: float | list[float] | tuple[float, float]) -> float:
    """The resolution the nets trained on ``data.dpi`` work at: that dpi, :data:`PRINT_DPI` for a range (its
    pages are brought there), 0 for thumbnail pages."""
    setting = dpi_setting(dpi)
    return PRINT_DPI if isinstance(setting, DpiRange) else setting
