"""Run a frame plan on a ComfyUI IMAGE batch: the glue between the nodes and `emavfi.clip` (no model math here)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch

from ..emavfi import clip, schedule
from . import host
from .model import EmaVfiModel

SCALES = ("1.0", "0.5", "0.25")


@dataclass
class ClipResult:
    images: torch.Tensor  # [M,H,W,C] float32 on ComfyUI's intermediate device
    mask: torch.Tensor | None  # [M,H,W] float32, or None when no mask came in
    cuts: list[int]  # pair indices i (frames i, i+1) treated as scene cuts


def parse_scale(scale: str | float) -> float:
    try:
        value = float(scale)
    except (TypeError, ValueError):
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}") from None
    if value not in (1.0, 0.5, 0.25):
        raise ValueError(f"scale must be one of {', '.join(SCALES)}; got {scale!r}")
    return value


def scaled_fps(fps: float, factor: Fraction | int) -> float:
    """Output frame rate for `factor` times as many frames; 0 (unknown) stays 0. NTSC rates are kept exact."""
    if not fps or fps <= 0:
        return 0.0
    return float(schedule.parse_fps(float(fps)) * factor)


def non_t_warning(model: EmaVfiModel, timesteps: Sequence[Fraction], recursive: bool) -> str | None:
    """The warning for a model trained for t = 0.5 only asked for other timesteps directly, else None."""
    if recursive or model.arbitrary_t or all(t == Fraction(1, 2) for t in timesteps):
        return None
    return (f"{model.name} was trained for t = 0.5 only; timesteps other than 0.5 work in direct mode but look "
            "worse. Use a `_t` variant, or mode = recursive with a power-of-two multiplier.")


def run_clip(model: EmaVfiModel, images: torch.Tensor, plan: schedule.Plan, *, mask: torch.Tensor | None,
             recursive: bool | None, tta: bool, scale: float, chunk_size: int, cut_threshold: float,
             node_id: str | None) -> ClipResult:
    """Make every frame of `plan` from images [N,H,W,C] (and mask [N,H,W]) with `emavfi.clip.interpolate_clip`.

    The output is preallocated on the CPU and written chunk by chunk; only one chunk is on the device at a
    time (clip.py), and a device out-of-memory halves the chunk and retries (clip.py). The ProgressBar
    counts output frames, and Cancel is checked before every chunk.
    """
    mm = host.model_management()
    n, height, width, channels = images.shape
    # A mask rides along as an extra channel: warped with the same flows and fused with the same weights.
    frames = images if mask is None else torch.cat([images, mask.unsqueeze(-1).to(images.dtype)], dim=-1)
    frames_nchw = frames.movedim(-1, 1)  # a view: no copy of the clip
    cuts = schedule.detect_cuts(frames_nchw, cut_threshold) if cut_threshold > 0 else []
    # Written through a [M,C,H,W] view, so the result is ComfyUI's [M,H,W,C] without a copy.
    out = torch.empty((len(plan), height, width, frames.shape[-1]), dtype=torch.float32)
    bar = host.progress_bar(len(plan), node_id)

    timesteps = max((len(ts) for ts in schedule.pair_timesteps(plan).values()), default=1)
    pair_bytes = clip.estimate_pair_bytes(model.network.config, height, width, timesteps, model.dtype, tta=tta)
    network = model.ready(memory_required=pair_bytes * max(1, chunk_size))
    try:
        clip.interpolate_clip(
            network, frames_nchw, plan, cuts=cuts, tta=tta, scale=scale, chunk_size=chunk_size,
            device=model.load_device, dtype=model.dtype, out=out.movedim(-1, 1), recursive=recursive,
            progress=lambda done, total: bar.update_absolute(done, total),
            check_cancel=mm.throw_exception_if_processing_interrupted,
        )
    finally:
        model.release()
    del frames, frames_nchw
    if mask is None:
        result_images, result_mask = out, None
    else:
        result_images, result_mask = out[..., :channels].contiguous(), out[..., channels].contiguous()
        del out
    device = mm.intermediate_device()
    return ClipResult(result_images.to(device), None if result_mask is None else result_mask.to(device), cuts)


def placeholder_mask(frames: int) -> torch.Tensor:
    """The MASK output when no mask came in: ComfyUI's convention for "no mask" (LoadImage), 64x64 zeros."""
    return torch.zeros((frames, 64, 64), dtype=torch.float32, device=host.model_management().intermediate_device())
