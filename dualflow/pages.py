"""Pages of a batch for ``colorize``: which files a set of inputs holds, where each page's output goes, and a
reader that decodes the next pages in a background thread while the current one is coloured.

Folders are searched recursively and mirrored under the output folder; every frame of a multi-page TIFF is
a page of its own (``scan_p002.png``); files whose extension is not an image's are named and skipped; two
inputs of one folder with the same stem (``a.png``, ``a.jpg``) keep their extension in the output name;
``.cbz``/``.zip`` archives are volumes, coloured into a ``.cbz`` (:mod:`dualflow.volumes`)."""

from __future__ import annotations

import queue
import threading
import zipfile
import zlib
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from dualflow.data.io import (
    IMAGE_EXTENSIONS,
    SYNTH_MARKER,
    ImageReadError,
    frame_count,
    is_color,
    list_images,
    read_frame,
)
from dualflow.data.mangafy import mangafy
from dualflow.hints import is_hint_file
from dualflow.volumes import ARCHIVE_EXTENSIONS, ArchiveError, Volume, is_archive, open_volume


@dataclass
class Source:
    """One input file and the output name its pages take (without the page suffix and ``.png``); or one page
    ``member`` of a ``volume`` (its first frame), whose output is the staged page."""

    path: Path
    target: Path
    member: str | None = None
    volume: Volume | None = None


@dataclass
class Inputs:
    sources: list[Source] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files passed over for their extension, with why
    errors: list[str] = field(default_factory=list)  # inputs that do not exist, folders without images
    volumes: list[Volume] = field(default_factory=list)  # archives whose pages are among the sources
    conflicts: list[str] = field(default_factory=list)  # output paths that two inputs would write (refused)

    def add_volume(self, path: Path, out_dir: Path) -> None:
        """An archive's pages as sources, or the reason it is refused."""
        try:
            volume = open_volume(path, out_dir)
        except ArchiveError as e:
            self.errors.append(str(e))
            return
        self.volumes.append(volume)
        self.skipped += volume.skipped
        self.sources += [Source(path, volume.staged(m), m, volume) for m in volume.pages]


def _targets(files: list[Path], root: Path, out: Path) -> list[Source]:
    stems = Counter((f.parent, f.stem) for f in files)
    sources = []
    for f in files:
        name = f.name if stems[(f.parent, f.stem)] > 1 else f.stem
        sources.append(Source(f, out / f.parent.relative_to(root) / name))
    return sources


def collect(inputs: list[str | Path], out: str | Path) -> Inputs:
    """Expand files and folders (recursively, sorted) into sources with mirrored output names; archives
    (``.cbz``, ``.zip``) become volumes (:mod:`dualflow.volumes`)."""
    found, out = Inputs(), Path(out)
    for item in map(Path, inputs):
        if item.is_dir() and (item / SYNTH_MARKER).is_file() and (item / "bw").is_dir():
            # A `dualflow synth` folder: its B&W pages, not the colour pages, label maps and contact sheet.
            found.sources += _targets(list_images(item / "bw", recursive=True), item, out)
        elif item.is_dir():
            files = sorted(p for p in item.rglob("*") if p.is_file())
            hint_files = [p for p in files if is_hint_file(p)]  # a page's colour hints, not a page
            images = [p for p in files if p.suffix.lower() in IMAGE_EXTENSIONS and p not in hint_files]
            archives = [p for p in files if is_archive(p)]
            found.skipped += [f"{p}: not an image file by its extension (reads {', '.join(IMAGE_EXTENSIONS)}, "
                              f"{', '.join(ARCHIVE_EXTENSIONS)})" for p in files
                              if p not in images and p not in archives and p not in hint_files
                              and not p.name.startswith(".")]
            if not images and not archives:
                found.errors.append(f"{item}: folder has no images ({', '.join(IMAGE_EXTENSIONS)})")
            found.sources += _targets(images, item, out)
            for archive in archives:
                found.add_volume(archive, out / archive.parent.relative_to(item))
        elif item.is_file() and is_archive(item):
            found.add_volume(item, out)
        elif item.is_file():
            found.sources.append(Source(item, out / item.stem))
        else:
            found.errors.append(f"{item}: no such file or folder")
    found.conflicts = output_conflicts(found)
    return found


def output_conflicts(found: Inputs) -> list[str]:
    """``output: both A and B would be written here`` for every output path (a page's PNG, a volume's .cbz) that
    two inputs claim: ``colorize A/ B/`` where both hold ``p1.png``, or ``a.png`` given beside a folder with one."""
    claims: dict[Path, list[Path]] = {}
    for source in found.sources:
        if source.volume is None:
            claims.setdefault(source.target.with_suffix(".png"), []).append(source.path)
    for volume in found.volumes:
        claims.setdefault(volume.output, []).append(volume.path)
    return [f"{output}: {' and '.join(map(str, paths))} would both be written here"
            for output, paths in claims.items() if len(paths) > 1]


@dataclass
class Page:
    """One page to colour, or why it cannot be: ``bw`` (H,W) in [0,1], or ``error``; ``skipped`` when its
    output already exists (``--skip_existing``)."""

    source: Path
    output: Path
    bw: np.ndarray | None = None
    error: str | None = None
    skipped: bool = False
    converted: bool = False  # a colour page rendered to B&W manga first
    hint_file: tuple[Path, bytes | None] | None = None  # a volume page's hints: (name, bytes inside the archive)


def _volume_page(source: Source, max_pixels: int | None, skip_existing: bool) -> Page:
    """The page of one archive entry (its first frame), or why it cannot be read."""
    volume, member = source.volume, source.member
    name, output = volume.display(member), volume.staged(member)
    packed = volume.output.is_file() and not volume.staging.exists()  # a finished volume
    if skip_existing and (output.is_file() or packed):
        return Page(name, volume.output if packed else output, skipped=True)  # staging is gone once packed
    try:
        data = volume.read(member)
        page = read_frame(name, 0, channels=3, max_pixels=max_pixels, data=data)
    except ImageReadError as e:
        return Page(name, output, error=str(e))
    except (zipfile.BadZipFile, zlib.error, OSError, EOFError) as e:
        return Page(name, output, error=f"{name}: damaged archive entry ({e})")
    except MemoryError:
        return Page(name, output, error=f"{name}: out of memory while decoding")
    hint_file = volume.hint_file(member)
    if is_color(page):
        return Page(name, output, bw=mangafy(page), converted=True, hint_file=hint_file)
    return Page(name, output, bw=page[..., 0], hint_file=hint_file)


def pages_of(source: Source, max_pixels: int | None, skip_existing: bool) -> Iterator[Page]:
    if source.volume is not None:
        yield _volume_page(source, max_pixels, skip_existing)
        return
    try:
        n = frame_count(source.path, max_pixels)
    except ImageReadError as e:
        yield Page(source.path, source.target.with_suffix(".png"), error=str(e))
        return
    for frame in range(n):
        name = source.target.name + (f"_p{frame + 1:03d}" if n > 1 else "")
        output = source.target.with_name(name + ".png")
        if skip_existing and output.is_file():
            yield Page(source.path, output, skipped=True)
            continue
        try:
            page = read_frame(source.path, frame, channels=3, max_pixels=max_pixels)
        except ImageReadError as e:
            yield Page(source.path, output, error=str(e) + (f" (page {frame + 1})" if n > 1 else ""))
            continue
        except MemoryError:
            yield Page(source.path, output, error=f"{source.path}: out of memory while decoding")
            continue
        if is_color(page):
            yield Page(source.path, output, bw=mangafy(page), converted=True)
        else:
            yield Page(source.path, output, bw=page[..., 0])


def read_ahead(sources: list[Source], max_pixels: int | None, skip_existing: bool, depth: int = 2) -> Iterator[Page]:
    """Pages of ``sources`` in order, decoded by a background thread up to ``depth`` pages ahead (PIL and
    numpy release the GIL while decoding, so this overlaps with colouring the current page)."""
    pages: queue.Queue = queue.Queue(maxsize=depth)
    stop = threading.Event()
    done = object()

    def produce() -> None:
        try:
            for source in sources:
                for page in pages_of(source, max_pixels, skip_existing):
                    while not stop.is_set():
                        try:
                            pages.put(page, timeout=0.1)
                            break
                        except queue.Full:
                            continue
                    if stop.is_set():
                        return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, which decides
            pages.put(e)
        finally:
            pages.put(done)

    worker = threading.Thread(target=produce, name="dualflow-read-ahead", daemon=True)
    worker.start()
    try:
        while (item := pages.get()) is not done:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a producer waiting on a full queue, then let it finish
            try:
                pages.get_nowait()
            except queue.Empty:
                worker.join(timeout=0.1)

