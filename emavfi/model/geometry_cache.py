"""A small bounded cache for geometry tensors (grids, masks, coordinate maps) keyed by their full geometry.

Entries are keyed by every argument plus whether inference mode is on, because tensors made under
`torch.inference_mode()` must not be reused where autograd may need them.
"""
from __future__ import annotations

import functools
from typing import Callable, TypeVar

import torch

F = TypeVar("F", bound=Callable[..., torch.Tensor | None])


def geometry_cache(maxsize: int = 32) -> Callable[[F], F]:
    """Memoise a pure tensor factory; the caller must never modify the returned tensor in place."""

    def wrap(factory: F) -> F:
        @functools.lru_cache(maxsize=maxsize)
        def cached(inference: bool, *args):
            return factory(*args)

        @functools.wraps(factory)
        def lookup(*args):
            return cached(torch.is_inference_mode_enabled(), *args)

        lookup.cache_clear = cached.cache_clear  # type: ignore[attr-defined]
        return lookup  # type: ignore[return-value]

    return wrap
