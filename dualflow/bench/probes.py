"""The machine a bench ran on, and how it measures: median timings after a warm-up, peak memory of this process
image (/proc), available memory, and the device's measured matmul peak (what achieved FLOP/s are read against)."""

from __future__ import annotations

import os
import platform
import resource
import statistics
import time
from pathlib import Path
from typing import Any

import torch


def machine() -> dict[str, Any]:
    cpu = platform.processor() or ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    info = {"cpu": cpu, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "python": platform.python_version(),
            "date": time.strftime("%Y-%m-%d"), "gpu": None}
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        start = time.perf_counter()
        fn()
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _proc_mib(path: str, key: str) -> float | None:
    """A ``key:  N kB`` line of a /proc file, in MiB (None where /proc is not there)."""
    try:
        for line in Path(path).read_text().splitlines():
            if line.startswith(f"{key}:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    return None


def rss_mib() -> float:
    """Peak resident memory of this process image (VmHWM). Unlike ``ru_maxrss``, which survives ``exec`` and
    so would report the parent's peak in a spawned worker, VmHWM belongs to this address space only."""
    peak = _proc_mib("/proc/self/status", "VmHWM")
    return peak if peak is not None else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def reset_peak_rss() -> None:
    """Restart VmHWM from the current resident size (Linux: ``5`` into ``/proc/self/clear_refs``), so that work
    done before a measurement (drawing its page) does not count as the measured peak. No-op elsewhere."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        pass


def available_mib() -> float:
    available = _proc_mib("/proc/meminfo", "MemAvailable")
    return available if available is not None else float("inf")


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_peak(device: torch.device, dtype: torch.dtype = torch.float32, n: int = 2048, repeats: int = 5) -> float:
    """Measured FLOP/s of an n×n matrix product on ``device`` in ``dtype`` (median of ``repeats`` after a
    warm-up): the machine's attainable rate, which achieved training FLOP/s are compared against."""
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)

    def product() -> None:
        torch.mm(a, b)
        sync(device)

    return 2 * n**3 / timed(product, repeats)
