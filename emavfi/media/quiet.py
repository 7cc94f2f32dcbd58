"""What native libraries print themselves (x265's banner, libpng's "libpng error" lines, OpenImageIO) is held
back, so that a run's output is our lines only; `--verbose` (EMAVFI_VERBOSE=1) lets it through.

The libraries write to file descriptor 2 directly, not through Python, so it is pointed at the null device
around their calls (on the calling thread's process; our own lines are written between those calls). Only the
main thread does so: file descriptor 2 is one for the whole process, so writer threads (emavfi.pipeline) that
pointed it away while the main thread prints its progress would hide those lines, and two threads restoring it
in turn could leave it pointing at the null device. What writer threads call prints nothing in a healthy run.
"""
from __future__ import annotations

import contextlib
import functools
import os
import sys
import threading
from collections.abc import Callable, Iterator
from typing import ParamSpec, TypeVar

VERBOSE_ENV = "EMAVFI_VERBOSE"
P = ParamSpec("P")
R = TypeVar("R")


@contextlib.contextmanager
def native_quiet() -> Iterator[None]:
    """Native libraries' writes to stderr are dropped meanwhile, unless EMAVFI_VERBOSE is set."""
    if os.environ.get(VERBOSE_ENV) or threading.current_thread() is not threading.main_thread():
        yield
        return
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):  # no real stderr (embedded): nothing to hold back
        yield
        return
    null = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(null, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(null)


def quietly(function: Callable[P, R]) -> Callable[P, R]:
    """`function` run inside `native_quiet()`."""
    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> R:
        with native_quiet():
            return function(*args, **kwargs)
    return run
