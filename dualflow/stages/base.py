"""What every stage shares: optimiser and schedule over trainable parameters only, skipped-sample counting,
metric logging with ``{split}/{group}/{name}`` keys, and checkpoints that carry the network's config."""

from __future__ import annotations

import math
import re
from typing import Any

import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dualflow.color import nlab_to_rgb, rgb_to_nlab
from dualflow.hints import HINT_CHANNELS
from dualflow.metrics.color import colorfulness
from dualflow.metrics.perceptual import FID, build_lpips, metric_name
from dualflow.metrics.suite import SEP, build_suite, compute_logged, update_suite
from dualflow.models import UNet
from dualflow.models.discriminator import PatchDiscriminator
from dualflow.precision import float32
from dualflow.stages.frozen import FrozenStagesMixin

HINTED = re.compile(r"hints\d+")  # batch keys of hint maps for the hinted validation (data.val_hint_clicks)


class StageModule(FrozenStagesMixin, L.LightningModule):
    """Base of the stage LightningModules. Subclasses set ``self.net`` (the trained network), ``stage`` (its
    name) and ``net_config`` (the network's constructor kwargs), and may hold earlier stages in ``self.frozen``."""

    stage: str = ""

    def __init__(self, lr: float, weight_decay: float, warmup_steps: int, min_lr_ratio: float = 0.05):
        super().__init__()
        self.lr, self.weight_decay = lr, weight_decay
        self.warmup_steps, self.min_lr_ratio = warmup_steps, min_lr_ratio
        self.frozen = nn.ModuleDict()
        self.net_config: dict[str, Any] = {}

    # ---- optimisation -------------------------------------------------------------------------------
    def trainable_parameters(self, module: nn.Module | None = None) -> list[nn.Parameter]:
        return [p for p in (module or self.net).parameters() if p.requires_grad]

    def lr_lambda(self, step: int) -> float:
        """Linear warm-up, then cosine decay to ``min_lr_ratio`` over the run's estimated steps."""
        total = max(1, int(self.trainer.estimated_stepping_batches)) if self._trainer is not None else 1
        if step < self.warmup_steps:
            return (step + 1) / max(1, self.warmup_steps)
        t = min(1.0, (step - self.warmup_steps) / max(1, total - self.warmup_steps))
        return self.min_lr_ratio + (1 - self.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * t))

    def make_optimizer(self, params, lr: float | None = None):
        opt = torch.optim.AdamW(params, lr=lr or self.lr, weight_decay=self.weight_decay, betas=(0.9, 0.99))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, self.lr_lambda)
        return opt, sched

    def configure_optimizers(self):
        opt, sched = self.make_optimizer(self.trainable_parameters())
        if getattr(self, "disc", None) is None:
            return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}
        opt_d, sched_d = self.make_optimizer(self.trainable_parameters(self.disc), self.hparams.disc_lr)
        return [opt, opt_d], [sched, sched_d]

    def build_colour_net(self, inputs: int, hints: bool, lpips_weight: float, gan_weight: float,
                         allow_random_backbone: bool, **unet: Any) -> None:
        """A colorizer's UNet on ``inputs`` channels (then the hint map's when it takes hints), its LPIPS loss when
        weighted and its adversary (:meth:`build_adversary`)."""
        self.net_config = dict(in_channels=inputs + (HINT_CHANNELS if hints else 0), **unet)
        self.net = UNet(**self.net_config)
        self.lpips_loss = build_lpips(allow_random_backbone)[0] if lpips_weight > 0 else None
        self.build_adversary(gan_weight)

    # ---- colour that commits: adversarial and colourfulness losses (options of every colorizer) ---------------
    def build_adversary(self, gan_weight: float) -> None:
        """A conditional PatchGAN on (B&W, normalised Lab) when ``gan_weight`` > 0; training then runs with
        manual optimisation and two optimizers (:meth:`adversarial_step`)."""
        self.disc = PatchDiscriminator(in_channels=4) if gan_weight > 0 else None
        self.automatic_optimization = self.disc is None

    trained_dpi = 0.0  # the resolution the pages of this fit are brought to (data.scan.nets_dpi; 0: thumbnails)

    def on_fit_start(self) -> None:
        from dualflow.data.scan import nets_dpi

        data = getattr(self.trainer, "datamodule", None)
        self.trained_dpi = nets_dpi(data.hparams.get("dpi", 0)) if data is not None else 0.0
        if getattr(self, "disc", None) is not None and str(self.trainer.precision).startswith("16"):
            raise ValueError("gan_weight > 0 needs precision 32-true or bf16-mixed: the discriminator steps "
                             "outside Lightning's fp16 gradient scaler")

    def adversarial_step(self, condition: torch.Tensor, real: torch.Tensor, fake: torch.Tensor,
                         loss: torch.Tensor) -> torch.Tensor:
        """Hinge GAN with manual optimisation: a discriminator step on (``condition``, ``real``) against
        (``condition``, ``fake``), then the generator step on ``loss`` + ``gan_weight`` × its adversarial term.
        The discriminator's optimizer steps outside Lightning's step count (Lightning counts every optimizer's
        steps as global steps, Lightning-AI/pytorch-lightning#17958), so ``max_steps``, validation intervals and
        both schedules count training steps. Logs ``train/d_loss``, ``train/g_adv``, ``train/d_accuracy``."""
        opt_g, opt_d = self.optimizers()
        sched_g, sched_d = self.lr_schedulers()
        real_pair, fake_pair = torch.cat([condition, real], 1), torch.cat([condition, fake], 1)
        d_real, d_fake = self.disc(real_pair), self.disc(fake_pair.detach())
        d_loss = F.relu(1 - d_real).mean() + F.relu(1 + d_fake).mean()
        opt_d.zero_grad()
        self.manual_backward(d_loss)
        opt_d.optimizer.step()
        g_adv = -self.disc(fake_pair).mean()
        total = loss + self.hparams.gan_weight * g_adv
        opt_g.zero_grad()
        self.manual_backward(total)
        opt_g.step()
        sched_g.step()
        sched_d.step()
        accuracy = ((d_real > 0).float().mean() + (d_fake < 0).float().mean()) / 2
        self.log_dict({"train/d_loss": d_loss, "train/g_adv": g_adv, "train/d_accuracy": accuracy},
                      batch_size=real.shape[0])
        return total.detach()

    def finish_step(self, loss: torch.Tensor, condition: torch.Tensor, target_rgb: torch.Tensor,
                    pred: torch.Tensor, batch_size: int) -> torch.Tensor | None:
        """Log ``train/loss``; with a discriminator, take both optimizer steps here (:meth:`adversarial_step`)
        and return None, else return the loss for Lightning to step on."""
        if self.disc is not None:
            loss = self.adversarial_step(condition, rgb_to_nlab(target_rgb), pred, loss)
        self.log("train/loss", loss, prog_bar=True, batch_size=batch_size)
        return loss if self.automatic_optimization else None

    def colourfulness_loss(self, pred: torch.Tensor, target_rgb: torch.Tensor) -> torch.Tensor:
        """|colourfulness(pred) − colourfulness(target)| per image (Hasler–Süsstrunk, /100): it matches the
        target's colourfulness, so it pushes a greyish output towards colour without rewarding more than the
        page has."""
        return (colorfulness(nlab_to_rgb(pred)) - colorfulness(target_rgb.float())).abs().mean() / 100

    # ---- data bookkeeping ---------------------------------------------------------------------------
    def count_skipped(self, batch: dict) -> bool:
        """Log ``data/skipped`` (unreadable samples dropped by the collate); False when nothing is left."""
        skipped = batch.get("skipped")
        if skipped is not None:
            self.log("data/skipped", skipped.float(), reduce_fx="sum", on_step=False, on_epoch=True,
                     sync_dist=True, batch_size=1)
        return batch["bw"].shape[0] > 0

    # ---- training step: inputs (no gradients) then loss ----------------------------------------------
    def training_inputs(self, batch: dict) -> Any:
        """What the trained network needs besides the batch: targets, planned patches, the frozen stages'
        outputs. Batched tensor work on the batch's device, without host syncs; ``make bench`` times it
        apart from the forward and backward pass."""
        return None

    def training_loss(self, batch: dict, inputs: Any) -> torch.Tensor | None:
        """Forward pass, losses and their logging; returns the loss to back-propagate."""
        raise NotImplementedError

    def training_step(self, batch: dict, batch_idx: int):
        if not self.count_skipped(batch):
            return None
        return self.training_loss(batch, self.training_inputs(batch))

    def log_loss(self, split: str, loss: torch.Tensor, batch_size: int) -> None:
        """``{split}/loss``; not logged for the reference pass of the untrained model."""
        if split != "untrained":
            self.log(f"{split}/loss", loss, sync_dist=True, batch_size=batch_size)

    # Stages whose manifest entry should hold the untrained model's validation metrics, as the baseline
    # that training has to beat (stage 2's acceptance criterion is relative to it).
    reference_untrained: bool = False

    def on_train_start(self) -> None:
        if not self.reference_untrained or self.global_step > 0 or self.trainer.datamodule is None:
            return
        was_training = self.net.training
        self.net.eval()
        with torch.no_grad():
            for batch in self.trainer.datamodule.val_dataloader():
                batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
                self._eval(batch, self.val_metrics, "untrained")
        self.net.train(was_training)
        self.untrained_metrics = {k: float(v) for k, v in compute_logged(self.val_metrics).items()}
        self.val_metrics.reset()

    def _eval(self, batch: dict, suite, split: str) -> None:
        """Score one batch into ``suite`` (and log ``{split}/loss``); each stage defines it."""
        raise NotImplementedError

    @property
    def takes_hints(self) -> bool:
        """Whether the trained network takes colour hints (``--model.hints``)."""
        return bool(self.hparams.get("hints", False))

    def validation_step(self, batch: dict, batch_idx: int) -> None:
        self._eval(batch, self.val_metrics, "val")
        self._val_automatic = "hints" not in batch
        if not self.takes_hints:
            return
        for key in [k for k in batch if HINTED.fullmatch(k)]:  # the validation pages with n clicks (data)
            self._eval({**batch, "hints": batch[key]}, self.hinted_suite(key), f"val/{key}")

    def hinted_suite(self, key: str):
        """The validation suite of the pages with the hints ``batch[key]``, logged as ``val/<key>/...``; kept
        out of the module's state (checkpoints keep their keys) and made on first use."""
        suites = self.__dict__.setdefault("_hinted_suites", {})
        if key not in suites:
            suites[key] = self.val_metrics.clone(prefix=f"val{SEP}{key}{SEP}").to(self.device)
            suites[key].reset()
        return suites[key]

    def on_validation_epoch_end(self) -> None:
        values = self.log_suite(self.val_metrics)
        hinted = self.__dict__.get("_hinted_suites", {})
        if hinted and getattr(self, "_val_automatic", False):  # the same figures, beside the hinted ones
            self.log_dict({k.replace("val/", "val/hints0/", 1): v for k, v in values.items() if torch.isfinite(v)},
                          sync_dist=True)
        for suite in hinted.values():
            self.log_suite(suite)
        if getattr(self, "val_fid", None) is not None and not self.trainer.sanity_checking:
            self._validations = getattr(self, "_validations", 0) + 1
            if (self._validations - 1) % self.fid_every_n_val == 0:
                self.log_fid()

    # ---- page colorizers (stage 3 and the baselines) ------------------------------------------------
    def build_page_suites(self, val_lpips: bool, allow_random_backbone: bool, fid_every_n_val: int) -> None:
        """The validation and test suites of a colorizer of whole pages, and its validation FID."""
        self.val_metrics = build_suite("page", "val", lpips=val_lpips, allow_random_backbone=allow_random_backbone)
        self.test_metrics = build_suite("page", "test", lpips=val_lpips, allow_random_backbone=allow_random_backbone)
        self.build_val_fid(fid_every_n_val, allow_random_backbone)

    def working_meta(self) -> dict[str, Any]:
        """What inference needs of a colorizer that works at a reduced resolution: its working size, the guided
        filter's settings, the page long side and resolution it trained on (``self.trained_long_side``,
        ``self.trained_dpi``) and whether it takes hints."""
        hp = self.hparams
        return {"working_size": hp.working_size, "guide_radius": hp.guide_radius, "guide_eps": hp.guide_eps,
                "tone_radius": hp.tone_radius, "trained_long_side": self.trained_long_side, "hints": hp.hints,
                "trained_dpi": self.trained_dpi}

    # ---- FID during training (stage 3 and the baseline) ----------------------------------------------
    def build_val_fid(self, every_n_val: int, allow_random_backbone: bool) -> None:
        """FID is costly (an Inception pass per page): it runs every ``every_n_val``-th validation (0: never),
        on the data module's fixed FID pages (``data.n_fid``), not on the validation batches."""
        self.fid_every_n_val = every_n_val
        self.val_fid = FID(allow_random_backbone) if every_n_val > 0 else None
        self.fid_key = f"val/global/{metric_name('fid', self.val_fid.pretrained)}" if self.val_fid else None

    def predict_rgb(self, batch: dict) -> torch.Tensor:
        """The pages this stage produces for a batch, RGB (B,3,H,W) (what FID scores)."""
        raise NotImplementedError

    @torch.no_grad()
    def log_fid(self) -> torch.Tensor:
        """FID of :meth:`predict_rgb` against the colour pages of the FID set; each rank scores its shard and
        the metric's states are summed across ranks before the distance is computed."""
        for batch in self.trainer.datamodule.fid_dataloader():
            batch = {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
            if batch["bw"].shape[0]:
                update_suite(self.val_fid, preds=self.predict_rgb(batch), target=batch["color"])
        value = self.val_fid.compute()
        self.val_fid.reset()
        self.log(self.fid_key, value, sync_dist=True)  # equal on every rank already
        return value

    def test_step(self, batch: dict, batch_idx: int) -> None:
        self._eval(batch, self.test_metrics, "test")

    def on_test_epoch_end(self) -> None:
        self.log_suite(self.test_metrics)

    def outputs_for_loss(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(prediction, decoder features) of ``self.net`` on ``x`` for the losses. A chroma net's colours are
        decoded only when a loss looks at them (LPIPS, GAN); its cross-entropy works from the features."""
        features = self.net.features(x)
        decode = (getattr(self, "lpips_loss", None) is not None or getattr(self, "disc", None) is not None
                  or self.hparams.get("colourfulness_weight", 0) > 0)
        return self.net.head(features, decode=decode), features

    @float32
    def colour_losses(self, pred: torch.Tensor, target_rgb: torch.Tensor, features: torch.Tensor | None = None,
                      weight: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """L1 in normalised Lab, plus LPIPS on RGB when the stage has an ``lpips_loss`` network, plus the
        colourfulness match (:meth:`colourfulness_loss`) when ``colourfulness_weight`` > 0; ``total`` is their
        sum weighted by the ``l1_weight`` / ``lpips_weight`` / ``colourfulness_weight`` hyperparameters. For a
        net with a chroma grid, given its ``features``: the L1 covers lightness only and ab is learned by the
        rebalanced cross-entropy (``chroma``, weighted by ``chroma_weight``). ``weight`` (B,1,H,W): a per-pixel
        weight of the L1 and the cross-entropy (stage 3 weighs fill zones and transitions). Float32 under mixed
        precision."""
        hp = self.hparams
        target = rgb_to_nlab(target_rgb)
        chroma = features is not None and self.net.chroma is not None
        channels = slice(0, 1) if chroma else slice(0, 3)
        err = (pred[:, channels] - target[:, channels]).abs()
        losses = {"l1": err.mean() if weight is None else
                  (weight * err).sum() / (weight.sum() * err.shape[1]).clamp_min(1e-6)}
        total = hp.get("l1_weight", 1.0) * losses["l1"]
        if chroma:
            losses["chroma"] = self.net.chroma_loss(features, target[:, 1:], weight)
            total = total + hp.chroma_weight * losses["chroma"]
        if getattr(self, "lpips_loss", None) is not None:
            losses["lpips"] = self.lpips_loss(nlab_to_rgb(pred) * 2 - 1, target_rgb * 2 - 1).mean()
            total = total + hp.lpips_weight * losses["lpips"]
        if hp.get("colourfulness_weight", 0) > 0:
            losses["colourfulness"] = self.colourfulness_loss(pred, target_rgb)
            total = total + hp.colourfulness_weight * losses["colourfulness"]
        losses["total"] = total
        return losses

    def log_suite(self, suite) -> dict[str, torch.Tensor]:
        """Compute (synchronised), log and reset a MetricCollection; returns the logged values."""
        values = compute_logged(suite)
        finite = {k: v for k, v in values.items() if torch.isfinite(v)}
        self.log_dict(finite, sync_dist=True)
        suite.reset()
        return values

    # ---- checkpoints --------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict) -> None:
        # What frozen.load_stage_net rebuilds the network from.
        checkpoint["dualflow"] = {"stage": self.stage, "net": dict(self.net_config), **self.extra_meta()}
        self.strip_not_saved(checkpoint)

    def on_load_checkpoint(self, checkpoint: dict) -> None:
        self.restore_not_saved(checkpoint)

    def extra_meta(self) -> dict[str, Any]:
        """Settings later stages need from this one (e.g. the patch plan); plain types only."""
        return {}

    # ---- image panels -------------------------------------------------------------------------------
    def log_images(self, batch: dict) -> dict[str, np.ndarray]:
        """Panels (name → uint8 H×W×3) for a fixed validation batch; the ImagePanels callback decides when."""
        return {}
