"""Page throughput of the data sources: SynthManga drawing, colour folders (decoded and mangafied) and LitData
shards, in one process without loader workers."""

from __future__ import annotations

import time
from pathlib import Path

from dualflow.bench.probes import timed


def bench_data(repeats: int, n: int) -> dict[str, float]:
    from dualflow.data.synth import SynthManga

    gen = SynthManga(0)
    out = {}
    for name, size in (("256x256", 256), ("512x724", (724, 512))):
        seconds = timed(lambda size=size: [gen(i, size) for i in range(n)], repeats)
        out[f"synth_pages_per_s_{name}"] = n / seconds
    return out


def bench_sources(n: int, size: int) -> dict[str, float]:
    """Training pages/s of each data source in one process (no loader workers), on the same pages and
    augmentation: SynthManga drawing them, a folder of their colour PNGs (decoded and mangafied), and the same
    folder prepared as LitData shards (streamed, decoded and mangafied)."""
    import tempfile

    import numpy as np
    from PIL import Image

    from dualflow.data.datamodule import MangaDataModule
    from dualflow.data.stream import prepare
    from dualflow.data.synth import SynthManga

    out = {}
    with tempfile.TemporaryDirectory(prefix="dualflow-sources-") as folder:
        colour, shards = Path(folder) / "colour", Path(folder) / "shards"
        colour.mkdir()
        gen = SynthManga(0)
        for i in range(n):
            Image.fromarray((gen(i, size).color * 255).astype(np.uint8)).save(colour / f"{i:05d}.png")
        prepare(colour, str(shards), "color", workers=1)
        for source, root in (("synth", None), ("color", str(colour)), ("stream", str(shards))):
            dm = MangaDataModule(source=source, root=root, image_size=size, crop_size=size, n_train=n, n_val=1,
                                 n_test=1, batch_size=4, num_workers=0)
            dm.setup("fit")
            loader = dm.train_dataloader()
            start, pages = time.perf_counter(), 0
            for batch in loader:
                pages += batch["bw"].shape[0]
            out[f"{source}_pages_per_s_{size}"] = pages / (time.perf_counter() - start)
    return out
