"""Progress on the terminal, for the command line and other front ends (emavfi.evaluate): one status line of
frames done, rate and time left, and the weights download."""
from __future__ import annotations

import sys
import time
from collections.abc import Callable
from typing import TextIO


class ProgressLine:
    """One status line on stderr: frames done, frames per second and time left."""

    def __init__(self, stream: TextIO | None = None, min_interval: float | None = None):
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval if min_interval is not None else (0.25 if self.tty else 5.0)
        self.started = time.monotonic()
        self._last_print = float("-inf")
        self._first: int | None = None  # frames already done when counting started (resume)
        self.done = self.total = 0

    def update(self, done: int, total: int, force: bool = False) -> None:
        """Record progress; print at most every min_interval seconds."""
        if self._first is None:
            self._first, self.started = done, time.monotonic()
        self.done, self.total = done, total
        now = time.monotonic()
        if not force and now - self._last_print < self.min_interval:
            return
        self._last_print = now
        rate = (done - self._first) / max(now - self.started, 1e-9)
        eta = clock((total - done) / rate) if rate > 0 else "--:--"
        line = f"{done}/{total} frames  {rate:.2f} frames/s  ETA {eta}"
        self.stream.write(f"\r{line}   " if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        """Print the final count and end the status line."""
        if self._first is not None:
            self.update(self.done, self.total, force=True)
        if self.tty and self._last_print != float("-inf"):
            self.stream.write("\n")
            self.stream.flush()


def clock(seconds: float) -> str:
    """Seconds as "m:ss", or "h:mm:ss" from an hour on."""
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def download_progress() -> Callable[[int, int], None]:
    """A progress callback (bytes done, total) printing the weights download to stderr about once a second."""
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= total:
            last[0] = now
            sys.stderr.write(f"downloading weights: {done / 1e6:.1f} of {total / 1e6:.1f} MB\n")
    return report
