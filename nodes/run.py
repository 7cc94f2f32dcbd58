"""Run a frame plan on a ComfyUI IMAGE batch: the glue between the nodes and `emavfi.runner` (no model math here)."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Sequence

import torch

from ..emavfi import cuts, memory, runner, schedule
from ..emavfi.settings import RunOptions
from . import host
from .model import EmaVfiModel


@dataclass
class ClipResult:
    images: torch.Tensor  # [M,H,W,C] float32 on ComfyUI's intermediate device
    mask: torch.Tensor | None  # [M,H,W] float32, or None when no mask came in
    cuts: list[int]  # pair indices i (frames i, i+1) treated as scene cuts


def run_options(tta: bool, scale: str | float, chunk_size: int, cut_threshold: float, node: str) -> RunOptions:
    """The shared widgets as emavfi.settings.RunOptions (validated there, once), errors prefixed by the node."""
    try:
        return RunOptions(tta=bool(tta), scale=float(scale), chunk=int(chunk_size), cut_threshold=float(cut_threshold))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{node}: {exc}") from None


def scaled_fps(fps: float, factor: Fraction | int) -> float:
    """Output frame rate for `factor` times as many frames; 0 (unknown) stays 0. NTSC rates are kept exact."""
    if not fps or fps <= 0:
        return 0.0
    return float(schedule.parse_fps(float(fps)) * factor)


def cut_text(found: Sequence[int]) -> str:
    """"2 scene cuts between frames 11|12, 40|41: not blended" (0-based frame numbers of the input batch)."""
    return f"{len(found)} scene cut(s) between frames {cuts.describe_cuts(found, limit=20)}: not blended"


def run_clip(model: EmaVfiModel, images: torch.Tensor, plan: schedule.Schedule, options: RunOptions, *,
             mask: torch.Tensor | None, node_id: str | None) -> ClipResult:
    """Make every frame of `plan` from images [N,H,W,C] (and mask [N,H,W]) with `emavfi.runner.interpolate_clip`.

    The output is preallocated on the CPU and written frame by frame; one batch of pairs is on the device at a
    time (RunOptions.chunk), and a device out-of-memory halves the batch and retries. The ProgressBar advances
    per output frame, and Cancel is checked before every device call and at least once per pair.
    """
    mm = host.model_management()
    n, height, width, channels = images.shape
    # A mask rides along as an extra channel: warped with the same flows and fused with the same weights.
    frames = images if mask is None else torch.cat([images, mask.unsqueeze(-1).to(images.dtype)], dim=-1)
    frames_nchw = frames.movedim(-1, 1)  # a view: no copy of the clip
    found = cuts.detect_cuts(frames_nchw, options.cut_threshold)
    # Written through a [M,C,H,W] view, so the result is ComfyUI's [M,H,W,C] without a copy.
    out = torch.empty((len(plan.plan), height, width, frames.shape[-1]), dtype=torch.float32)
    bar = host.progress_bar(len(plan.plan), node_id)

    timesteps = max((len(ts) for ts in schedule.pair_timesteps(plan.plan).values()), default=1)
    pair_bytes = memory.estimate_pair_bytes(model.network.config, height, width, timesteps, model.dtype,
                                            tta=options.tta)
    network = model.ready(memory_required=pair_bytes * max(1, options.chunk))
    try:
        runner.interpolate_clip(
            network, frames_nchw, plan.plan, cuts=found, recursive=plan.bisection_depth is not None,
            out=out.movedim(-1, 1), progress=lambda done, total: bar.update_absolute(done, total),
            cancel=mm.throw_exception_if_processing_interrupted,
            tta=options.tta, scale=options.scale, chunk=options.chunk, device=model.load_device, dtype=model.dtype,
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
    return ClipResult(result_images.to(device), None if result_mask is None else result_mask.to(device), found)


def placeholder_mask(frames: int) -> torch.Tensor:
    """The MASK output when no mask came in: ComfyUI's convention for "no mask" (LoadImage), 64x64 zeros."""
    return torch.zeros((frames, 64, 64), dtype=torch.float32, device=host.model_management().intermediate_device())
