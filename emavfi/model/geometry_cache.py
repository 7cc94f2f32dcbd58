"""A per-model cache of geometry tensors (sampling grids, attention masks, coordinate maps), bounded in bytes.

The model owns one instance and clears it when its parameters move (`.to()`, `.half()` ...) or on
`clear_caches()`. Entries are keyed by their full geometry and device/dtype, plus whether inference mode is
on: tensors made under `torch.inference_mode()` must not be reused where autograd may need them.
"""
from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable, Hashable

import torch

DEFAULT_CACHE_BYTES = 64 << 20


class GeometryCache:
    """Least-recently-used tensors up to `max_bytes` in all; a tensor bigger than that is never kept."""

    def __init__(self, max_bytes: int = DEFAULT_CACHE_BYTES):
        if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 0:
            raise ValueError(f"max_bytes must be a whole number >= 0; got {max_bytes!r}")
        self.max_bytes = max_bytes
        self._entries: OrderedDict[Hashable, torch.Tensor | None] = OrderedDict()
        self._bytes = 0

    @property
    def nbytes(self) -> int:
        """Bytes held by the cached tensors."""
        return self._bytes

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, key: Hashable, factory: Callable[[], torch.Tensor | None]) -> torch.Tensor | None:
        """The cached value for key, else factory() (kept if it fits). Callers must not modify it in place.

        While tracing (torch.jit.trace, ONNX export) nothing is cached: the factory's ops must be in the graph.
        """
        if torch.jit.is_tracing():
            return factory()
        key = (torch.is_inference_mode_enabled(), key)
        if key in self._entries:
            self._entries.move_to_end(key)
            return self._entries[key]
        value = factory()
        size = 0 if value is None else value.numel() * value.element_size()
        if size <= self.max_bytes:
            while self._entries and self._bytes + size > self.max_bytes:
                _, old = self._entries.popitem(last=False)
                self._bytes -= 0 if old is None else old.numel() * old.element_size()
            self._entries[key] = value
            self._bytes += size
        return value

    def __deepcopy__(self, memo: dict) -> GeometryCache:
        return GeometryCache(self.max_bytes)  # a copy (or a pickled model) starts empty

    def __getstate__(self) -> dict:
        return {"max_bytes": self.max_bytes}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_bytes"])

    def clear(self) -> None:
        """Drop every entry (frees device memory held by the cache)."""
        self._entries.clear()
        self._bytes = 0
