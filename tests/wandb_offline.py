"""Reader of offline W&B runs (``run-<id>.wandb``), for asserting what a run really logged.

The file is a LevelDB-style log (7-byte file header ``:W&B`` + magic + version; 32 KiB blocks of records,
each with a 7-byte header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of protobuf ``Record`` messages."""

from __future__ import annotations

import json
import struct
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


def read_run(run_dir: str | Path) -> dict:
    """{"config": {...}, "history": [{key: value}...], "summary": {...}, "metrics": {name: summary},
    "exited": bool} of the offline run in ``run_dir`` (``.../wandb/offline-run-*``)."""
    path = next(Path(run_dir).glob("run-*.wandb"))
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
