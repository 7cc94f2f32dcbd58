"""The on-disk cache of compiled models: one folder per key, verified before use, rebuilt when damaged or stale.

Layout: <root>/<runtime>/<digest of the key>/ holds the runtime's files and `key.json` (the full key and
the sha256 of every file), written last. A folder whose key.json is missing, foreign or does not match its
files is rebuilt. One lock file per key serialises processes compiling the same model at once.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from ..files import atomic_write, commit, exclusive, partial_path, sha256_of

FORMAT = 1  # bump when the exported graphs change: older cache entries become stale
RECORD = "key.json"


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
    """Compiled models under `root` (e.g. $EMAVFI_HOME/compiled)."""

    def __init__(self, root: str | os.PathLike):
        self.root = Path(root)

    def folder(self, key: CacheKey) -> Path:
        return self.root / key.runtime / key.digest()

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
        folder = self.folder(key)
        with exclusive(self.root / "locks" / f"{key.runtime}-{key.digest()}.lock"):
            if self.valid(key, files):
                return folder, False
            self._build(key, files, build)
        return folder, True

    def invalidate(self, key: CacheKey) -> None:
        """Forget a cache entry whose files failed to load (they are rebuilt on the next get)."""
        with exclusive(self.root / "locks" / f"{key.runtime}-{key.digest()}.lock"):
            (self.folder(key) / RECORD).unlink(missing_ok=True)

    def _build(self, key: CacheKey, files: Sequence[str], build: Callable[[Path], None]) -> None:
        folder = self.folder(key)
        folder.mkdir(parents=True, exist_ok=True)
        (folder / RECORD).unlink(missing_ok=True)  # the entry is invalid until every file is in place
        with tempfile.TemporaryDirectory(dir=folder, prefix=".build-") as tmp:
            build(Path(tmp))
            for name in files:
                staged = partial_path(folder / name)
                shutil.move(str(Path(tmp) / name), staged)
                commit(staged, folder / name)
        record = {"key": key.as_dict(), "files": {name: sha256_of(folder / name) for name in files}}
        atomic_write(folder / RECORD, json.dumps(record, indent=1, sort_keys=True).encode())
