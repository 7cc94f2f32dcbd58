"""Drop-frame evaluation of any clip: keep every K-th frame, make the K-1 between each kept pair, score them.

    score_holdout(model, frames, hold_out, *, tta=False, scale=1.0, chunk=0, names=None, progress=None,
                  bgr=False, extra=None, **options) -> EvalResult

frames: [N,3,H,W] float in 0..1 (RGB, CPU), N >= hold_out + 1. hold_out: K, 2..16 (multiplier K between
kept frames 0, K, 2K, ...; frames after the last kept one are not scored). Each held-out frame is one sample
named `names[i]` (default: its index in `frames`) with `psnr` (0..1 peak, the unrounded prediction) and
`ssim` (the authors' ssim_matlab), both on values clamped to 0..1; the result's `psnr`/`ssim` are their
means. tta / scale / chunk / options: as emavfi.clips.interpolate_clip; bgr: feed the network BGR (as
the official scripts); extra(truth, pred) -> {metric: value}: further figures per frame (e.g. LPIPS);
progress(done, total): output frames made. The model is put in eval mode
for the call and restored after, so a training loop can validate with it. Stable API (used by finetune).
"""
from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

import torch

from ..schedule import MAX_MULTIPLIER, Request
from . import metrics
from .engine import predict
from .results import EvalResult, Sample


def kept_indices(n_frames: int, hold_out: int) -> list[int]:
    """Indices of the frames kept as inputs: 0, K, 2K ... (at least two, else ValueError)."""
    if isinstance(hold_out, bool) or not isinstance(hold_out, int) or not 2 <= hold_out <= MAX_MULTIPLIER:
        raise ValueError(f"hold-out must be a whole number from 2 to {MAX_MULTIPLIER} (keep every K-th frame); "
                         f"got {hold_out!r}")
    if n_frames < hold_out + 1:
        raise ValueError(f"hold-out {hold_out} needs at least {hold_out + 1} frames (two kept frames and the "
                         f"{hold_out - 1} between them); got {n_frames}")
    return list(range(0, n_frames, hold_out))[: (n_frames - 1) // hold_out + 1]


def score_frame(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """PSNR (unrounded prediction) and ssim_matlab of one held-out frame, both clamped to 0..1."""
    truth, pred = truth[:3].clamp(0, 1), pred[:3].clamp(0, 1)
    return {"psnr": metrics.psnr(truth, pred), "ssim": metrics.ssim_matlab(truth, pred)}


def score_holdout(model: Any, frames: torch.Tensor, hold_out: int, *, tta: bool = False, scale: float = 1.0,
                  chunk: int = 0, names: Sequence[str] | None = None,
                  progress: Callable[[int, int], None] | None = None, bgr: bool = False,
                  extra: Callable[[torch.Tensor, torch.Tensor], dict[str, float]] | None = None,
                  **options: Any) -> EvalResult:
    """Scores of the held-out frames of `frames` [N,3,H,W] (see the module docstring)."""
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] < 3:
        got = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a tensor [N,3,H,W] in 0..1; got {got}")
    if names is not None and len(names) != frames.shape[0]:
        raise ValueError(f"names must name every frame: got {len(names)} names for {frames.shape[0]} frames")
    kept = kept_indices(frames.shape[0], hold_out)
    started = time.monotonic()
    plan, out = predict(model, frames[kept, :3], Request(multiplier=hold_out), tta=tta, scale=scale, chunk=chunk,
                        progress=progress, bgr=bgr, **options)
    samples = []
    for index, frame in enumerate(plan):
        if frame.is_copy:
            continue
        original = kept[frame.source] + round(frame.t * hold_out)
        name = str(original) if names is None else names[original]
        scores = score_frame(frames[original], out[index])
        if extra is not None:
            scores.update(extra(frames[original, :3].clamp(0, 1), out[index, :3].clamp(0, 1)))
        samples.append(Sample(name, scores))
    settings = {"hold_out": hold_out, "tta": tta, "scale": scale}
    return EvalResult("hold-out", samples, settings, len(samples), time.monotonic() - started)
