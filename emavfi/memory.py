"""Device memory: out-of-memory detection, a rough per-pair estimate and the automatic chunk size."""
from __future__ import annotations

import math
import os

import torch

from .config import ModelConfig
from .errors import EmaVfiError

MAX_AUTO_CHUNK = 16
# Rough activation memory of one frame pair, in elements per padded pixel per unit of base width F,
# measured on CPU (float32, torch 2.13): peak 115-135 bytes per pixel per F for ours and ours_small.
_FEATURE_ELEMENTS_PER_PX_F = 32
_ELEMENTS_PER_PX_PER_T = 8


class ClipMemoryError(EmaVfiError, MemoryError):
    """Even one frame pair at one timestep does not fit in the device's memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors, whichever exception type the backend raised."""
    types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                              getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t is not None)
    if types and isinstance(exc, types):
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


def estimate_pair_bytes(config: ModelConfig, height: int, width: int, n_timesteps: int = 1,
                        dtype: torch.dtype = torch.float32, *, tta: bool = False) -> int:
    """Rough peak device memory for one frame pair: backbone + refinement activations and T outputs.

    About 32 * F values per (32-padded) pixel for the features (measured peak on CPU: 115-135 bytes per
    pixel per F in float32), doubled with TTA, plus 8 values per pixel per timestep. HR mode (scale < 1)
    measured the same. Weights are not included. Treat it as an order of magnitude, not a promise.
    """
    elem = torch.empty((), dtype=dtype).element_size()
    pixels = (math.ceil(height / 32) * 32) * (math.ceil(width / 32) * 32)
    features = _FEATURE_ELEMENTS_PER_PX_F * config.width * (2 if tta else 1)
    return int(pixels * elem * (features + _ELEMENTS_PER_PX_PER_T * max(1, n_timesteps)))


def auto_chunk_size(free_bytes: int, pair_bytes: int, *, max_chunk: int = MAX_AUTO_CHUNK,
                    headroom: float = 0.7) -> int:
    """Frame pairs per device batch that fit in `headroom` of free_bytes, between 1 and max_chunk."""
    if pair_bytes <= 0:
        return max_chunk
    return max(1, min(max_chunk, int(free_bytes * headroom) // pair_bytes))


def free_memory_bytes(device: torch.device) -> int:
    """Memory the next batch can use on device: CUDA free + cached-but-unused, MPS budget, or CPU available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "mps" and hasattr(torch, "mps"):
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def release_cached(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()
