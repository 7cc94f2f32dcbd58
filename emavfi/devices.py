"""Devices and dtypes: which names are valid, which exist here, and what "auto" means for a run.

Three roles, three names: `as_device` / `as_dtype` check a value a caller gave (the library's `device=` and
`dtype=`); `run_device` / `run_dtype` turn the CLI's and the library's settings ("auto" included) into them.
The ComfyUI nodes follow ComfyUI's own choices instead (nodes.loader.node_device / node_dtype).
"""
from __future__ import annotations

from typing import Union

import torch

from .errors import SettingsError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}
DTypeLike = Union[torch.dtype, str]
DeviceLike = Union[torch.device, str]


def as_dtype(dtype: DTypeLike) -> torch.dtype:
    """torch.float32/float16/bfloat16/float64 or "fp32"/"fp16"/"bf16"/"fp64" as a torch.dtype; else a clear error."""
    accepted = "torch.float32, torch.float16, torch.bfloat16, torch.float64, or 'fp32', 'fp16', 'bf16', 'fp64'"
    if isinstance(dtype, str):
        name = dtype.strip().lower().removeprefix("torch.")
        found = DTYPES.get(name) or next((d for d in DTYPES.values() if str(d) == f"torch.{name}"), None)
        if found is None:
            raise ValueError(f"unknown dtype {dtype!r}; use {accepted}")
        return found
    if not isinstance(dtype, torch.dtype):
        raise TypeError(f"dtype must be a torch.dtype or a string, got {type(dtype).__name__} {dtype!r}; "
                        f"use {accepted}")
    if dtype not in DTYPES.values():
        raise ValueError(f"dtype {dtype} is not supported for EMA-VFI weights; use {accepted}")
    return dtype


def as_device(device: DeviceLike) -> torch.device:
    """`device` as a torch.device that exists here (CUDA/MPS present, CUDA index in range); else ValueError."""
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a torch.device or a string such as 'cpu' or 'cuda:0', "
                        f"got {type(device).__name__} {device!r}")
    try:
        found = torch.device(device)
    except (RuntimeError, ValueError):
        raise ValueError(f"unknown device {device!r}; use 'cpu', 'cuda', 'cuda:N' or 'mps'") from None
    if found.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} needs CUDA, which is not available here "
                             f"(PyTorch {torch.__version__}); use device='cpu'")
        count = torch.cuda.device_count()
        if (found.index or 0) >= count:
            raise ValueError(f"device {str(device)!r} does not exist: this machine has {count} CUDA device(s), "
                             f"cuda:0 to cuda:{count - 1}")
    if found.type == "mps" and not mps_available():
        raise ValueError(f"device {str(device)!r} needs MPS, which is not available here; use device='cpu'")
    return found


def mps_available() -> bool:
    """True where PyTorch has Apple's Metal backend and it works here."""
    mps = getattr(torch.backends, "mps", None)
    return mps is not None and mps.is_available()


def run_device(name: str) -> torch.device:
    """A run's device from its setting: "auto" = CUDA, else MPS, else CPU; a named one must exist (SettingsError)."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "mps" if mps_available() else "cpu")
    try:
        return as_device(name)
    except (TypeError, ValueError) as exc:
        raise SettingsError(str(exc)) from None


def run_dtype(precision: str, device: torch.device) -> torch.dtype:
    """A run's dtype from its precision setting: "auto" = fp16 on CUDA, fp32 elsewhere; else fp32 / fp16 / bf16."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return DTYPES[precision]
