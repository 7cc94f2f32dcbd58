"""Run a frame plan on a ComfyUI IMAGE batch: the glue between the nodes and `emavfi.runner` (no model math here)."""
from __future__ import annotations

from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from ..emavfi import clips, cuts, dedupe, memory, protect, schedule
from ..emavfi.settings import RunOptions, check_feather
from . import host
from .model import EmaVfiModel


@dataclass
class ClipResult:
    images: torch.Tensor  # [M,H,W,C] float32 on ComfyUI's intermediate device
    mask: torch.Tensor | None  # [M,H,W] float32, or None when no mask came in
    cuts: list[int]  # pair indices i (frames i, i+1) treated as scene cuts
    overlays: torch.Tensor | None = None  # a meta batch's overlay_mask output [K,H,W] float32 (metabatch)


def run_options(tta: bool, scale: str | float, chunk_size: int, cut_threshold: float, node: str,
                dedupe_on: bool = False, dedupe_threshold: float | None = None) -> RunOptions:
    """The shared widgets as emavfi.settings.RunOptions (validated there, once), errors prefixed by the node."""
    try:
        return RunOptions(tta=bool(tta), scale=float(scale), chunk=int(chunk_size), cut_threshold=float(cut_threshold),
                          dedupe=bool(dedupe_on), dedupe_threshold=dedupe_threshold)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{node}: {exc}") from None


@dataclass
class Timeline:
    """The frames a plan runs on: all the input frames, or (dedupe) the drawings left once held frames are dropped."""

    images: torch.Tensor  # [K,H,W,C]
    mask: torch.Tensor | None  # [K,H,W]
    plan: schedule.Schedule
    kept: list[int]  # input frame index of each timeline frame
    held: list[int]  # input frames dropped as held (empty without dedupe)

    def input_cuts(self, found: Sequence[int]) -> list[int]:
        """Cut pairs of the timeline in input numbering: the pair just before the drawing that opens the new shot."""
        return [self.kept[i + 1] - 1 for i in found]

    def held_text(self) -> str:
        """"3 held frame(s) dropped (dedupe)"."""
        return f"{len(self.held)} held frame(s) dropped (dedupe)"


def timeline(images: torch.Tensor, mask: torch.Tensor | None, request: schedule.Request, arbitrary_t: bool,
             options: RunOptions, node: str) -> Timeline:
    """The plan of `request` over images [N,H,W,C]: make_schedule, or with options.dedupe the drawings retimed
    at their true times (emavfi.dedupe, the CLI's decisions and schedule)."""
    n = images.shape[0]
    if not options.dedupe:
        return Timeline(images, mask, schedule.make_schedule(request, n, arbitrary_t), list(range(n)), [])
    try:
        held = dedupe.held_timeline(images.movedim(-1, 1), n, request, arbitrary_t,
                                    threshold=options.dedupe_threshold, cut_threshold=options.cut_threshold)
    except ValueError as exc:
        raise ValueError(f"{node}: {exc}") from None
    keep = held.kept
    return Timeline(images[keep], None if mask is None else mask[keep], held.schedule, keep, held.held)


@dataclass
class Protect:
    """The held-region widgets, checked: the protect mask [1 or N,H,W] (float32, CPU) or None, feather, overlays."""

    mask: torch.Tensor | None
    feather: int
    overlays: bool

    @property
    def active(self) -> bool:
        return self.mask is not None or self.overlays


def protect_options(mask: Any, feather: int, overlays: bool, images: torch.Tensor, node: str) -> Protect:
    """The widgets checked against images [N,H,W,C] with the library's own checks, errors prefixed by the node."""
    n, height, width = images.shape[:3]
    try:
        check_feather(feather)
        checked = None if mask is None else protect.check_masks(mask)
        if checked is not None:
            protect.check_size(tuple(checked.shape[-2:]), (height, width), "the protect mask")
            protect.held_regions(n, checked, feather_px=feather)  # one mask per input frame, or one for all
    except ValueError as exc:
        raise ValueError(f"{node}: {exc}") from None
    return Protect(checked, feather, bool(overlays))


class Held:
    """The engine's protect policy for one run over a timeline, and the overlays it found (timeline frame -> mask)."""

    def __init__(self, options: Protect, line: Timeline):
        self.line, self.overlays = line, options.overlays
        self.seen: dict[int, torch.Tensor] = {}
        index = line.kept.__getitem__ if line.held else None  # dedupe: the input frame of each timeline frame
        self.policy = protect.held_regions(len(line.kept), options.mask, overlays=options.overlays,
                                           feather_px=options.feather, index=index,
                                           overlays_seen=self.seen.__setitem__)

    def overlay_mask(self, n_input: int) -> torch.Tensor:
        """[n_input,H,W] float32: each input frame's detected overlays (a held frame: those of the drawing it
        repeats), zeros when detection is off; frames the run did not decide (no output read them) are decided
        here."""
        height, width = self.line.images.shape[1:3]
        out = torch.zeros((n_input, height, width), dtype=torch.float32)
        if self.overlays:
            missing = [j for j in range(len(self.line.kept)) if j not in self.seen]
            protect.decide_overlays(clips.TensorFrames(self.line.images.movedim(-1, 1)), missing,
                                    self.seen.__setitem__)
            for i in range(n_input):
                out[i] = self.seen[bisect_right(self.line.kept, i) - 1]
        return out.to(host.model_management().intermediate_device())


def cut_text(found: Sequence[int]) -> str:
    """"2 scene cuts between frames 11|12, 40|41: not blended" (0-based frame numbers of the input batch)."""
    return f"{len(found)} scene cut(s) between frames {cuts.describe_cuts(found, limit=20)}: not blended"


def with_mask(images: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
    """images [N,H,W,C], with the mask as one more channel: warped with the same flows, fused with the same weights."""
    return images if mask is None else torch.cat([images, mask.unsqueeze(-1).to(images.dtype)], dim=-1)


def pair_bytes(model: EmaVfiModel, plan: schedule.Schedule, height: int, width: int, options: RunOptions) -> int:
    """Device memory one frame pair of `plan` needs (asked of ComfyUI before the model is loaded)."""
    return memory.estimate_pair_bytes(model.network.config, height, width, plan.rows_per_pair(), model.dtype,
                                       tta=options.tta, scale=options.scale)


def split_result(out: torch.Tensor, channels: int, had_mask: bool, found: list[int]) -> ClipResult:
    """out [M,H,W,C(+1)] -> images and mask on ComfyUI's intermediate device."""
    if had_mask:
        images, mask = out[..., :channels].contiguous(), out[..., channels].contiguous()
    else:
        images, mask = out.contiguous(), None  # a no-op unless a meta batch carried its protect mask
    device = host.model_management().intermediate_device()
    return ClipResult(images.to(device), None if mask is None else mask.to(device), found)


def run_clip(model: EmaVfiModel, images: torch.Tensor, plan: schedule.Schedule, options: RunOptions, *,
             mask: torch.Tensor | None, node_id: str | None,
             held: protect.RegionPolicy | None = None) -> ClipResult:
    """Make every frame of `plan` (the Schedule as make_schedule decided it, bisection depth included) from
    images [N,H,W,C] (and mask [N,H,W]) with emavfi's one engine (`clips.render_clip`); held: its protect policy.

    The output is preallocated on the CPU and written frame by frame; one batch of pairs is on the device at a
    time (RunOptions.chunk), and a device out-of-memory halves the batch and retries. Scene cuts are decided
    as the batches go, from the same fixed window as the command line. The ProgressBar advances per output
    frame, and Cancel is checked before every device call and at least once per pair.
    """
    mm = host.model_management()
    n, height, width, channels = images.shape
    frames = with_mask(images, mask)
    # Written through a [M,C,H,W] view, so the result is ComfyUI's [M,H,W,C] without a copy.
    out = torch.empty((len(plan.plan), height, width, frames.shape[-1]), dtype=torch.float32)
    bar = host.progress_bar(len(plan.plan), node_id)
    network = model.ready(memory_required=pair_bytes(model, plan, height, width, options) * max(1, options.chunk))
    try:
        clip = clips.render_clip(
            network, frames.movedim(-1, 1), plan, cut_threshold=options.cut_threshold, out=out.movedim(-1, 1),
            progress=lambda done, total: bar.update_absolute(done, total),
            cancel=mm.throw_exception_if_processing_interrupted,
            tta=options.tta, scale=options.scale, chunk=options.chunk, device=model.load_device, dtype=model.dtype,
            protect=held,
        )
    finally:
        model.release()
    del frames
    return split_result(out, channels, mask is not None, clip.cuts)


def placeholder_mask(frames: int) -> torch.Tensor:
    """The MASK output when no mask came in: ComfyUI's convention for "no mask" (LoadImage), 64x64 zeros."""
    return torch.zeros((frames, 64, 64), dtype=torch.float32, device=host.model_management().intermediate_device())
