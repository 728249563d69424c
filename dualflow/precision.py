"""Full precision where mixed precision breaks things.

Under ``bf16-mixed`` every convolution and matmul inside autocast returns bfloat16. Networks are fine with
that; training targets, losses, metrics and colour maths are not (``torch.quantile`` refuses bfloat16, Lab
conversions and ΔE lose most of their digits). :func:`float32` runs such a function outside autocast with its
floating-point tensor arguments in float32, on whatever device autocast is active.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Callable
from typing import Any, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., Any])
AUTOCAST_DEVICES = ("cpu", "cuda")


def _as_float32(value: Any) -> Any:
    if torch.is_tensor(value) and value.is_floating_point() and value.dtype != torch.float64:
        return value.float()
    return value


@contextlib.contextmanager
def autocast_off():
    """Leave every active autocast region (CPU and CUDA) for the duration of the block."""
    with contextlib.ExitStack() as stack:
        for device in AUTOCAST_DEVICES:
            if torch.is_autocast_enabled(device):
                stack.enter_context(torch.autocast(device, enabled=False))
        yield


def float32(fn: F) -> F:
    """Decorator: ``fn`` runs outside autocast, with float16/bfloat16 tensor arguments cast to float32
    (float64 ones are kept)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        with autocast_off():
            return fn(*map(_as_float32, args), **{k: _as_float32(v) for k, v in kwargs.items()})

    return wrapper  # type: ignore[return-value]
