"""The bench's oracles: they reproduce colours that their class and tone determine, commit to one plausible
colour where the class leaves a choice, and on SynthManga trade accuracy for colourfulness as the bench says."""

import numpy as np
import torch

from dualflow.bench.oracle import ClassToneOracle
from dualflow.color import rgb_to_lab
from dualflow.data.palette import CLASS_ID
from dualflow.data.synth import SynthManga, SynthPage
from dualflow.metrics.color import DeltaColorfulness, DeltaE2000, delta_e2000

RED, BLUE = (0.8, 0.1, 0.1), (0.2, 0.3, 0.9)  # the same tone level: one bucket


def _page(left: tuple, right: tuple) -> SynthPage:
    """Sky on the left half (one colour), hair on the right half split into two regions: ``left`` and
    ``right`` colours."""
    color = np.zeros((16, 16, 3), np.float32)
    labels = np.full((16, 16), CLASS_ID["hair"], np.uint8)
    labels[:, :8] = CLASS_ID["sky"]
    color[:, :8] = (0.5, 0.7, 1.0)
    color[:8, 8:], color[8:, 8:] = left, right
    return SynthPage(bw=np.ones((16, 16), np.float32), color=color, labels=labels, identity=np.zeros_like(labels))


def _delta_e(rgb: torch.Tensor, page: SynthPage) -> np.ndarray:
    target = torch.from_numpy(page.color).permute(2, 0, 1)[None]
    return delta_e2000(rgb_to_lab(rgb), rgb_to_lab(target))[0].numpy()


def test_oracle_reproduces_determined_colours_and_samples_one_of_the_seen_ones():
    oracle = ClassToneOracle.fit([_page(RED, RED), _page(BLUE, BLUE)], pixel_share=1.0)
    test = _page(BLUE, RED)
    median = _delta_e(oracle.median_page(test.color, test.labels), test)
    assert median[:, :8].max() < 0.5  # the sky's colour is determined by its class and tone
    assert median[:, 8:].min() > 5  # hair is red or blue: the median guesses between them, wrong for both
    picked = set()
    for seed in range(8):  # a sample commits to red or to blue for the whole bucket: one half exact
        sampled = _delta_e(oracle.sampled_page(test.color, test.labels, np.random.default_rng(seed)), test)
        assert sampled[:, :8].max() < 0.5
        top, bottom = sampled[:8, 8:].max(), sampled[8:, 8:].max()
        assert min(top, bottom) < 0.5 and max(top, bottom) > 20
        picked.add(top < 0.5)
    assert picked == {True, False}


def test_on_synthmanga_the_median_is_more_accurate_and_the_sample_more_colourful():
    gen = SynthManga(0)
    oracle = ClassToneOracle.fit(gen(i, 128) for i in range(32))
    rng = np.random.default_rng(0)
    scores = {name: (DeltaE2000(), DeltaColorfulness()) for name in ("median", "sample")}
    for i in range(100, 116):
        page = gen(i, 128)
        target = torch.from_numpy(page.color).permute(2, 0, 1)[None]
        preds = {"median": oracle.median_page(page.color, page.labels),
                 "sample": oracle.sampled_page(page.color, page.labels, rng)}
        for name, (de, cf) in scores.items():
            de.update(preds[name], target)
            cf.update(preds[name], target)
    (de_median, cf_median), (de_sample, cf_sample) = ((float(a.compute()), float(b.compute()))
                                                      for a, b in scores.values())
    assert 0 < de_median < de_sample < 20
    assert cf_median < 0 and abs(cf_sample) < abs(cf_median)
