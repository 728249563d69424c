"""PageColorizer: the dual-flow pipeline on one page of any size, over three networks called the same way
whether they are PyTorch modules (the composite LightningModule) or ONNX Runtime sessions (``colorize
--engine onnx``): planning, fusion and post-processing are this one code path for both."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dualflow.color import nlab_to_rgb
from dualflow.fusion import Fusion, laid_over, priority_canvas
from dualflow.hints import HINT_CHANNELS, HintError, for_net, propagate, resample
from dualflow.panels import draw_boxes, panel
from dualflow.pipeline import (
    PlanSettings,
    guided_fill,
    importance_tiled,
    inference_long_side,
    pooled_canvas,
    primary_flow,
    run_secondary,
    upsample,
    working_size,
)
from dualflow.scan_dpi import net_size, to_scale


def step(name: str) -> torch.profiler.record_function:
    """A pipeline step as a ``page/<name>`` range for ``torch.profiler`` (``bench --only profile``); next to free
    when no profiler runs."""
    return torch.profiler.record_function(f"page/{name}")


def at_trained_scale(colorize: Callable[..., dict[str, Any]], bw: torch.Tensor, hints: torch.Tensor | None,
                     dpi: float | None, trained_dpi: float, guide: dict[str, Any], debug: bool = False
                     ) -> dict[str, Any]:
    """``colorize(bw, debug, hints, overlay)`` on a page (1,1,H,W) scanned at ``dpi``, at the scale its nets were
    trained at (``trained_dpi``): the page and its hint map (1,4,H,W) resampled there, the colour brought back to
    the page's own pixels (guided upsampling on the page, ``guide``'s filter settings, or area averages) and the
    hints laid over at full resolution. A page within 20 % of the trained dpi is coloured as it is
    (:func:`scan_dpi.net_size`)."""
    size = tuple(bw.shape[-2:])
    scaled = net_size(size, dpi, trained_dpi)
    if scaled == size:
        return colorize(bw, debug, hints, overlay=True)
    with step("rescale"):
        net_bw = to_scale(bw, scaled)
        out = colorize(net_bw, debug, None if hints is None else resample(hints, scaled), overlay=False)
    with step("restore"):
        rgb = out["rgb"][None]
        if scaled[0] < size[0]:  # guided upsampling in RGB: no page-sized colour conversion
            rgb = guided_fill(rgb, net_bw, bw, guide["guide_radius"], guide["guide_eps"],
                              guide.get("tone_radius", 0)).full()
        page = to_scale(rgb, size)[0].clamp(0, 1)
        if hints is not None:
            hinted = propagate(bw[0], hints[0]).to(page.device)
            page = laid_over(page, torch.cat([nlab_to_rgb(hinted[None, :3])[0], hinted[3:]]))  # in RGB
    out.update(rgb=page, bw=net_bw[0], scale={"dpi": float(dpi), "net_dpi": trained_dpi, "net_size": scaled})
    return out


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

    @property
    def trained_dpi(self) -> float:
        """The scan resolution the stages were trained at (0: thumbnail pages, no physical scale)."""
        return float(self.secondary_meta.get("trained_dpi") or 0)

    @torch.inference_mode()
    def colorize_page(self, bw: torch.Tensor, debug: bool = False, hints: torch.Tensor | None = None,
                      dpi: float | None = None) -> dict[str, Any]:
        """One page (1,H,W) or (1,1,H,W) in [0,1] → ``rgb`` (3,H,W) with the importance map, plan and coherence
        report; ``hints``: the page's hint map (4,H,W) (:mod:`dualflow.hints`; None: automatic); ``dpi``: the
        page's scan resolution (:func:`scan_dpi.resolve_dpi`; None: taken as the trained one). A page scanned
        at another resolution than the stages were trained at is coloured at theirs and its colour brought back
        to its own pixels (``scale`` in the result); ``debug`` adds the primary ``canvas`` and secondary
        ``fill`` (Lab) at the nets' scale, which the pipeline itself never holds whole."""
        bw = bw.reshape(1, 1, *bw.shape[-2:]).to(self.device, torch.float32)
        size = tuple(bw.shape[-2:])
        if hints is not None:
            if not self.takes_hints:
                raise HintError("these models were trained without colour hints (before hints, or with "
                                "--data.hints=none): colour without hints, or retrain with hints")
            if tuple(hints.shape[-2:]) != size:
                raise HintError(f"hint map is {hints.shape[-1]}x{hints.shape[-2]}, the page {size[1]}x{size[0]}")
            hints = hints.reshape(1, HINT_CHANNELS, *size).to(self.device, torch.float32)
        return at_trained_scale(self._colorize, bw, hints, dpi, self.trained_dpi, self.secondary_meta, debug)

    def _colorize(self, bw: torch.Tensor, debug: bool, hints: torch.Tensor | None, overlay: bool) -> dict[str, Any]:
        """The pipeline on a page (1,1,H,W) at the nets' scale; ``overlay``: lay the hints over the fused page
        (not when the page is brought to another resolution after)."""
        size = tuple(bw.shape[-2:])
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
            laid = hints[0] if hints is not None and overlay else None
            fused = self.fusion(patches, plan, fill, bw[0], rgb=True, hints=laid)
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
        if self.trained_dpi:  # models of a physical scale bring every page to it by its dpi
            return None
        if trained and max(size) < trained / 2:
            return (f"{size[1]}x{size[0]} is under half the {trained}-px long side of the pages the models were "
                    f"trained on: a page this small is drawn smaller than they know (a thumbnail or a downscaled "
                    f"page), so expect weaker colour; colour the full-resolution scan where there is one")
        return None

    def debug_panel(self, bw: torch.Tensor, out: dict) -> np.ndarray:
        """bw | importance | patch boxes | primary canvas | secondary | fused, for ``colorize --debug``, each
        column labelled; the boxes' label says how many patches the primary coloured and how much of the page. A
        page coloured at another scale is shown at the nets' (its scan and net dpi in the first label)."""
        bw = out.get("bw", bw)
        size = tuple(bw.shape[-2:])
        imp = upsample(out["importance"][None], size)[0]
        bw3 = bw.reshape(1, *size).cpu()
        boxes = out["plan"].boxes
        covered = out["plan"].inside()
        scale = out.get("scale")
        fused = out["rgb"] if not scale else to_scale(out["rgb"][None], size)[0]
        page = f"B&W at {scale['net_dpi']:g} dpi (scan {scale['dpi']:.0f})" if scale else "B&W page"
        labels = [page, "importance", f"{len(boxes)} patches, {float(covered.float().mean()):.0%} of page",
                  "primary canvas", "secondary", "fused"]
        return panel(bw3, imp.cpu(), draw_boxes(bw3, boxes), nlab_to_rgb(out["canvas"][None])[0].cpu(),
                     nlab_to_rgb(out["fill"][None])[0].cpu(), fused.cpu(), labels=labels)
