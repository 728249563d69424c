"""Progress of a long job that a person or a log can read: items done (of how many), rate and time left.

On a terminal one line is rewritten in place; anywhere else (a log file, CI, ``nohup``) plain lines are printed,
one per item or at most one each ``interval`` seconds, and always the last, so a job that runs for minutes is
never silent."""

from __future__ import annotations

import sys
import time
from typing import TextIO


def clock(seconds: float) -> str:
    """Seconds as ``m:ss`` (``h:mm:ss`` past an hour)."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


class ProgressLog:
    """``label: 12/32 pages, 26.4 pages/min, 0:45 left (note)``. ``total`` may be an estimate (None: unknown;
    a count that passes it is shown without one); ``interval``: least seconds between two log lines."""

    def __init__(self, label: str, total: int | None = None, unit: str = "pages", interval: float = 0.0,
                 stream: TextIO | None = None, enabled: bool = True):
        self.label, self.total, self.unit, self.interval = label, total, unit, interval
        self.stream = stream or sys.stderr
        self.enabled = enabled
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.done = 0
        self.start = time.perf_counter()
        self.last_line = -float("inf")

    def line(self, note: str = "") -> str:
        """The current state as one line."""
        elapsed = time.perf_counter() - self.start
        known = self.total is not None and self.done <= self.total
        count = f"{self.done}/{self.total}" if known else str(self.done)
        text = f"{self.label}: {count} {self.unit}"
        if self.done and elapsed > 0:
            text += f", {60 * self.done / elapsed:.1f} {self.unit}/min"
            if known and self.done < self.total:
                text += f", {clock(elapsed / self.done * (self.total - self.done))} left"
        text += f", {clock(elapsed)} elapsed"
        return f"{text} ({note})" if note else text

    def step(self, note: str = "", n: int = 1) -> None:
        """``n`` more items done; ``note`` names the last (a page's file name)."""
        self.done += n
        if not self.enabled:
            return
        now = time.perf_counter()
        last = self.total is not None and self.done == self.total
        if self.tty:
            print(f"\r\x1b[2K{self.line(note)}", end="", file=self.stream, flush=True)
        elif last or now - self.last_line >= self.interval:
            print(self.line(note), file=self.stream, flush=True)
            self.last_line = now

    def close(self) -> None:
        """End the in-place line on a terminal (a log already has its lines)."""
        if self.enabled and self.tty and self.done:
            print(file=self.stream, flush=True)
