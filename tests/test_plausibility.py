"""class_colour_distance: known answers. The truth scores 0; a grey page and one colour per class score the
spread of each class's colours; an oracle that commits to one plausible colour per region scores near the truth
and better than the oracle's best single guess."""

import numpy as np
import torch

from dualflow.bench.oracle import ClassToneOracle, _lab, _rgb
from dualflow.bench.plausibility import ClassColourDistance, sliced_wasserstein
from dualflow.data.palette import CLASSES
from dualflow.data.synth import SynthManga


def test_sliced_wasserstein_is_a_distance_between_point_sets():
    rng = np.random.default_rng(0)
    a, directions = rng.normal(size=(50, 3)), np.eye(3)
    assert sliced_wasserstein(a, a[::-1], directions) == 0  # order does not matter
    assert abs(sliced_wasserstein(a, a + [3.0, 0, 0], directions) - 1.0) < 1e-9  # a shift of 3 on one of 3 axes


def test_known_answers():
    pages = [SynthManga(31337)(i, 128) for i in range(12)]
    oracle = ClassToneOracle.fit(SynthManga(0)(i, 128) for i in range(16))
    per_class: dict[int, list[np.ndarray]] = {}
    for p in pages:
        lab = _lab(p.color)
        for c in np.unique(p.labels):
            per_class.setdefault(int(c), []).append(lab[p.labels == c].mean(0))
    class_mean = np.zeros((len(CLASSES), 3))
    for c, means in per_class.items():
        class_mean[c] = np.mean(means, 0)
    rng = np.random.default_rng(0)
    rows = {k: ClassColourDistance() for k in ("truth", "grey", "one_per_class", "oracle_median", "oracle_sample")}
    for p in pages:
        truth = torch.from_numpy(p.color).permute(2, 0, 1)[None]
        outputs = {"truth": truth, "grey": truth.mean(1, keepdim=True).expand(-1, 3, -1, -1),
                   "one_per_class": _rgb(class_mean[p.labels]),
                   "oracle_median": oracle.median_page(p.color, p.labels),
                   "oracle_sample": oracle.sampled_page(p.color, p.labels, rng)}
        for name, out in outputs.items():
            rows[name].update(out, truth, p.labels, p.identity)
    d = {name: row.compute()["class_colour_distance"] for name, row in rows.items()}
    assert d["truth"] == 0
    assert d["grey"] > 1.5 * d["oracle_sample"] and d["one_per_class"] > 2.5 * d["oracle_sample"]
    assert d["oracle_sample"] < d["oracle_median"]
    assert set(rows["truth"].compute()) >= {"class_colour_distance/skin", "class_colour_distance/hair"}
