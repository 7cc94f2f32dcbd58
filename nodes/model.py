"""The value that travels along an EMAVFI_MODEL link, and how it gets onto (and off) its device."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch

from . import host


@dataclass(eq=False)
class EmaVfiModel:
    """An eval-mode EMA-VFI network plus where and in which precision it runs.

    network:        the `emavfi.EMAVFI` module (weights in `dtype`).
    variant:        official variant name ("ours_small_t", ...) or None for a custom config.
    load_device:    where inference runs; offload_device: where the weights wait in between.
    source:         where the weights came from (file path or Hub description), for messages.
    patcher:        a `comfy.model_patcher.ModelPatcher` when running inside ComfyUI, so that ComfyUI's model
                    management loads the weights before use and offloads them when other models need memory.
    """

    network: torch.nn.Module
    variant: str | None
    dtype: torch.dtype
    load_device: torch.device
    offload_device: torch.device
    source: str
    patcher: Any = field(default=None, repr=False)

    @classmethod
    def create(cls, network: torch.nn.Module, variant: str | None, dtype: torch.dtype, load_device: torch.device,
               offload_device: torch.device, source: str) -> EmaVfiModel:
        patcher_class = host.model_patcher_class()
        patcher = None if patcher_class is None else patcher_class(network, load_device, offload_device)
        return cls(network, variant, dtype, load_device, offload_device, source, patcher)

    @property
    def arbitrary_t(self) -> bool:
        """True for the `_t` variants, trained for any timestep; False: trained for t = 0.5 only."""
        return bool(self.network.config.arbitrary_t)

    @property
    def name(self) -> str:
        return self.variant or "custom EMA-VFI model"

    def ready(self, memory_required: int) -> torch.nn.Module:
        """Put the weights on `load_device`, first freeing `memory_required` bytes (activations) there."""
        if not isinstance(self.network, torch.nn.Module):  # a compiled runtime model holds its own memory
            return self.network
        mm = host.model_management()
        if self.patcher is not None:
            mm.load_models_gpu([self.patcher], memory_required=memory_required, force_full_load=True)
        elif self.load_device.type != "cpu":
            mm.free_memory(mm.module_size(self.network) + memory_required, self.load_device)
            self.network.to(self.load_device)
        return self.network

    def release(self) -> None:
        """After a run. With a patcher ComfyUI keeps the weights loaded until it needs the memory; without one
        they go back to `offload_device` now."""
        if self.patcher is None and self.load_device != self.offload_device:
            self.network.to(self.offload_device)
        clear = getattr(self.network, "clear_caches", None)
        if clear is not None:  # grids and masks on the device: rebuilt in the next run, not held in between
            clear()
        host.model_management().soft_empty_cache()


def require_model(model: object, node: str) -> EmaVfiModel:
    if not isinstance(model, EmaVfiModel):
        raise ValueError(f"{node}: the model input must come from a 'Load EMA-VFI Model' node; "
                         f"got {type(model).__name__}")
    return model
