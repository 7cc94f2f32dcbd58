"""The one engine: a schedule, source frames, a runner, a sink and a cut policy -> written output frames.

Every front end makes its frames with `run`: files (emavfi.render: folders, videos, `--frames` tasks, resume,
damaged frames), tensors (emavfi.clips.interpolate_clip and the ComfyUI nodes) and Ray workers (through
render). It knows no paths: frames come from a `Frames` window, outputs go to a `Sink`, and the network is
behind a `BatchRunner` (emavfi.runner.Runner).

Outputs are grouped by device batch on the global pair grid (`BatchRunner.batch_of`), and a batch is made
whole (all its pairs and timesteps, even where only some of its outputs are wanted), while each scene-cut
decision reads a fixed window of cuts.CUT_CONTEXT pairs (`CutFinder`): a frame's arithmetic is therefore the
same however a shot is split into tasks or workers.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Protocol

import torch

from . import cuts as cut_rules
from .protect import Box, RegionPolicy, describe_overlays, hold
from .runner import Emit
from .schedule import OutputFrame, Schedule, apply_cuts

ProgressFn = Callable[[int, int], None]
CancelFn = Callable[[], None]


# ----------------------------------------------------------------------------------------------- what it drives

class Frames(Protocol):
    """Source frames read as windows of consecutive frames (a decoded file or a tensor)."""

    count: int  # source frames
    size: tuple[int, int]  # (height, width)
    damaged: Mapping[int, str]  # unreadable frames (index -> message); they stand in as zeros in windows

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """Frames lo..hi: [hi - lo + 1, C, H, W] float (CPU), RGB first."""
        ...


class Sink(Protocol):
    """Where output frames go (emavfi.media sinks, or a tensor)."""

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Global output index, its frame [C,H,W], and copy_of: the source frame it copies exactly, if any."""
        ...


class CutPolicy(Protocol):
    """Which pairs of a device batch are scene cuts (their in-between frames repeat the nearer source frame)."""

    def cuts(self, frames: Frames, first_pair: int, end_pair: int) -> list[int]:
        """Global pair indices in [first_pair, end_pair) that are cuts."""
        ...


class BatchRunner(Protocol):
    """The device side (emavfi.runner.Runner): one device batch at a time, out-of-memory back-off, HDR."""

    def resolve_chunk(self, height: int, width: int, rows_per_pair: int = 1) -> int:
        """Pairs per device batch, picked from free memory first when automatic."""
        ...

    def batch_of(self, pair: int) -> range:
        """The global pairs of the device batch that holds global pair `pair`."""
        ...

    def run(self, frames: torch.Tensor, work: Mapping[int, Sequence[Fraction]], *, bisection_depth: int | None,
            emit: Emit, pair_offset: int = 0, cancel: CancelFn | None = None) -> None:
        """Make every (local pair, t) of work from frames; emit(pair, t, frame) as each is made."""
        ...


@dataclass
class Report:
    """What a run did: frames written and skipped (already complete), the scene cuts and overlays it found."""

    written: int = 0
    skipped: int = 0
    cuts: list[int] = field(default_factory=list)  # pair indices i: a cut between source frames i and i+1
    damaged: dict[int, str] = field(default_factory=dict)  # unreadable source frames (--on-error skip)
    missing: int = 0  # requested outputs not written because they need a damaged source frame
    # detected overlays (emavfi.protect.OverlayShare): each source frame decided, by its number (emavfi.render:
    # as files name it) -> the bounding box of its overlays or None; None when overlays are not detected
    overlays: dict[int, Box | None] | None = None

    @property
    def protected(self) -> str:
        """What detected overlays did, for a run summary ("" when they were not detected)."""
        return "" if self.overlays is None else describe_overlays(self.overlays)


# ----------------------------------------------------------------------------------------------- the loop

def run(schedule: Schedule, frames: Frames, runner: BatchRunner, sink: Sink, cut_policy: CutPolicy, *,
        todo: Iterable[int] | None = None, progress: ProgressFn | None = None,
        cancel: CancelFn | None = None, protect: RegionPolicy | None = None) -> Report:
    """Make the outputs `todo` (global indices; default all) of `schedule` and write each to `sink` once.

    progress(done, len(todo)) after every written frame; cancel() before every copy and every device call
    (it cancels by raising). Outputs needing a damaged source frame are left out (Report.missing). protect:
    held regions (emavfi.protect): in-between frames show the nearest source frame where its masks are set.
    """
    plan, n = schedule.plan, frames.count
    wanted = set(range(len(plan)) if todo is None else todo)
    report = Report()
    runner.resolve_chunk(*frames.size, schedule.rows_per_pair())  # of the whole shot: every task sizes it alike

    def write(index: int, image: torch.Tensor | None, copy_of: int | None) -> None:
        sink.write(index, image, copy_of=copy_of)
        report.written += 1
        if progress is not None:
            progress(report.written, len(wanted))

    for pairs, members in _batches(plan, n, wanted, runner):
        window = frames.get(pairs.start, min(pairs.stop, n - 1))
        found = cut_policy.cuts(frames, pairs.start, pairs.stop)
        held = None if protect is None else protect.masks(frames, pairs.start, min(pairs.stop, n - 1))
        report.cuts.extend(found)
        outputs = [(k, frame) for k, frame in zip(members, apply_cuts([plan[k] for k in members], found))
                   if not _needs_damaged(frame, frames.damaged, report)]
        _make_batch(runner, schedule.bisection_depth, window, pairs.start, outputs, wanted, write, cancel, held)
    flush = getattr(runner, "flush", None)  # frames still being copied from a GPU while the next batch ran
    if flush is not None:
        flush()
    report.missing = len(wanted) - report.written
    return report


def pair_of(frame: OutputFrame, n: int) -> int:
    """The pair an output frame belongs to (a copy of the last source frame belongs to the last pair)."""
    return min(frame.source, max(n - 2, 0))


def _batches(plan: Sequence[OutputFrame], n: int, wanted: set[int],
             runner: BatchRunner) -> Iterator[tuple[range, list[int]]]:
    """(global pairs of a device batch, every output index made in it) for the batches `wanted` needs, in order."""
    needed = {runner.batch_of(pair_of(plan[k], n)) for k in wanted}
    members: dict[range, list[int]] = {}
    for k, frame in enumerate(plan):
        pairs = runner.batch_of(pair_of(frame, n))
        if pairs in needed:
            members.setdefault(pairs, []).append(k)
    last = max(n - 1, 1)  # pairs of the shot (one "pair" for a single frame)
    for pairs, ks in sorted(members.items(), key=lambda item: item[0].start):
        yield range(pairs.start, min(pairs.stop, last)), ks


def _needs_damaged(frame: OutputFrame, damaged: Mapping[int, str], report: Report) -> bool:
    """True (and noted in the report) when an output needs a source frame that could not be read."""
    needs = [frame.source] if frame.is_copy else [frame.source, frame.source + 1]
    bad = [i for i in needs if i in damaged]
    for i in bad:
        report.damaged.setdefault(i, damaged[i])
    return bool(bad)


def _make_batch(runner: BatchRunner, depth: int | None, window: torch.Tensor, lo: int,
                outputs: list[tuple[int, OutputFrame]], wanted: set[int],
                write: Callable[[int, torch.Tensor | None, int | None], None], cancel: CancelFn | None,
                held: torch.Tensor | None = None) -> None:
    """Copies are written from the window; the rest go through the runner as one batch of pairs (held: the
    window's protect masks, applied to each in-between frame as it is emitted)."""
    index_of: dict[tuple[int, Fraction], list[int]] = {}
    work: dict[int, set[Fraction]] = {}
    for k, frame in outputs:
        if frame.is_copy:
            if k in wanted:
                if cancel is not None:
                    cancel()
                write(k, window[frame.source - lo], frame.source)
            continue
        index_of.setdefault((frame.source - lo, frame.t), []).append(k)
        work.setdefault(frame.source - lo, set()).add(frame.t)

    def emit(pair: int, t: Fraction, image: torch.Tensor) -> None:
        if held is not None:
            image = hold(image, window, held, pair, t)
        for k in index_of.get((pair, t), []):
            if k in wanted:
                write(k, image, None)

    if work:
        runner.run(window, {p: tuple(sorted(ts)) for p, ts in sorted(work.items())}, bisection_depth=depth,
                   pair_offset=lo, emit=emit, cancel=cancel)


# ----------------------------------------------------------------------------------------------- cut policies

class CutFinder:
    """Scene cuts detected as the run goes: each pair's evidence computed once, each decision from its fixed
    window (emavfi.cuts), so a pair is decided the same in any batch, task or worker."""

    def __init__(self, n: int, threshold: float):
        self.n, self.threshold = n, cut_rules.check_threshold(threshold)
        self._scores: dict[int, torch.Tensor] = {}

    def cuts(self, frames: Frames, first_pair: int, end_pair: int) -> list[int]:
        """Global pair indices in [first_pair, end_pair) that are cuts (decided from CUT_CONTEXT pairs each side)."""
        if self.threshold == 0 or self.n < 2:
            return []
        context = cut_rules.CUT_CONTEXT
        lo, hi = max(0, first_pair - context), min(self.n - 2, end_pair - 1 + context)
        missing = [p for p in range(lo, hi + 1) if p not in self._scores]
        if missing:
            thumbnails = getattr(frames, "thumbnails", None)  # a store that made each frame's thumbnail once
            scores = cut_rules.cut_scores(frames.get(missing[0], missing[-1] + 1)) if thumbnails is None else \
                cut_rules.thumbnail_scores(thumbnails(missing[0], missing[-1] + 1))
            for offset, score in enumerate(scores):
                pair = missing[0] + offset
                # a damaged frame stands in as black: its pairs are left out, not counted as cuts
                damaged = pair in frames.damaged or pair + 1 in frames.damaged
                self._scores.setdefault(pair, torch.zeros_like(score) if damaged else score)
        for old in [p for p in self._scores if p < lo]:
            del self._scores[old]
        window = torch.stack([self._scores[p] for p in range(lo, hi + 1)])
        return [lo + i for i in cut_rules.decide_cuts(window, self.threshold) if first_pair <= lo + i < end_pair]


class GivenCuts:
    """Scene cuts given up front (global pair indices), e.g. by a caller that decided them itself."""

    def __init__(self, pairs: Iterable[int]):
        self.pairs = sorted(set(pairs))

    def cuts(self, frames: Frames, first_pair: int, end_pair: int) -> list[int]:
        """The given cuts in [first_pair, end_pair)."""
        return [p for p in self.pairs if first_pair <= p < end_pair]
