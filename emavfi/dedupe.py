"""Held frames (anime on twos and threes, repeated captures, rate-converted duplicates), and retiming without them.

A frame is *held* when it repeats the previous frame within noise: every BLOCK x BLOCK block of the difference
of the two frames' half-resolution lumas has an RMS of at most threshold x the RMS that noise alone leaves
between two frames. The noise is estimated from the pictures themselves (a Laplacian-like residual in their
quietest blocks, at least NOISE_FLOOR), as the median over the frames within HOLD_CONTEXT of the pair, so a
decision reads a fixed window of frames and never depends on how a shot is split into tasks. A cut or any
local change (a mouth, a blink) moves some block well above noise; a slow pan moves every textured block.

Held frames are dropped from the timeline: the remaining frames (the drawings) keep their true times, and the
output is a retime of them (emavfi.plans.retime_plan_from_times) to the requested rate: `-m N` is N x the
input rate, `--fps` as asked, the same duration. The first and last frames are always kept, and so is the last
frame before a scene cut, so that a cut stays on its frame.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from typing import Any

import torch
import torch.nn.functional as F

from . import cuts
from .schedule import Request, Schedule, make_schedule
from .settings import check_dedupe_threshold  # the threshold is a user setting: its default and range live there

HOLD_CONTEXT = 6
"""K: the decision for frame j reads only frames max(0, j-1-K) .. min(n-1, j+1+K): the noise level is the lowest
of the pairs within K of pair j-1, and whether pair j is a cut is decided from CUT_CONTEXT (= K) pairs around it."""

BLOCK = 16  # half-resolution px: 32 x 32 source px
NOISE_FLOOR = 0.5 / 255  # half an 8-bit code value: quantisation and codec residue of clean pictures
MOTION_LIMIT = 40.0  # a block whose shift evidence exceeds this moved (noise alone: above 28 in 1 of 10^6 blocks)


# ----------------------------------------------------------------------------------------------- evidence

def luma(frame: torch.Tensor) -> torch.Tensor:
    """[h,w] float32 luma of frame [C>=3,H,W] (RGB first) at half resolution; HDR above 1 compressed as in cuts."""
    if frame.dim() != 3 or frame.shape[0] < 3:
        raise ValueError(f"a frame must be [C>=3,H,W] with RGB first; got shape {list(frame.shape)}")
    rgb = frame[:3].float().nan_to_num(0.0, posinf=1e4, neginf=0.0)
    rgb = rgb.clamp(max=1) + rgb.clamp(min=1).log()
    y = (0.299 * rgb[0] + 0.587 * rgb[1] + 0.114 * rgb[2])[None, None]
    if min(y.shape[-2:]) >= 8:
        y = F.avg_pool2d(y[..., :y.shape[-2] // 2 * 2, :y.shape[-1] // 2 * 2], 2)
    return y[0, 0]


def _block_means(*maps: torch.Tensor) -> torch.Tensor:
    """[len(maps), blocks] mean of each BLOCK x BLOCK block of each map [h,w] (edge blocks: what is there)."""
    size = max(1, min(BLOCK, *maps[0].shape))
    return F.avg_pool2d(torch.stack(maps)[:, None], size, ceil_mode=True).flatten(1)


def pair_evidence(a: torch.Tensor, b: torch.Tensor) -> tuple[float, float, float]:
    """(change, noise, motion) of two half-resolution lumas [h,w].

    change: the largest block RMS of b - a. noise: per-frame noise std, from the part of the difference that a
    per-block shift (least squares on the image gradient) does not explain, median over blocks. motion: the
    largest block's shift evidence in units of that noise (chi-square with 2 degrees of freedom under noise
    alone: about 2, rarely above 15).
    """
    d = b - a
    change = float(_block_means(d.square())[0].max().sqrt())
    if min(d.shape) < 3:
        return change, 0.0, 0.0
    s = (a + b) / 2
    gx, gy = (s[1:-1, 2:] - s[1:-1, :-2]) / 2, (s[2:, 1:-1] - s[:-2, 1:-1]) / 2
    d = d[1:-1, 1:-1]
    xx, yy, xy, xd, yd, dd = _block_means(gx * gx, gy * gy, gx * gy, gx * d, gy * d, d * d)
    det = (xx * yy - xy * xy).clamp(min=1e-12)
    explained = ((yy * xd * xd - 2 * xy * xd * yd + xx * yd * yd) / det).clamp(min=0).minimum(dd)
    residual = float((dd - explained).median()) / 2  # two frames' noise
    pixels = min(BLOCK, *d.shape) ** 2
    motion = float(explained.max()) * pixels / max(2 * residual, 2 * NOISE_FLOOR ** 2)
    return change, math.sqrt(max(residual, 0.0)), motion


@dataclass
class Evidence:
    """What the hold decisions read, per pair i (frames i, i+1): change, noise, motion (see pair_evidence), identity."""

    change: list[float] = field(default_factory=list)
    noise: list[float] = field(default_factory=list)
    motion: list[float] = field(default_factory=list)
    same: list[bool] = field(default_factory=list)
    cut: list[float] = field(default_factory=list)  # emavfi.cuts evidence


def measure(frames: Iterable[torch.Tensor]) -> Evidence:
    """Evidence of frames [C,H,W] given in order (one pass, two frames in memory)."""
    evidence = Evidence()
    previous: tuple[torch.Tensor, torch.Tensor] | None = None
    for frame in frames:
        y = luma(frame)
        if previous is not None:
            if previous[0].shape != frame.shape:
                raise ValueError(f"frames must all have one size; got {list(previous[0].shape)} then "
                                 f"{list(frame.shape)}")
            for values, value in zip((evidence.change, evidence.noise, evidence.motion), pair_evidence(previous[1], y)):
                values.append(value)
            evidence.same.append(torch.equal(previous[0], frame))
            evidence.cut.append(float(cuts.cut_scores(torch.stack([previous[0], frame]))[0]))
        previous = (frame, y)
    return evidence


def decide_held(evidence: Evidence, threshold: float | None = None,
                cut_threshold: float = cuts.DEFAULT_CUT_THRESHOLD) -> list[int]:
    """Indices of the held frames (each repeats the frame before it); never the first or the last frame.

    The last frame before a scene cut (emavfi.cuts at cut_threshold; 0 = none) is kept even when held, so the
    cut stays on its frame: the drawing before it is shown until then.
    """
    threshold = check_dedupe_threshold(threshold)
    pairs = len(evidence.same)
    before_cut = {i for i in cuts.decide_cuts(torch.tensor(evidence.cut), cut_threshold)}
    held = []
    for pair in range(pairs - 1):  # pair i decides frame i + 1; the last frame is kept as the end of the timeline
        if pair + 1 in before_cut:
            continue
        if evidence.same[pair]:
            held.append(pair + 1)
            continue
        if threshold == 0 or evidence.motion[pair] > MOTION_LIMIT:
            continue
        noise = max(min(evidence.noise[max(0, pair - HOLD_CONTEXT):pair + HOLD_CONTEXT + 1]), NOISE_FLOOR)
        if evidence.change[pair] <= threshold * math.sqrt(2) * noise:
            held.append(pair + 1)
    return held


def find_held(frames: Iterable[torch.Tensor], threshold: float | None = None,
              cut_threshold: float = cuts.DEFAULT_CUT_THRESHOLD) -> list[int]:
    """Indices of the held frames of a clip given as frames [C,H,W] in order (see the module's docstring)."""
    return decide_held(measure(frames), threshold, cut_threshold)


def kept_frames(n: int, held: Iterable[int]) -> list[int]:
    """The source frames that stay on the timeline (all but the held ones)."""
    dropped = set(held)
    return [i for i in range(n) if i not in dropped]


# ----------------------------------------------------------------------------------------------- timeline

def retime_request(request: Request) -> Request:
    """The retime that replaces a request once held frames are dropped: -m N = N x the source rate; --fps stays."""
    if request.timesteps is not None:
        raise ValueError("dedupe retimes the drawings to a frame rate: give a multiplier or a target fps, "
                         "not timesteps")
    if request.is_retime:
        return request
    fps = request.source_fps or Fraction(1)  # without a known rate, times count in source frames
    return Request(target_fps=fps * (request.multiplier or 2), source_fps=fps, method=request.method)


def _checked_retime(request: Request, times: Sequence[Fraction] | None) -> Request:
    """retime_request, after the checks that need no frames (so they fail before a clip is read)."""
    if request.is_retime and request.source_fps is None and times is None:
        raise ValueError("an fps retime needs the input frame rate: give the source fps (e.g. 24 or 24000/1001)")
    return retime_request(request)


def schedule_without_held(request: Request, n_frames: int, held: Sequence[int], arbitrary_t: bool,
                          times: Sequence[Fraction] | None = None) -> Schedule:
    """make_schedule over the kept frames at their true times (times: every source frame's; default i / fps).

    The plan numbers the kept frames 0..len(kept)-1 (see KeptFrames). Its output has the duration of the
    source; its out_fps is None where the source rate is unknown.
    """
    retime = _checked_retime(request, times)
    kept = kept_frames(n_frames, held)
    if times is None:
        step = 1 / retime.source_fps  # type: ignore[operator]
        times = [i * step for i in range(n_frames)]
    kept_times = [times[i] for i in kept]
    schedule = make_schedule(retime, len(kept), arbitrary_t, times=kept_times)
    return schedule if request.source_fps is not None or request.is_retime else replace(schedule, out_fps=None)


@dataclass(frozen=True)
class HeldTimeline:
    """A clip's timeline without its held frames: which were dropped, which stay, and the schedule over the rest."""

    held: list[int]  # source frames dropped as held
    kept: list[int]  # source frame index of each timeline frame
    schedule: Schedule  # numbers the kept frames 0..len(kept)-1


def held_timeline(frames: Iterable[torch.Tensor], n: int, request: Request, arbitrary_t: bool, *,
                  threshold: float | None, cut_threshold: float,
                  times: Sequence[Fraction] | None = None) -> HeldTimeline:
    """Held frames of the n source frames given in order as [C,H,W] -> kept frames -> their schedule.

    The one held-frame timeline of the command line, the nodes and the VapourSynth filter: a request dedupe
    cannot retime fails before any frame is read. times: every source frame's, for a variable frame rate.
    """
    _checked_retime(request, times)
    held = find_held(frames, threshold, cut_threshold)
    return HeldTimeline(held, kept_frames(n, held), schedule_without_held(request, n, held, arbitrary_t, times))


class KeptFrames:
    """A source seen without its held frames: frame j of this is source frame kept[j]; the rest is the source's."""

    def __init__(self, source: Any, held: Iterable[int]):
        self.source = source
        self.held = sorted(set(held))
        self.kept = kept_frames(source.count(), self.held)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.source, name)

    def count(self) -> int:
        """Frames on the timeline."""
        return len(self.kept)

    def index(self, j: int) -> int:
        """The source frame index of timeline frame j."""
        return self.kept[j]

    def frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Timeline frames from start on (held frames are read past, not returned)."""
        if start >= len(self.kept):
            return
        keep = set(self.kept)
        for index, frame in enumerate(self.source.frames(self.kept[start]), self.kept[start]):
            if index in keep:
                yield frame

    def describe(self) -> str:
        """The source's description and how many held frames were dropped."""
        return f"{self.source.describe()}, {len(self.held)} held frames dropped (dedupe)"


def unwrap(source: Any) -> Any:
    """The source behind a KeptFrames view (what sinks copy metadata and files from); any other source as it is."""
    return source.source if isinstance(source, KeptFrames) else source


def source_copies(sink: Any, source: Any) -> Any:
    """The sink, told source frame indices for exact copies (a KeptFrames view numbers only the kept frames)."""
    return _SourceCopies(sink, source) if isinstance(source, KeptFrames) else sink


class _SourceCopies:
    def __init__(self, sink: Any, source: KeptFrames):
        self.sink, self.source = sink, source

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Write output `index`; copy_of (a timeline frame) is passed on as its source frame."""
        self.sink.write(index, image, copy_of=None if copy_of is None else self.source.index(copy_of))
