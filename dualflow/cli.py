"""Command line: ``python -m dualflow {fit,validate,test,predict}`` (LightningCLI) and the subcommands
``train`` (orchestrated stages), ``colorize``, ``export`` (ONNX), ``synth``, ``bench``, ``compare`` and ``prepare``.

Every hyperparameter is a ``--model.x`` / ``--data.x`` / ``--trainer.x`` flag (W&B sweeps pass exactly those).
``experiments/base.yaml`` is read first when it exists in the working directory, so
``--config experiments/stage2.yaml`` alone is a complete run; ``--experiment NAME`` selects
``runs/NAME/`` (manifest, checkpoints, W&B files), where earlier stages are found.
"""

from __future__ import annotations

import importlib
import os
import sys
import time
from pathlib import Path
from typing import Any

BASE_CONFIG = Path("experiments") / "base.yaml"
# Every command with the module that runs it (None: LightningCLI) and its line in ``dualflow --help``.
COMMANDS: dict[str, tuple[str | None, str]] = {
    "train": ("dualflow.orchestrator", "train stages 1 → 2 → 3 (or one stage, or the baselines) of an experiment"),
    "colorize": ("dualflow.inference", "colour pages, folders and .cbz volumes with a trained experiment"),
    "serve": ("dualflow.serve", "a colouring page in the browser: open a page, paint or click colour hints"),
    "export": ("dualflow.export", "export an experiment's networks to ONNX, checked against PyTorch on a page"),
    "synth": ("dualflow.data.synth_cli", "write SynthManga pages (B&W, colour, region labels) to a folder"),
    "bench": ("dualflow.bench.run", "benchmark quality, speed and memory against the baselines"),
    "compare": ("dualflow.bench.compare", "experiments side by side: metrics and the settings that differ"),
    "prepare": ("dualflow.data.stream", "LitData shards from colour images or B&W/colour pairs"),
    "fit": (None, "train one stage from its config (LightningCLI: --config, --model.*, --data.*, --trainer.*)"),
    "validate": (None, "validate one stage's checkpoint (LightningCLI)"),
    "test": (None, "test one stage, or the composite, on its test pages (LightningCLI)"),
    "predict": (None, "run one stage's predict step (LightningCLI)"),
}


def usage() -> str:
    """The list of commands that ``dualflow``, ``dualflow --help`` and ``dualflow -h`` print."""
    width = max(map(len, COMMANDS))
    lines = ["usage: dualflow COMMAND [options]   (dualflow COMMAND --help: its options)", "", "commands:"]
    lines += [f"  {name:<{width}}  {line}" for name, (_, line) in COMMANDS.items()]
    return "\n".join(lines)


def _stage_of(class_path: str) -> str:
    from dualflow.stage_table import load_class

    return getattr(load_class(class_path), "stage", "") or class_path.rpartition(".")[2].lower()


def _make_cli_class():
    from lightning.pytorch.callbacks import ModelCheckpoint
    from lightning.pytorch.cli import LightningCLI
    from lightning.pytorch.plugins.io import CheckpointIO

    from dualflow import manifest, wandb_utils
    from dualflow.callbacks import ImagePanels, ManifestWriter, RNGState, WandbSetup
    from dualflow.checkpoints import AtomicCheckpointIO, TornCheckpointError, is_intact, resume_point
    from dualflow.stage_table import PIPELINE, STAGES

    class DualFlowCLI(LightningCLI):
        """LightningCLI with experiment folders, earlier stages resolved from the manifest, and the
        callbacks every dualflow run needs."""

        def add_arguments_to_parser(self, parser) -> None:
            parser.add_argument("--experiment", default="default", help="runs/<experiment>/ holds this run")
            parser.add_argument("--runs_dir", default="runs", help="folder of experiments")
            parser.add_argument("--checkpoint_every_n_steps", type=int | None, default=None,
                                help="also save last.ckpt every N steps (for resuming long runs)")

        def before_instantiate_classes(self) -> None:
            cfg = self.config[self.subcommand]
            self.stage = _stage_of(cfg.model.class_path)
            init = cfg.model.init_args
            for stage in PIPELINE:
                arg = STAGES[stage].ckpt_arg
                if arg in init:
                    value = init[arg]
                    if value is None:
                        init[arg] = manifest.stage_checkpoint(cfg.experiment, stage, cfg.runs_dir)
                    elif str(value).startswith("wandb:"):
                        init[arg] = wandb_utils.fetch_artifact_checkpoint(value)
            self.root = Path(cfg.runs_dir) / cfg.experiment / self.stage
            self.record_as = self.stage
            sweep = os.environ.get("WANDB_SWEEP_ID")
            if sweep and self.subcommand == "fit":
                # A sweep run must not replace the experiment's stage: own folder, own manifest record.
                run = time.strftime("%Y%m%d-%H%M%S") + f"-{os.getpid()}"
                self.root = self.root / "sweeps" / sweep / run
                self.record_as = f"{self.stage}/sweep-{sweep}/{run}"
            if cfg.trainer.default_root_dir is None:
                cfg.trainer.default_root_dir = str(self.root)
            logger = cfg.trainer.logger
            if getattr(logger, "class_path", "").endswith("WandbLogger"):
                args = logger.init_args
                args.save_dir = str(self.root) if args.save_dir in (None, ".") else args.save_dir
                args.name = args.name or f"{cfg.experiment}-{self.stage}"
                args.log_model = False if wandb_utils.is_offline() else args.log_model
                # Passed on to wandb.init (WandbLogger's **kwargs).
                extra = dict(logger.get("dict_kwargs") or {})
                extra.setdefault("group", cfg.experiment)
                extra.setdefault("job_type", self.stage)
                extra.setdefault("tags", [self.stage, self.subcommand])
                logger["dict_kwargs"] = extra
                Path(args.save_dir).mkdir(parents=True, exist_ok=True)
            self.resolved = _plain(cfg.as_dict())
            if self.subcommand == "fit" and cfg.ckpt_path == "last":
                # This stage's last.ckpt, or the newest intact checkpoint when it is torn (a warning names it).
                try:
                    found = resume_point(self.root / "checkpoints")
                except TornCheckpointError as e:
                    raise SystemExit(f"error: {e}") from None
                cfg.ckpt_path = str(found) if found else None

        def parse_arguments(self, parser, args) -> None:
            """An explicit ``--ckpt_path`` must be a whole checkpoint: a torn file stops the run with a message
            naming it (before LightningCLI reads its hyperparameters), not with a traceback from the zip reader."""
            super().parse_arguments(parser, args)
            sub = self.config.get("subcommand")
            path = self.config[sub].get("ckpt_path") if sub else None
            if path and Path(path).is_file() and not is_intact(path):
                raise SystemExit(f"error: {path} is torn (not a whole checkpoint file): resume from another one")

        def instantiate_trainer(self, **kwargs: Any):
            cfg = self.config[self.subcommand]
            user = self._get(self.config_init, "trainer", default={}).get("callbacks") or []
            ours = [RNGState(), ImagePanels(), WandbSetup(self.resolved),
                    ManifestWriter(cfg.experiment, self.record_as, self.resolved, cfg.runs_dir)]
            monitor_mode = STAGES[self.stage].monitor if self.stage in STAGES else None
            if monitor_mode:
                monitor, mode = monitor_mode
                ours.append(ModelCheckpoint(dirpath=self.root / "checkpoints", filename="best", monitor=monitor,
                                            mode=mode, save_top_k=1, save_last=True,
                                            enable_version_counter=False))
                if cfg.checkpoint_every_n_steps:
                    ours.append(ModelCheckpoint(dirpath=self.root / "checkpoints", save_top_k=0, save_last=True,
                                                every_n_train_steps=cfg.checkpoint_every_n_steps,
                                                enable_version_counter=False))
            plugins = self._get(self.config_init, "trainer", default={}).get("plugins") or []
            plugins = plugins if isinstance(plugins, list) else [plugins]
            if not any(isinstance(p, CheckpointIO) for p in plugins):
                plugins = [*plugins, AtomicCheckpointIO()]
            return super().instantiate_trainer(callbacks=[*user, *ours], plugins=plugins, **kwargs)

    return DualFlowCLI


def _plain(value: Any) -> Any:
    """Config → JSON-able plain types (paths and other objects as strings)."""
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def lightning_main(args: list[str] | None = None, run: bool = True):
    """The LightningCLI entry point (``fit``, ``validate``, ``test``, ``predict``)."""
    from lightning.pytorch import LightningModule

    from dualflow import wandb_utils
    from dualflow.data.datamodule import MangaDataModule

    wandb_utils.default_to_offline()
    defaults = [str(BASE_CONFIG)] if BASE_CONFIG.is_file() else []
    return _make_cli_class()(
        LightningModule, MangaDataModule, subclass_mode_model=True, seed_everything_default=0,
        save_config_kwargs={"overwrite": True},
        parser_kwargs={"prog": "dualflow",
                       **{sub: {"default_config_files": defaults} for sub in ("fit", "validate", "test", "predict")}},
        args=args, run=run,
    )


def _missing_backbone(error: Exception) -> int:
    """A metric backbone that cannot be had is one message (what to fetch, or the opt-in), never a traceback:
    exit code 2. Any other error goes on up."""
    from dualflow.metrics.perceptual import BackboneWeightsMissing

    if not isinstance(error, BackboneWeightsMissing):
        raise error
    print(f"error: {error}", file=sys.stderr)
    return 2


def main(args: list[str] | None = None) -> Any:
    """``dualflow`` / ``python -m dualflow``. Returns the LightningCLI object or the subcommand's exit code."""
    argv = list(sys.argv[1:] if args is None else args)
    module = COMMANDS.get(argv[0], (None, ""))[0] if argv else None
    if not argv or argv[0] in ("-h", "--help"):
        print(usage())
        code = 0 if argv else 2
    elif module is None and argv[0] not in COMMANDS:
        print(f"dualflow: unknown command {argv[0]!r}\n\n{usage()}", file=sys.stderr)
        code = 2
    else:
        try:
            if module is None:
                return lightning_main(None if args is None else argv)
            code = importlib.import_module(module).main(argv[1:])
        except Exception as e:
            code = _missing_backbone(e)
    if args is None:
        sys.exit(code)
    return code
