"""Checks made before any work (no frames decoded, no weights loaded): the output can be written, an existing
video is ours to replace, every input frame's header matches the first, the run fits in memory.

Each failure is one line naming the file and the fix; `render.Job.check` and `render.prepare` call these, so
`interpolate`, `plan` and farm tasks all refuse the same jobs at the same point.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from .outputs import OutputFolderError, check_new_file


def nearest_existing(path: Path) -> Path:
    """path, or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, what: str) -> None:
    """Create and remove a hidden probe file where the output goes (its folder, or the closest existing one)."""
    target = nearest_existing(folder)
    if not target.is_dir():
        raise OutputFolderError(f"cannot write {what}: {target} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".emavfi-probe-"):
            pass
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise OutputFolderError(f"cannot write {what} in {target} ({reason}); choose another output") from None


def check_output(job: Any) -> None:
    """The output can be written: a video's folder (and an existing video is ours to replace), or the folder."""
    out = job.settings.output
    if job.video_out:
        check_new_file(job.output, out.overwrite)
        check_writable(job.output.parent, f"the video {job.output.name}")
    else:
        check_writable(job.output, f"frames to {job.output}")
