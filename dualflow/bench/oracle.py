"""Oracle colorizers for the bench: they are given each pixel's SynthManga class and tone level, which no model
is, and so show how far the colour figures can go on SynthManga. Inside a class and tone the colour is partly a
free choice (a hair colour of nine, a shirt of twelve), so even they do not reach ΔE2000 0: the median is the
best single guess, a sampled colour is what a colorizer that commits to one plausible colour per region gets."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch

from dualflow.color import lab_to_rgb, rgb_to_lab
from dualflow.data.palette import CLASSES
from dualflow.data.synth import TONE_LEVELS, SynthPage, tone_level

BUCKETS = len(CLASSES) * (TONE_LEVELS + 1)


def buckets(color: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(H,W,3) colour page and (H,W) class labels → (H,W) int64 bucket id: class × tone level."""
    return labels.astype(np.int64) * (TONE_LEVELS + 1) + tone_level(color)


def _lab(color: np.ndarray) -> np.ndarray:
    return rgb_to_lab(torch.from_numpy(np.ascontiguousarray(color, np.float32)).permute(2, 0, 1)[None])[0] \
        .permute(1, 2, 0).numpy()


class ClassToneOracle:
    """Colour statistics of each (class, tone level) bucket over SynthManga pages: the per-channel Lab median
    of its pixels and the mean colour of each region (page × bucket) it was seen in."""

    def __init__(self, median: np.ndarray, regions: list[np.ndarray]):
        self.median, self.regions = median, regions  # (BUCKETS,3) Lab; per bucket (n,3) Lab region colours

    @classmethod
    def fit(cls, pages: Iterable[SynthPage], pixel_share: float = 0.05, seed: int = 0) -> ClassToneOracle:
        """Statistics of ``pages`` (the median from a random ``pixel_share`` of each page's pixels)."""
        rng = np.random.default_rng(seed)
        regions: list[list[np.ndarray]] = [[] for _ in range(BUCKETS)]
        picked_keys, picked_labs = [], []
        for page in pages:
            key, lab = buckets(page.color, page.labels).ravel(), _lab(page.color).reshape(-1, 3)
            count = np.bincount(key, minlength=BUCKETS)
            sums = np.stack([np.bincount(key, lab[:, c], minlength=BUCKETS) for c in range(3)], 1)
            for b in np.flatnonzero(count):
                regions[b].append(sums[b] / count[b])
            picked = rng.random(key.shape[0]) < pixel_share
            picked_keys.append(key[picked])
            picked_labs.append(lab[picked])
        key, lab = np.concatenate(picked_keys), np.concatenate(picked_labs)
        order = np.argsort(key, kind="stable")
        groups = np.split(lab[order], np.cumsum(np.bincount(key, minlength=BUCKETS))[:-1])
        grey = np.array([50.0, 0.0, 0.0])  # buckets never seen
        median = np.stack([np.median(g, 0) if len(g) else grey for g in groups])
        return cls(median, [np.stack(r) if r else grey[None] for r in regions])

    def median_page(self, color: np.ndarray, labels: np.ndarray) -> torch.Tensor:
        """The best single guess: each pixel's bucket median → RGB (1,3,H,W)."""
        return _rgb(self.median[buckets(color, labels)])

    def sampled_page(self, color: np.ndarray, labels: np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        """One plausible colour per region: each bucket of the page takes the colour of a random region seen
        in that bucket → RGB (1,3,H,W)."""
        drawn = np.stack([r[rng.integers(len(r))] for r in self.regions])
        return _rgb(drawn[buckets(color, labels)])


def _rgb(lab: np.ndarray) -> torch.Tensor:
    return lab_to_rgb(torch.from_numpy(lab).float().permute(2, 0, 1)[None]).clamp(0, 1)
