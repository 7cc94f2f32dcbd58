"""Clips held in memory: the engine (emavfi.engine.run) over tensors, the library's whole-clip functions.

`interpolate_clip` / `render_clip` make a schedule's frames from a clip [N,C,H,W] with a `runner.Runner`,
through the same loop as the files front end: device batches on the global pair grid, scene cuts from a fixed
window, HDR, out-of-memory back-off; `interpolate_sequence` (the library's public function) runs the same loop
for the same timesteps between every pair. The tensor source and sinks here serve every front end that holds its
frames in memory (the ComfyUI nodes, evaluation), and `InOrder` any sink that needs its frames in order.
"""
from __future__ import annotations

import operator
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from .engine import CancelFn, CutFinder, GivenCuts, ProgressFn, Sink, run
from .inference import backend_for, warn_untrained_t
from .inference_checks import Timesteps, check_frames as check_pairs, check_model, check_timesteps
from .protect import RegionPolicy
from .runner import Model, Runner, check_frames
from .schedule import OutputFrame, Schedule, check_plan


@dataclass
class Clip:
    """A clip made from tensors: its frames and the scene cuts it was made with."""

    frames: torch.Tensor  # [M,C,H,W]
    cuts: list[int]  # pair indices i (frames i, i+1) whose in-between frames repeat the nearer source frame


def run_clip(schedule: Schedule | Sequence[OutputFrame], frames: torch.Tensor, runner: BatchRunner, *,
             cuts: Iterable[int] = (), cut_threshold: float = 0.0, out: torch.Tensor | None = None,
             progress: ProgressFn | None = None, cancel: CancelFn | None = None,
             protect: RegionPolicy | None = None) -> Clip:
    """`run` on a clip in memory, frames [N,C,H,W], into out [M,C,H,W] (see interpolate_clip; protect: held
    regions, e.g. protect.held_regions(N, mask, overlays=True))."""
    n = frames.shape[0]
    if not isinstance(schedule, Schedule):
        schedule = Schedule(list(schedule), None, None, None)  # a bare plan: every t directly
    check_plan(schedule.plan, n)
    given = _check_cuts(cuts, n)
    finder = CutFinder(n, cut_threshold)
    if given and finder.threshold:
        raise ValueError("give cuts or a cut_threshold to detect them, not both")
    shape = (len(schedule.plan), *frames.shape[1:])
    if out is None:
        out = torch.empty(shape, dtype=frames.dtype, device=frames.device)
    elif not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or not out.is_floating_point():
        got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise ValueError(f"out must be a float tensor of shape {list(shape)}; got {got}")
    report = run(schedule, TensorFrames(frames), runner, TensorSink(out), GivenCuts(given) if given else finder,
                 progress=progress, cancel=cancel, protect=protect)
    return Clip(out, sorted(report.cuts))


def _check_cuts(cuts: Iterable[int], n: int) -> list[int]:
    checked = []
    for cut in cuts:
        try:
            index = operator.index(cut)  # numpy and 0-d torch integers too
        except TypeError:
            index = None
        if isinstance(cut, bool) or index is None or not 0 <= index < n - 1:
            raise ValueError(f"cut indices must be pair indices 0..{n - 2}; got {cut!r}")
        checked.append(index)
    return checked


# ----------------------------------------------------------------------------------------------- sources, sinks

class TensorFrames:
    """A clip already in memory, frames [N,C,H,W] (float, CPU; any strides): windows are views, not copies."""

    def __init__(self, frames: torch.Tensor):
        self.frames = frames
        self.count = frames.shape[0]
        self.size = (frames.shape[-2], frames.shape[-1])
        self.damaged: dict[int, str] = {}

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """Frames lo..hi as a view."""
        return self.frames[lo:hi + 1]


class TensorSink:
    """Writes output k into out[k] (out: [M,C,H,W], e.g. a view of ComfyUI's [M,H,W,C] result)."""

    def __init__(self, out: torch.Tensor):
        self.out = out

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Copy the frame into place."""
        assert image is not None
        self.out[index].copy_(image)


class InOrder:
    """A sink for outputs that must arrive in order (a video): frames made early wait for their turn."""

    def __init__(self, sink: Sink, order: Iterable[int]):
        self.sink = sink
        self._order = iter(order)
        self._next = next(self._order, None)
        self._pending: dict[int, tuple[torch.Tensor | None, int | None]] = {}

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Hold the frame; pass on every frame whose turn has come (bisection makes them out of order)."""
        self._pending[index] = (image, copy_of)
        while self._next is not None and self._next in self._pending:
            frame, source = self._pending.pop(self._next)
            self.sink.write(self._next, frame, copy_of=source)
            self._next = next(self._order, None)


# ----------------------------------------------------------------------------------------------- whole clip

def render_clip(model: Model, frames: torch.Tensor, schedule: Schedule | Sequence[OutputFrame], *,
                cuts: Iterable[int] = (), cut_threshold: float = 0.0, out: torch.Tensor | None = None,
                progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                protect: RegionPolicy | None = None, **options: Any) -> Clip:
    """`interpolate_clip`, also returning the scene cuts it made the clip with (Clip)."""
    check_frames(frames)
    return run_clip(schedule, frames, Runner(model, **options), cuts=cuts, cut_threshold=cut_threshold,
                           out=out, progress=progress, cancel=cancel, protect=protect)


def interpolate_clip(model: Model, frames: torch.Tensor, schedule: Schedule | Sequence[OutputFrame], *,
                     cuts: Iterable[int] = (), cut_threshold: float = 0.0, out: torch.Tensor | None = None,
                     progress: ProgressFn | None = None, cancel: CancelFn | None = None,
                     protect: RegionPolicy | None = None, **options: Any) -> torch.Tensor:
    """Make every frame of `schedule` from frames [N,C,H,W] (float, CPU; C = 3 RGB, more = alpha/mattes).

    schedule: a `schedule.Schedule` from make_schedule (its plan, made directly or by bisection to its depth),
    or a bare plan (list of OutputFrame, every t made directly). Returns [len(plan),C,H,W] in frames' dtype
    (written into `out` when given). Copies (t = 0) are bit-exact. Scene cuts: `cuts` (pair indices), or
    `cut_threshold` > 0 to detect them as the command line does (emavfi.cuts); a cut pair is not interpolated:
    its frames repeat the nearer source frame. progress(done, total) counts output frames, once per frame;
    cancel() cancels by raising (see Runner.run). protect: held regions (emavfi.protect.held_regions: a mask,
    detected overlays). options: Runner settings (device, dtype, tta, scale, chunk, hdr, backend).
    """
    return render_clip(model, frames, schedule, cuts=cuts, cut_threshold=cut_threshold, out=out,
                       progress=progress, cancel=cancel, protect=protect, **options).frames


def interpolate_sequence(model: Model, frames: torch.Tensor, timesteps: Timesteps = 0.5, *, tta: bool = False,
                         fast_tta: bool = False, scale: float = 1.0, aux: torch.Tensor | None = None,
                         timesteps_per_call: int | None = None, chunk: int | None = None,
                         cut_threshold: float = 0.0) -> Any:
    """In-between frames for every consecutive pair of `frames` [N,3,H,W] (N >= 2; float, 0..1, above 1 for HDR).

    Like `emavfi.interpolate` with img0 = frames[:-1], img1 = frames[1:] (a float t gives [N-1,3,H,W], a
    sequence [T,N-1,3,H,W]), but each frame's per-frame features are computed once although it belongs to two
    pairs, and it runs the engine's frame loop: HDR, out-of-memory back-off, and with cut_threshold > 0 scene
    cuts (emavfi.cuts: a cut pair's frames repeat the nearer source frame). t = 0 and 1 are the source frames.
    aux [N,K,H,W]: extra channels warped and fused with the same flows; then returns (frames, aux).
    chunk: pairs evaluated together, sharing their frames' features (default: automatic, one on CPU).
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[0] < 2:
        raise ValueError("frames must be a tensor [N,3,H,W] with at least two frames "
                         f"(got {list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__})")
    single = isinstance(timesteps, (int, float)) and not isinstance(timesteps, bool)
    check_model(model)
    ts = check_timesteps(timesteps)
    check_pairs(frames[:-1], frames[1:], None if aux is None else aux[:-1], None if aux is None else aux[1:], hdr=True)
    warn_untrained_t(model, ts)
    if chunk is not None and (isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 1):
        raise ValueError(f"chunk must be a positive integer or None (pairs per call); got {chunk!r}")
    n = frames.shape[0]
    clip = frames if aux is None else torch.cat([frames, aux.to(frames)], 1)
    inner = sorted({Fraction(t) for t in ts} - {Fraction(1)})  # t = 1 is the next source frame
    made = clip[1:, None]
    if inner:
        backend = backend_for(model, tta, scale, fast_tta=fast_tta, timesteps_per_call=timesteps_per_call)
        plan = [OutputFrame(i, t) for i in range(n - 1) for t in inner]  # t = 0: a copy, as in every plan
        made = run_clip(plan, clip, Runner(model, chunk=chunk or 0, backend=backend),
                        cut_threshold=cut_threshold).frames.view(n - 1, len(inner), *clip.shape[1:])
    row = {t: k for k, t in enumerate(inner)}
    out = torch.stack([clip[1:] if t == 1 else made[:, row[Fraction(t)]] for t in ts])
    rgb, fused = out[:, :, :3], None if aux is None else out[:, :, 3:]
    if single:
        rgb, fused = rgb[0], None if fused is None else fused[0]
    return rgb if fused is None else (rgb, fused)
