"""Settings -> a loaded model: the weights file, then the device and precision, then a PyTorch network or a
model compiled for a runtime (OpenVINO, ONNX Runtime, TensorRT).

The one home for loading a model. Every front end that starts from settings (the command line's render, Ray
workers, the VapourSynth filter, evaluate, export) calls `load_model_for`; library users call `load_model`
(`emavfi.load_model`). emavfi.weights only reads weights into a PyTorch network, and emavfi.backends only
compiles one. Light at import: PyTorch loads with the model.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import torch

    from .devices import DeviceLike, DTypeLike
    from .settings import Settings
    from .weights import StateDict, VariantOrConfig


def weights_path(settings: Settings, progress: Callable[[int, int], None] | None = None) -> Path:
    """The weights file for the settings: --weights, else `<variant>.safetensors` locally, else the Hub."""
    if settings.weights is not None:
        return Path(settings.weights)
    from .local_weights import default_models_dir, resolve_weights

    return Path(resolve_weights(settings.model_variant, models_dirs=[default_models_dir()],
                                offline=settings.offline, progress=progress))


def load_model_for(settings: Settings, state: Mapping[str, torch.Tensor] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Any:
    """The settings' model on their device and in their precision ("auto" resolved here, once), run by their
    backend: from `state` (a state dict, e.g. from Ray's object store) or the settings' weights file."""
    from .devices import run_device, run_dtype

    device = run_device(settings.device)
    dtype = run_dtype(settings.precision, device)
    weights = state if state is not None else weights_path(settings, progress)
    return load_model(weights, variant=settings.model_variant, device=device, dtype=dtype, backend=settings.backend)


def load_model(weights: str | os.PathLike | StateDict, variant: VariantOrConfig | None = None,
               device: DeviceLike = "cpu", dtype: DTypeLike = "fp32", channels_last: bool = True,
               backend: str = "torch", cache_dir: str | os.PathLike | None = None) -> Any:
    """The model for `weights` (a .safetensors path or a state dict) in eval mode on device/dtype.

    dtype: see `devices.as_dtype`; device: see `devices.as_device`; both are checked before the weights are read.
    channels_last stores convolution weights NHWC, which is faster on CPU and GPU (see `emavfi.optimize`).
    backend: torch (an EMAVFI), openvino, onnxruntime, tensorrt or auto (the fastest installed for the
    device): a runtime model (emavfi.backends) that interpolate and the clip runner accept alike, its
    compiled graphs cached under cache_dir (default $EMAVFI_HOME/compiled).
    """
    from . import weights as torch_weights
    from .devices import as_device, as_dtype

    dtype, device = as_dtype(dtype), as_device(device)
    if backend != "torch":
        runtime = _load_runtime(weights, variant, device, dtype, backend, cache_dir)
        if runtime is not None:
            return runtime
    return torch_weights.load_model(weights, variant, device, dtype, channels_last=channels_last)


def _load_runtime(weights: str | os.PathLike | StateDict, variant: VariantOrConfig | None, device: torch.device,
                  dtype: torch.dtype, backend: str, cache_dir: str | os.PathLike | None) -> Any:
    """load_model for a runtime backend: its compiled model, or None where `auto` picks torch here."""
    import torch

    from . import backends
    from .weights import canonical_keys, load_model as load_network, read_weights

    # the CPU runtimes take frames from any device; only TensorRT needs the GPU named
    reason = backends.problem(backend, device.type if backend == "tensorrt" else "auto")
    if reason:
        raise ValueError(reason)
    backend = backends.resolve(backend, device.type)
    if backend == "torch":
        return None
    state, name = (weights, variant) if isinstance(weights, Mapping) else read_weights(weights, variant)
    network = load_network(state, name, "cpu", torch.float32, channels_last=False)
    return backends.load_runtime(network, network.variant or "custom", canonical_keys(state), backend,
                                 device, dtype, cache_dir)
