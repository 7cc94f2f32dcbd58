"""Opt-in speed settings that keep outputs within the parity tolerance: channels-last layout, torch.compile."""
from __future__ import annotations

import logging
from typing import Any, Callable

import torch
from torch import nn

from .errors import one_line
from .model import EMAVFI

log = logging.getLogger("emavfi")


def _with_fallback(module: nn.Module, backend: str | Callable[..., Any]) -> None:
    """Route `module.forward` through torch.compile; on any compile failure warn once and stay eager."""
    eager = module.forward
    state: dict[str, Any] = {"compiled": torch.compile(eager, backend=backend, dynamic=True)}

    def forward(*args: Any, **kwargs: Any) -> Any:
        compiled = state["compiled"]
        if compiled is not None:
            try:
                return compiled(*args, **kwargs)
            except Exception as exc:  # compilers fail in many ways (no C++ compiler, unsupported op, ...)
                log.warning("torch.compile failed for %s (%s: %s); running it eagerly",
                            type(module).__name__, type(exc).__name__, one_line(exc, first=True))
                state["compiled"] = None
        return eager(*args, **kwargs)

    module.forward = forward  # instance attribute: state_dict keys stay the official ones


def optimize(model: EMAVFI, *, channels_last: bool = True, compile: bool = False,
             backend: str | Callable[..., Any] = "inductor") -> EMAVFI:
    """Apply speed settings in place and return the model.

    channels_last: store convolution weights NHWC (oneDNN/cuDNN pick faster kernels); results differ from
    the default layout only by float rounding. compile: wrap the U-Net and flow heads in torch.compile
    (off by default; falls back to eager with a warning if compilation fails).
    """
    if channels_last:
        model.to(memory_format=torch.channels_last)
    if compile:
        if not hasattr(torch, "compile"):
            log.warning("this PyTorch has no torch.compile; running eagerly")
        else:
            for module in (model.unet, *model.block):
                _with_fallback(module, backend)
    return model
