"""Datasets yielding ``{"bw", "color", "name"}`` dicts (+ ``labels`` for SynthManga), and a collate function
that skips, counts and reports unreadable samples instead of killing the run."""

from __future__ import annotations

import logging
import os
import warnings
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset, default_collate

from dualflow.data.io import DEFAULT_MAX_PIXELS, ImageReadError, list_images, read_image
from dualflow.data.mangafy import MangafyOptions, scan
from dualflow.data.palette import CLASS_ID, DETAILED_IDS
from dualflow.data.scan import DpiRange, draw_dpi, size_at
from dualflow.data.synth import PrintScale, SynthManga, SynthPage

log = logging.getLogger(__name__)


def to_sample(bw: np.ndarray, color: np.ndarray, name: str, labels: np.ndarray | None = None) -> dict:
    """Numpy page → tensors in the batch convention: bw (1,H,W), color (3,H,W); with SynthManga's class labels
    also ``labels`` (1,H,W) int64 and ``detailed`` (1,H,W) {0,1} float, the mask of detailed classes that the
    metrics score apart (the dataset knows its classes; the metrics do not)."""
    sample = {
        "bw": torch.from_numpy(np.ascontiguousarray(bw, dtype=np.float32))[None],
        "color": torch.from_numpy(np.ascontiguousarray(color, dtype=np.float32)).permute(2, 0, 1).contiguous(),
        "name": name,
    }
    if labels is not None:
        sample["labels"] = torch.from_numpy(labels.astype(np.int64))[None]
        sample["detailed"] = torch.from_numpy(np.isin(labels, DETAILED_IDS).astype(np.float32))[None]
    return sample


class _Transformed(Dataset):
    """Applies the paired geometry and the bw-only degradation to every sample of a subclass.

    Items are addressed by an index or an ``(epoch, index)`` key (from ResumableSampler); the augmentation
    is seeded from (seed, epoch, index), so a sample looks the same whichever worker draws it and whether or
    not the run was resumed in between."""

    def __init__(self, transform=None, degrade=None, strict: bool = False, aug_seed: int = 0,
                 max_pixels: int | None = DEFAULT_MAX_PIXELS, mangafy: MangafyOptions | None = None,
                 hints: str | int = "none", extra_clicks: int = 0):
        self.transform, self.degrade, self.strict, self.aug_seed = transform, degrade, strict, aug_seed
        self.hints = hints  # "mix": simulated hints; "none" or 0: none; n > 0: n clicks (evaluation)
        self.extra_clicks = extra_clicks  # n > 0: also batch["hints<n>"], n clicks (the hinted validation)
        self.max_pixels = max_pixels  # larger files are refused before decoding, like unreadable ones
        self.mangafy = mangafy or MangafyOptions()
        self._epoch = 0

    def __getitem__(self, key):
        self._epoch, index = key if isinstance(key, tuple) else (0, key)
        return self.load(index)

    def load(self, index: int):
        raise NotImplementedError

    def _seed(self, index: int) -> int:
        return int(np.random.SeedSequence([self.aug_seed, self._epoch, index]).generate_state(1)[0])

    def mangafied(self, color: np.ndarray, index: int) -> tuple[np.ndarray, np.ndarray]:
        """(bw, color) of a colour-only page: its scan as :func:`mangafy.scan` renders it with this dataset's
        options (random parts seeded like the augmentation)."""
        return scan(color, self.mangafy, np.random.default_rng(self._seed(index) + 2))

    def finish(self, bw, color, name, labels=None, index: int = 0) -> dict:
        """Augment (seeded from (seed, epoch, index)) and convert one page to the batch convention."""
        seed = self._seed(index)
        if self.transform is not None:
            from dualflow.data.transforms import apply_pair

            self.transform.set_random_seed(seed)
            bw, color, labels = apply_pair(self.transform, bw, color, labels)
        if self.degrade is not None:
            self.degrade.set_random_seed(seed + 1)
            bw = self.degrade(image=bw)["image"]
        color = np.clip(color, 0, 1)
        sample = to_sample(np.clip(bw, 0, 1), color, name, labels)
        if self.hints not in ("none", 0):
            from dualflow import hint_clicks, hints

            drawn = (hint_clicks.simulate(color, np.random.default_rng(seed + 3)) if self.hints == "mix"
                     else hint_clicks.click_hints(color, int(self.hints)))
            sample["hints"] = hints.paint(drawn, color.shape[:2])
        if self.extra_clicks:
            from dualflow import hint_clicks, hints

            sample[f"hints{self.extra_clicks}"] = hints.paint(hint_clicks.click_hints(color, self.extra_clicks),
                                                              color.shape[:2])
        return sample

    def _skip(self, err: ImageReadError):
        """Unreadable sample: raise in strict mode, else warn by name and let the collate drop it."""
        if self.strict:
            raise err
        warnings.warn(f"skipping unreadable sample: {err}", stacklevel=2)
        return None


class SynthMangaDataset(_Transformed):
    """``n`` SynthManga pages drawn on the fly from (seed, offset + index): identical in every worker and run.
    ``chapter`` > 0: consecutive runs of that many pages are chapters, each with its own recurring cast.
    ``scale``: the drawing scale (:meth:`SynthManga.__call__`; a :class:`PrintScale` for print-scale pages; a
    :class:`scan.DpiRange` scans each page at its own dpi, then brings it to 300 dpi and to ``size``).
    ``cache``: a folder where drawn pages are kept (:class:`PageCache`), so a page is drawn once per
    generator version, not once per epoch and stage."""

    def __init__(self, n: int, size: int | tuple[int, int] = 256, seed: int = 0, offset: int = 0, chapter: int = 0,
                 scale: float | PrintScale | None = None, cache: str | Path | None = None, **kwargs):
        super().__init__(**kwargs)
        if chapter < 0:
            raise ValueError(f"chapter must be 0 (independent pages) or a page count, got {chapter}")
        self.n, self.size, self.offset, self.chapter = int(n), size, int(offset), int(chapter)
        self.gen, self.scale = SynthManga(seed), scale
        self.cache = PageCache(cache, seed, size, scale, chapter) if cache else None
        self._read: dict[int, float] = {}  # the dpi each page of a DpiRange reads, estimated once per worker

    def __len__(self) -> int:
        return self.n

    def page(self, i: int) -> SynthPage:
        """Page ``i`` of the dataset, from the cache when it holds it (drawn and stored otherwise)."""
        k = self.offset + i
        if self.cache is not None:
            return self.cache.get(k, lambda: self.draw(k))
        return self.draw(k)

    def draw(self, k: int) -> SynthPage:
        size, scale = self.size, self.scale
        if isinstance(scale, DpiRange):  # drawn at the page's scan dpi (300 and up; see scan.scanned)
            at = draw_dpi(scale.dpi(self.gen.seed, k))
            size, scale = size_at(self._hw, at), PrintScale.at_dpi(at)
        if self.chapter:
            return self.gen.chapter_page(*divmod(k, self.chapter), self.chapter, size, scale)
        return self.gen(k, size, scale)

    @property
    def _hw(self) -> tuple[int, int]:
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)

    def load(self, i: int) -> dict:
        page = self.page(i)
        if isinstance(self.scale, DpiRange):
            page = self.scale.normalised(self.gen, self.offset + i, self._hw, page, CLASS_ID["gutter"], self._read)
        return self.finish(page.bw, page.color, f"synth_{self.gen.seed}_{self.offset + i:06d}", page.labels, i)

    def fill_cache(self, workers: int) -> int:
        """Draw every page the cache lacks, ``workers`` processes at once (before training: a page at print
        scale takes about a second, far more than a training step can wait for). Returns the pages drawn."""
        if self.cache is None:
            return 0
        missing = [i for i in range(self.n) if not self.cache.path(self.offset + i).is_file()]
        if workers > 1 and len(missing) > 1:
            import multiprocessing as mp

            with mp.get_context("spawn").Pool(min(workers, len(missing))) as pool:
                pool.map(self.page, missing, chunksize=1)
        else:
            for i in missing:
                self.page(i)
        return len(missing)


def _generator_version() -> str:
    """A digest of the generator's source: cached pages of another version are never read."""
    import hashlib

    import dualflow.data as package

    digest = hashlib.sha256()
    for name in ("synth.py", "synth_figures.py", "synth_layout.py", "synth_scenes.py", "draw.py", "palette.py"):
        digest.update((Path(package.__file__).parent / name).read_bytes())
    return digest.hexdigest()[:12]


class PageCache:
    """Drawn SynthManga pages on disk, one compressed ``.npz`` per page (B&W as bits, colour, labels and
    identities as bytes: about 1 MB for a 1024×1448 page), under a folder named by everything that decides
    the page: seed, size, scale, chapter length and the generator's version. Writes are atomic (a temporary
    file then a rename), so processes and ranks filling one cache never read half a page."""

    def __init__(self, root: str | Path, seed: int, size: int | tuple[int, int], scale, chapter: int):
        h, w = (size, size) if isinstance(size, int) else size
        if isinstance(scale, PrintScale):
            tag = f"pen{scale.pen:.4f}_letter{scale.letter:.4f}"
        elif isinstance(scale, DpiRange):  # each page drawn at its own dpi (the file keeps its shape)
            tag = f"dpi{scale.low:g}-{scale.high:g}"
        else:
            tag = "thumb" if scale is None else f"scale{float(scale):.4f}"
        self.folder = Path(root) / f"seed{seed}_{w}x{h}_{tag}_ch{chapter}_{_generator_version()}"

    def path(self, k: int) -> Path:
        return self.folder / f"{k:07d}.npz"

    def get(self, k: int, draw) -> SynthPage:
        path = self.path(k)
        if path.is_file():
            try:
                with np.load(path) as f:
                    bw = np.unpackbits(f["bw"], count=int(np.prod(f["shape"])))
                    return SynthPage(bw=bw.reshape(f["shape"]).astype(np.float32), color=f["color"] / np.float32(255),
                                     labels=f["labels"], identity=f["identity"])
            except (OSError, ValueError, KeyError, EOFError) as err:
                warnings.warn(f"{path}: unreadable cached page ({err}); drawing it again", stacklevel=2)
        page = draw()
        self.folder.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp.npz")
        np.savez_compressed(tmp, shape=np.array(page.bw.shape), bw=np.packbits(page.bw > 0.5),
                            color=np.round(page.color * 255).astype(np.uint8), labels=page.labels,
                            identity=page.identity)
        os.replace(tmp, path)
        return SynthPage(bw=page.bw, color=np.round(page.color * 255).astype(np.uint8) / np.float32(255),
                         labels=page.labels, identity=page.identity)


def _require_folder(folder: Path) -> list[Path]:
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: folder not found")
    files = list_images(folder)
    if not files:
        raise FileNotFoundError(f"{folder}: no images (png/jpg/webp/bmp/tif) in this folder")
    return files


class PairedFolderDataset(_Transformed):
    """``root/bw/*`` + ``root/color/*`` matched by file stem (any supported extension on either side)."""

    def __init__(self, root: str | Path, stems: list[str] | None = None, **kwargs):
        super().__init__(**kwargs)
        root = Path(root)
        bw = {p.stem: p for p in _require_folder(root / "bw")}
        color = {p.stem: p for p in _require_folder(root / "color")}
        for stem, p in bw.items():
            if stem not in color:
                raise FileNotFoundError(f"{p}: no colour partner named {stem}.* in {root / 'color'}")
        for stem, p in color.items():
            if stem not in bw:
                raise FileNotFoundError(f"{p}: no B&W partner named {stem}.* in {root / 'bw'}")
        self.stems = sorted(bw) if stems is None else list(stems)
        self.bw_files, self.color_files = bw, color

    def __len__(self) -> int:
        return len(self.stems)

    def load(self, i: int):
        stem = self.stems[i]
        try:
            bw = read_image(self.bw_files[stem], channels=1, max_pixels=self.max_pixels)
            color = read_image(self.color_files[stem], channels=3, max_pixels=self.max_pixels)
        except ImageReadError as err:
            return self._skip(err)
        if bw.shape[:2] != color.shape[:2]:
            raise ValueError(
                f"size mismatch in pair {stem!r}: {self.bw_files[stem]} is {bw.shape[1]}x{bw.shape[0]}, "
                f"{self.color_files[stem]} is {color.shape[1]}x{color.shape[0]}"
            )
        return self.finish(bw, color, stem, index=i)


class ColorFolderDataset(_Transformed):
    """A folder of colour images; the B&W side is rendered on the fly by :func:`mangafy.scan`."""

    def __init__(self, root: str | Path, files: list[Path] | None = None, **kwargs):
        super().__init__(**kwargs)
        self.files = _require_folder(Path(root)) if files is None else list(files)

    def __len__(self) -> int:
        return len(self.files)

    def load(self, i: int):
        path = self.files[i]
        try:
            color = read_image(path, channels=3, max_pixels=self.max_pixels)
        except ImageReadError as err:
            return self._skip(err)
        bw, color = self.mangafied(color, i)
        return self.finish(bw, color, path.stem, index=i)


def collate_skipping(samples: list[dict | None]) -> dict:
    """Stack samples, dropping the ``None`` of skipped files; ``batch["skipped"]`` counts them."""
    kept = [s for s in samples if s is not None]
    skipped = len(samples) - len(kept)
    if kept:
        batch = default_collate(kept)
    else:
        batch = {"bw": torch.zeros(0, 1, 1, 1), "color": torch.zeros(0, 3, 1, 1), "name": []}
    batch["skipped"] = torch.tensor(skipped)
    return batch
