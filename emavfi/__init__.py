"""EMA-VFI video frame interpolation in pure PyTorch (CVPR 2023, "Extracting Motion and Appearance via
Inter-Frame Attention for Efficient Video Frame Interpolation"), compatible with the official weights.

The public names below are imported on first use, so `python -m emavfi` starts (and answers Ctrl-C or
`--help`) before PyTorch has loaded.
"""
from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_EXPORTS = {
    "EMAVFI": ".model", "VARIANTS": ".config", "ModelConfig": ".config", "get_config": ".config",
    "EmaVfiError": ".errors", "HubError": ".errors", "WeightsError": ".errors",
    "interpolate": ".inference", "interpolate_pairs": ".inference", "interpolate_sequence": ".clips",
    "optimize": ".optimize",
    "build_model": ".weights", "load_model": ".loading",
}
_MODULES = ("loss", "weights")

__all__ = sorted([*_EXPORTS, *_MODULES])


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name], __name__), name)
    if name in _MODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'emavfi' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
