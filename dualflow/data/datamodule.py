"""MangaDataModule: SynthManga (default), paired folders or colour folders, split into train/val/test."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from dualflow.data.datasets import ColorFolderDataset, PairedFolderDataset, SynthMangaDataset, collate_skipping
from dualflow.data.io import DEFAULT_MAX_PIXELS
from dualflow.data.mangafy import MangafyOptions
from dualflow.data.scan import DpiRange, dpi_setting, nets_dpi
from dualflow.data.synth import PrintScale


class ResumableSampler(Sampler[int]):
    """Shuffled (or ordered) ``(epoch, index)`` keys from (seed, epoch), sharded over DDP ranks, able to start
    mid-epoch: with :meth:`MangaDataModule.state_dict` a resumed run sees the same batches as an
    uninterrupted one."""

    def __init__(self, n: int, seed: int, shuffle: bool):
        self.n, self.seed, self.shuffle = n, seed, shuffle
        self.epoch, self.skip = 0, 0
        self.current_epoch = 0  # epoch of the iteration in progress

    def _rank_world(self) -> tuple[int, int]:
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            return torch.distributed.get_rank(), torch.distributed.get_world_size()
        return 0, 1

    def __len__(self) -> int:
        _, world = self._rank_world()
        return -(-self.n // world)

    def __iter__(self):
        rank, world = self._rank_world()
        order = (np.random.default_rng([self.seed, self.epoch]).permutation(self.n) if self.shuffle
                 else np.arange(self.n))
        order = np.resize(order, len(self) * world)[rank::world]  # pad by wrapping so every rank has len(self)
        skip, self.skip = self.skip, 0
        self.current_epoch, self.epoch = self.epoch, self.epoch + 1
        yield from ((self.current_epoch, i) for i in order[skip:].tolist())


def _split(items: list, seed: int, val: int, test: int) -> tuple[list, list, list]:
    order = np.random.default_rng(seed).permutation(len(items))
    picked = [items[i] for i in order]
    if len(picked) < val + test + 1:
        raise ValueError(f"{len(items)} files are too few for {val} validation and {test} test pages")
    return picked[val + test:], picked[:val], picked[val:val + test]


class MangaDataModule(L.LightningDataModule):
    """Pages for every stage.

    Args:
        source: ``synth`` (built-in generator), ``paired`` (``root/bw`` + ``root/color``), ``color``
            (a folder of colour images, mangafied on the fly) or ``stream`` (LitData shards written by
            ``dualflow prepare``, in a folder or a bucket; sharded over ranks and nodes).
        root: data folder for ``paired`` / ``color``; shards folder or bucket URL for ``stream``.
        image_size: SynthManga page size: a square side or ``[height, width]`` (e.g. ``[1448, 1024]``).
        dpi: SynthManga drawing scale: 0 draws a thumbnail page (the drawing grows with the page, as a 256-px
            page enlarged); > 0 draws at print scale, a page scanned at that many dots per inch
            (:meth:`synth.PrintScale.at_dpi`: strokes, screentone rulings and lettering of a printed page);
            ``[low, high]`` scans each training page at its own dpi in that range and brings it to 300 dpi by the
            dpi its screentone reads (:class:`data.scan.DpiRange`, what inference does), held-out pages at 300.
        cache: a folder for drawn SynthManga pages (:class:`datasets.PageCache`): each page is drawn once, by
            ``cache_workers`` processes before a stage starts, then read (what print-scale pages need: drawing
            one costs far more than a training step can wait for). None: draw on the fly.
        crop_size: training crop side (``None``: whole pages; needs equal page sizes).
        eval_size: side of the centre region used for validation/test pages from folders.
        n_train, n_val, n_test: SynthManga split sizes; for folders, ``n_val``/``n_test`` files are held out.
        n_fid: SynthManga pages of the fixed held-out set FID is measured on during training (its own seed;
            0: the validation pages). Folders use their validation files.
        strict: raise on an unreadable file instead of skipping it.
        max_pixels: files larger than this are refused before decoding (skipped and counted, as unreadable
            ones); ``colorize --max_pixels`` applies the same rule.
        mangafy_*: how colour-only pages become B&W scans (:class:`dualflow.data.mangafy.MangafyOptions`):
            screentone ``period`` (px) and ``angle``, tone ``levels``, cross-hatching from darkness ``hatch_from``,
            lightness lines (``line_threshold``, ``line_sigma``) and colour-edge lines (``chroma_lines``, 0: off),
            paper ``white`` level; scan degradations, off by default: ``paper`` texture, ``blur`` sigma, ``jpeg``
            quality, ``rotate`` (largest angle, degrees; the colour page turns with it).
        chapter: SynthManga only: 0 draws independent pages; K > 0 draws chapters of K pages whose recurring
            characters keep their looks and palettes (``SynthManga.chapter_page``), in every split.
        hints: colour hints of the training pages (``batch["hints"]``, :mod:`dualflow.hints`): ``mix`` draws them
            from each colour page (:class:`hint_clicks.HintMix`: none on 1/8 of the pages, clicks, points, strokes,
            colour noise), seeded like the augmentation; ``none`` trains the automatic model alone.
        eval_hints: clicks on validation and test pages (the bench's ``clicks`` protocol; 0: automatic).
        val_hint_clicks: with ``hints: mix``, validation pages also carry n clicks (``batch["hints<n>"]``), and
            a stage whose net takes hints logs its metrics with them as ``val/hints<n>/...`` beside the
            automatic ones (also as ``val/hints0/...``); 0: off.
    """

    def __init__(self, source: str = "synth", root: str | None = None, image_size: int | list[int] = 256,
                 dpi: float | list[float] = 0.0, cache: str | None = None, cache_workers: int = 2,
                 crop_size: int | None = None, eval_size: int = 256, n_train: int = 2000, n_val: int = 32,
                 n_test: int = 64, n_fid: int = 0, batch_size: int = 8, eval_batch_size: int | None = None,
                 num_workers: int = 2, seed: int = 0, strict: bool = False, hflip: bool = True, min_scale: float = 1.0,
                 degrade_p: float = 0.0, max_pixels: int = DEFAULT_MAX_PIXELS,
                 mangafy_period: float = 4.0, mangafy_angle: float = 45.0, mangafy_levels: int = 6,
                 mangafy_hatch_from: float = 0.8, mangafy_line_threshold: float = 0.5, mangafy_line_sigma: float = 0.8,
                 mangafy_chroma_lines: float = 0.06, mangafy_white: float = 0.9, mangafy_paper: float = 0.0,
                 mangafy_blur: float = 0.0, mangafy_jpeg: int = 0, mangafy_rotate: float = 0.0, chapter: int = 0,
                 hints: str = "mix", eval_hints: int = 0, val_hint_clicks: int = 16):
        super().__init__()
        if source not in ("synth", "paired", "color", "stream"):
            raise ValueError(f"data.source must be synth, paired, color or stream, got {source!r}")
        if source != "synth" and not root:
            raise ValueError(f"data.source={source} needs data.root (a folder)")
        if hints not in ("mix", "none"):
            raise ValueError(f"data.hints must be mix (simulated colour hints) or none (automatic only), got {hints!r}")
        dpi_setting(dpi)  # a bad dpi fails here, not in a worker
        if eval_hints < 0 or val_hint_clicks < 0:
            raise ValueError(f"data.eval_hints and data.val_hint_clicks are numbers of clicks (0: none), got "
                             f"{eval_hints} and {val_hint_clicks}")
        self.save_hyperparameters()
        self.hp = self.hparams
        self._resume_state: dict | None = None

    def _kwargs(self, train: bool, validation: bool = False) -> dict:
        from dualflow.data.transforms import bw_degradation, geometry

        hp = self.hp
        if train:
            crop = (hp.crop_size, hp.crop_size) if hp.crop_size else None
            tf = geometry(crop, hp.hflip, (hp.min_scale, 1.0))
            degrade = bw_degradation(hp.degrade_p) if hp.degrade_p > 0 else None
        else:
            tf = None if hp.source == "synth" else geometry((hp.eval_size, hp.eval_size), hflip=False, center=True)
            degrade = None
        return {"transform": tf, "degrade": degrade, "strict": hp.strict, "aug_seed": hp.seed,
                "max_pixels": hp.max_pixels or None, "mangafy": self.mangafy_options(),
                "hints": hp.hints if train else hp.eval_hints,
                "extra_clicks": hp.val_hint_clicks if validation and hp.hints != "none" else 0}

    def mangafy_options(self) -> MangafyOptions:
        """How colour-only pages (``source: color``, colour shards) become B&W scans: the ``mangafy_*`` options."""
        return MangafyOptions(**{f.name: self.hp[f"mangafy_{f.name}"] for f in fields(MangafyOptions)})

    def setup(self, stage: str | None = None) -> None:
        hp = self.hp
        if hp.source == "synth":
            size = self.page_size()
            setting = dpi_setting(hp.dpi)
            # A dpi range scans the training pages across it; held-out pages stay at the scale the nets work at.
            held = PrintScale.at_dpi(nets_dpi(hp.dpi)) if setting else None
            drawn = setting if isinstance(setting, DpiRange) else held

            def synth(n: int, seed: int, train: bool, validation: bool = False) -> SynthMangaDataset:
                return SynthMangaDataset(n, size, seed, 0, hp.chapter, drawn if train else held, hp.cache,
                                         **self._kwargs(train, validation))

            self.train_set = synth(hp.n_train, hp.seed, True)
            # Held-out pages come from other indices of another seed: never seen in training.
            self.val_set = synth(hp.n_val, hp.seed + 1_000_003, False, validation=True)
            self.test_set = synth(hp.n_test, hp.seed + 2_000_003, False)
            self.fid_set = synth(hp.n_fid, hp.seed + 3_000_017, False) if hp.n_fid else self.val_set
            if hp.cache:
                used = [self.test_set] if stage in ("test", "predict") else [self.train_set, self.val_set, self.fid_set]
                for dataset in dict.fromkeys(used):
                    dataset.fill_cache(hp.cache_workers)
        elif hp.source == "paired":
            full = PairedFolderDataset(hp.root)
            tr, va, te = _split(full.stems, hp.seed, hp.n_val, hp.n_test)
            self.train_set = PairedFolderDataset(hp.root, tr, **self._kwargs(True))
            self.val_set = PairedFolderDataset(hp.root, va, **self._kwargs(False, validation=True))
            self.test_set = PairedFolderDataset(hp.root, te, **self._kwargs(False))
            self.fid_set = self.val_set
        elif hp.source == "stream":
            self._setup_stream()
        else:
            files = ColorFolderDataset(Path(hp.root)).files
            tr, va, te = _split(files, hp.seed, hp.n_val, hp.n_test)
            self.train_set = ColorFolderDataset(hp.root, tr, **self._kwargs(True))
            self.val_set = ColorFolderDataset(hp.root, va, **self._kwargs(False, validation=True))
            self.test_set = ColorFolderDataset(hp.root, te, **self._kwargs(False))
            self.fid_set = self.val_set

    def page_size(self) -> tuple[int, int]:
        """SynthManga's page size (H, W) from ``image_size``."""
        size = self.hp.image_size
        if isinstance(size, int):
            return size, size
        if len(size) != 2 or min(size) < 1:
            raise ValueError(f"data.image_size must be a side or [height, width], got {size}")
        return int(size[0]), int(size[1])

    def _setup_stream(self) -> None:
        """Train, validation and test splits of a prepared collection: ``n_val`` and ``n_test`` samples held
        out by litdata's chunk-level split (fixed by the seed), the rest for training."""
        from litdata import train_test_split

        from dualflow.data.datasets import _Transformed
        from dualflow.data.stream import MangaStreamDataset

        hp = self.hp

        def stream(train: bool) -> MangaStreamDataset:
            pages = _Transformed(**self._kwargs(train, validation=not train))  # held-out: validation and test
            return MangaStreamDataset(hp.root, shuffle=train, seed=hp.seed, pages=pages)

        n = sum(end - start for start, end in stream(False).region_of_interest)  # all ranks' (len() is per rank)
        if n < hp.n_val + hp.n_test + 1:
            raise ValueError(f"{hp.root}: {n} samples are too few for {hp.n_val} validation and {hp.n_test} test")
        # litdata floors each split's n·fraction and drops the remainder: held-out fractions are rounded up by
        # one ulp so their counts are exact; training then gets the rest, or one sample less.
        held_out = [math.nextafter(hp.n_val / n, 1.0), math.nextafter(hp.n_test / n, 1.0)]
        splits = [math.nextafter(1.0 - sum(held_out), 0.0), *held_out]
        self.train_set = train_test_split(stream(True), splits, seed=hp.seed)[0]
        _, self.val_set, self.test_set = train_test_split(stream(False), splits, seed=hp.seed)
        self.fid_set = self.val_set

    def _stream_loader(self, dataset, batch_size: int, train: bool):
        from dualflow.data.stream import StreamLoader

        consumed = (lambda: int(self.trainer.fit_loop.epoch_loop.batch_progress.current.processed)) if train else None
        loader = StreamLoader(dataset, batch_size=batch_size, num_workers=self.hp.num_workers,
                              collate_fn=collate_skipping, pin_memory=torch.cuda.is_available(),
                              persistent_workers=False, consumed=consumed if self.trainer is not None else None)
        return loader

    def _loader(self, dataset: Dataset, batch_size: int, sampler: ResumableSampler) -> DataLoader:
        # Own generator: creating an iterator then draws worker seeds from it, not from the global RNG
        # (which training uses and checkpoints restore).
        common = {"batch_size": batch_size, "num_workers": self.hp.num_workers, "collate_fn": collate_skipping,
                  "persistent_workers": self.hp.num_workers > 0, "pin_memory": torch.cuda.is_available(),
                  "drop_last": False,
                  "generator": torch.Generator().manual_seed(self.hp.seed)}
        return DataLoader(dataset, sampler=sampler, **common)

    def train_dataloader(self) -> DataLoader:
        if self.hp.source == "stream":
            self.train_loader = self._stream_loader(self.train_set, self.hp.batch_size, train=True)
            if self._resume_state and "stream" in self._resume_state:
                self.train_loader.load_state_dict(self._resume_state["stream"])
            self._resume_state = None
            return self.train_loader
        self.train_sampler = ResumableSampler(len(self.train_set), self.hp.seed, shuffle=True)
        if self._resume_state:
            self.train_sampler.epoch = int(self._resume_state["epoch"])
            self.train_sampler.skip = int(self._resume_state["batches"]) * self.hp.batch_size
            self._resume_state = None
        return self._loader(self.train_set, self.hp.batch_size, self.train_sampler)

    def state_dict(self) -> dict:
        """Position in the training data, saved in checkpoints: the epoch in progress and how many of its
        batches were trained on. (The loader itself runs one batch ahead, so it cannot count them.)"""
        if self.hp.source == "stream":
            loader = getattr(self, "train_loader", None)
            return {"stream": loader.state_dict()} if loader is not None and self.trainer is not None else {}
        sampler = getattr(self, "train_sampler", None)
        if sampler is None or self.trainer is None:
            return {}
        done = self.trainer.fit_loop.epoch_loop.batch_progress.current.processed
        return {"epoch": sampler.current_epoch, "batches": int(done)}

    def load_state_dict(self, state: dict) -> None:
        self._resume_state = state or None

    def _eval_batch(self) -> int:
        return self.hp.eval_batch_size or self.hp.batch_size

    def val_dataloader(self) -> DataLoader:
        if self.hp.source == "stream":
            return self._stream_loader(self.val_set, self._eval_batch(), train=False)
        return self._loader(self.val_set, self._eval_batch(), ResumableSampler(len(self.val_set), 0, False))

    def fid_dataloader(self) -> DataLoader:
        """The fixed FID pages, in order, sharded over ranks (each rank scores its part)."""
        if self.hp.source == "stream":
            return self._stream_loader(self.fid_set, self._eval_batch(), train=False)
        return self._loader(self.fid_set, self._eval_batch(), ResumableSampler(len(self.fid_set), 0, False))

    def test_dataloader(self) -> DataLoader:
        if self.hp.source == "stream":
            return self._stream_loader(self.test_set, self._eval_batch(), train=False)
        return self._loader(self.test_set, self._eval_batch(), ResumableSampler(len(self.test_set), 0, False))

    def predict_dataloader(self) -> DataLoader:
        return self.test_dataloader()
