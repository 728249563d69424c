"""DualFlowColorizer: the full pipeline on pages of any size, from the three stages of an experiment.

attention (tiled) → PatchPlan → primary on patches (batched within the budget) → secondary at its working
resolution (guided upsampling) → fusion. ``predict_step`` colours pages; ``test_step`` scores them with the
full metric suite and, with a W&B logger, logs a table of every test page (to find the worst), debug panels
of the first pages and the experiment's sample pages. Nothing here trains: every stage is frozen."""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from dualflow.colorizer import PageColorizer
from dualflow.fusion import Fusion, FusionConfig
from dualflow.loader import plan_settings, set_chroma_temperature
from dualflow.metrics.color import DeltaE2000
from dualflow.metrics.suite import build_suite, page_inputs, update_suite
from dualflow.metrics.transition import SeamScore
from dualflow.stage_table import require_ckpt
from dualflow.stages.base import StageModule
from dualflow.stages.frozen import load_stage_net


class DualFlowColorizer(StageModule):
    """Composite inference module. Checkpoints come from the experiment's manifest (filled by the CLI or
    :func:`inference.load_colorizer`) or explicit paths; it colours through the same
    :class:`colorizer.PageColorizer` as :func:`loader.load_page_colorizer`.
    ``patch_budget``/``patch_threshold``/``patch_density`` override stage 2's plan; ``max_working_size`` caps the
    secondary's working long side (its memory) on large pages; ``chroma_temperature`` sets the annealed mean of
    models trained with a chroma grid (lower: more vivid, higher: safer colours; None keeps the trained value);
    ``fusion`` configures blending and post-processing (:class:`fusion.FusionConfig`). ``log_pages`` test pages get
    debug panels in W&B; ``samples_dir`` (``runs/<exp>/samples``, set by ``dualflow train``) holds sample pages to
    log with the test run."""

    stage = "composite"

    def __init__(self, attention_ckpt: str | None = None, primary_ckpt: str | None = None,
                 secondary_ckpt: str | None = None, patch_budget: int | None = None,
                 patch_threshold: float | None = None, patch_density: float | None = None,
                 max_working_size: int = 512,
                 chroma_temperature: float | None = None, fusion: FusionConfig = FusionConfig(),
                 patch_batch: int = 16, attention_tile: int = 1024, lpips: bool = True, fid: bool = False,
                 allow_random_backbone: bool = False, log_pages: int = 4, samples_dir: str | None = None):
        super().__init__(lr=0.0, weight_decay=0.0, warmup_steps=0)
        self.save_hyperparameters(logger=False)
        self.frozen["attention"], _ = load_stage_net(
            require_ckpt(attention_ckpt, "attention"), "attention")
        self.frozen["primary"], primary_meta = load_stage_net(
            require_ckpt(primary_ckpt, "primary"), "primary")
        self.frozen["secondary"], self.secondary_meta = load_stage_net(
            require_ckpt(secondary_ckpt, "secondary"), "secondary")
        if chroma_temperature is not None:
            set_chroma_temperature([self.frozen["primary"], self.frozen["secondary"]], chroma_temperature)
        self.plan_settings = plan_settings(primary_meta, patch_budget, patch_threshold, patch_density)
        self.primary_hints = bool(primary_meta.get("hints", False))
        self.fusion = Fusion(fusion)
        self.net = nn.Identity()  # nothing trainable
        self._lpips, self._fid, self._allow_random = lpips, fid, allow_random_backbone
        self.val_metrics = self.test_metrics = None  # built at the start of validation / test (on device)

    def page_colorizer(self) -> PageColorizer:
        """The pipeline over this module's frozen networks, on its current device and settings."""
        hp = self.hparams
        return PageColorizer(self.frozen["attention"], self.frozen["primary"], self.frozen["secondary"],
                             self.plan_settings, self.secondary_meta, self.fusion, self.device, hp.patch_batch,
                             hp.attention_tile, hp.max_working_size, self.primary_hints)

    @property
    def takes_hints(self) -> bool:
        """Whether the frozen nets were trained with colour hints."""
        return self.page_colorizer().takes_hints

    def colorize_page(self, bw: torch.Tensor, debug: bool = False, hints: torch.Tensor | None = None,
                      dpi: float | None = None) -> dict[str, Any]:
        """One page through :meth:`PageColorizer.colorize_page`."""
        return self.page_colorizer().colorize_page(bw, debug, hints, dpi)

    def forward(self, bw: torch.Tensor, hints: torch.Tensor | None = None) -> torch.Tensor:
        """(B,1,H,W) pages (with their hint maps (B,4,H,W)) → (B,3,H,W) RGB pages."""
        return torch.stack([self.colorize_page(bw[i], hints=None if hints is None else hints[i])["rgb"]
                            for i in range(bw.shape[0])])

    def predict_step(self, batch: dict, batch_idx: int) -> dict:
        return {"name": batch.get("name"), "rgb": self(batch["bw"], batch.get("hints"))}

    def _suite(self, split: str):
        return build_suite("page", split, lpips=self._lpips, fid=self._fid,
                           allow_random_backbone=self._allow_random).to(self.device)

    def on_validation_start(self) -> None:
        self.val_metrics = self._suite("val")

    def on_test_start(self) -> None:
        self.test_metrics = self._suite("test")
        self.page_rows: list[list] = []
        self.page_panels: list[tuple[str, np.ndarray]] = []

    def _eval(self, batch: dict, suite, split: str) -> None:
        if not self.count_skipped(batch):
            return
        bw, hints, testing = batch["bw"], batch.get("hints"), split == "test"
        outs, seconds = [], []
        for i in range(bw.shape[0]):
            start = time.perf_counter()
            debug = testing and len(self.page_panels) + i < self.hparams.log_pages
            outs.append(self.colorize_page(bw[i], debug=debug, hints=None if hints is None else hints[i]))
            if self.device.type == "cuda":
                torch.cuda.synchronize(self.device)
            seconds.append(time.perf_counter() - start)
        preds = torch.stack([o["rgb"] for o in outs])
        inputs = page_inputs(batch, [o["plan"] for o in outs])
        update_suite(suite, preds=preds, **inputs)
        for o in outs:
            for k, v in o["report"].items():
                self.log(f"{split}/coherence/{k}", v, batch_size=1)
        if testing:
            names = batch.get("name") or [str(len(self.page_rows) + i) for i in range(bw.shape[0])]
            for i, o in enumerate(outs):
                self.page_rows.append(page_row(names[i], preds[i:i + 1], inputs, i, o, seconds[i]))
                if "fill" in o:
                    self.page_panels.append((names[i], self.debug_panel(bw[i], o)))

    def on_test_epoch_end(self) -> None:
        self.last_metrics = {k: float(v) for k, v in self.log_suite(self.test_metrics).items()}
        rows, panels = self.page_rows, self.page_panels
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list = [None] * torch.distributed.get_world_size()
            torch.distributed.all_gather_object(gathered, (rows, panels))
            rows = [r for part in gathered for r in part[0]]
            panels = [p for part in gathered for p in part[1]][: self.hparams.log_pages]
        if self.global_rank == 0:
            self._log_to_wandb(rows, panels)

    def _log_to_wandb(self, rows: list[list], panels: list[tuple[str, np.ndarray]]) -> None:
        """The per-page table, the debug panels and the sample pages, to every W&B logger of the run."""
        from lightning.pytorch.loggers import WandbLogger

        samples = sample_pages(self.hparams.samples_dir)
        for logger in self.loggers:
            if not isinstance(logger, WandbLogger):
                continue
            logger.log_table(key="test/pages", columns=PAGE_COLUMNS, data=sorted(rows, key=lambda r: -r[1]))
            if panels:
                logger.log_image(key="test/panels", images=[p for _, p in panels], caption=[n for n, _ in panels])
            for key, images in samples.items():
                logger.log_image(key=f"test/{key}", images=[img for _, img in images],
                                 caption=[name for name, _ in images])

    def debug_panel(self, bw: torch.Tensor, out: dict) -> np.ndarray:
        """bw | importance | patch boxes | primary canvas | secondary | fused (:meth:`PageColorizer.debug_panel`)."""
        return self.page_colorizer().debug_panel(bw, out)


PAGE_COLUMNS = ["page", "delta_e2000", "seam", "patches", "seconds", "seam_disagreement", "reharmonized"]


def page_row(name: str, pred: torch.Tensor, inputs: dict, i: int, out: dict, seconds: float) -> list:
    """One test page's row of the W&B table (:data:`PAGE_COLUMNS`); the seam score is None on a page without
    patches."""
    de, seam = DeltaE2000().to(pred.device), SeamScore().to(pred.device)
    update_suite(de, preds=pred, target=inputs["target"][i:i + 1])
    update_suite(seam, preds=pred, target=inputs["target"][i:i + 1], seams=inputs["seams"][i:i + 1])
    seam_value = float(seam.compute())
    report = out["report"]
    return [name, float(de.compute()), seam_value if seam_value == seam_value else None, len(out["plan"]),
            seconds, report["seam_disagreement"], report["reharmonized"]]


def sample_pages(folder: str | None) -> dict[str, list[tuple[str, np.ndarray]]]:
    """``samples`` (coloured pages), ``samples_debug`` (their debug panels) and ``samples_hints`` (automatic
    beside 16 clicks, :mod:`dualflow.samples`) from a samples folder."""
    from PIL import Image

    out: dict[str, list[tuple[str, np.ndarray]]] = {"samples": [], "samples_debug": [], "samples_hints": []}
    for path in sorted(Path(folder).glob("*.png")) if folder else []:
        key = ("samples_debug" if path.stem.endswith("_debug")
               else "samples_hints" if re.search(r"_hints\d+$", path.stem) else "samples")
        out[key].append((path.stem, np.asarray(Image.open(path).convert("RGB"))))
    return {k: v for k, v in out.items() if v}
