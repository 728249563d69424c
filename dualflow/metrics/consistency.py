"""Cross-page colour consistency of recurring characters: does a character keep its hair, skin and clothes colours
from page to page of a chapter?"""

from __future__ import annotations

import itertools

import torch
from torchmetrics import Metric
from torchmetrics.utilities import dim_zero_cat

from dualflow.color import rgb_to_lab
from dualflow.metrics.color import delta_e2000


def part_means(rgb: torch.Tensor, identity: torch.Tensor, parts: torch.Tensor, n_parts: int,
               min_pixels: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One page (3,H,W) RGB, identity (1,H,W, 0: nobody) and part index (1,H,W, 0 … n_parts−1; −1: no part) →
    (keys (N,), mean Lab (N,3)) of every (character, part) with at least ``min_pixels`` pixels; key =
    (character − 1)·n_parts + part."""
    part = parts[0].long()
    who = identity[0].long()
    valid = (who > 0) & (part >= 0)
    keys = ((who - 1) * n_parts + part)[valid]
    lab = rgb_to_lab(rgb[None].float())[0].permute(1, 2, 0)[valid].double()
    n = int(keys.max()) + 1 if keys.numel() else 0
    counts = torch.bincount(keys, minlength=n)
    sums = torch.zeros(n, 3, dtype=torch.float64, device=rgb.device).index_add_(0, keys, lab)
    present = torch.nonzero(counts >= min_pixels).flatten()
    return present, sums[present] / counts[present, None]


class ChapterConsistency(Metric):
    """For each (chapter, character, part) seen on two or more pages: the mean CIEDE2000 between its mean colours
    on those pages (every pair), averaged over the (chapter, character, part) groups. Identical colours give 0;
    per-page colouring that repaints a character's hair scores the size of the change. Pixels are grouped by the
    evaluation-only identity and part maps that the data provides (SynthManga chapters: ``palette.part_ids``)."""

    higher_is_better = False
    full_state_update = False

    def __init__(self, n_parts: int, min_pixels: int = 30, **kwargs):
        super().__init__(**kwargs)
        self.n_parts, self.min_pixels = n_parts, min_pixels
        self.add_state("rows", default=[], dist_reduce_fx="cat")  # (chapter, key, L, a, b) per page and part

    def update(self, preds: torch.Tensor, identity: torch.Tensor, parts: torch.Tensor,
               chapter: torch.Tensor) -> None:
        for i in range(preds.shape[0]):
            keys, lab = part_means(preds[i], identity[i], parts[i], self.n_parts, self.min_pixels)
            ch = torch.full_like(keys, int(chapter[i]), dtype=torch.float64)
            self.rows.append(torch.cat([ch[:, None], keys[:, None].double(), lab], dim=1))

    def compute(self) -> torch.Tensor:
        rows = dim_zero_cat(self.rows) if self.rows else torch.zeros(0, 5, dtype=torch.float64)
        groups: dict[tuple[int, int], list[torch.Tensor]] = {}
        for row in rows:
            groups.setdefault((int(row[0]), int(row[1])), []).append(row[2:])
        scores = [torch.stack([delta_e2000(a, b, dim=-1) for a, b in itertools.combinations(colors, 2)]).mean()
                  for colors in groups.values() if len(colors) >= 2]
        return torch.stack(scores).mean().float() if scores else torch.tensor(float("nan"))
