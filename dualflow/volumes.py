"""Volumes for ``colorize``: a ``.cbz``/``.zip`` archive of pages in, a ``.cbz`` with the same page names (as
PNG) in the same order out.

An archive is checked whole before any page is read: a truncated or damaged archive, an encrypted entry, an
entry whose name would leave the output folder (``../x.png``, an absolute path) or duplicates another, and a
zip bomb (an entry that expands more than :data:`MAX_RATIO` times to more than :data:`BOMB_BYTES`, or a
volume over :data:`MAX_VOLUME_BYTES` expanded) refuse the archive with a message naming it, and nothing of it
is written. Pages are read in reading order (natural order of their paths: ``p2`` before ``p10``), nested
folders included; other entries are named and skipped. Coloured pages go to a staging folder beside the
output (``out/.vol.cbz.pages/``), so ``--skip_existing`` resumes a killed volume; the ``.cbz`` is written
atomically once every page has had its turn, and the staging folder is removed when no page failed. With
``--layers``, each page's flats, line art and PSD go to ``out/<stem>_layers/`` under the page's name.

A page's colour hints (``<page>_hints.png`` / ``.json``) come from the archive itself, beside the page, or
from a ``<volume>_hints/`` folder beside the archive, under the page's path in the archive or its bare name
(``vol_hints/ch1/p001_hints.png`` or ``vol_hints/p001_hints.png``); hint entries are never pages."""

from __future__ import annotations

import os
import re
import shutil
import zipfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from dualflow.data.io import IMAGE_EXTENSIONS, atomic_path
from dualflow.hints import HINT_SUFFIXES, hinted_stem
from dualflow.layers import layer_paths

ARCHIVE_EXTENSIONS = (".cbz", ".zip")
MAX_RATIO = 100  # expanded / compressed size of one entry above which it is a bomb ...
BOMB_BYTES = 64 << 20  # ... when it also expands beyond this
MAX_VOLUME_BYTES = 16 << 30  # all entries expanded


class ArchiveError(ValueError):
    """An archive refused whole; the message names it and the reason."""


def is_archive(path: Path) -> bool:
    return path.suffix.lower() in ARCHIVE_EXTENSIONS


def natural_key(name: str) -> list:
    """Sort key of a path in reading order: digit runs compare as numbers, letters without case."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part.lower()) for part in re.split(r"(\d+)", name)]


def _unsafe_name(name: str) -> bool:
    """A member name that could resolve outside the folder it is extracted to."""
    path = PurePosixPath(name.replace("\\", "/"))
    return path.is_absolute() or ".." in path.parts or re.match(r"^[A-Za-z]:", name) is not None


@dataclass
class Volume:
    """A checked archive: its page entries in reading order, each page's output name, what was skipped."""

    path: Path
    output: Path  # the .cbz to write
    pages: list[str] = field(default_factory=list)  # member names
    names: dict[str, str] = field(default_factory=dict)  # member → name in the output .cbz
    skipped: list[str] = field(default_factory=list)
    hints: dict[str, str] = field(default_factory=dict)  # page path without extension → its hint entry

    @property
    def staging(self) -> Path:
        """Where the coloured pages wait until the volume is packed."""
        return self.output.with_name(f".{self.output.name}.pages")

    @property
    def layers(self) -> Path:
        """Where ``colorize --layers`` puts the volume's layered pages."""
        return self.output.with_name(f"{self.output.stem}_layers")

    def staged(self, member: str) -> Path:
        return self.staging / self.names[member]

    def read(self, member: str) -> bytes:
        """The bytes of one page entry (a damaged entry raises :class:`zipfile.BadZipFile` or ``zlib.error``)."""
        with zipfile.ZipFile(self.path) as archive:
            return archive.read(member)

    def display(self, member: str) -> Path:
        """How a page of the volume is named in reports: ``vol.cbz/ch1/p001.jpg``."""
        return self.path / member

    def hint_file(self, member: str) -> tuple[Path, bytes | None] | None:
        """The page's hint file: (its name, its bytes) for an entry of the archive, (a path, None) in the
        ``<volume>_hints/`` folder, or None (see the module docstring)."""
        page = str(PurePosixPath(member).with_suffix(""))
        if page in self.hints:
            return self.display(self.hints[page]), self.read(self.hints[page])
        folder = self.path.with_name(f"{self.path.stem}_hints")
        for stem in (page, PurePosixPath(page).name):
            for suffix in HINT_SUFFIXES:
                candidate = folder / f"{stem}{suffix}"
                if candidate.is_file():
                    return candidate, None
        return None


def open_volume(path: Path, out_dir: Path) -> Volume:
    """Check ``path`` and list its pages; the output is ``out_dir/<stem>.cbz``. Raises :class:`ArchiveError`."""
    try:
        with zipfile.ZipFile(path) as archive:
            infos = archive.infolist()
    except (zipfile.BadZipFile, OSError, EOFError) as e:
        raise ArchiveError(f"{path}: not a readable zip archive ({e}); truncated or damaged?") from e
    volume = Volume(path, out_dir / f"{path.stem}.cbz")
    counts = Counter(info.filename for info in infos)
    total = 0
    for info in infos:
        name = info.filename
        if _unsafe_name(name):
            raise ArchiveError(f"{path}: entry {name!r} points outside the archive's folder; refused")
        if counts[name] > 1:
            raise ArchiveError(f"{path}: entry {name!r} appears {counts[name]} times; refused")
        if info.flag_bits & 0x1:
            raise ArchiveError(f"{path}: entry {name!r} is encrypted; refused (decrypt the archive first)")
        ratio = info.file_size / max(1, info.compress_size)
        if info.file_size > BOMB_BYTES and ratio > MAX_RATIO:
            raise ArchiveError(f"{path}: entry {name!r} expands {ratio:.0f}x to {info.file_size / 2**20:.0f} MiB "
                               f"(a zip bomb); refused")
        total += info.file_size
        if total > MAX_VOLUME_BYTES:
            raise ArchiveError(f"{path}: expands to over {MAX_VOLUME_BYTES >> 30} GiB; refused")
        if info.is_dir():
            continue
        if (page := hinted_stem(name)) is not None:
            volume.hints[page] = name
        elif PurePosixPath(name).suffix.lower() in IMAGE_EXTENSIONS:
            volume.pages.append(name)
        else:
            volume.skipped.append(f"{path}/{name}: not an image by its extension, left out of the volume")
    if not volume.pages:
        raise ArchiveError(f"{path}: no pages ({', '.join(IMAGE_EXTENSIONS)}) in the archive")
    volume.pages.sort(key=natural_key)
    stems = Counter(str(PurePosixPath(m).with_suffix("")) for m in volume.pages)
    for member in volume.pages:
        p = PurePosixPath(member)
        keep = stems[str(p.with_suffix(""))] > 1  # a.png and a.jpg: both keep their extension
        volume.names[member] = str(p.with_name(p.name + ".png") if keep else p.with_suffix(".png"))
    return volume


def pack_volume(volume: Volume) -> Path | None:
    """Write the volume's .cbz from its staged pages, in reading order (atomically); the staging folder goes
    unless a page is missing (it failed: a rerun with ``--skip_existing`` colours only what is missing). None
    when no page was coloured."""
    pages = [m for m in volume.pages if volume.staged(m).is_file()]
    failed = len(pages) < len(volume.pages)
    if not pages:
        return None
    volume.output.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(volume.output) as tmp, zipfile.ZipFile(tmp, "w", zipfile.ZIP_STORED) as archive:
        for member in pages:  # PNG is compressed already
            archive.write(volume.staged(member), volume.names[member])
    for member in pages:  # --layers: each page's layers beside the volume, in <stem>_layers/
        for path in layer_paths(volume.staged(member)).values():
            if path.is_file():
                target = volume.layers / path.relative_to(volume.staging)
                target.parent.mkdir(parents=True, exist_ok=True)
                os.replace(path, target)
    if not failed:
        shutil.rmtree(volume.staging, ignore_errors=True)
    return volume.output
