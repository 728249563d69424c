"""The oracles' accuracy/colourfulness frontier on the bench's 64 held-out pages (README.md beside this file):
the bucket median with its chroma scaled, and the median mixed with a sampled colour per region.
Run from the repository root: .venv/bin/python bench/analyses/attainable-colour/frontier.py"""

import numpy as np
import torch

from dualflow.bench.oracle import ClassToneOracle
from dualflow.color import lab_to_rgb, rgb_to_lab
from dualflow.data.synth import SynthManga
from dualflow.metrics.color import DeltaColorfulness, DeltaE2000

oracle = ClassToneOracle.fit(SynthManga(0)(i, 256) for i in range(128))  # as `make bench` fits it
pages = [SynthManga(31337)(i, 256) for i in range(64)]  # the bench's held-out pages


def score(name: str, predict) -> None:
    de, detailed, cf = DeltaE2000(), DeltaE2000(), DeltaColorfulness()
    rng = np.random.default_rng(0)
    for page in pages:
        rgb = predict(page, rng)
        target = torch.from_numpy(page.color).permute(2, 0, 1)[None]
        de.update(rgb, target)
        detailed.update(rgb, target, mask=torch.from_numpy(page.detailed)[None, None].float())
        cf.update(rgb, target)
    print(f"| {name} | {float(de.compute()):.2f} | {float(detailed.compute()):.2f} | {float(cf.compute()):.2f} |")


def scaled(rgb: torch.Tensor, gain: float) -> torch.Tensor:
    return lab_to_rgb(rgb_to_lab(rgb) * torch.tensor([1.0, gain, gain]).view(1, 3, 1, 1)).clamp(0, 1)


print("| oracle | ΔE2000 | detailed | ΔCF |\n|---|---|---|---|")
for gain in (1.0, 1.1, 1.2, 1.3, 1.4):
    score(f"median, chroma ×{gain}", lambda p, rng, g=gain: scaled(oracle.median_page(p.color, p.labels), g))
for share in (0.25, 0.5, 0.75, 1.0):
    score(f"median mixed with a sample, {share:.0%} sample",
          lambda p, rng, s=share: (1 - s) * oracle.median_page(p.color, p.labels)
          + s * oracle.sampled_page(p.color, p.labels, rng))
