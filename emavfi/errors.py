"""Exception types raised by the library; each message says what to do next."""
from __future__ import annotations


class EmaVfiError(Exception):
    """Base class for every error this library raises on purpose."""


class WeightsError(EmaVfiError, ValueError):
    """A weights file or state dict is missing, corrupt, or belongs to another variant."""


class HubError(EmaVfiError, OSError):
    """Downloading or verifying weights from the Hugging Face Hub failed."""
