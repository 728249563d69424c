"""``class_colour_distance``: does a colorizer paint each kind of region in colours that kind takes? Page colours
are multimodal (a shirt may be red or blue), so ΔE2000 against the one true page rewards the safe grey; this
figure compares distributions instead. Each region of a page (a SynthManga class, split by the character that
owns it) gives its mean Lab in the output and in the truth; per class, the sliced Wasserstein-1 distance
between the output's and the truth's region colours over all pages (Lab units, like ΔE76); pooled over classes
weighted by their region counts. The truth scores 0; a grey page or one colour per class scores the spread of
the class's colours; a colorizer that commits to one plausible colour per region scores near 0 even where it
picks a different colour than the page's. The bench knows SynthManga's classes; the metrics package does not."""

from __future__ import annotations

import numpy as np
import torch

from dualflow.color import rgb_to_lab
from dualflow.data.palette import CLASSES

DIRECTIONS = 64  # random unit directions in Lab of the sliced distance (fixed seed: the same for every row)


def _directions(seed: int = 0) -> np.ndarray:
    d = np.random.default_rng(seed).normal(size=(DIRECTIONS, 3))
    return d / np.linalg.norm(d, axis=1, keepdims=True)


def sliced_wasserstein(a: np.ndarray, b: np.ndarray, directions: np.ndarray) -> float:
    """Sliced W1 between two equal-size point sets (n,3): per direction, the mean gap of sorted projections."""
    pa, pb = np.sort(a @ directions.T, axis=0), np.sort(b @ directions.T, axis=0)
    return float(np.abs(pa - pb).mean())


def region_means(rgb: torch.Tensor, keys: np.ndarray, min_pixels: int) -> tuple[np.ndarray, np.ndarray]:
    """(1,3,H,W) RGB page, (H,W) int64 region keys → the keys of regions of at least ``min_pixels`` and their
    mean Lab (n,3)."""
    lab = rgb_to_lab(rgb.float().cpu()).reshape(3, -1).T.numpy().astype(np.float64)
    flat = keys.ravel()
    present, inverse, count = np.unique(flat, return_inverse=True, return_counts=True)
    sums = np.stack([np.bincount(inverse, lab[:, c], minlength=len(present)) for c in range(3)], 1)
    keep = count >= min_pixels
    return present[keep], sums[keep] / count[keep, None]


class ClassColourDistance:
    """Accumulates region colours over pages (:meth:`update`), then :meth:`compute` the pooled distance and the
    per-class distances."""

    def __init__(self) -> None:
        self.pred: list[list[np.ndarray]] = [[] for _ in CLASSES]
        self.truth: list[list[np.ndarray]] = [[] for _ in CLASSES]

    def update(self, preds: torch.Tensor, target: torch.Tensor, labels: np.ndarray, identity: np.ndarray) -> None:
        """One page: ``preds``, ``target`` (1,3,H,W) RGB; ``labels`` (H,W) classes; ``identity`` (H,W) owner."""
        keys = labels.astype(np.int64) * 256 + identity.astype(np.int64)
        min_pixels = max(16, labels.size // 4096)
        regions, truth = region_means(target, keys, min_pixels)
        _, pred = region_means(preds, keys, min_pixels)  # same keys, same pixels: the same regions
        for cls, t, p in zip(regions // 256, truth, pred, strict=True):
            self.truth[cls].append(t)
            self.pred[cls].append(p)

    def compute(self) -> dict[str, float]:
        """``class_colour_distance`` (pooled) and ``class_colour_distance/<class>`` for each class seen."""
        directions, out, total, weight = _directions(), {}, 0.0, 0
        for cls, name in enumerate(CLASSES):
            if len(self.truth[cls]) < 2:
                continue  # one region is no distribution
            d = sliced_wasserstein(np.stack(self.pred[cls]), np.stack(self.truth[cls]), directions)
            out[f"class_colour_distance/{name}"] = d
            total += d * len(self.truth[cls])
            weight += len(self.truth[cls])
        out["class_colour_distance"] = total / weight if weight else float("nan")
        return out
