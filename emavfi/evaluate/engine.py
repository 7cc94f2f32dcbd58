"""How evaluation runs the network: the project's engine (emavfi.runner) with a plan from emavfi.schedule.

Every evaluation goes through `predict`, so a score measures what `python -m emavfi interpolate` makes:
the same schedule policy (direct timesteps for `_t` models, bisection at t = 0.5 for the others), padding,
TTA, HR scale and batching.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import torch

from ..schedule import Plan, Request, make_schedule


@contextlib.contextmanager
def eval_mode(model: Any) -> Iterator[None]:
    """The model in eval mode for the block, restored after (a fine-tuning loop validates mid-training)."""
    training = bool(getattr(model, "training", False))
    if hasattr(model, "eval"):
        model.eval()
    try:
        yield
    finally:
        if training:
            model.train()


def arbitrary_t(model: Any) -> bool:
    """True for models trained for any t (`_t` variants); models without a config count as such."""
    return bool(getattr(getattr(model, "config", None), "arbitrary_t", True))


def predict(model: Any, frames: torch.Tensor, request: Request, *, tta: bool = False, scale: float = 1.0,
            chunk: int = 0, bgr: bool = False, progress: Callable[[int, int], None] | None = None,
            **options: Any) -> tuple[Plan, torch.Tensor]:
    """(plan, outputs [len(plan),3,H,W] float32) of frames [N,3,H,W] (float, 0..1, RGB) for `request`.

    bgr: feed the network blue-green-red, as the official scripts do (they read frames with OpenCV); the
    outputs come back in RGB. options: further Runner settings (device, dtype, hdr, backend).
    """
    from ..clips import interpolate_clip

    schedule = make_schedule(request, frames.shape[0], arbitrary_t(model))
    source = frames.flip(1) if bgr else frames
    with eval_mode(model):
        out = interpolate_clip(model, source.float(), schedule, progress=progress, tta=tta, scale=scale, chunk=chunk,
                               **options)
    return schedule.plan, out.flip(1) if bgr else out
