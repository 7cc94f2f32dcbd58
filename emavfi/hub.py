"""Find, download and verify EMA-VFI weights: local files first, then the Hugging Face Hub cache, then the Hub.

Every file handed out has passed a header check against the variant's keys and shapes; files that came from
the Hub have also passed a sha256 check (against the `WeightsSource`, the Hub's LFS hash, or the hash recorded
when the file was first seen: trust on first use). A file that fails is deleted, never left behind.
"""
from __future__ import annotations

import errno
import json
import logging
import os
import re
import tempfile
import time
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache
from huggingface_hub.errors import (
    FileMetadataError,
    GatedRepoError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    OfflineModeIsEnabled,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from .config import get_config
from .errors import EmaVfiError, HubError, WeightsError
from .weights import inspect_safetensors, sha256_of


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection-level error types of whichever HTTP clients this huggingface_hub uses."""
    found: list[type[BaseException]] = []
    for module in ("httpx2", "httpx", "requests"):
        try:
            lib = __import__(module)
        except ImportError:
            continue
        err = getattr(lib, "TransportError", None) or getattr(lib, "ConnectionError", None)
        if isinstance(err, type):
            found.append(err)
    return tuple(found)


_TRANSPORT_ERRORS = _transport_errors()

log = logging.getLogger("emavfi")

Progress = Callable[[int, int], None]

PUBLIC_ENDPOINT = "https://huggingface.co"
_ATTEMPTS = 3  # tries for connection errors and 5xx answers; huggingface_hub's own back-off takes ~23 s
_RETRY_WAIT_S = 0.25  # doubled after each failed try
_HEAD_TIMEOUT_S = 10.0  # seconds to wait for the Hub's answer about a file
_PICKLE_SUFFIXES = (".pkl", ".pth", ".pt", ".ckpt", ".bin")

# A path segment that cannot be '.', '..' or an option: no leading dot or dash.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_REPO_ID = re.compile(rf"{_SEGMENT}/{_SEGMENT}")
_REVISION = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


def _check_relative(kind: str, value: object) -> str:
    """Return `value` if it is a relative '/'-separated path that stays inside its folder, else ValueError."""
    parts = value.split("/") if isinstance(value, str) else []
    if (not parts or "\\" in value or "\0" in value or ":" in value
            or any(part in ("", ".", "..") or part != part.strip() for part in parts)):
        raise ValueError(f"invalid {kind} {value!r}: expected a relative path inside the folder such as "
                         "'model.safetensors' (no '..', no leading '/', no backslashes or drive letters)")
    return value


def _check_pattern(kind: str, value: object, pattern: re.Pattern[str], expected: str) -> None:
    if not isinstance(value, str) or not pattern.fullmatch(value) or ".." in value or len(value) > 200:
        raise ValueError(f"invalid {kind} {value!r}: expected {expected}")


@dataclass(frozen=True)
class WeightsSource:
    """Where on the Hub a variant's weights live: repo, file, branch/tag/commit and (when known) sha256."""

    repo_id: str
    filename: str = "model.safetensors"
    revision: str = "main"
    sha256: str | None = None

    def __post_init__(self) -> None:
        _check_pattern("repo_id", self.repo_id, _REPO_ID, "'owner/name' made of letters, digits, '.', '_', '-'")
        if "--" in self.repo_id:
            raise ValueError(f"invalid repo_id {self.repo_id!r}: '--' is not allowed in Hub repo ids")
        _check_relative("filename", self.filename)
        if not self.filename.endswith(".safetensors"):
            raise ValueError(f"invalid filename {self.filename!r}: only .safetensors weights are downloaded "
                             "(pickles can run code); convert them first with `python -m emavfi convert`")
        _check_pattern("revision", self.revision, _REVISION, "a branch or tag name such as 'main', or a 40-hex commit")
        if self.sha256 is not None:
            digest = self.sha256.lower() if isinstance(self.sha256, str) else self.sha256
            _check_pattern("sha256", digest, _SHA256, "64 hexadecimal digits")
            object.__setattr__(self, "sha256", digest)

    def describe(self) -> str:
        """Short human-readable name, e.g. 'vvolhejn/ema-vfi-small/model.safetensors@main'."""
        return f"{self.repo_id}/{self.filename}@{self.revision}"


DEFAULT_SOURCES: dict[str, WeightsSource] = {
    "ours_small_t": WeightsSource("vvolhejn/ema-vfi-small", "model.safetensors"),
    "ours_t": WeightsSource("vvolhejn/ema-vfi-large", "model.safetensors"),
}


def default_models_dir() -> Path:
    """The user's weights folder: $EMAVFI_HOME, else $XDG_CACHE_HOME/emavfi, else ~/.cache/emavfi (not created)."""
    if os.environ.get("EMAVFI_HOME"):
        return Path(os.environ["EMAVFI_HOME"]).expanduser()
    return Path(os.environ.get("XDG_CACHE_HOME") or "~/.cache").expanduser() / "emavfi"


def list_local_weights(models_dirs: Sequence[str | os.PathLike[str]]) -> list[str]:
    """Sorted names ('x.safetensors', 'sub/y.safetensors') of the .safetensors files in the models folders."""
    names: set[str] = set()
    for folder in map(Path, models_dirs):
        if not folder.is_dir():
            continue
        for path in folder.rglob("*.safetensors"):
            parts = path.relative_to(folder).parts
            # Hidden folders and Hub cache folders hold files managed by a downloader, not by the user.
            if path.is_file() and not any(p.startswith((".", "models--")) for p in parts[:-1]):
                names.add("/".join(parts))
    return sorted(names)


def weights_status(variant: str, *, source: WeightsSource | None = None,
                   models_dirs: Sequence[str | os.PathLike[str]] = (),
                   cache_dir: str | os.PathLike[str] | None = None) -> dict[str, Any]:
    """Where the variant's weights would come from, without network or hashing: local, cached or missing."""
    get_config(variant)
    source = source or DEFAULT_SOURCES.get(variant)
    local = _find_in_dirs(f"{variant}.safetensors", models_dirs)
    cached = None if local or source is None else _cached_file(source, _cache_root(cache_dir))
    path = local or cached
    return {
        "state": "local" if local else "cached" if cached else "missing",
        "path": str(path) if path else None,
        "bytes": path.stat().st_size if path else None,
        "source": source.describe() if source else None,
    }


def resolve_weights(variant: str, *, weights: str | os.PathLike[str] | None = None,
                    source: WeightsSource | None = None,
                    models_dirs: Sequence[str | os.PathLike[str]] = (),
                    cache_dir: str | os.PathLike[str] | None = None, endpoint: str | None = None,
                    offline: bool = False, progress: Progress | None = None) -> Path:
    """Path of verified .safetensors weights for `variant`, downloading them from the Hub if needed.

    Order: `weights` (a path, or a name inside `models_dirs`) -> `<variant>.safetensors` in `models_dirs`
    -> the Hub cache in `cache_dir` (default `default_models_dir()/hub`) -> download from `source` (default
    `DEFAULT_SOURCES[variant]`) unless `offline` (or HF_HUB_OFFLINE) is set. `endpoint` defaults to
    $EMAVFI_HF_ENDPOINT, $HF_ENDPOINT, then https://huggingface.co, read at call time. A cached branch is not
    re-checked online (pin a commit, or delete the cached file, to update). `progress(bytes_done, bytes_total)` is
    called while downloading, bytes_done strictly increasing; an exception it raises (cancel) ends the download
    and propagates unchanged. Raises WeightsError (missing, wrong variant) or HubError (network, access, corrupt
    download, disk full), each saying what to do.
    """
    get_config(variant)
    if weights is not None:
        return _check_local(_given_file(weights, models_dirs), variant)
    local = _find_in_dirs(f"{variant}.safetensors", models_dirs)
    if local is not None:
        return _check_local(local, variant)
    source = source or DEFAULT_SOURCES.get(variant)
    if source is None:
        raise WeightsError(_no_source_message(variant, models_dirs))
    job = _Job(variant, source, _cache_root(cache_dir), _endpoint(endpoint), _offline_remedy(variant, models_dirs),
               _relay_class(progress) if progress else None)
    with _exclusive(job.lock_path):
        return _from_hub(job, offline or _env_flag("HF_HUB_OFFLINE"))


# ----------------------------------------------------------------------------------------------- local files

def _given_file(weights: str | os.PathLike[str], models_dirs: Sequence[str | os.PathLike[str]]) -> Path:
    """A path (os.PathLike or absolute str) as is; any other str is a name looked up inside models_dirs."""
    if isinstance(weights, os.PathLike) or os.path.isabs(weights) or weights.startswith("~"):
        path = Path(weights).expanduser()
        if not path.is_file():
            raise WeightsError(f"weights file not found: {path}")
        return path
    if os.name == "nt":  # ComfyUI lists files in subfolders with the platform's separator
        weights = weights.replace("\\", "/")
    found = _find_in_dirs(_check_relative("weights name", weights), models_dirs)
    if found is None:
        folders = ", ".join(map(str, models_dirs)) or "no models folder given"
        available = ", ".join(list_local_weights(models_dirs)) or "none"
        raise WeightsError(f"weights {weights!r} not found in the models folder ({folders}); available: {available}")
    return found


def _find_in_dirs(name: str, models_dirs: Sequence[str | os.PathLike[str]]) -> Path | None:
    for folder in models_dirs:
        path = Path(folder) / name
        if path.is_file():
            return path
    return None


def _check_local(path: Path, variant: str) -> Path:
    """Refuse pickles and files whose header does not match the variant; return the path."""
    if path.suffix.lower() in _PICKLE_SUFFIXES:
        raise WeightsError(f"{path} is a pickle checkpoint, which can run code, so it is not loaded directly. "
                           f"Convert it once: python -m emavfi convert {path} -o {path.with_suffix('.safetensors')}")
    try:
        inspect_safetensors(path, variant)
    except WeightsError as exc:
        raise WeightsError(f"{path}: {exc}") from exc
    return path


def _no_source_message(variant: str, models_dirs: Sequence[str | os.PathLike[str]]) -> str:
    pkl = _find_in_dirs(f"{variant}.pkl", models_dirs)
    target = Path(models_dirs[0]) / f"{variant}.safetensors" if models_dirs else Path(f"{variant}.safetensors")
    convert = f"python -m emavfi convert {pkl or variant + '.pkl'} -o {target}"
    where = ", ".join(map(str, models_dirs)) or "no models folder given"
    then = "(this puts it into the models folder)" if models_dirs else "and pass its path as the weights"
    return (f"no {variant} weights found (looked for {variant}.safetensors in: {where}) and no Hugging Face copy of "
            f"{variant!r} is known. Convert the official {variant}.pkl from the EMA-VFI release with `{convert}` "
            f"{then}, or give a WeightsSource of your own copy.")


def _offline_remedy(variant: str, models_dirs: Sequence[str | os.PathLike[str]]) -> str:
    """How to do without the Hub, for error messages: a file in the first models folder, or a path."""
    if models_dirs:
        return f"put the file at {Path(models_dirs[0]) / f'{variant}.safetensors'} or pass a local weights path"
    return "pass the path of a local .safetensors file as the weights"


# ----------------------------------------------------------------------------------------------- the Hub

@dataclass(frozen=True)
class _Job:
    """One resolution from the Hub and the context its messages need."""

    variant: str
    source: WeightsSource
    cache: Path
    endpoint: str
    remedy: str  # how to do without the Hub: "put the file at ... or pass a local weights path"
    relay: type[_ProgressRelay] | None  # tqdm stand-in forwarding progress; None: huggingface_hub's own bars

    @property
    def what(self) -> str:
        return self.source.describe()

    @property
    def url(self) -> str:
        return hf_hub_url(self.source.repo_id, self.source.filename, revision=self.source.revision,
                          endpoint=self.endpoint)

    @property
    def _state_base(self) -> Path:
        # Inside huggingface_hub's own `.locks` folder, which its cache scanner skips.
        return self.cache / ".locks" / "emavfi" / self.source.repo_id.replace("/", "--")

    @property
    def lock_path(self) -> Path:
        return self._state_base.with_name(self._state_base.name + ".lock")

    @property
    def records_path(self) -> Path:
        return self._state_base.with_name(self._state_base.name + ".json")


class _Rejected(Exception):
    """A Hub file failed verification; `error` is what the user sees, `retry` whether a new download may help."""

    def __init__(self, error: EmaVfiError, retry: bool) -> None:
        super().__init__(str(error))
        self.error, self.retry = error, retry


def _from_hub(job: _Job, offline: bool) -> Path:
    cached = _cached_file(job.source, job.cache)
    if cached is not None:
        try:
            _verify(job, cached)
            return cached
        except _Rejected as rejected:
            _evict(cached, job)
            if offline or not rejected.retry:
                raise rejected.error from rejected.__cause__
            log.warning("%s; downloading it again", rejected.error)
    if offline:
        raise HubError(f"{job.variant} weights are not available offline: {job.what} is not in the cache "
                       f"{job.cache}. To work offline, {job.remedy}; or run once online.")
    return _download_verified(job)


def _download_verified(job: _Job) -> Path:
    """Download and verify, retrying connection errors quickly and a corrupt or cut-short download once."""
    waits = [_RETRY_WAIT_S * 2 ** i for i in range(_ATTEMPTS - 1)]
    integrity_retry = True
    while True:
        path = None
        try:
            path = _download(job)
            _verify(job, path)
            return path
        except _Rejected as rejected:
            _evict(path, job)
            if rejected.retry and integrity_retry:
                integrity_retry = False
                log.warning("%s; downloading it once more", rejected.error)
                continue
            raise rejected.error from rejected.__cause__
        except Exception as exc:
            kind = _failure_kind(exc)
            if path is not None and kind is not None:
                _evict(path, job)  # failed after the download: keep nothing unverified
            if kind == "network" and waits:
                log.warning("download of %s failed (%s); retrying", job.what, _reason(exc))
                time.sleep(waits.pop(0))
                continue
            if kind == "truncated" and integrity_retry:
                integrity_retry = False
                continue
            if kind is None:
                raise
            raise HubError(_explain(kind, job, exc)) from exc


def _download(job: _Job) -> Path:
    # Ask about the file ourselves first: with nothing cached, huggingface_hub answers a failed look-up with
    # ~23 s of retries of its own, while ours are few and short.
    meta = get_hf_file_metadata(job.url, timeout=_HEAD_TIMEOUT_S, endpoint=job.endpoint, retry_on_errors=False,
                                library_name="emavfi")
    if job.relay is not None:
        job.relay.reporter.total = job.relay.reporter.total or meta.size or 0
    log.info("downloading %s from %s", job.what, job.endpoint)
    path = hf_hub_download(job.source.repo_id, job.source.filename, revision=job.source.revision,
                           cache_dir=job.cache, endpoint=job.endpoint, local_files_only=False,
                           etag_timeout=_HEAD_TIMEOUT_S, tqdm_class=job.relay, library_name="emavfi")
    return Path(path)


def _cached_file(source: WeightsSource, cache: Path) -> Path | None:
    found = try_to_load_from_cache(source.repo_id, source.filename, cache_dir=cache, revision=source.revision)
    return Path(found) if isinstance(found, str) else None


def _verify(job: _Job, path: Path) -> None:
    """Check sha256 (given, recorded on first use, or the Hub's LFS hash) and header; record a first use."""
    key = f"{_commit_of(path, job.source)}/{job.source.filename}"
    records = _read_records(job.records_path)
    recorded = records.get(key, {}).get("sha256")
    actual = sha256_of(path)
    expected = _expected_sha256(job, recorded, _lfs_sha256(path))
    for digest, origin in expected:
        if actual != digest:
            raise _Rejected(HubError(
                f"{job.what} is corrupt or was changed: its sha256 {actual} differs from {origin} ({digest}); "
                f"the file was deleted. Download it again, or {job.remedy}."), retry=True)
    try:
        inspect_safetensors(path, job.variant)
    except WeightsError as exc:
        error = WeightsError(f"{job.what} does not hold {job.variant} weights ({exc}); the file was deleted "
                             f"from the cache. Check the repo and file name of the source for {job.variant!r}.")
        raise _Rejected(error, retry=not expected) from exc
    if recorded is None:
        records[key] = {"sha256": actual, "bytes": path.stat().st_size, "variant": job.variant,
                        "revision": job.source.revision,
                        "first_seen": datetime.now(timezone.utc).isoformat(timespec="seconds")}
        _write_records(job.records_path, job.source.repo_id, records)


def _expected_sha256(job: _Job, recorded: str | None, lfs: str | None) -> list[tuple[str, str]]:
    if job.source.sha256:
        return [(job.source.sha256, "the sha256 given in its WeightsSource")]
    expected = []
    if recorded:
        expected.append((recorded, f"the sha256 recorded on its first download in {job.records_path}"))
    if lfs:
        expected.append((lfs, "the sha256 the Hub announced for it"))
    return expected


def _commit_of(path: Path, source: WeightsSource) -> str:
    """The commit folder of a snapshot path: .../snapshots/<commit>/<filename>."""
    return path.parents[len(source.filename.split("/")) - 1].name


def _lfs_sha256(path: Path) -> str | None:
    """The Hub names cached blobs after their ETag, which for LFS files is the content's sha256."""
    name = Path(os.path.realpath(path)).name if path.is_symlink() else ""
    return name if _SHA256.fullmatch(name) else None


def _evict(path: Path | None, job: _Job) -> None:
    """Delete a cached file: its snapshot entry and the blob it links to (only inside this repo's cache)."""
    if path is None:
        return
    blob = Path(os.path.realpath(path)) if path.is_symlink() else None
    path.unlink(missing_ok=True)
    repo_folder = job.cache / f"models--{job.source.repo_id.replace('/', '--')}"
    if blob is not None and blob.is_relative_to(repo_folder.resolve() / "blobs"):
        blob.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- errors

def _failure_kind(exc: BaseException) -> str | None:
    """What went wrong with a download, in words _explain knows; None for errors not about the download."""
    if _is_disk_full(exc):
        return "disk_full"
    if isinstance(exc, GatedRepoError):
        return "gated"
    kinds = ((RepositoryNotFoundError, "repo"), (RevisionNotFoundError, "revision"),
             (RemoteEntryNotFoundError, "file"), (FileMetadataError, "not_hub"), (OfflineModeIsEnabled, "offline"))
    for cls, kind in kinds:
        if isinstance(exc, cls):
            return kind
    if isinstance(exc, HfHubHTTPError):
        code = _status(exc)
        if code in (401, 403):
            return "denied"
        if code == 404:
            return "not_found"
        return "network" if code in (408, 429) or (code or 0) >= 500 else "http"
    if _TRANSPORT_ERRORS and isinstance(exc, _TRANSPORT_ERRORS):
        return "network"
    if isinstance(exc, LocalEntryNotFoundError):  # worded as a connection problem; the cause says more
        return _failure_kind(exc.__cause__) if exc.__cause__ else "network"
    if isinstance(exc, OSError) and "Consistency check failed" in str(exc):
        return "truncated"
    return None


def _is_disk_full(exc: BaseException | None) -> bool:
    full = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)}
    while exc is not None:
        if isinstance(exc, OSError) and exc.errno in full:
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def _status(exc: HfHubHTTPError) -> int | None:
    response = getattr(exc, "response", None)
    return getattr(response, "status_code", None)


def _reason(exc: BaseException) -> str:
    """First line of an error, or its type name when it has no message."""
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__
    text = str(exc).strip().splitlines()
    line = next((t.strip() for t in text if t.strip()), type(exc).__name__)
    return line[:200]


def _explain(kind: str, job: _Job, exc: BaseException) -> str:
    """One message per failure kind: what failed, where, and what the user can do."""
    src, url, reason = job.source, job.url, _reason(exc)
    offline = f"To work offline, {job.remedy}."
    login = "log in with `hf auth login` or set HF_TOKEN"
    messages = {
        "network": f"could not download {job.what} from {url} ({reason}; tried {_ATTEMPTS} times). {offline} "
                   "To use a mirror, set EMAVFI_HF_ENDPOINT.",
        "offline": f"{job.what} is not cached and huggingface_hub is in offline mode (HF_HUB_OFFLINE). {offline}",
        "repo": f"repository {src.repo_id!r} was not found on {job.endpoint} (HTTP {_status(exc)}). Check the repo id; "
                f"if it is private or gated, {login}.",
        "gated": f"repository {src.repo_id!r} is gated: accept its terms at {job.endpoint}/{src.repo_id} and {login}.",
        "revision": f"revision {src.revision!r} does not exist in {src.repo_id} on {job.endpoint}: use an existing "
                    "branch, tag or commit.",
        "file": f"{src.filename!r} is not in {src.repo_id} at revision {src.revision!r}: check the file name.",
        "not_found": f"{url} was not found (HTTP 404): check the repo id {src.repo_id!r}, revision "
                     f"{src.revision!r} and file name {src.filename!r}.",
        "denied": f"access to {url} was refused (HTTP {_status(exc)}): the repo may be private or gated; {login} "
                  "with access to it.",
        "http": f"the Hub answered {reason} for {url}. {offline}",
        "not_hub": f"{job.endpoint} does not answer like a Hugging Face Hub ({reason}): check EMAVFI_HF_ENDPOINT "
                   "and HF_ENDPOINT.",
        "truncated": f"the download of {job.what} from {url} was cut short twice ({reason}); nothing was kept. "
                     f"Check your connection and try again. {offline}",
        "disk_full": f"no space left on the disk while saving {job.what} into {job.cache}: free some space, or "
                     "set EMAVFI_HOME (or cache_dir) to a folder on a larger disk.",
    }
    return messages[kind]


# ----------------------------------------------------------------------------------------------- files & locks

def _cache_root(cache_dir: str | os.PathLike[str] | None) -> Path:
    return Path(cache_dir or default_models_dir() / "hub").expanduser().resolve()


def _endpoint(endpoint: str | None) -> str:
    url = endpoint or os.environ.get("EMAVFI_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or PUBLIC_ENDPOINT
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"invalid Hub endpoint {url!r}: expected an http:// or https:// URL")
    return url.rstrip("/")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _read_records(path: Path) -> dict[str, dict[str, Any]]:
    """The sha256 records of one repo's files, keyed '<commit>/<filename>' (empty if none or unreadable)."""
    try:
        files = json.loads(path.read_text(encoding="utf-8")).get("files", {})
    except FileNotFoundError:
        return {}
    except (ValueError, AttributeError, OSError) as exc:
        log.warning("ignoring unreadable weights record %s (%s)", path, exc)
        return {}
    return files if isinstance(files, dict) else {}


def _write_records(path: Path, repo_id: str, files: dict[str, dict[str, Any]]) -> None:
    document = {"repo_id": repo_id, "files": files}
    _write_atomic(path, json.dumps(document, indent=1, sort_keys=True).encode("utf-8"))


def _write_atomic(path: Path, data: bytes) -> None:
    """Write `data` to a temporary file beside `path`, then rename it over `path`."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def _exclusive(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on `path` against other threads and processes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+b") as handle:
        _lock(handle)
        try:
            yield
        finally:
            _unlock(handle)


if os.name == "nt":
    import msvcrt

    def _lock(handle: Any) -> None:
        handle.seek(0)
        while True:
            try:
                msvcrt.locking(handle.fileno(), msvcrt.LK_LOCK, 1)
                return
            except OSError:  # LK_LOCK gives up after ~10 s: keep waiting for the other download
                continue

    def _unlock(handle: Any) -> None:
        handle.seek(0)
        msvcrt.locking(handle.fileno(), msvcrt.LK_UNLCK, 1)
else:
    import fcntl

    def _lock(handle: Any) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX)

    def _unlock(handle: Any) -> None:
        fcntl.flock(handle.fileno(), fcntl.LOCK_UN)


# ----------------------------------------------------------------------------------------------- progress

class _Monotonic:
    """Forwards (bytes_done, bytes_total) to a callback, only when bytes_done grew (retries restart at 0)."""

    def __init__(self, callback: Progress) -> None:
        self.callback, self.total, self.done = callback, 0, -1

    def __call__(self, done: int, total: int | None) -> None:
        self.total = int(total or self.total or 0)
        done = min(int(done), self.total) if self.total else int(done)
        if done > self.done:
            self.done = done
            self.callback(done, self.total)


class _ProgressRelay:
    """The part of tqdm's interface huggingface_hub drives, relaying byte counts to `reporter`."""

    reporter: _Monotonic
    format_dict: dict[str, Any] = {}

    def __init__(self, *args: Any, total: int | None = None, initial: int = 0, **kwargs: Any) -> None:
        self.total, self.n = total, initial
        self.reporter(self.n, self.total)

    def update(self, n: int = 1) -> None:
        self.n += n
        self.reporter(self.n, self.total)

    def _ignore(self, *args: Any, **kwargs: Any) -> None:
        """Drawing a terminal bar, and Xet's network byte counts (the bytes written come through update())."""

    update_transfer = set_postfix_str = set_transfer_postfix_str = refresh = close = _ignore

    def __enter__(self) -> _ProgressRelay:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


def _relay_class(progress: Progress) -> type[_ProgressRelay]:
    """A tqdm stand-in class (huggingface_hub instantiates it) bound to one resolution's progress callback."""
    return type("_BoundProgressRelay", (_ProgressRelay,), {"reporter": _Monotonic(progress)})
