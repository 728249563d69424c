"""Reader of offline W&B runs (``run-<id>.wandb``), for asserting what a run really logged.

The file is a LevelDB-style log (7-byte file header ``:W&B`` + magic + version; 32 KiB blocks of records,
each with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of protobuf ``Record`` messages."""

from __future__ import annotations

import json
import struct
import time
from pathlib import Path

from wandb.proto import wandb_internal_pb2 as pb

BLOCK = 32768
HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def records(path: str | Path) -> list[pb.Record]:
    data = Path(path).read_bytes()
    ident, _magic, _version = struct.unpack("<4sHB", data[:HEADER])
    assert ident == b":W&B", f"{path}: not a W&B transaction log"
    out, pending, pos = [], b"", HEADER
    while pos + HEADER <= len(data):
        left = BLOCK - pos % BLOCK
        if left < HEADER:
            pos += left
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + HEADER])
        if kind == 0 and length == 0:  # zero padding to the end of the block
            pos += left
            continue
        if pos + HEADER + length > len(data):
            break  # a record still being written
        payload = data[pos + HEADER:pos + HEADER + length]
        pos += HEADER + length
        if kind == FULL:
            out.append(payload)
        elif kind == FIRST:
            pending = payload
        elif kind == MIDDLE:
            pending += payload
        elif kind == LAST:
            out.append(pending + payload)
    parsed = []
    for raw in out:
        r = pb.Record()
        r.ParseFromString(raw)
        parsed.append(r)
    return parsed


def _key(item) -> str:
    return item.key or "/".join(item.nested_key)


def read_run(run_dir: str | Path, wait: float = 60.0) -> dict:
    """{"config": {...}, "history": [{key: value}...], "summary": {...}, "metrics": {name: summary},
    "exited": bool} of the offline run in ``run_dir`` (``.../wandb/offline-run-*``).

    ``run.finish()`` returns once the service has the exit record, but the service closes (flushes) the file
    a moment later; on a loaded machine the test can be faster, so wait up to ``wait`` s for the exit record."""
    deadline = time.monotonic() + wait
    run = _parse(next(Path(run_dir).glob("run-*.wandb")))
    while not run["exited"] and time.monotonic() < deadline:
        time.sleep(0.5)
        run = _parse(next(Path(run_dir).glob("run-*.wandb")))
    return run


def _parse(path: Path) -> dict:
    run = {"config": {}, "history": [], "summary": {}, "metrics": {}, "exited": False}
    for r in records(path):
        kind = r.WhichOneof("record_type")
        if kind == "config":
            for item in r.config.update:
                run["config"][_key(item)] = json.loads(item.value_json)
        elif kind == "history":
            run["history"].append({_key(i): json.loads(i.value_json) for i in r.history.item})
        elif kind == "summary":
            for item in r.summary.update:
                run["summary"][_key(item)] = json.loads(item.value_json)
        elif kind == "metric":
            run["metrics"][r.metric.name] = r.metric.summary
        elif kind == "exit":
            run["exited"] = True
        elif kind == "run":
            run["group"], run["job_type"], run["id"] = r.run.run_group, r.run.job_type, r.run.run_id
    return run
