"""Which frames to make and how: the one policy (`make_schedule`) shared by the CLI, the nodes and the library.

The plans themselves (timesteps, retimes, their bounds) are built in emavfi.plans, re-exported here; scene
cuts live in emavfi.cuts.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction

from .plans import (MAX_BISECTION_DEPTH, MAX_FPS, MAX_MULTIPLIER, MAX_OUTPUTS_PER_PAIR, MAX_PLAN_FRAMES,
                    SNAP_DENOMINATOR, Number, OutputFrame, Plan, _check_frame_count, _check_multiplier, _check_total,
                    _speed, apply_cuts, check_plan, check_timesteps, dyadic_depth, is_power_of_two, multiplier_plan,
                    multiplier_timesteps, pair_timesteps, parse_fps, parse_timesteps_exact, recursive_levels,
                    retime_plan, retime_plan_from_times, timesteps_plan)

__all__ = ["BISECTION_DEPTH", "MAX_BISECTION_DEPTH", "MAX_FPS", "MAX_MULTIPLIER", "MAX_OUTPUTS_PER_PAIR",
           "MAX_PLAN_FRAMES", "METHODS", "SNAP_DENOMINATOR", "UNTRAINED_T", "OutputFrame", "Plan", "Request",
           "Schedule", "apply_cuts", "check_plan", "check_timesteps", "dyadic_depth", "is_power_of_two",
           "make_schedule", "multiplier_plan", "multiplier_timesteps", "needed_nodes", "pair_timesteps", "parse_fps",
           "parse_timesteps_exact", "recursive_levels", "retime_plan", "retime_plan_from_times", "rows_per_pair",
           "timesteps_plan", "untrained_t_warning"]


# Models trained for t = 0.5 only reach other times by repeated halving. Depth 4 (times snap to 1/16 of a
# frame, at most 1/32 frame = 1.3 ms off at 24 fps) is the depth of the largest power-of-two multiplier
# (16), so a retime never costs more network passes per pair (at most 15) than `--multiplier 16` does.
BISECTION_DEPTH = 4
METHODS = ("auto", "direct", "bisection")
UNTRAINED_T = ("this model was trained for t = 0.5 only; timesteps other than 0.5 made directly look worse. "
               "Use a `_t` variant, or bisection with a power-of-two multiplier")


def untrained_t_warning(arbitrary_t: bool, timesteps: Iterable[Number]) -> str | None:
    """The warning for timesteps other than 0.5 made directly by a model trained for t = 0.5 only, else None.

    The one rule and text: make_schedule reports it with a plan, emavfi.inference warns with it (library calls).
    """
    return None if arbitrary_t or all(abs(t - Fraction(1, 2)) <= 1e-9 for t in timesteps) else UNTRAINED_T


@dataclass(frozen=True)
class Request:
    """What to make: a multiplier, explicit timesteps, or a retime (target_fps and/or speed).

    method: "auto" (direct for `_t` models, bisection for t = 0.5-only ones), "direct" (every t from one
    feature pass, any model) or "bisection" (repeated halving at t = 0.5; times must be k/2^d).
    """

    multiplier: int | None = None
    timesteps: tuple[Fraction, ...] | None = None
    target_fps: Fraction | None = None
    source_fps: Fraction | None = None
    speed: Fraction = Fraction(1)
    method: str = "auto"

    def __post_init__(self) -> None:
        modes = [name for name, value in (("multiplier", self.multiplier), ("timesteps", self.timesteps),
                                          ("target fps", self.target_fps)) if value is not None]
        if len(modes) > 1:
            raise ValueError(f"give one of multiplier, timesteps or a target fps; got {' and '.join(modes)}")
        if self.multiplier is not None:
            _check_multiplier(self.multiplier)
        if self.timesteps is not None:
            object.__setattr__(self, "timesteps", tuple(check_timesteps(self.timesteps)))
        for name in ("target_fps", "source_fps"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, parse_fps(value))
        speed = _speed(self.speed)
        if not Fraction(1, 1000) <= speed <= 1000:
            raise ValueError(f"speed must be from 0.001 to 1000 (0.5 = half-speed slow motion); got {self.speed}")
        object.__setattr__(self, "speed", speed)
        if speed != 1 and modes and modes != ["target fps"]:
            raise ValueError("speed goes with an fps retime, not with a multiplier or timesteps")
        if self.method not in METHODS:
            raise ValueError(f"method must be one of {', '.join(METHODS)}; got {self.method!r}")

    @property
    def is_retime(self) -> bool:
        """True when frames are placed by time (target fps and/or speed), not per pair."""
        return self.target_fps is not None or self.speed != 1

    @property
    def per_pair(self) -> tuple[Fraction, ...]:
        """The in-between times of every pair (multiplier 2 when nothing was asked); () for a retime."""
        if self.is_retime:
            return ()
        if self.timesteps is not None:
            return self.timesteps
        return tuple(multiplier_timesteps(self.multiplier or 2))

    @property
    def out_fps(self) -> Fraction | None:
        """Frame rate of the output, when the source rate is known."""
        if self.is_retime:
            return self.target_fps or self.source_fps
        return None if self.source_fps is None else self.source_fps * (len(self.per_pair) + 1)

    @property
    def keeps_duration(self) -> bool:
        """True when the output plays as long as the source (audio can be kept as it is)."""
        return self.speed == 1


@dataclass(frozen=True)
class Schedule:
    """The plan for a clip, how its in-between frames are made, and what the user should be told."""

    plan: Plan
    bisection_depth: int | None  # None: direct (all t from one feature pass)
    warning: str | None
    out_fps: Fraction | None

    def rows_per_pair(self) -> int:
        """Network rows the busiest pair of the whole plan needs (timesteps or bisection nodes): memory estimates."""
        return rows_per_pair(pair_timesteps(self.plan), self.bisection_depth)


def needed_nodes(ts: Iterable[Fraction]) -> list[Fraction]:
    """All bisection points needed to reach every t (t and its ancestors), shallowest first."""
    needed: set[Fraction] = set()
    stack = list(ts)
    while stack:
        t = stack.pop()
        if t in needed or t in (0, 1):
            continue
        needed.add(t)
        step = Fraction(1, t.denominator)
        stack += [t - step, t + step]
    return sorted(needed, key=lambda t: (t.denominator, t))


def rows_per_pair(work: Mapping[int, Sequence[Fraction]], bisection_depth: int | None) -> int:
    """Network rows the busiest pair of `work` (pair -> timesteps) needs: its timesteps (direct) or bisection nodes."""
    counts = [len(ts) if bisection_depth is None else len(needed_nodes(ts)) for ts in work.values()]
    return max(counts, default=1)


def _bisection_depth(timesteps: Iterable[Fraction], why: str) -> int:
    depths = [dyadic_depth(t) for t in timesteps]
    if any(d is None for d in depths):
        bad = next(t for t, d in zip(timesteps, depths) if d is None)
        raise ValueError(f"{why} makes only t = k/2^d (0.5, 0.25, 0.125 ...) by repeated halving; got t = {bad}. "
                         "Use a power-of-two multiplier, or a `_t` model")
    return max(depths, default=1)  # type: ignore[type-var]


def make_schedule(request: Request, n_frames: int, arbitrary_t: bool,
                  times: Sequence[Number] | None = None) -> Schedule:
    """The plan for n_frames source frames, its method (direct or bisection depth) and any warning.

    The one policy shared by the CLI, the nodes and the library: `_t` models make every t directly;
    t = 0.5-only models bisect (retimes snap to 1/2^BISECTION_DEPTH of a frame), unless "direct" is asked,
    which works with a warning. times: the source frames' real timestamps in seconds (a VFR video's pts);
    a retime follows them instead of a constant source fps.
    """
    _check_frame_count(n_frames)
    bisect = request.method == "bisection" or (request.method == "auto" and not arbitrary_t)
    if request.is_retime:
        return _retime_schedule(request, n_frames, times, BISECTION_DEPTH if bisect else None)
    ts = request.per_pair
    _check_total((n_frames - 1) * (len(ts) + 1) + 1)
    warning = None
    if bisect:
        if request.multiplier is not None:
            recursive_levels(request.multiplier)  # the clearer message for a multiplier such as 3
        why = "bisection mode" if request.method == "bisection" else "this model was trained for t = 0.5 only, so it"
        depth: int | None = _bisection_depth(ts, why)
    else:
        depth = None
        warning = untrained_t_warning(arbitrary_t, ts)
    plan = timesteps_plan(n_frames, ts) if request.timesteps else multiplier_plan(n_frames, request.multiplier or 2)
    return Schedule(plan, depth, warning, request.out_fps)


def _retime_schedule(request: Request, n_frames: int, times: Sequence[Number] | None,
                     depth: int | None) -> Schedule:
    """make_schedule for a retime, by `times` when given; depth: BISECTION_DEPTH, or None for direct."""
    if times is not None:
        if len(times) != n_frames:
            raise ValueError(f"got {len(times)} frame times for {n_frames} frames; give one time per frame")
        target = request.target_fps or request.source_fps
        if target is None:
            raise ValueError("a retime by frame times needs a target fps (e.g. 30 or 30000/1001)")
        plan = retime_plan_from_times(times, target, speed=request.speed, dyadic_depth=depth)
    elif request.source_fps is None:
        raise ValueError("an fps retime needs the input frame rate: give the source fps (e.g. 24 or 24000/1001)")
    else:
        plan = retime_plan(n_frames, request.source_fps, request.target_fps, speed=request.speed, dyadic_depth=depth)
    note = None if depth is None else (f"this model makes in-between frames by halving at t = 0.5, so retime "
                                       f"times snap to the nearest 1/{1 << depth} of a frame")
    if depth is not None and all(f.t == 0 or dyadic_depth(f.t) == 1 for f in plan):
        note = None  # nothing was moved: only copies and halves
    if depth is not None:
        depth = max((dyadic_depth(f.t) or 0 for f in plan), default=0) or None
    return Schedule(plan, depth, note, request.out_fps)
