"""Frames made on a GPU, copied to the host while the next device call computes (as ComfyUI's frame
interpolation node does): CUDA results go to pinned memory with non-blocking copies and are handed on once a
later call is queued (or at `flush`); results on any other device are handed on at once, as before."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch


class HostCopies:
    """Results waiting for their device-to-host copy, handed on in the order they were added."""

    def __init__(self) -> None:
        self._queued: list[tuple[Any, torch.Tensor, Callable[[torch.Tensor], None]]] = []

    def add(self, frames: torch.Tensor, then: Callable[[torch.Tensor], None]) -> None:
        """then(frames on the CPU): now, or (CUDA) at the next `flush`, with the copy running meanwhile."""
        if frames.device.type != "cuda":
            then(frames.cpu())  # a new tensor, also on a CPU device
            return
        host = torch.empty(frames.shape, dtype=frames.dtype, pin_memory=True).copy_(frames, non_blocking=True)
        copied = torch.cuda.Event()
        copied.record()
        self._queued.append((copied, host, then))

    def flush(self) -> None:
        """Hand on every queued result, each once its copy is done."""
        while self._queued:
            copied, host, then = self._queued.pop(0)
            copied.synchronize()
            then(host)

    def clear(self) -> None:
        """Drop what is queued (the run failed)."""
        self._queued.clear()
