"""Weights from the Hugging Face Hub: download, verify, cache, lock and record; nothing about local folders.

Every file handed out has passed a sha256 check (against the `WeightsSource`, the Hub's LFS hash, or the hash
recorded when the file was first seen: trust on first use) and a header check against the variant's keys and
shapes (`weights.inspect_safetensors`). A file that fails is deleted, never left behind. Local files and the
order of the search live in local_weights.py.
"""
from __future__ import annotations

import json
import logging
import os
import re
import time
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable

from huggingface_hub import get_hf_file_metadata, hf_hub_download, hf_hub_url, try_to_load_from_cache

from .errors import EmaVfiError, HubError, WeightsError
from .files import atomic_write, check_relative, exclusive, sha256_of
from .hub_errors import explain, failure_kind, reason
from .weights import inspect_safetensors

log = logging.getLogger("emavfi")

Progress = Callable[[int, int], None]

PUBLIC_ENDPOINT = "https://huggingface.co"
_ATTEMPTS = 3  # tries for connection errors and 5xx answers; huggingface_hub's own back-off takes ~23 s
_RETRY_WAIT_S = 0.25  # doubled after each failed try
_HEAD_TIMEOUT_S = 10.0  # seconds to wait for the Hub's answer about a file

# A path segment that cannot be '.', '..' or an option: no leading dot or dash.
_SEGMENT = r"[A-Za-z0-9_][A-Za-z0-9._-]*"
_REPO_ID = re.compile(rf"{_SEGMENT}/{_SEGMENT}")
_REVISION = re.compile(rf"{_SEGMENT}(?:/{_SEGMENT})*")
_SHA256 = re.compile(r"[0-9a-f]{64}")


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
        check_relative("filename", self.filename)
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


def fetch_weights(variant: str, source: WeightsSource, cache_dir: str | os.PathLike[str], *,
                  endpoint: str | None = None, offline: bool = False, progress: Progress | None = None,
                  remedy: str = "pass the path of a local .safetensors file as the weights") -> Path:
    """Path of verified `variant` weights from `source`: the Hub cache in `cache_dir`, else a download.

    `offline` (or HF_HUB_OFFLINE) forbids the download. `endpoint` defaults to $EMAVFI_HF_ENDPOINT, $HF_ENDPOINT,
    then https://huggingface.co, read at call time. A cached branch is not re-checked online (pin a commit, or
    delete the cached file, to update). `progress(bytes_done, bytes_total)` is called while downloading,
    bytes_done strictly increasing; an exception it raises (cancel) ends the download and propagates unchanged.
    `remedy` says how to do without the Hub ("put the file at ..."), for the messages. Raises WeightsError
    (wrong variant) or HubError (network, access, corrupt download, disk full), each saying what to do.
    """
    job = HubJob(variant, source, _cache_root(cache_dir), _endpoint(endpoint), remedy,
                 _relay_class(progress) if progress else None)
    with exclusive(job.lock_path):
        return _from_hub(job, offline or _env_flag("HF_HUB_OFFLINE"))


def cached_weights(source: WeightsSource, cache_dir: str | os.PathLike[str]) -> Path | None:
    """The file of `source` in the Hub cache, if there (no network, no verification)."""
    found = try_to_load_from_cache(source.repo_id, source.filename, cache_dir=_cache_root(cache_dir),
                                   revision=source.revision)
    return Path(found) if isinstance(found, str) else None


# ----------------------------------------------------------------------------------------------- the Hub

@dataclass(frozen=True)
class HubJob:
    """One request to the Hub and the context its messages need."""

    variant: str
    source: WeightsSource
    cache: Path
    endpoint: str
    remedy: str  # the front end's words for doing without the Hub: "put the file at ..."
    relay: type[_ProgressRelay] | None  # tqdm stand-in forwarding progress; None: huggingface_hub's own bars

    @property
    def what(self) -> str:
        """The source in words, for messages."""
        return self.source.describe()

    @property
    def url(self) -> str:
        """The file's download URL on this endpoint."""
        return hf_hub_url(self.source.repo_id, self.source.filename, revision=self.source.revision,
                          endpoint=self.endpoint)

    @property
    def _state_base(self) -> Path:
        # Inside huggingface_hub's own `.locks` folder, which its cache scanner skips.
        return self.cache / ".locks" / "emavfi" / self.source.repo_id.replace("/", "--")

    @property
    def lock_path(self) -> Path:
        """Held while this repo's files are downloaded, verified or evicted, by any thread or process."""
        return self._state_base.with_name(self._state_base.name + ".lock")

    @property
    def records_path(self) -> Path:
        """The JSON file of sha256s first seen for this repo's files (trust on first use)."""
        return self._state_base.with_name(self._state_base.name + ".json")


class _Rejected(Exception):
    """A Hub file failed verification; `error` is what the user sees, `retry` whether a new download may help."""

    def __init__(self, error: EmaVfiError, retry: bool) -> None:
        super().__init__(str(error))
        self.error, self.retry = error, retry


def _from_hub(job: HubJob, offline: bool) -> Path:
    cached = cached_weights(job.source, job.cache)
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


def _download_verified(job: HubJob) -> Path:
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
            kind = failure_kind(exc)
            if path is not None and kind is not None:
                _evict(path, job)  # failed after the download: keep nothing unverified
            if kind == "network" and waits:
                log.warning("download of %s failed (%s); retrying", job.what, reason(exc))
                time.sleep(waits.pop(0))
                continue
            if kind == "truncated" and integrity_retry:
                integrity_retry = False
                continue
            if kind is None:
                raise
            raise HubError(explain(kind, job, exc, _ATTEMPTS)) from exc


def _download(job: HubJob) -> Path:
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


def _verify(job: HubJob, path: Path) -> None:
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


def _expected_sha256(job: HubJob, recorded: str | None, lfs: str | None) -> list[tuple[str, str]]:
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


def _evict(path: Path | None, job: HubJob) -> None:
    """Delete a cached file: its snapshot entry and the blob it links to (only inside this repo's cache)."""
    if path is None:
        return
    blob = Path(os.path.realpath(path)) if path.is_symlink() else None
    path.unlink(missing_ok=True)
    repo_folder = job.cache / f"models--{job.source.repo_id.replace('/', '--')}"
    if blob is not None and blob.is_relative_to(repo_folder.resolve() / "blobs"):
        blob.unlink(missing_ok=True)


# ----------------------------------------------------------------------------------------------- records, settings

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
    atomic_write(path, json.dumps(document, indent=1, sort_keys=True).encode("utf-8"))


def _cache_root(cache_dir: str | os.PathLike[str]) -> Path:
    return Path(cache_dir).expanduser().resolve()


def _endpoint(endpoint: str | None) -> str:
    url = endpoint or os.environ.get("EMAVFI_HF_ENDPOINT") or os.environ.get("HF_ENDPOINT") or PUBLIC_ENDPOINT
    if not url.startswith(("http://", "https://")):
        raise ValueError(f"invalid Hub endpoint {url!r}: expected an http:// or https:// URL")
    return url.rstrip("/")


def _env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


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
        """n more bytes written."""
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
