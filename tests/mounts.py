"""Real read-only and real full file systems for tests: a read-only bind mount and a small tmpfs.

Tests run as root here, where chmod does not stop writes; a mount does. Where mounting is not permitted (no
root, a container without CAP_SYS_ADMIN, not Linux) the test is skipped, saying so.
"""
from __future__ import annotations

import shutil
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest


def _mount(*args: str) -> bool:
    return shutil.which("mount") is not None and subprocess.run(["mount", *args], capture_output=True).returncode == 0


def _umount(where: Path) -> None:
    if subprocess.run(["umount", str(where)], capture_output=True).returncode:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)  # busy: detach it now, free it later


@contextmanager
def read_only_view(source: Path, view: Path) -> Iterator[Path]:
    """`source` seen read-only at `view` (a bind mount remounted read-only) for the duration."""
    view.mkdir(parents=True, exist_ok=True)
    if not _mount("--bind", str(source), str(view)):
        pytest.skip("a read-only bind mount needs root (mount --bind); not permitted here")
    try:
        if not _mount("-o", "remount,ro,bind", str(view)):
            pytest.skip("remounting a bind mount read-only is not permitted here")
        yield view
    finally:
        _umount(view)


@contextmanager
def small_disk(where: Path, size: str = "64k", inodes: int | None = None) -> Iterator[Path]:
    """A tmpfs of `size` (and at most `inodes` files and folders) mounted at `where` for the duration."""
    where.mkdir(parents=True, exist_ok=True)
    options = f"size={size}" + (f",nr_inodes={inodes}" if inodes else "")
    if not _mount("-t", "tmpfs", "-o", options, "tmpfs", str(where)):
        pytest.skip("mounting a small tmpfs needs root; not permitted here")
    try:
        yield where
    finally:
        _umount(where)
