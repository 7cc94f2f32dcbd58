"""Validation during fine-tuning: drop-frame PSNR/SSIM of a held-out clip, by emavfi.evaluate's score_holdout.

The clip's first `val_frames` frames are read once (RGB, clamped to 0..1) and centre-cropped to at most
`val_crop` pixels per side (a multiple of 32; 0 = whole frames), so validation memory and time stay bounded
whatever the clip's resolution.
"""
from __future__ import annotations

from pathlib import Path

import torch

from .data import DataError, FrameReader, scan_clip


def load_clip(path: str, frames: int, crop: int, hold_out: int) -> torch.Tensor:
    """[N,3,H,W] float32 frames of the validation clip (N = min(frames, clip length))."""
    clip = scan_clip(Path(path))
    count = min(frames, clip.count)
    if count < hold_out + 1:
        raise DataError(f"validation clip {clip.describe()} is too short for --hold-out {hold_out} (needs "
                        f"{hold_out + 1} frames; --val-frames is {frames})")
    h, w = clip.size
    ch, cw = (h, w) if not crop else (min(h, crop), min(w, crop))
    ch, cw = ch // 32 * 32 or ch, cw // 32 * 32 or cw
    top, left = (h - ch) // 2, (w - cw) // 2
    reader = FrameReader([clip])
    try:
        return torch.stack([reader.read(0, i)[:, top:top + ch, left:left + cw] for i in range(count)])
    finally:
        reader.close()


def validate(model: torch.nn.Module, frames: torch.Tensor, hold_out: int) -> tuple[float, float]:
    """(mean PSNR, mean SSIM) of the held-out frames; the model's caches are cleared after (no inference tensors
    may reach a training step)."""
    from ..evaluate.holdout import score_holdout

    try:
        result = score_holdout(model, frames, hold_out)
    finally:
        clear = getattr(model, "clear_caches", None)
        if clear is not None:
            clear()
    return float(result.psnr), float(result.ssim)
