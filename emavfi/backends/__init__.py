"""Runtime backends: the network compiled for OpenVINO, ONNX Runtime or TensorRT, behind the torch path's seam.

`load_runtime` returns a RuntimeModel (`.config`, `.device`, `.dtype`, `.as_backend(tta, scale)`), which
`emavfi.interpolate` and the clip runner accept like an EMAVFI. This module imports no runtime (nor torch)
at import time: the names and checks below are all the CLI's argument parsing and the ComfyUI loader need.
"""
from __future__ import annotations

import importlib.util

BACKENDS = ("torch", "openvino", "onnxruntime", "tensorrt", "auto")
RUNTIMES = ("openvino", "onnxruntime", "tensorrt")
CPU_RUNTIMES = ("openvino", "onnxruntime")  # these run on the CPU, in fp32, whatever device the frames come from
REQUIREMENTS = "requirements-runtimes.txt"
# Python packages each runtime backend needs (all of them export through ONNX first)
PACKAGES = {"openvino": ("onnx", "openvino"), "onnxruntime": ("onnx", "onnxruntime"), "tensorrt": ("onnx", "tensorrt")}
# auto: the runtimes measured faster than the torch path, per device type, in order (benchmarks/RESULTS.md:
# ONNX Runtime was slower than torch on the CPU at every size measured, so auto never picks it)
PREFERENCE = {"cpu": ("openvino",), "cuda": ("tensorrt",), "mps": ()}


def missing_packages(backend: str) -> list[str]:
    """Packages `backend` needs that are not installed here (found without importing them)."""
    return [name for name in PACKAGES.get(backend, ()) if importlib.util.find_spec(name) is None]


def problem(backend: str, device_type: str) -> str | None:
    """Why `backend` cannot run on a device of `device_type` here (one line), or None when it can."""
    if backend not in BACKENDS:
        return f"unknown backend {backend!r}; choose one of {', '.join(BACKENDS)}"
    if backend in ("torch", "auto"):
        return None
    missing = missing_packages(backend)
    if backend == "tensorrt":
        return _tensorrt_problem(missing, device_type)
    if missing:
        return f"--backend {backend} needs the Python package(s) {', '.join(missing)}: pip install -r {REQUIREMENTS}"
    if device_type not in ("cpu", "auto"):
        return f"--backend {backend} runs on the CPU; use --device cpu (or --backend torch/tensorrt on {device_type})"
    return None


def _tensorrt_problem(missing: list[str], device_type: str) -> str | None:
    """problem() for TensorRT: PyTorch is asked about the GPU only once the packages are there (light usage errors)."""
    if missing:
        return (f"--backend tensorrt needs an NVIDIA GPU with CUDA and the Python package(s) {', '.join(missing)} "
                f"(pip install tensorrt on the GPU machine, plus -r {REQUIREMENTS})")
    import torch

    if not torch.cuda.is_available():
        return "--backend tensorrt needs an NVIDIA GPU with CUDA (none found by PyTorch here)"
    if device_type not in ("cuda", "auto"):
        return "--backend tensorrt needs --device cuda (TensorRT runs on the GPU only)"
    return None


def resolve(backend: str, device_type: str) -> str:
    """The concrete backend for `backend` on a device type: auto -> the fastest installed one, else torch."""
    if backend != "auto":
        return backend
    return next((name for name in PREFERENCE.get(device_type, ()) if problem(name, device_type) is None), "torch")


def load_runtime(network, variant: str, state, backend: str, device, dtype, cache_dir=None):
    """See emavfi.backends.runtime.load_runtime (imported on first use), once `backend` can run on `device` here."""
    reason = problem(backend, device.type if backend == "tensorrt" else "auto")
    if reason is not None:
        raise ValueError(reason)
    from .runtime import load_runtime as load

    return load(network, variant, state, backend, device, dtype, cache_dir)
