"""What went wrong talking to the Hub, in words: failure kinds of huggingface_hub's errors and one message each."""
from __future__ import annotations

import errno
from pathlib import Path
from typing import Any, Protocol

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

from .errors import one_line


class FailedDownload(Protocol):
    """What `explain` needs to know about the download that failed (emavfi.hub.HubJob is one)."""

    @property
    def source(self) -> Any: ...  # hub.WeightsSource: repo_id, revision, filename

    @property
    def what(self) -> str: ...

    @property
    def url(self) -> str: ...

    @property
    def endpoint(self) -> str: ...

    @property
    def remedy(self) -> str: ...

    @property
    def cache(self) -> Path: ...


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


def failure_kind(exc: BaseException) -> str | None:
    """What went wrong with a download, in words `explain` knows; None for errors not about the download."""
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
        return failure_kind(exc.__cause__) if exc.__cause__ else "network"
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


def reason(exc: BaseException) -> str:
    """First line of an error (of its cause, for huggingface_hub's "cannot find it locally"), or its type name."""
    if isinstance(exc, LocalEntryNotFoundError) and exc.__cause__ is not None:
        exc = exc.__cause__
    return one_line(exc, first=True, limit=200)


def explain(kind: str, job: FailedDownload, exc: BaseException, attempts: int) -> str:
    """One message per failure kind: what failed, where, and what the user can do."""
    src, url, why = job.source, job.url, reason(exc)
    offline = f"To work offline, {job.remedy}."
    login = "log in with `hf auth login` or set HF_TOKEN"
    messages = {
        "network": f"could not download {job.what} from {url} ({why}; tried {attempts} times). {offline} "
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
        "http": f"the Hub answered {why} for {url}. {offline}",
        "not_hub": f"{job.endpoint} does not answer like a Hugging Face Hub ({why}): check EMAVFI_HF_ENDPOINT "
                   "and HF_ENDPOINT.",
        "truncated": f"the download of {job.what} from {url} was cut short twice ({why}); nothing was kept. "
                     f"Check your connection and try again. {offline}",
        "disk_full": f"no space left on the disk while saving {job.what} into {job.cache}: free some space, or "
                     "set EMAVFI_HOME (or cache_dir) to a folder on a larger disk.",
    }
    return messages[kind]
