"""``python -m dualflow bench``: quality, speed and memory of an experiment against its baselines and oracles on
one machine, one job per module: :mod:`probes` (the machine, timing, memory), :mod:`data` (page throughput),
:mod:`inference` (whole pages in fresh processes), :mod:`volume` (a .cbz end to end, pages/min), :mod:`quality`
(the metric suite on held-out pages, with :mod:`oracle` beside the models and :mod:`plausibility` for
``class_colour_distance``), :mod:`hint_curve` (quality against colour hints, with :mod:`levin` the classical
anchor and :mod:`chart` its plot), :mod:`coverage` (the plan's coverage/cost curve), :mod:`profile` (where a
page's time goes), :mod:`scales` (quality across scan resolutions, the dpi estimate's error), :mod:`steps`
(where a training step's time goes, FLOP/s), :mod:`costs` (per-stage costs of a trained experiment),
:mod:`ablation` (experiments that share stage 1, side by side), :mod:`report` (the Markdown table) and
:mod:`run` (the command). :mod:`compare` puts experiments side by side from their manifests."""
