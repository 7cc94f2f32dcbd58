"""Device memory: out-of-memory detection, a rough per-pair estimate and the automatic chunk size."""
from __future__ import annotations

import math
import os
from dataclasses import dataclass

import torch

from .config import ModelConfig
from .errors import EmaVfiError

MAX_AUTO_CHUNK = 16
# Peak memory of one frame pair, from benchmarks/bench_memory.py (CPU, float32, torch 2.13; benchmarks/RESULTS.md),
# in values per 32-padded pixel per unit of base width F. The full-resolution stages (appearance features, warps,
# U-Net) take the same at every flow scale; only the flow stage (motion features and flow heads) shrinks with
# the scale's square, and it is small: --scale lowers the peak by a few percent at most. Measured pair peaks
# (ours_small_t, scale 1): 206 MiB at 256x448, 2,240 MiB at 1080p, 7,818 MiB at 2160p; this gives 212, 2,200, 8,511.
_FULL_RES_PER_PX_F = 15
_FLOW_PER_PX_F = 1
_TTA_PER_PX_F = 4  # the passes run one after the other: TTA adds the rotated frames and the averaging only
_ELEMENTS_PER_PX_PER_T = 8  # each further timestep row: its output and flow
_FIXED_BYTES = 96 << 20  # oneDNN scratch pads and allocator slack, whatever the size


@dataclass(frozen=True)
class PairMemory:
    """Estimated peak memory of one frame pair per stage, in bytes (weights not included)."""

    full_res: int  # appearance features, warps and refinement at full resolution: the same at every scale
    flow: int  # motion features and flow heads at the flow scale
    rows: int  # outputs and flows of the timesteps (or bisection nodes) of the pair
    fixed: int  # scratch pads and allocator slack

    @property
    def total(self) -> int:
        return self.full_res + self.flow + self.rows + self.fixed

    def batch(self, pairs: int) -> int:
        """Bytes for a device batch of `pairs` such pairs (the fixed part once)."""
        return self.fixed + max(1, pairs) * (self.total - self.fixed)


def pair_memory(config: ModelConfig, height: int, width: int, n_timesteps: int = 1,
                dtype: torch.dtype = torch.float32, *, tta: bool = False, scale: float = 1.0) -> PairMemory:
    """Peak memory of one frame pair per stage (see PairMemory); an estimate, good to about 20 %."""
    elem = torch.empty((), dtype=dtype).element_size()
    values = (math.ceil(height / 32) * 32) * (math.ceil(width / 32) * 32) * elem
    full = (_FULL_RES_PER_PX_F + (_TTA_PER_PX_F if tta else 0)) * config.width
    return PairMemory(full_res=int(values * full), flow=int(values * _FLOW_PER_PX_F * config.width * scale * scale),
                      rows=int(values * _ELEMENTS_PER_PX_PER_T * max(1, n_timesteps)), fixed=_FIXED_BYTES)


def estimate_pair_bytes(config: ModelConfig, height: int, width: int, n_timesteps: int = 1,
                        dtype: torch.dtype = torch.float32, *, tta: bool = False, scale: float = 1.0) -> int:
    """Rough peak memory for one frame pair: the total of `pair_memory`. Treat it as an estimate, not a promise."""
    return pair_memory(config, height, width, n_timesteps, dtype, tta=tta, scale=scale).total


class ClipMemoryError(EmaVfiError, MemoryError):
    """Even one frame pair at one timestep does not fit in the device's memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors, whichever exception type the backend raised."""
    types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                              getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t is not None)
    if types and isinstance(exc, types):
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


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
