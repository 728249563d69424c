"""dualflow: a dual-flow manga colorizer (attention → priority patches + fill zones → fusion).

Public API: :class:`DualFlowColorizer` (the composite LightningModule) and :func:`colorize` (files → PNGs).
"""

import os

# albumentations checks PyPI for updates on every import; these machines have no network.
os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")

__version__ = "0.1.0"
__all__ = ["DualFlowColorizer", "colorize"]


def __getattr__(name: str):
    # Lazy: `import dualflow` stays cheap (no Lightning import) for data-loader workers and the CLI's startup.
    if name == "DualFlowColorizer":
        from dualflow.stages.composite import DualFlowColorizer

        return DualFlowColorizer
    if name == "colorize":
        from dualflow.inference import colorize

        return colorize
    raise AttributeError(name)
