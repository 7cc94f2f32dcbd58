"""Files we write and check: one atomic-write helper (fsync, the user's umask), sha256, pickle detection,
relative names that stay inside their folder, inter-process locks, and the one disk-full message (`no_space`).

Every file this package creates goes through `atomic_write`: the data lands in a hidden temporary file in
the destination folder, is flushed to disk, gets the mode a plain `open()` would have given it, and only
then is renamed over the destination. A reader never sees a half-written file, and a killed writer leaves
at most a temporary whose name `is_partial` recognises.
"""
from __future__ import annotations

import errno
import hashlib
import os
import secrets
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO

PARTIAL_MARK = ".emavfi-partial"
# First bytes of a pickle (protocol 2+) or of a zip archive (torch.save's default format, pickles inside).
_PICKLE_MAGIC = (b"\x80\x02", b"\x80\x03", b"\x80\x04", b"\x80\x05", b"PK\x03\x04")
PICKLE_SUFFIXES = frozenset({".pkl", ".pickle", ".pt", ".pth", ".ckpt", ".bin"})


def umask() -> int:
    """The process umask, read without changing it where the OS allows (Linux), else set and restored."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except OSError:
        pass
    old = os.umask(0o022)
    os.umask(old)
    return old


def default_mode() -> int:
    """The mode `open(path, "w")` gives a new file: 0o666 less the umask."""
    return 0o666 & ~umask()


def partial_path(path: Path) -> Path:
    """A fresh hidden temporary beside `path`, keeping its extension (image libraries pick formats by it)."""
    return path.with_name(f".{path.stem}.{secrets.token_hex(4)}{PARTIAL_MARK}{path.suffix}")


def is_partial(name: str) -> bool:
    """True for the temporaries `atomic_write` creates (left behind only when a process was killed)."""
    return name.startswith(".") and PARTIAL_MARK in name


def stale_partials(folder: Path) -> Iterator[Path]:
    """Temporaries left in folder by killed writers."""
    if folder.is_dir():
        yield from (p for p in folder.iterdir() if p.is_file() and is_partial(p.name))


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every OS (Windows); the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, data: bytes | None = None, *,
                 writer: Callable[[Path], None] | None = None, mode: int | None = None) -> Path:
    """Write `data` (or let `writer(tmp)` create the file) and rename it to `path`; never a partial file.

    mode: file mode (default: what the umask allows, as for any file the user creates).
    """
    if (data is None) == (writer is None):
        raise TypeError("atomic_write takes exactly one of data= or writer=")
    path = Path(path)
    tmp = partial_path(path)
    try:
        if writer is None:
            with open(tmp, "xb") as f:
                f.write(data)  # type: ignore[arg-type]
                f.flush()
                os.fsync(f.fileno())
        else:
            writer(tmp)
        commit(tmp, path, mode=mode)
    except BaseException:  # KeyboardInterrupt included: leave nothing half-written behind
        tmp.unlink(missing_ok=True)
        raise
    return path


def commit(tmp: Path, path: Path, *, mode: int | None = None) -> None:
    """Move a finished temporary (from `partial_path`) into place: fsync, the umask's mode, rename, fsync folder."""
    with open(tmp, "rb+") as f:
        os.fsync(f.fileno())
    os.chmod(tmp, default_mode() if mode is None else mode)
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def sha256_of(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            digest.update(block)
    return digest.hexdigest()


def looks_like_pickle(path: str | os.PathLike) -> bool:
    """True for files that are (or contain) Python pickles, by extension or by their first bytes."""
    path = Path(path)
    if path.suffix.lower() in PICKLE_SUFFIXES:
        return True
    try:
        with open(path, "rb") as f:
            head = f.read(9)
            size = os.fstat(f.fileno()).st_size
    except OSError:
        return False
    # A safetensors file starts with its header length (8 bytes, little-endian), then "{": never a pickle.
    if len(head) == 9 and head[8:9] == b"{" and int.from_bytes(head[:8], "little") < size:
        return False
    return head.startswith(_PICKLE_MAGIC)


def check_relative(kind: str, value: object) -> str:
    """Return `value` if it is a relative '/'-separated path that stays inside its folder, else ValueError."""
    parts = value.split("/") if isinstance(value, str) else []
    if (not parts or "\\" in value or "\0" in value or ":" in value
            or any(part in ("", ".", "..") or part != part.strip() for part in parts)):
        raise ValueError(f"invalid {kind} {value!r}: expected a relative path inside the folder such as "
                         "'model.safetensors' (no '..', no leading '/', no backslashes or drive letters)")
    return value


@contextmanager
def exclusive(path: str | os.PathLike) -> Iterator[None]:
    """Hold an exclusive lock on the file `path` (created if needed) against other threads and processes."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        _lock(handle)
        try:
            yield
        finally:
            _unlock(handle)


def try_lock(path: str | os.PathLike, *, shared: bool = False) -> IO[bytes] | None:
    """Open `path` (created with the umask's mode) and lock it without waiting: the open handle, whose closing
    releases the lock, or None when another process holds a conflicting lock. Shared locks let holders of
    shared locks in (on Windows every lock is exclusive)."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT, default_mode())
    handle = os.fdopen(fd, "r+b")
    try:
        locked = _try_lock(handle, shared)
    except BaseException:
        handle.close()
        raise
    if not locked:
        handle.close()
        return None
    return handle


if os.name == "nt":
    import msvcrt

    def _try_lock(handle: IO[bytes], shared: bool) -> bool:
        handle.seek(0)
        try:
            msvcrt.locking(handle.fileno(), msvcrt.LK_NBLCK, 1)
        except OSError:
            return False
        return True

    def _lock(handle: IO[bytes]) -> None:
        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after ~10 s: keep waiting for the other holder
                continue

    def _unlock(handle: IO[bytes]) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _try_lock(handle: IO[bytes], shared: bool) -> bool:
        try:
            fcntl.flock(handle.fileno(), (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        return True

    def _lock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)

    def _unlock(handle: IO[bytes]) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


def mount_point(path: str | os.PathLike) -> Path:
    """The mount point of the file system holding path (or its closest existing ancestor)."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    while not os.path.ismount(path) and path != path.parent:
        path = path.parent
    return path


def _statvfs(folder: str | os.PathLike) -> os.statvfs_result | None:
    try:
        return os.statvfs(folder if os.path.exists(folder) else mount_point(folder))
    except (OSError, AttributeError):  # no statvfs on Windows
        return None


def free_space(folder: str | os.PathLike) -> int | None:
    """Bytes free to this user on the file system holding folder (or its closest existing ancestor); None where
    the OS cannot tell (Windows)."""
    stats = _statvfs(folder)
    return None if stats is None else stats.f_bavail * stats.f_frsize


def no_space(folder: str | os.PathLike, needed: int | None, what: str = "the file",
             fix: str = "free some space or write elsewhere") -> OSError:
    """The one disk-full message, as OSError(ENOSPC): "no space left on /mnt: a checkpoint in /mnt/run needs
    ~58.2 MB, 1.0 MB free; free some space or write elsewhere" (needed None: not known, more than is free)."""
    stats = _statvfs(folder)
    free = "?" if stats is None else f"{stats.f_bavail * stats.f_frsize / 1e6:.1f}"
    needs = f"more than the {free} MB free" if needed is None else f"~{needed / 1e6:.1f} MB, {free} MB free"
    if stats is not None and stats.f_files and not stats.f_favail:
        needs += " but no free inodes (file entries)"
    error = OSError(f"no space left on {mount_point(folder)}: {what} in {folder} needs {needs}; {fix}")
    error.errno = errno.ENOSPC
    return error


def check_space(folder: str | os.PathLike, needed: int, what: str = "the file",
                fix: str = "free some space or write elsewhere") -> None:
    """no_space(...) raised when `folder`'s file system has fewer than `needed` bytes free: checked before the
    write, since some writers (libpng) do not notice a full disk and leave a cut-off file."""
    free = free_space(folder)
    if free is not None and free < needed:
        raise no_space(folder, needed, what, fix)


_FULL = frozenset({errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)})
_UNWRITABLE = frozenset({errno.EROFS, errno.EACCES, errno.EPERM})


def _chain(exc: BaseException) -> Iterator[BaseException]:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__  # type: ignore[assignment]


def disk_full(exc: BaseException) -> bool:
    """True when exc, or an error it came from, is a full disk or quota (libraries such as safetensors wrap the
    OSError in their own type and keep only its text)."""
    return any((isinstance(e, OSError) and e.errno in _FULL) or "No space left on device" in str(e)
               or "Disk quota exceeded" in str(e) for e in _chain(exc))


def unwritable(exc: BaseException) -> str | None:
    """Why a write failed when exc (or an error it came from) says the place cannot be written at all
    ("read-only file system", "permission denied"); None for any other error."""
    for e in _chain(exc):
        if isinstance(e, OSError) and e.errno in _UNWRITABLE:
            return (e.strerror or os.strerror(e.errno)).lower()
    return None


def write_refusal(folder: str | os.PathLike) -> str | None:
    """Why no file can be created in folder ("read-only file system", "permission denied", "no such file or
    directory"), found by creating and removing one (root ignores permission bits, not read-only mounts); None
    when a file can be created."""
    try:
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    return None


@contextmanager
def claim(path: str | os.PathLike) -> Iterator[None]:
    """Hold the name `path` against other processes about to write it (a lock file `.NAME.emavfi-lock` beside it,
    removed afterwards); BlockingIOError at once when another process holds it."""
    path = Path(path)
    lock = path.with_name(f".{path.name}.emavfi-lock")
    while True:
        handle = try_lock(lock)
        if handle is None:
            raise BlockingIOError(errno.EWOULDBLOCK, f"another process is writing {path}", str(lock))
        try:  # the holder before us may have removed the lock file between our open and our lock: retry
            held = os.stat(lock).st_ino == os.fstat(handle.fileno()).st_ino
        except FileNotFoundError:
            held = False
        if held:
            break
        handle.close()
    try:
        yield
    finally:
        try:
            lock.unlink()
        except OSError:  # Windows does not remove an open file; the next claim reuses it
            pass
        handle.close()


def default_models_dir() -> Path:
    """The user's weights folder: $EMAVFI_HOME, else $XDG_CACHE_HOME/emavfi, else ~/.cache/emavfi (not created)."""
    if os.environ.get("EMAVFI_HOME"):
        return Path(os.environ["EMAVFI_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "emavfi"
