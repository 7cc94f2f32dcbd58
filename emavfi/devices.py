"""Devices and dtypes: which names are valid, which exist here, and what "auto" means for a run.

Three roles, three names: `as_device` / `as_dtype` check a value a caller gave (the library's `device=` and
`dtype=`); `run_device` / `run_dtype` turn the CLI's and the library's settings ("auto" included) into them.
The ComfyUI nodes follow ComfyUI's own choices instead (nodes.loader.node_device / node_dtype).
"""
from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path
from typing import Union

import torch

from .errors import SettingsError

DTYPES = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16, "fp64": torch.float64}
DTypeLike = Union[torch.dtype, str]
DeviceLike = Union[torch.device, str]
# /proc/cpuinfo flags of x86 CPUs that compute bf16 natively, best first: AMX (Intel Xeon 4th generation on) and
# AVX-512 BF16 (Intel Cooper Lake on, AMD Zen 4 on). Without either, PyTorch emulates bf16 and OpenVINO ignores
# a bf16 hint and computes in f32 (benchmarks/RESULTS.md, "bf16 on the CPU").
NATIVE_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


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
    """A run's dtype from its precision setting: "auto" = fp16 on CUDA, fp32 elsewhere; else fp32 / fp16 / bf16
    (bf16 on a CPU without native bf16: SettingsError, see cpu_bf16_problem)."""
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    if precision == "bf16" and device.type == "cpu":
        reason = cpu_bf16_problem()
        if reason:
            raise SettingsError(reason)
    return DTYPES[precision]


def cpu_flags() -> set[str]:
    """This machine's CPU flags from /proc/cpuinfo (empty where there is none: other systems, or not x86)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return set()
    return set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))


def native_bf16(flags: Iterable[str] | None = None) -> str | None:
    """The CPU's native bf16 instructions ("amx_bf16" or "avx512_bf16") from its flags (default: this machine's),
    or None where it has neither and bf16 is emulated."""
    found = set(cpu_flags() if flags is None else flags)
    return next((flag for flag in NATIVE_BF16_FLAGS if flag in found), None)


def cpu_bf16_problem(flags: Iterable[str] | None = None) -> str | None:
    """Why bf16 on this CPU (flags as given, default this machine's) is refused, or None where the CPU has native bf16
    (or is not x86: no flags to judge by). Measured: emulated bf16 is slower than fp32 and less exact."""
    flags = cpu_flags() if flags is None else set(flags)
    if not flags or native_bf16(flags) or not {"avx", "avx2", "sse2"} & flags:
        return None
    return ("--precision bf16 on the CPU needs native bf16 (AMX or AVX-512 BF16), which this CPU lacks: PyTorch "
            "would emulate it, slower than fp32 and less exact, and OpenVINO would compute in f32 anyway; use "
            "--precision fp32 or auto (the default, fp32 on the CPU)")
