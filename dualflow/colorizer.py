"""PageColorizer: the dual-flow pipeline on one page of any size, over three networks called the same way
whether they are PyTorch modules (the composite LightningModule) or ONNX Runtime sessions (``colorize
--engine onnx``): planning, fusion and post-processing are this one code path for both."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dualflow.color import nlab_to_rgb
from dualflow.fusion import Fusion, priority_canvas
from dualflow.hints import HINT_CHANNELS, HintError, for_net
from dualflow.panels import draw_boxes, panel
from dualflow.pipeline import (
    PlanSettings,
    importance_tiled,
    inference_long_side,
    pooled_canvas,
    primary_flow,
    run_secondary,
    upsample,
    working_size,
)


def step(name: str) -> torch.profiler.record_function:
    """A pipeline step as a ``page/<name>`` range for ``torch.profiler`` (``bench --only profile``); next to free
    when no profiler runs."""
    return torch.profiler.record_function(f"page/{name}")


@dataclass
class PageColorizer:
    """``attention`` has ``stride``, ``window``, ``view`` and ``importance_of_view`` (:class:`models.AttentionNet`);
    ``primary`` and ``secondary`` map their input batch to normalised Lab. ``secondary_meta`` is stage 3's
    checkpoint metadata (working size, guided-filter settings); ``max_working_size`` caps the secondary's
    working long side, ``patch_batch`` the primary's patches per call, ``attention_tile`` the attention's
    tile (memory on large pages)."""

    attention: Any
    primary: Any
    secondary: Any
    plan_settings: PlanSettings
    secondary_meta: dict
    fusion: Fusion
    device: torch.device
    patch_batch: int = 16
    attention_tile: int = 1024
    max_working_size: int = 512
    primary_hints: bool = False  # stage 2 was trained with colour hints (the secondary's: secondary_meta)

    @property
    def takes_hints(self) -> bool:
        """Whether these nets were trained with colour hints (``hints`` of :meth:`colorize_page`)."""
        return self.primary_hints and bool(self.secondary_meta.get("hints", False))

    @torch.inference_mode()
    def colorize_page(self, bw: torch.Tensor, debug: bool = False, hints: torch.Tensor | None = None,
                      ) -> dict[str, Any]:
        """One page (1,H,W) or (1,1,H,W) in [0,1] → ``rgb`` (3,H,W) with the importance map, plan and coherence
        report; ``hints``: the page's hint map (4,H,W) (:mod:`dualflow.hints`; None: automatic); ``debug`` adds
        the page-sized primary ``canvas`` and secondary ``fill`` (Lab), which the pipeline itself never holds
        whole."""
        bw = bw.reshape(1, 1, *bw.shape[-2:]).to(self.device, torch.float32)
        size = tuple(bw.shape[-2:])
        if hints is not None:
            if not self.takes_hints:
                raise HintError("these models were trained without colour hints (before hints, or with "
                                "--data.hints=none): colour without hints, or retrain with hints")
            if tuple(hints.shape[-2:]) != size:
                raise HintError(f"hint map is {hints.shape[-1]}x{hints.shape[-2]}, the page {size[1]}x{size[0]}")
            hints = hints.reshape(1, HINT_CHANNELS, *size)
        with step("attention"):
            importance = importance_tiled(self.attention, bw, self.attention_tile)
        with step("primary"):  # the plan's boxes and the primary net on them
            flow = primary_flow(self.primary, bw, importance, self.plan_settings, self.patch_batch,
                                for_net(hints, bw, self.primary_hints), drop_empty=True)
        with step("plan"):  # blend windows, coverage and transition band at page resolution
            [(patches, plan)] = flow.plans()
        m = self.secondary_meta
        long_side = inference_long_side(size, m, self.max_working_size)
        with step("canvas"):
            canvas, coverage = pooled_canvas(patches, plan.boxes, plan.weights, size, working_size(size, long_side))
        with step("secondary"):  # the net at its working size and the guided filter's coefficients
            fill = run_secondary(self.secondary, bw, canvas[None], coverage[None], importance, long_side,
                                 m["guide_radius"], m["guide_eps"], m.get("tone_radius", 0),  # 0: older checkpoints
                                 for_net(hints, bw, bool(m.get("hints", False))))
        with step("fusion"):  # the fill at page resolution, blending, harmonisation, post-processing
            fused = self.fusion(patches, plan, fill, bw[0], rgb=True, hints=None if hints is None else hints[0])
        out = {"rgb": fused.page, "importance": importance[0], "plan": plan, "report": fused.report}
        if debug:
            full = fill.full()[0]
            out.update(fill=full, canvas=priority_canvas(fused.patches, plan, full))
        return out

    def scale_note(self, size: tuple[int, int]) -> str | None:
        """A warning when a page of ``size`` (H, W) is far from the scale the stages were trained at, else None.
        The nets know strokes, screentone and figures at the size of their training pages (a 1024×1448 page at
        300 dpi for the cpu preset); a whole page under half that long side is a thumbnail or a web preview,
        drawn smaller than they know. The page's pixels do not say its dpi, so this reads its size only."""
        trained = self.secondary_meta.get("trained_long_side") or 0
        if trained and max(size) < trained / 2:
            return (f"{size[1]}x{size[0]} is under half the {trained}-px long side of the pages the models were "
                    f"trained on: a page this small is drawn smaller than they know (a thumbnail or a downscaled "
                    f"page), so expect weaker colour; colour the full-resolution scan where there is one")
        return None

    def debug_panel(self, bw: torch.Tensor, out: dict) -> np.ndarray:
        """bw | importance | patch boxes | primary canvas | secondary | fused, for ``colorize --debug``, each
        column labelled; the boxes' label says how many patches the primary coloured and how much of the page."""
        size = tuple(bw.shape[-2:])
        imp = upsample(out["importance"][None], size)[0]
        bw3 = bw.reshape(1, *size).cpu()
        boxes = out["plan"].boxes
        covered = out["plan"].inside()
        labels = ["B&W page", "importance", f"{len(boxes)} patches, {float(covered.float().mean()):.0%} of page",
                  "primary canvas", "secondary", "fused"]
        return panel(bw3, imp.cpu(), draw_boxes(bw3, boxes), nlab_to_rgb(out["canvas"][None])[0].cpu(),
                     nlab_to_rgb(out["fill"][None])[0].cpu(), out["rgb"].cpu(), labels=labels)
