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

import contextlib
import json
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

from .errors import EmaVfiError
from .files import atomic_write, default_mode, sha256_of, stale_partials, try_lock
from .provenance import THREADS_KEY, WEIGHTS_KEY
from .sequences import describe_numbers

LOCK_NAME = ".emavfi.lock"
RECORD_NAME = ".emavfi-run.json"
LOG_NAME = ".emavfi-frames.log"
# Record entries learnt only once the weights are resolved (after the folder was checked and locked).
LATE_KEYS = (WEIGHTS_KEY,)
# Record entries added since the first release: a folder whose record lacks one is resumed without judging it.
ADDED_KEYS = (THREADS_KEY,)
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
                 overwrite: bool, verify: Callable[[Path], bool], redo_changed: bool = False):
        self.folder, self.record, self.naming = folder, {**record, "naming": naming.as_dict()}, naming
        self.shared, self.resume, self.overwrite, self.verify = shared, resume, overwrite, verify
        self.redo_changed = redo_changed
        self._lock_handle: IO[bytes] | None = None
        self._log_fd: int | None = None
        self._claimed: list[Path] = []  # what this run created, removed again if it fails before its first frame
        self._wrote = False
        self._done: set[int] | None = None

    # -- opening --------------------------------------------------------------------------------------

    def __enter__(self) -> OutputFolder:
        if self.folder.exists() and not self.folder.is_dir():
            raise OutputFolderError(f"output {self.folder} exists and is not a folder")
        created = _missing_folders(self.folder)
        self.folder.mkdir(parents=True, exist_ok=True)
        self._claimed = [p for p in (self.folder / LOG_NAME, self.folder / LOCK_NAME) if not p.exists()] + created
        self._lock()
        try:
            self._adopt()
            self._log_fd = os.open(self.folder / LOG_NAME, os.O_WRONLY | os.O_APPEND | os.O_CREAT, default_mode())
            if self.resume and not self.shared:  # frames changed since we wrote them stop a resume before any work
                self._done = self.complete(range(self.naming.total))
        except BaseException:
            self.__exit__(None, None, None)
            raise
        return self

    def __exit__(self, exc_type: object = None, *exc: object) -> None:
        if self._log_fd is not None:
            os.close(self._log_fd)
        if self._lock_handle is not None:
            self._lock_handle.close()  # closing releases the lock
        self._log_fd, self._lock_handle = None, None
        if exc_type is not None and not self._wrote:
            self._unclaim()

    def _unclaim(self) -> None:
        """A run that failed before its first frame leaves the folder as it found it (record, log, lock, folders
        it created), unless another task holds the folder or frames were logged there meanwhile."""
        if RECORD_NAME not in {p.name for p in self._claimed}:
            return
        handle = try_lock(self.folder / LOCK_NAME)
        if handle is None:
            return
        try:
            log = self.folder / LOG_NAME
            if log.is_file() and log.stat().st_size:
                return
            for path in sorted(self._claimed, key=lambda p: (p.is_dir(), -len(p.parts))):  # files, then folders
                if path.is_dir():
                    with contextlib.suppress(OSError):
                        path.rmdir()  # only when empty
                else:
                    path.unlink(missing_ok=True)
        finally:
            handle.close()

    def _lock(self) -> None:
        handle = try_lock(self.folder / LOCK_NAME, shared=self.shared)
        if handle is None:
            raise OutputFolderError(f"another emavfi run is writing to {self.folder}; wait for it to finish or "
                                    "choose another output folder")
        self._lock_handle = handle

    def _adopt(self) -> None:
        """Check the folder against the record; write the record; delete only what a record names (overwrite)."""
        before = self._read_record()
        ours = self._recorded_files(before) if before else {}
        if before is not None:  # facts not known yet (weights not downloaded) are taken as the folder has them
            known = {k: before[k] for k in LATE_KEYS if k in before and self.record.get(k) is None}
            unrecorded = () if self.overwrite else {k for k in ADDED_KEYS if k not in before}
            self.record = {k: v for k, v in {**self.record, **known}.items() if k not in unrecorded}
        if before is None:
            foreign = [p.name for p in self.folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES]
            if foreign:
                raise OutputFolderError(
                    f"{self.folder} already holds {len(foreign)} image file(s) (e.g. {foreign[0]}) that emavfi did not "
                    "write; choose an empty or new output folder (nothing there is touched)")
        elif _comparable(before) != _comparable(self.record):
            if not self.overwrite:
                raise OutputFolderError(
                    f"{self.folder} holds the output of a different run ({describe_differences(before, self.record)}); "
                    f"use {_same_command(before, self.record)} to resume it, --overwrite to replace its frames, or "
                    "another folder")
            self._delete(self._replaceable(before, ours))
        elif self.overwrite:
            self._delete(self._replaceable(before, ours))
        elif ours and not (self.resume or self.shared):
            raise OutputFolderError(f"{self.folder} already holds {len(ours)} frames of this run; add --resume to "
                                    "finish it or --overwrite to replace them")
        if not self.shared:
            for partial in stale_partials(self.folder):  # left by a killed writer; tasks may be writing their own
                partial.unlink(missing_ok=True)
        if before is None or _comparable(before) != _comparable(self.record) or self.overwrite:
            self._write_record()
        if before is None:
            self._claimed.append(self.folder / RECORD_NAME)
        else:
            self._claimed = []  # the folder was ours before this run: an early failure leaves it as it is

    def _write_record(self) -> None:
        atomic_write(self.folder / RECORD_NAME, json.dumps(self.record, indent=1, sort_keys=True).encode())

    def confirm(self, key: str, value: Any) -> None:
        """Add a fact known only once the weights are resolved (LATE_KEYS) to the record, before the first frame;
        a folder that recorded another value is refused."""
        known = self.record.get(key)
        if known is not None and known != value:
            raise OutputFolderError(f"{self.folder} holds the output of a different run ({key} {_short(known)} there, "
                                    f"{_short(value)} now); use the same weights to resume it, --overwrite to replace "
                                    "its frames, or another folder")
        if known is None and value is not None:
            self.record = {**self.record, key: value}
            self._write_record()

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

    def _recorded_files(self, record: dict[str, Any]) -> dict[int, Path]:
        """Frame number -> file, for the files there that the record's naming names."""
        naming = _naming_of(record)
        numbers = {naming.name(k): k + naming.start for k in range(naming.total)}
        return {numbers[p.name]: p for p in self.folder.iterdir() if p.name in numbers}

    def _replaceable(self, record: dict[str, Any], ours: dict[int, Path]) -> list[Path]:
        """The recorded files --overwrite may delete: those whose bytes still match the frame log (a damaged one
        too). Frames edited since, or never logged, stop it with one line, unless --redo-changed: then they are
        left in place for the render to replace, and nothing the user made is deleted."""
        logged = self._logged()
        matching, edited, unlogged = [], [], []
        for number, path in sorted(ours.items()):
            entry = logged.get(path.name)
            if entry is None:
                unlogged.append(number)
            elif (path.stat().st_size == entry[0] and sha256_of(path) == entry[1]) or not self.verify(path):
                matching.append(path)
            else:
                edited.append(number)
        if (edited or unlogged) and not self.redo_changed:
            raise OutputFolderError(
                f"--overwrite replaces only frames emavfi wrote, and {touched(edited, unlogged, _naming_of(record))} "
                f"in {self.folder}; nothing was replaced: move them aside, or add --redo-changed to render them again")
        return matching

    def _delete(self, paths: Iterable[Path]) -> None:
        """Delete these frames (ours, unchanged since we wrote them) and the frame log."""
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
        if self._done is not None:  # checked on opening; this run alone writes here since
            return {index for index in indices if index in self._done}
        logged = self._logged()
        done, changed = set(), []
        for index in indices:  # changed: frame numbers
            path = self.path(index)
            entry = logged.get(path.name)
            if entry is None or not path.is_file():
                continue
            if path.stat().st_size == entry[0] and sha256_of(path) == entry[1]:
                if self.verify(path):
                    done.add(index)
            elif self.verify(path):  # a whole image, not ours: someone edited it (a damaged one is re-rendered)
                changed.append(index + self.naming.start)
        if changed and not self.redo_changed:
            raise OutputFolderError(f"{touched(changed, [], self.naming)} in {self.folder}; they are kept: move them "
                                    "aside, or add --redo-changed to render them again")
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
        self._wrote = True


def touched(edited: list[int], unlogged: list[int], naming: Naming) -> str:
    """E.g. "frames 4, 7-8 of frame_######.png were changed after emavfi wrote them and frame 9 was not written by
    emavfi": frame numbers compressed into ranges, as the missing-frames message has them."""
    parts = []
    for numbers, what in ((edited, "changed after emavfi wrote {}"), (unlogged, "not written by emavfi")):
        if numbers:
            one = len(numbers) == 1
            label = f"frame{'' if one else 's'} {describe_numbers(numbers)}"
            of = "" if parts else f" of {naming.pattern}"
            parts.append(f"{label}{of} {'was' if one else 'were'} {what.format('it' if one else 'them')}")
    return " and ".join(parts)


def _naming_of(record: dict[str, Any]) -> Naming:
    """The naming a run record holds."""
    n = record["naming"]
    return Naming(str(n["prefix"]), int(n["digits"]), str(n["suffix"]), int(n["start"]), int(n["total"]))


def _comparable(record: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(record, sort_keys=True))


def _short(value: Any) -> str:
    text = json.dumps(value, sort_keys=True) if not isinstance(value, str) else value
    return text if len(text) <= 40 else text[:16] + "..."


def describe_differences(before: dict[str, Any], now: dict[str, Any]) -> str:
    """E.g. "precision fp16 there, fp32 now; tta false there, true now" for the keys whose values differ."""
    a, b = _comparable(before), _comparable(now)
    keys = sorted(k for k in set(a) | set(b) if a.get(k) != b.get(k))
    return "; ".join(f"{k} {_short(a.get(k))} there, {_short(b.get(k))} now" for k in keys)


def _same_command(before: dict[str, Any], now: dict[str, Any]) -> str:
    """How to repeat the recorded run: the same command, with the recorded torch threads where they differ."""
    threads = before.get(THREADS_KEY)
    if threads is not None and now.get(THREADS_KEY) not in (None, threads):
        return f"the same command with OMP_NUM_THREADS={threads}"
    return "the same command"


def _missing_folders(folder: Path) -> list[Path]:
    """folder and its ancestors that do not exist yet, deepest first (what mkdir(parents=True) creates)."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


# ----------------------------------------------------------------------------------------------- single files

def file_record_path(path: Path) -> Path:
    """The sidecar record of an output file we write (a video): hidden, beside it."""
    return path.with_name(f".{path.name}.emavfi-run.json")


def record_file(path: Path, record: dict[str, Any] | None = None) -> None:
    """Note beside `path` (complete, in place) that we wrote it: size and sha256, and what made it."""
    entry = {**(record or {}), "tool": "emavfi", "file": path.name, "bytes": path.stat().st_size,
             "sha256": sha256_of(path)}
    atomic_write(file_record_path(path), json.dumps(entry, indent=1, sort_keys=True).encode())


def check_new_file(path: Path, overwrite: bool, option: str = "--overwrite") -> None:
    """Refuse an existing output file, unless `overwrite` and its sidecar record shows we wrote it as it is."""
    if not path.exists() and not path.is_symlink():
        return
    if path.is_dir():
        raise OutputFolderError(f"output {path} is a folder; give a file name such as {path / 'out.mp4'}")
    if not overwrite:
        raise OutputFolderError(f"{path} already exists; choose a new file name, or add {option} to replace a file "
                                "emavfi wrote (nothing else is ever replaced)")
    try:
        record = json.loads(file_record_path(path).read_text())
    except (OSError, ValueError):
        record = None
    if not isinstance(record, dict) or record.get("tool") != "emavfi":
        raise OutputFolderError(f"{path} was not written by emavfi (no record of it beside it), so {option} does not "
                                "replace it; choose a new file name")
    if path.is_symlink() or record.get("bytes") != path.stat().st_size or record.get("sha256") != sha256_of(path):
        raise OutputFolderError(f"{path} was changed after emavfi wrote it, so {option} does not replace it; choose a "
                                "new file name, or move it aside")
