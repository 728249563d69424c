"""Callbacks that every dualflow run gets: exact-resume RNG states, rank-zero image panels, W&B summaries
and config, and the manifest record of the stage."""

from __future__ import annotations

import random
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.loggers import WandbLogger
from lightning.pytorch.utilities import rank_zero_only
from PIL import Image

from dualflow import manifest, wandb_utils
from dualflow.stage_table import stage_number


class RNGState(L.Callback):
    """Saves and restores the torch / CUDA / numpy / python RNG states in checkpoints (Lightning does not),
    so a resumed run draws the same random numbers as an uninterrupted one. Plain types only, so that
    checkpoints load with ``weights_only=True``."""

    def state_dict(self) -> dict[str, Any]:
        np_state = np.random.get_state()
        state = {
            "torch": torch.get_rng_state(),
            "numpy": [np_state[0], torch.from_numpy(np_state[1].astype(np.int64)), *map(float, np_state[2:])],
            "python": [list(random.getstate()[1]), random.getstate()[0], random.getstate()[2]],
        }
        if torch.cuda.is_available() and torch.cuda.is_initialized():
            state["cuda"] = torch.cuda.get_rng_state_all()
        return state

    def load_state_dict(self, state: dict[str, Any]) -> None:
        torch.set_rng_state(state["torch"])
        name, keys, pos, has_gauss, gauss = state["numpy"]
        np.random.set_state((name, keys.numpy().astype(np.uint32), int(pos), int(has_gauss), gauss))
        internal, version, gauss_py = state["python"]
        random.setstate((version, tuple(internal), gauss_py))
        if "cuda" in state and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(state["cuda"])


class ImagePanels(L.Callback):
    """On rank 0, at each validation, asks the module for panels of the first validation batch (the same
    pages every time) and logs them to W&B as uint8 images; also writes the latest as PNGs under
    ``<default_root_dir>/panels/`` for runs without a dashboard."""

    def __init__(self, max_pages: int = 4):
        self.max_pages = max_pages

    @rank_zero_only
    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx, dataloader_idx=0) -> None:
        if batch_idx != 0 or trainer.sanity_checking or not hasattr(pl_module, "log_images"):
            return
        with torch.no_grad():
            panels = pl_module.log_images(batch)
        out = Path(trainer.default_root_dir) / "panels"
        out.mkdir(parents=True, exist_ok=True)
        for key, img in panels.items():
            Image.fromarray(img).save(out / f"{key.replace('/', '_')}.png")
            for logger in trainer.loggers:
                if isinstance(logger, WandbLogger):
                    logger.log_image(key=key, images=[img], step=trainer.global_step)


def metric_directions(pl_module) -> dict[str, str]:
    """``val/...`` metric key → ``min`` / ``max`` from each torchmetrics Metric's ``higher_is_better``."""
    from dualflow.metrics.suite import log_key

    directions = {"val/loss": "min"}
    suite = getattr(pl_module, "val_metrics", None)
    if suite is not None:
        for name, metric in suite.items(keep_base=False, copy_state=False):
            hib = getattr(metric, "higher_is_better", None)
            if hib is not None:
                directions[log_key(name)] = "max" if hib else "min"
    if getattr(pl_module, "fid_key", None):
        directions[pl_module.fid_key] = "min"
    return directions


class WandbSetup(L.Callback):
    """On rank 0: the resolved config into ``wandb.config`` and best-value summaries via ``define_metric``."""

    def __init__(self, config: dict[str, Any]):
        self.config = config

    @rank_zero_only
    def setup(self, trainer, pl_module, stage: str) -> None:
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(self.config, allow_val_change=True)
                wandb_utils.define_summaries(logger.experiment, metric_directions(pl_module))

    @rank_zero_only
    def teardown(self, trainer, pl_module, stage: str) -> None:
        # Close the run, so that another stage started in this process gets a run of its own.
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger) and logger._experiment is not None:
                logger.experiment.finish()


def _floats(metrics: dict[str, Any], prefixes: tuple[str, ...]) -> dict[str, float]:
    out = {}
    for k, v in metrics.items():
        if k.startswith(prefixes):
            value = float(v)
            if np.isfinite(value):
                out[k] = value
    return out


class ManifestWriter(L.Callback):
    """Records the stage in ``runs/<experiment>/manifest.json`` (rank 0): best checkpoint and the validation
    metrics of the epoch that produced it, resolved config, W&B run, git commit, start and end time."""

    def __init__(self, experiment: str, stage: str, config: dict[str, Any], runs_dir: str = "runs"):
        self.experiment, self.stage, self.config, self.runs_dir = experiment, stage, config, runs_dir
        self.best: tuple[float, dict[str, float]] | None = None
        self.started = None

    def _stamp(self) -> str:
        return time.strftime("%Y-%m-%dT%H:%M:%S%z")

    @rank_zero_only
    def on_fit_start(self, trainer, pl_module) -> None:
        self.started = self._stamp()
        manifest.mark_later_stale(self.experiment, self.stage, self.runs_dir)

    def on_validation_end(self, trainer, pl_module) -> None:
        ckpt = trainer.checkpoint_callback
        if trainer.sanity_checking or ckpt is None or ckpt.monitor not in trainer.callback_metrics:
            return
        score = float(trainer.callback_metrics[ckpt.monitor])
        better = self.best is None or (score < self.best[0] if ckpt.mode == "min" else score > self.best[0])
        if better:
            self.best = (score, _floats(trainer.callback_metrics, ("val/",)))

    def _record(self, trainer) -> dict[str, Any]:
        entry: dict[str, Any] = {"stage": stage_number(self.stage), "config": self.config,
                                 "git_commit": manifest.git_commit(), "finished": self._stamp(), "stale": False}
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                entry["wandb"] = wandb_utils.run_record(logger)
        return entry

    @rank_zero_only
    def on_fit_end(self, trainer, pl_module) -> None:
        ckpt = trainer.checkpoint_callback
        entry = self._record(trainer)
        entry.update(started=self.started, global_step=trainer.global_step,
                     best_ckpt=ckpt.best_model_path if ckpt else None, last_ckpt=ckpt.last_model_path if ckpt else None,
                     monitor=ckpt.monitor if ckpt else None)
        if self.best is not None:
            entry.update(best_score=self.best[0], metrics=self.best[1])
        untrained = getattr(pl_module, "untrained_metrics", None)
        if untrained:
            entry["untrained_metrics"] = untrained
            key = "val/color/delta_e2000"
            if key in untrained and key in entry.get("metrics", {}):
                entry["delta_e2000_reduction"] = 1.0 - entry["metrics"][key] / untrained[key]
                print(f"[dualflow] {key}: untrained {untrained[key]:.2f} → {entry['metrics'][key]:.2f} "
                      f"({100 * entry['delta_e2000_reduction']:.0f}% lower)")
        path = manifest.update_stage(self.experiment, self.stage, entry, self.runs_dir)
        print(f"[dualflow] {self.stage}: best checkpoint {entry['best_ckpt']} "
              f"({entry.get('monitor')}={entry.get('best_score')}); recorded in {path}")
        for k, v in sorted(entry.get("metrics", {}).items()):
            print(f"[dualflow]   {k} = {v:.4f}")

    @rank_zero_only
    def on_test_end(self, trainer, pl_module) -> None:
        entry = self._record(trainer)
        entry["metrics"] = _floats(trainer.callback_metrics, ("test/",))
        path = manifest.update_stage(self.experiment, self.stage, entry, self.runs_dir)
        print(f"[dualflow] {self.stage}: test metrics recorded in {path}")
        for k, v in sorted(entry["metrics"].items()):
            print(f"[dualflow]   {k} = {v:.4f}")
