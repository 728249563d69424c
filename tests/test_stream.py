"""Collections at scale: prepare → LitData shards → the stream source trains, shards over ranks and resumes
exactly (all on local folders: no bucket here)."""

import json
import os
import socket

import numpy as np
import pytest
import torch
from PIL import Image

from dualflow.cli import main
from dualflow.data.stream import PrepareItem
from dualflow.data.stream import main as prepare_main
from dualflow.data.synth import SynthManga
from tests.conftest import fit_args
from tests.test_resume import assert_resume_is_exact


@pytest.fixture(scope="module")
def colour_shards(tmp_path_factory):
    """16 colour pages (one in a subfolder), a corrupt file and a text file, prepared once."""
    root = tmp_path_factory.mktemp("collection")
    src = root / "src"
    (src / "more").mkdir(parents=True)
    gen = SynthManga(11)
    for i in range(16):
        folder = src / "more" if i == 3 else src
        Image.fromarray((gen(i, 80).color * 255).astype(np.uint8)).save(folder / f"page{i:02d}.png")
    (src / "corrupt.png").write_bytes(b"\x89PNG\r\n\x1a\n not really")
    (src / "notes.txt").write_text("ignored: not an image")
    assert prepare_main([str(src), str(root / "shards"), "--size", "64", "--workers", "1"]) == 0
    return root / "shards"


def test_prepare_writes_shards_and_reports_what_it_skipped(colour_shards, capsys):
    report = json.loads((colour_shards / "prepare_report.json").read_text())
    assert report["inputs"] == 17 and report["written"] == 16 and report["kind"] == "color"
    assert [p["file"].rsplit("/", 1)[-1] for p in report["skipped"]] == ["corrupt.png"]
    assert "not a readable image" in report["skipped"][0]["reason"]
    index = json.loads((colour_shards / "index.json").read_text())
    assert sum(c["chunk_size"] for c in index["chunks"]) == 16


def test_prepare_paired_reports_missing_partners_and_size_mismatches(tmp_path, capsys):
    src = tmp_path / "src"
    for side in ("bw", "color"):
        (src / side).mkdir(parents=True)
    page = SynthManga(2)(0, 64)
    for name in ("a", "b", "c"):
        Image.fromarray((page.bw * 255).astype(np.uint8)).save(src / "bw" / f"{name}.png")
        Image.fromarray((page.color * 255).astype(np.uint8)).save(src / "color" / f"{name}.jpg")
    Image.fromarray((page.bw * 255).astype(np.uint8)).save(src / "bw" / "lonely.png")
    Image.fromarray(np.zeros((10, 12, 3), np.uint8)).save(src / "color" / "c.jpg")  # now 12x10, its bw 64x64
    assert prepare_main([str(src), str(tmp_path / "out"), "--kind", "paired", "--workers", "1"]) == 0
    report = json.loads((tmp_path / "out" / "prepare_report.json").read_text())
    assert report["written"] == 2
    reasons = {p["file"].rsplit("/", 1)[-1]: p["reason"] for p in report["skipped"]}
    assert "no colour partner" in reasons["lonely.png"] and "12x10" in reasons["c.png"]
    assert "skipped: " in capsys.readouterr().err


def test_the_stream_source_trains_with_mangafy_on_the_fly(colour_shards, tmp_path):
    cli = main(fit_args("stage1", tmp_path, "st", "--data.source=stream", f"--data.root={colour_shards}",
                        "--data.n_val=2", "--data.n_test=2", "--data.batch_size=2"))
    assert cli.trainer.global_step == 4
    entry = json.loads((tmp_path / "st" / "manifest.json").read_text())["stages"]["attention"]
    assert entry["metrics"]["val/loss"] > 0 and "val/attention/rank_corr" in entry["metrics"]  # no labels: ranking


def _rank_worker(rank: int, world: int, port: int, root: str, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.distributed.init_process_group("gloo", rank=rank, world_size=world)
    from dualflow.data.datamodule import MangaDataModule

    dm = MangaDataModule(source="stream", root=root, crop_size=48, n_val=2, n_test=2, batch_size=2, num_workers=0)
    dm.setup("fit")
    names = [n for batch in dm.train_dataloader() for n in batch["name"]]
    torch.save(names, f"{out}/rank{rank}.pt")
    torch.distributed.destroy_process_group()


def test_two_ranks_stream_disjoint_samples(colour_shards, tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    torch.multiprocessing.spawn(_rank_worker, args=(2, port, str(colour_shards), str(tmp_path)), nprocs=2)
    a, b = (torch.load(tmp_path / f"rank{r}.pt") for r in range(2))
    assert len(a) == len(b) >= 4 and len(set(a)) == len(a) and len(set(b)) == len(b)
    assert not set(a) & set(b)  # each sample on one rank only
    from dualflow.data.datamodule import MangaDataModule

    dm = MangaDataModule(source="stream", root=str(colour_shards), crop_size=48, n_val=2, n_test=2, batch_size=2,
                         num_workers=0)
    dm.setup("fit")
    held_out = {n for loader in (dm.val_dataloader(), dm.test_dataloader()) for batch in loader for n in batch["name"]}
    assert len(held_out) == 4 and not (set(a) | set(b)) & held_out
    # 12 training samples (16 prepared, 4 held out, litdata's split may keep one back): drop_last evens the ranks
    # and their last batches, which leaves fewer than world size × batch size of an epoch out, never more.
    assert 12 - len(set(a) | set(b)) <= 2 * 2


def test_a_resumed_stream_run_matches_an_uninterrupted_one(colour_shards, tmp_path):
    # 12 training samples, batches of 2 with drop_last: an epoch is 6 batches, so 8 steps cross its end; two
    # loader workers, so the position includes which worker is next. The control run shuffles the stream
    # with another seed.
    common = ["--data.source=stream", f"--data.root={colour_shards}", "--data.n_val=2", "--data.n_test=2",
              "--data.batch_size=2", "--data.num_workers=2", "--trainer.max_steps=8", "--checkpoint_every_n_steps=1",
              "--trainer.val_check_interval=4"]
    assert_resume_is_exact("stage1", "attention", tmp_path, common, stop=3, total=8, control="--data.seed=1")


def _colour_folder(folder, n: int = 8):
    folder.mkdir(parents=True)
    for i in range(n):
        Image.fromarray((SynthManga(12)(i, 48).color * 255).astype(np.uint8)).save(folder / f"p{i}.png")
    return folder


def test_prepare_with_two_workers_writes_every_page_in_order(tmp_path):
    from litdata import StreamingDataset

    src = _colour_folder(tmp_path / "src")
    assert prepare_main([str(src), str(tmp_path / "shards"), "--workers", "2"]) == 0
    names = [StreamingDataset(str(tmp_path / "shards"))[i]["name"] for i in range(8)]
    assert sorted(names) == [f"p{i}" for i in range(8)] and len(set(names)) == 8


class DyingItem(PrepareItem):
    """The prepare function, except that its worker process dies on page p5 as the OOM killer would end it (no
    exception, no report); defined here so that litdata's spawned workers can import it."""

    def __call__(self, item):
        if item["name"].endswith("p5"):
            os._exit(3)
        return super().__call__(item)


def test_a_prepare_worker_that_dies_is_an_error_not_a_short_dataset(tmp_path, monkeypatch, capsys):
    from dualflow.data import stream

    monkeypatch.setattr(stream, "PrepareItem", DyingItem)
    src = _colour_folder(tmp_path / "src")
    assert prepare_main([str(src), str(tmp_path / "shards"), "--workers", "2"]) == 2
    assert "a prepare worker failed" in capsys.readouterr().err
