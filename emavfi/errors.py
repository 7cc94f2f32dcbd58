"""Exception types raised by the library; each message says what to do next."""
from __future__ import annotations

import re


class EmaVfiError(Exception):
    """Base class for every error this library raises on purpose."""


class WeightsError(EmaVfiError, ValueError):
    """A weights file or state dict is missing, corrupt, or belongs to another variant."""


class HubError(EmaVfiError, OSError):
    """Downloading or verifying weights from the Hugging Face Hub failed."""


class DistributedError(EmaVfiError):
    """A distributed render could not start or a worker failed; the message names the worker and the fix."""


class SettingsError(EmaVfiError, ValueError):
    """A setting has a value that cannot work (a usage error: exit code 2 in the CLI); the message names it and
    the fix. Raised by emavfi.settings, and where a setting meets this machine (emavfi.devices)."""


_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def one_line(message: BaseException | str | None, fallback: str | None = None, *, first: bool = False,
             limit: int | None = None) -> str:
    """A message for a one-line error: its distinct non-empty lines joined by "; " (first=True: the first of
    them only), whitespace collapsed and terminal colour codes removed, cut to `limit` characters.

    An empty message gives fallback, else the exception's type name (for a string: "unknown error").
    """
    text = _ANSI.sub("", "" if message is None else str(message))
    lines = list(dict.fromkeys(" ".join(line.split()) for line in text.splitlines() if line.strip()))
    line = "; ".join(lines[:1] if first else lines)
    if not line:
        line = fallback or (type(message).__name__ if isinstance(message, BaseException) else "unknown error")
    return line if limit is None else line[:limit]
