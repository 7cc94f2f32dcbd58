"""The output folder of a render: never lose data, never mix two runs, resume only what is verified.

Three hidden files live in an output folder:
- `.emavfi.lock`: held (files.try_lock) for the whole run. A whole-shot run holds it exclusively; `--frames` tasks
  (render-farm tasks, Ray workers) share it, so tasks of one job write side by side while a second job,
  or a whole run, fails at once instead of corrupting frames.
- `.emavfi-run.json`: the run record: what this folder is the output of (settings, input, naming), written
  before the first frame. A folder without a record but with image files was not written by us: we refuse
  it, and `--overwrite` only ever deletes files named by a record.
- `.emavfi-frames.log`: one line per written frame (name, size, sha256), appended after the frame is in
  place; `--resume` keeps a frame only if it is logged, the same size and hash, and decodes fully.
"""
from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import EmaVfiError
from .files import atomic_write, default_mode, sha256_of, stale_partials, try_lock

LOCK_NAME = ".emavfi.lock"
RECORD_NAME = ".emavfi-run.json"
LOG_NAME = ".emavfi-frames.log"
IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".dpx", ".webp", ".bmp"})


class OutputFolderError(EmaVfiError):
    """The output folder cannot be used as asked; the message says why and what to do."""


def check_not_overlapping(source: Path, output: Path) -> None:
    """Refuse an output that is, contains, or lies inside the input (a rerun would read or destroy it)."""
    src, out = source.resolve(), output.resolve()
    if out == src:
        raise OutputFolderError(f"the output {output} is the input; choose a new folder, e.g. {output}_x2")
    if src.is_dir() and src in out.parents:
        raise OutputFolderError(f"the output {output} is inside the input folder {source}; a later run would read "
                                "the outputs as input frames: choose a folder outside it")
    if out in src.parents:
        raise OutputFolderError(f"the output {output} contains the input {source}; choose a folder of its own")


@dataclass(frozen=True)
class Naming:
    """How output frames are named: `<prefix><number:0digits><suffix>`, number = index + start."""

    prefix: str
    digits: int
    suffix: str
    start: int
    total: int

    def name(self, index: int) -> str:
        """File name of global output index `index`."""
        return f"{self.prefix}{index + self.start:0{self.digits}d}{self.suffix}"

    @property
    def pattern(self) -> str:
        """The names with the number as #s, e.g. "frame_######.exr"."""
        return f"{self.prefix}{'#' * self.digits}{self.suffix}"

    def as_dict(self) -> dict[str, Any]:
        return {"prefix": self.prefix, "digits": self.digits, "suffix": self.suffix, "start": self.start,
                "total": self.total}


class OutputFolder:
    """Lock, record and frame log of one output folder for the duration of a run (a context manager)."""

    def __init__(self, folder: Path, record: dict[str, Any], naming: Naming, *, shared: bool, resume: bool,
                 overwrite: bool, verify: Callable[[Path], bool]):
        self.folder, self.record, self.naming = folder, {**record, "naming": naming.as_dict()}, naming
        self.shared, self.resume, self.overwrite, self.verify = shared, resume, overwrite, verify
        self._lock_handle: IO[bytes] | None = None
        self._log_fd: int | None = None

    # -- opening --------------------------------------------------------------------------------------

    def __enter__(self) -> OutputFolder:
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputFolderError(f"output {self.folder} exists and is not a folder")
        self.folder.mkdir(parents=True, exist_ok=True)
        self._lock()
        try:
            self._adopt()
            self._log_fd = os.open(self.folder / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, default_mode())
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing releases the lock
        self._log_fd, self._lock_handle = None, None

    def _lock(self) -> None:
        handle = try_lock(self.folder / LOCK_NAME, shared=self.shared)
        if handle is None:
            raise OutputFolderError(f"another emavfi run is writing to {self.folder}; wait for it to finish or "
                                    "choose another output folder")
        self._lock_handle = handle

    def _adopt(self) -> None:
        """Check the folder against the record; write the record; delete only what a record names (overwrite)."""
        before = self._read_record()
        ours = self._recorded_files(before) if before else []
        if before is None:
            foreign = [p.name for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if foreign:
                raise OutputFolderError(
                    f"{self.folder} already holds {len(foreign)} image file(s) (e.g. {foreign[0]}) that emavfi did not "
                    "write; choose an empty or new output folder (nothing there is touched)")
        elif _comparable(before) != _comparable(self.record):
            if not self.overwrite:
                changed = sorted(k for k in set(before) | set(self.record) if before.get(k) != self.record.get(k))
                raise OutputFolderError(
                    f"{self.folder} holds the output of a different run ({', '.join(changed)} differ); use the same "
                    "command to resume it, --overwrite to replace its frames, or another folder")
            self._delete(ours)
        elif self.overwrite:
            self._delete(ours)
        elif ours and not (self.resume or self.shared):
            raise OutputFolderError(f"{self.folder} already holds {len(ours)} frames of this run; add --resume to "
                                    "finish it or --overwrite to replace them")
        if not self.shared:
            for partial in stale_partials(self.folder):  # left by a killed writer; tasks may be writing their own
                partial.unlink(missing_ok=True)
        if before is None or _comparable(before) != _comparable(self.record) or self.overwrite:
            atomic_write(self.folder / RECORD_NAME, json.dumps(self.record, indent=1, sort_keys=True).encode())

    def _read_record(self) -> dict[str, Any] | None:
        path = self.folder / RECORD_NAME
        if not path.is_file():
            return None
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError):
            raise OutputFolderError(f"{path} is damaged; move the folder aside or choose another output") from None
        if not isinstance(record, dict) or not isinstance(record.get("naming"), dict):
            raise OutputFolderError(f"{path} is not an emavfi run record; choose another output folder")
        return record

    def _recorded_files(self, record: dict[str, Any]) -> list[Path]:
        n = record["naming"]
        naming = Naming(str(n["prefix"]), int(n["digits"]), str(n["suffix"]), int(n["start"]), int(n["total"]))
        names = {naming.name(k) for k in range(naming.total)}
        return [p for p in self.folder.iterdir() if p.name in names]

    def _delete(self, paths: Iterable[Path]) -> None:
        for path in paths:
            path.unlink(missing_ok=True)
        (self.folder / LOG_NAME).unlink(missing_ok=True)

    # -- during the run -------------------------------------------------------------------------------

    def path(self, index: int) -> Path:
        """Where global output index `index` goes."""
        return self.folder / self.naming.name(index)

    def complete(self, indices: Iterable[int]) -> set[int]:
        """Indices (of those given) whose frames are already there, logged, unchanged and fully decodable."""
        if not self.resume and not self.shared:
            return set()
        logged = self._logged()
        done = set()
        for index in indices:
            path = self.path(index)
            entry = logged.get(path.name)
            if entry is None or not path.is_file() or path.stat().st_size != entry[0]:
                continue
            if sha256_of(path) == entry[1] and self.verify(path):
                done.add(index)
        return done

    def _logged(self) -> dict[str, tuple[int, str]]:
        entries: dict[str, tuple[int, str]] = {}
        try:
            text = (self.folder / LOG_NAME).read_text()
        except OSError:
            return entries
        for line in text.splitlines():
            parts = line.split(" ")
            if len(parts) == 3 and parts[1].isdigit() and len(parts[2]) == 64:  # a torn last line is ignored
                entries[parts[0]] = (int(parts[1]), parts[2])
        return entries

    def wrote(self, index: int) -> None:
        """Log a frame that is now complete in place (one append: concurrent tasks do not interleave lines)."""
        path = self.path(index)
        line = f"{path.name} {path.stat().st_size} {sha256_of(path)}\n".encode()
        assert self._log_fd is not None
        os.write(self._log_fd, line)


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(record, sort_keys=True))
