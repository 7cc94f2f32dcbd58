"""What decides the pixels of a run, recorded in its output folder (emavfi.outputs' run record).

Weights (sha256), variant, precision, backend, device type, torch's thread count on a CPU, batch size, flow scale,
TTA, cut threshold, dedupe, the schedule itself, input and output format: a farm task or a `--resume` whose value
differs is refused with a line naming the difference, so one folder never mixes frames of two models or two
precisions. A record written before a key existed is resumed as it is (emavfi.outputs.ADDED_KEYS).
"""
from __future__ import annotations

import functools
import hashlib
import os
from pathlib import Path
from typing import Any

from .files import sha256_of

WEIGHTS_KEY = "weights_sha256"
THREADS_KEY = "torch_threads"


@functools.lru_cache(maxsize=8)
def _sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    return sha256_of(path)


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file, hashed once per path, size and modification time in this process."""
    stat = Path(path).stat()
    return _sha256_cached(str(Path(path).resolve()), stat.st_size, stat.st_mtime_ns)


def weights_sha256(settings: Any) -> str | None:
    """sha256 of the weights the settings use, where they are on this machine without a download (else None:
    the record gets it once they are, see `OutputFolder.confirm`)."""
    if settings.weights is not None:
        return file_sha256(settings.weights)
    from .local_weights import default_models_dir, weights_status

    found = weights_status(settings.model_variant, models_dirs=[default_models_dir()])["path"]
    return file_sha256(found) if found else None


def schedule_digest(schedule: Any) -> str:
    """A short fingerprint of the plan (each output's source frame and time) and how in-betweens are made."""
    digest = hashlib.sha256(f"{schedule.bisection_depth}|{schedule.out_fps}".encode())
    for frame in schedule.plan:
        digest.update(f"{frame.source}:{frame.t};".encode())
    return digest.hexdigest()[:16]


def cpu_threads(device_type: str, backend: str) -> int | None:
    """torch's thread count where a run computes on the CPU, else None: on a CPU it decides the last bits (oneDNN
    picks its blocking by it, element-wise kernels round each thread's tail; OpenVINO and ONNX Runtime take it)."""
    from .backends import CPU_RUNTIMES

    if device_type != "cpu" and backend not in CPU_RUNTIMES:
        return None
    import torch

    return torch.get_num_threads()


def record(prepared: Any) -> dict[str, Any]:
    """The run record of a prepared job: everything that decides its output pixels and names."""
    from .devices import run_device, run_dtype

    s = prepared.job.settings
    device = run_device(s.device)
    precision = str(run_dtype(s.precision, device)).removeprefix("torch.")
    backend = getattr(s, "backend", "torch")
    return {"tool": "emavfi", "input": str(prepared.job.input.resolve()), "input_frames": prepared.n_source,
            "output_frames": prepared.total, "request": repr(s.request), "variant": s.model_variant,
            WEIGHTS_KEY: weights_sha256(s), "precision": precision, "backend": backend, "device_type": device.type,
            THREADS_KEY: cpu_threads(device.type, backend), "chunk": s.run.chunk, "tta": s.run.tta,
            "scale": s.run.scale, "cut_threshold": s.run.cut_threshold, "dedupe": _dedupe(prepared),
            "schedule": schedule_digest(prepared.schedule),
            "format": [s.output.format, s.output.bit_depth, s.output.colorspace], **_protect(prepared)}


def _dedupe(prepared: Any) -> Any:
    """False, or the held-frame threshold and how many frames it dropped (--dedupe)."""
    run = prepared.job.settings.run
    if not getattr(run, "dedupe", False):
        return False
    return {"threshold": run.dedupe_threshold, "held": len(prepared.source.held)}


def _protect(prepared: Any) -> dict[str, Any]:
    """Held regions (--protect, --protect-overlays): the mask's sha256, the feather, overlays; nothing when off."""
    options = getattr(prepared.job.settings, "protect", None)
    if options is None or not options.active:
        return {}
    masks = getattr(prepared, "masks", None)
    return {"protect": {"mask_sha256": masks.sha256() if masks is not None else None, "feather": options.feather,
                        "overlays": options.overlays}}
