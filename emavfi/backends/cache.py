"""The on-disk cache of compiled models: one folder per key, verified before use, rebuilt when damaged or stale.

Layout: <root>/<runtime>/<digest of the key>/ holds the runtime's files and `key.json` (the full key and
the sha256 of every file), written last. A folder whose key.json is missing, foreign or does not match its
files is rebuilt. One lock file per key serialises processes compiling the same model at once; reading a
valid entry takes no lock.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, commit, disk_full, exclusive, no_space, partial_path, sha256_of, unwritable

FORMAT = 1  # bump when the exported graphs change: older cache entries become stale
RECORD = "key.json"
log = logging.getLogger("emavfi")


@dataclass(frozen=True)
class CacheKey:
    """Everything a compiled model depends on."""

    variant: str
    weights_sha256: str
    height: int  # padded size
    width: int
    batch: int
    precision: str
    scale: float
    runtime: str
    runtime_version: str
    target: str  # CPU, or the GPU's name for TensorRT
    format: int = FORMAT

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)

    def digest(self) -> str:
        return hashlib.sha256(json.dumps(self.as_dict(), sort_keys=True).encode()).hexdigest()[:32]


class CompiledCache:
    """Compiled models under `root` (e.g. $EMAVFI_HOME/compiled).

    Reading needs no lock, so a cache built ahead of time and shared read-only is used as it is. Where the cache
    cannot be written (read-only, no permission, full), models are compiled into a temporary folder that lives
    as long as this object, with one warning naming the folder and why.
    """

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)
        self._elsewhere: dict[str, tempfile.TemporaryDirectory] = {}  # key digest -> this run's own copy
        self._unusable: set[str] = set()  # entries that failed to load and could not be removed from the cache
        self._warned = False

    def folder(self, key: CacheKey) -> Path:
        """Where the key's files are: the cache's folder, or this run's temporary one when it was built there."""
        elsewhere = self._elsewhere.get(key.digest())
        return Path(elsewhere.name) if elsewhere is not None else self.root / key.runtime / key.digest()

    def valid(self, key: CacheKey, files: Sequence[str]) -> bool:
        """True when the key's folder holds its record for exactly this key and every file matches its sha256."""
        folder = self.folder(key)
        try:
            record = json.loads((folder / RECORD).read_text())
            recorded = record["files"]
            return (record.get("key") == key.as_dict() and sorted(recorded) == sorted(files)
                    and all(sha256_of(folder / name) == recorded[name] for name in files))
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return False

    def get(self, key: CacheKey, files: Sequence[str], build: Callable[[Path], None]) -> tuple[Path, bool]:
        """(folder holding `files` for `key`, whether it was built now). build(tmp) writes the files into tmp."""
        if key.digest() in self._elsewhere or self._usable(key, files):
            return self.folder(key), False
        try:
            with exclusive(self._lock(key)):
                if self._usable(key, files):  # another process built it while we waited
                    return self.folder(key), False
                self._build(key, files, build)
            return self.folder(key), True
        except Exception as exc:  # noqa: BLE001 - only a cache that cannot be written is handled here
            if not (disk_full(exc) or unwritable(exc)):
                raise
            self._build_elsewhere(key, files, build, exc)
        return self.folder(key), True

    def invalidate(self, key: CacheKey) -> None:
        """Forget a cache entry whose files failed to load (they are rebuilt on the next get)."""
        if key.digest() in self._elsewhere:
            self._elsewhere.pop(key.digest()).cleanup()
            return
        try:
            with exclusive(self._lock(key)):
                (self.folder(key) / RECORD).unlink(missing_ok=True)
        except OSError as exc:
            if not (disk_full(exc) or unwritable(exc)):
                raise
            self._unusable.add(key.digest())  # read-only: leave it there, build this run's copy elsewhere

    def _usable(self, key: CacheKey, files: Sequence[str]) -> bool:
        return key.digest() not in self._unusable and self.valid(key, files)

    def _lock(self, key: CacheKey) -> Path:
        return self.root / "locks" / f"{key.runtime}-{key.digest()}.lock"

    def _build(self, key: CacheKey, files: Sequence[str], build: Callable[[Path], None]) -> None:
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).unlink(missing_ok=True)  # the entry is invalid until every file is in place
        try:
            with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
                build(Path(tmp))
                for name in files:
                    staged = partial_path(folder / name)
                    shutil.move(str(Path(tmp) / name), staged)
                    commit(staged, folder / name)
            record = {"key": key.as_dict(), "files": {name: sha256_of(folder / name) for name in files}}
            atomic_write(folder / RECORD, json.dumps(record, indent=1, sort_keys=True).encode())
        except BaseException:
            for name in files:  # a full disk: give back the space of the files already in place
                (folder / name).unlink(missing_ok=True)
            raise

    def _build_elsewhere(self, key: CacheKey, files: Sequence[str], build: Callable[[Path], None],
                         cause: BaseException) -> None:
        """Build into a temporary folder kept until this object goes; warn once, naming the cache and why."""
        elsewhere = tempfile.TemporaryDirectory(prefix="emavfi-compiled-")
        try:
            build(Path(elsewhere.name))
        except BaseException as exc:
            elsewhere.cleanup()
            if disk_full(cause) and disk_full(exc):
                raise no_space(self.root, None, "a compiled model", fix="free some space (here and in "
                               f"{tempfile.gettempdir()}) or set EMAVFI_HOME to a disk with room") from exc
            raise
        self._elsewhere[key.digest()] = elsewhere
        if self._warned:
            return
        self._warned = True
        if disk_full(cause):
            needed = sum((Path(elsewhere.name) / name).stat().st_size for name in files)
            why = str(no_space(self.root, needed, "the compiled model", fix="compiled in a temporary folder for "
                               "this run only (free some space to keep compiled models)"))
        else:
            why = (f"the compiled-model cache {self.root} cannot be written ({unwritable(cause)}): compiled in a "
                   "temporary folder for this run only (set EMAVFI_HOME to a writable folder to keep compiled "
                   "models)")
        log.warning("%s", why)
