"""Output plans: timesteps (exact fractions), frame rates, retimes (also by real timestamps), their bounds.

A *plan* is a list of `OutputFrame`s, one per output frame in output order. Every mode (multiplier,
explicit timesteps, recursive bisection, fps retime) produces the same representation, so `emavfi.runner`
runs them all the same way. Which plan a request gets is decided in emavfi.schedule. Pure functions.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

MAX_MULTIPLIER = 16
# Times closer than 1/SNAP_DENOMINATOR source frames to a source frame are that frame, copied bit-exactly.
SNAP_DENOMINATOR = 10**6
# Hard bounds on what a request may ask for, checked before a plan is built (a typo such as --fps 1e12
# must fail at once, not fill the memory).
MAX_OUTPUTS_PER_PAIR = 256
MAX_PLAN_FRAMES = 2_000_000
MAX_FPS = 1_000_000
# Deepest bisection (t = k/2^16) a plan or a runner accepts; the schedule uses at most BISECTION_DEPTH (4).
MAX_BISECTION_DEPTH = 16

Number = int | float | Fraction


@dataclass(frozen=True, order=True)
class OutputFrame:
    """One output frame at time `source + t` (in source frames).

    t == 0: a bit-exact copy of source frame `source`; 0 < t < 1: interpolated between frames `source`
    and `source + 1` at t.
    """

    source: int
    t: Fraction = Fraction(0)

    def __post_init__(self) -> None:
        if type(self.t) is not Fraction:  # noqa: E721 - exact type check keeps long plans fast
            if isinstance(self.t, bool) or not isinstance(self.t, (int, float, Fraction)):
                raise TypeError(f"OutputFrame.t must be a number in [0, 1); got {self.t!r}")
            object.__setattr__(self, "t", Fraction(self.t))
        if not 0 <= self.t.numerator < self.t.denominator:
            raise ValueError(f"OutputFrame.t must be in [0, 1); got {self.t}")
        if type(self.source) is not int or self.source < 0:  # noqa: E721 - bool is not an index
            raise ValueError(f"OutputFrame.source must be a frame index >= 0; got {self.source!r}")

    @property
    def is_copy(self) -> bool:
        """True when this output is a source frame copied as is."""
        return self.t == 0

    @property
    def position(self) -> Fraction:
        """Time of this frame in source frames (source index + t)."""
        return self.source + self.t


Plan = list[OutputFrame]


# ----------------------------------------------------------------------------------------------- timesteps

def _check_multiplier(multiplier: int) -> int:
    if isinstance(multiplier, bool) or not isinstance(multiplier, int) or not 2 <= multiplier <= MAX_MULTIPLIER:
        raise ValueError(f"multiplier must be a whole number from 2 to {MAX_MULTIPLIER}; got {multiplier!r}")
    return multiplier


def multiplier_timesteps(multiplier: int) -> list[Fraction]:
    """The in-between times i/m, i = 1..m-1, of an m-times frame-rate increase (m in 2..16)."""
    m = _check_multiplier(multiplier)
    return [Fraction(i, m) for i in range(1, m)]


def _fraction(text: str) -> Fraction:
    """'0.25' or '1/3' as an exact Fraction; ValueError/ZeroDivisionError when it is neither."""
    if "/" in text:
        num, den = text.split("/")
        return Fraction(int(num), int(den))
    return Fraction(text)


def _parse_one(item: str, text: str) -> Fraction:
    try:
        return _fraction(item)
    except (ValueError, ZeroDivisionError):
        raise ValueError(f"timesteps must be numbers such as 0.25 or 1/3; got {item!r} in {text!r}") from None


def parse_timesteps_exact(text: str) -> list[Fraction]:
    """Parse "0.25, 0.5, 0.75" or "1/3, 2/3" into exact fractions, strictly increasing, each in (0, 1)."""
    if not isinstance(text, str):
        raise TypeError(f"timesteps must be a string such as '0.25, 0.5'; got {type(text).__name__}")
    items = [s.strip() for s in re.split(r"[,;\s]+", text.strip()) if s.strip()]
    if not items:
        raise ValueError(f"no timesteps given in {text!r}; write e.g. '0.25, 0.5, 0.75'")
    values = [_parse_one(item, text) for item in items]
    try:
        return check_timesteps(values)
    except ValueError as exc:
        raise ValueError(f"{exc} in {text!r}") from None


def _as_fraction(value: Number, name: str) -> Fraction:
    if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
        raise TypeError(f"{name} must be a number; got {value!r}")
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{name} must be finite; got {value}")
    return Fraction(value)


def is_power_of_two(n: int) -> bool:
    """True for 1, 2, 4, 8, ..."""
    return n > 0 and n & (n - 1) == 0


def recursive_levels(multiplier: int) -> int:
    """Bisection depth (log2) for recursive mode; the multiplier must be 2, 4, 8 or 16."""
    m = _check_multiplier(multiplier)
    if not is_power_of_two(m):
        raise ValueError(f"recursive (bisection) mode needs a power-of-two multiplier (2, 4, 8, 16); got {m}. "
                         "Use a `_t` model for other multipliers")
    return m.bit_length() - 1


def dyadic_depth(t: Fraction) -> int | None:
    """Bisection depth at which t = k/2^d is produced (0 for 0 and 1), or None if t is not dyadic."""
    t = Fraction(t)
    if not is_power_of_two(t.denominator):
        return None
    return t.denominator.bit_length() - 1


def _check_depth(depth: int) -> int:
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= MAX_BISECTION_DEPTH:
        raise ValueError(f"depth must be a whole number from 0 to {MAX_BISECTION_DEPTH}; got {depth!r}")
    return depth


# ----------------------------------------------------------------------------------------------- plans

def _check_frame_count(n_frames: int) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"need at least one input frame; got n_frames={n_frames!r}")
    return n_frames


def timesteps_plan(n_frames: int, timesteps: Sequence[Number]) -> Plan:
    """Each source frame, followed (except the last) by frames at the given t in (0, 1) towards the next."""
    _check_frame_count(n_frames)
    ts = check_timesteps(timesteps)
    plan = [frame for i in range(n_frames - 1) for frame in [OutputFrame(i)] + [OutputFrame(i, t) for t in ts]]
    return plan + [OutputFrame(n_frames - 1)]


def multiplier_plan(n_frames: int, multiplier: int) -> Plan:
    """(n - 1) * m + 1 frames: every source frame and m - 1 evenly spaced frames between each pair."""
    return timesteps_plan(n_frames, multiplier_timesteps(multiplier))


def parse_fps(value: Number | str) -> Fraction:
    """Exact frame rate: NTSC rates given as 23.976, 29.97, 59.94 ... become 24000/1001 etc.; "30000/1001" too."""
    if isinstance(value, str):
        text = value.strip()
        try:
            fps = _fraction(text)
        except (ValueError, ZeroDivisionError):
            raise ValueError(f"frame rate must be a number such as 24, 29.97 or 30000/1001; got {value!r}") from None
        if "/" in text:
            return _positive_fps(fps, value)
    else:
        fps = _as_fraction(value, "frame rate")
        # repr gives the shortest decimal that round-trips, so 29.97 is 2997/100 and not a binary fraction.
        fps = Fraction(repr(value)) if isinstance(value, float) else fps
    return standard_rate(_positive_fps(fps, value))


def standard_rate(fps: Fraction) -> Fraction:
    """The one rounding rule for frame rates given as decimals: within 1/100 of an NTSC rate m x 1000/1001 it is
    that rate (23.976 and 23.98 both mean 24000/1001); anything else (25, a true 23.9) is left as it is."""
    if fps.denominator != 1:
        ntsc = Fraction(round(fps * Fraction(1001, 1000)) * 1000, 1001)
        if ntsc > 0 and abs(fps - ntsc) < Fraction(1, 100):  # never 0: a rate below 1/100 stays as given
            return ntsc
    return fps


def _positive_fps(fps: Fraction, value: object) -> Fraction:
    shown = repr(value) if isinstance(value, str) else str(value)  # as typed: '1/1000', not Fraction(1, 1000)
    if fps <= 0:
        raise ValueError(f"frame rate must be positive; got {shown}")
    if fps > MAX_FPS or fps.denominator > MAX_FPS:
        raise ValueError(f"frame rate must be at most {MAX_FPS:,} with a denominator of at most {MAX_FPS:,}; "
                         f"got {shown}")
    return fps


def retime_plan(n_frames: int, source_fps: Number | str, target_fps: Number | str | None = None, *,
                speed: Number | str = 1, dyadic_depth: int | None = None) -> Plan:
    """Frames at target_fps covering n_frames source frames at source_fps, played at `speed`.

    Output frame k shows source time k * speed / target_fps; frames are made for every k whose time is
    <= the time of the last source frame (so the first and, when it falls on the grid, the last source
    frame are included). Arithmetic is exact, so long clips do not drift. speed 0.5 = half-speed slow
    motion; target_fps None = source_fps. dyadic_depth: snap t to multiples of 1/2^depth (models trained
    for t = 0.5 only, run by bisection).
    """
    _check_frame_count(n_frames)
    src = parse_fps(source_fps)
    dst = src if target_fps is None else parse_fps(target_fps)
    speed_value = _speed(speed)
    step = speed_value * src / dst  # source frames advanced per output frame
    _check_per_pair(1 / step, f"{float(dst):.6g} fps from {float(src):.6g} fps at speed {float(speed_value):g}")
    count = (n_frames - 1) * step.denominator // step.numerator + 1
    _check_total(count)
    # In units of 1/step.denominator source frames, frame i is at i * step.denominator: all integers.
    return _sweep(range(0, n_frames * step.denominator, step.denominator), step.numerator, count, dyadic_depth)


def retime_plan_from_times(times: Sequence[Number], target_fps: Number | str, *, speed: Number | str = 1,
                           dyadic_depth: int | None = None) -> Plan:
    """Frames at target_fps over source frames shown at `times` (seconds, increasing; e.g. a VFR video's pts).

    Output frame k shows source time times[0] + k * speed / target_fps, for every k whose time is <= times[-1],
    at t = its place in the gap between the source frames around it, snapped as in `retime_plan` (which this
    equals for times[i] = i / fps). Exact, in one pass: O(len(times) + outputs), bounded before it is built.
    """
    if len(times) == 0:
        raise ValueError("need at least one source frame time; got an empty `times`")
    exact = [t if type(t) is Fraction else _as_fraction(t, f"times[{i}]")  # noqa: E721 - fast path
             for i, t in enumerate(times)]
    dst, speed_value = parse_fps(target_fps), _speed(speed)
    # Integer ticks: a common denominator of all times, refined so one output frame is a whole number of ticks.
    per_second = math.lcm(*(t.denominator for t in exact))
    step = speed_value * per_second / dst
    per_second *= step.denominator
    ticks = [t.numerator * (per_second // t.denominator) for t in exact]
    bad = next((i for i in range(1, len(ticks)) if ticks[i] <= ticks[i - 1]), None)
    if bad is not None:
        raise ValueError(f"times must be strictly increasing; times[{bad}] = {_show(exact[bad])} is not after "
                         f"times[{bad - 1}] = {_show(exact[bad - 1])}")
    gap, i = max(((b - a, i) for i, (a, b) in enumerate(zip(ticks, ticks[1:]))), default=(0, 0))
    _check_per_pair(Fraction(gap, step.numerator), f"{float(dst):.6g} fps at speed {float(speed_value):g} over "
                    f"the {float(Fraction(gap, per_second)):.6g} s gap after times[{i}]")
    count = (ticks[-1] - ticks[0]) // step.numerator + 1
    _check_total(count)
    return _sweep(ticks, step.numerator, count, dyadic_depth)


def _speed(value: Number | str) -> Fraction:
    speed = parse_fps(value) if isinstance(value, str) else _as_fraction(value, "speed")
    if speed <= 0:
        raise ValueError(f"speed must be positive (0.5 = half-speed slow motion); got {value!r}")
    return speed


def _check_per_pair(per_pair: Fraction, what: str) -> None:
    if per_pair > MAX_OUTPUTS_PER_PAIR:
        raise ValueError(f"{what} makes {float(per_pair):.3g} frames per source frame; at most "
                         f"{MAX_OUTPUTS_PER_PAIR} are allowed (check the frame rates and speed)")


def _sweep(ticks: Sequence[int], step: int, count: int, depth: int | None) -> Plan:
    """`count` frames at ticks[0] + k * step over source frames at increasing integer `ticks`, in one pass."""
    steps = None if depth is None else 1 << _check_depth(depth)
    plan: Plan = []
    last, i = len(ticks) - 1, 0
    for at in range(ticks[0], ticks[0] + count * step, step):
        while i < last and ticks[i + 1] <= at:
            i += 1
        rest, gap = at - ticks[i], (ticks[i + 1] - ticks[i] if i < last else 1)
        if steps is not None:  # nearest multiple of 1/steps, halves up: floor(rest / gap * steps + 1/2)
            rest, gap = (2 * rest * steps + gap) // (2 * gap), steps
        if rest * SNAP_DENOMINATOR < gap:
            plan.append(OutputFrame(i))
        elif (gap - rest) * SNAP_DENOMINATOR < gap:
            plan.append(OutputFrame(i + 1))
        else:
            plan.append(OutputFrame(i, Fraction(rest, gap)))
    return plan


def check_timesteps(timesteps: Sequence[Number]) -> list[Fraction]:
    """Timesteps as exact fractions, each in (0, 1), strictly increasing, at most MAX_OUTPUTS_PER_PAIR - 1."""
    ts = [_as_fraction(t, "timestep") for t in timesteps]
    if not ts:
        raise ValueError("no timesteps given; write e.g. '0.25, 0.5, 0.75'")
    if len(ts) >= MAX_OUTPUTS_PER_PAIR:
        raise ValueError(f"at most {MAX_OUTPUTS_PER_PAIR - 1} timesteps per pair; got {len(ts)}")
    for i, t in enumerate(ts):
        if not 0 < t < 1:
            raise ValueError(f"timesteps must be in (0, 1); got {_show(t)}")
        if i and t <= ts[i - 1]:
            raise ValueError(f"timesteps must be strictly increasing; got {_show(t)} after {_show(ts[i - 1])}")
    return ts


def _show(t: Fraction) -> str:
    """0.25 as "0.25", 1/3 as "1/3": a decimal only where it is exact."""
    if t.denominator == 1:
        return str(t.numerator)
    return repr(float(t)) if Fraction(repr(float(t))) == t else str(t)


def _check_total(count: int) -> None:
    if count > MAX_PLAN_FRAMES:
        raise ValueError(f"this would make {count:,} output frames; at most {MAX_PLAN_FRAMES:,} per run "
                         "(split the shot, or check the settings)")


def apply_cuts(plan: Iterable[OutputFrame], cuts: Iterable[int]) -> Plan:
    """Replace frames inside cut pairs by a copy of the nearer source frame (t <= 0.5: the earlier one)."""
    cut_set = set(cuts)
    return [frame if frame.is_copy or frame.source not in cut_set
            else OutputFrame(frame.source + (1 if frame.t > Fraction(1, 2) else 0))
            for frame in plan]


def pair_timesteps(plan: Iterable[OutputFrame]) -> dict[int, tuple[Fraction, ...]]:
    """For each pair index that needs interpolation, its distinct t values in increasing order."""
    pairs: dict[int, set[Fraction]] = {}
    for frame in plan:
        if not frame.is_copy:
            pairs.setdefault(frame.source, set()).add(frame.t)
    return {pair: tuple(sorted(ts)) for pair, ts in sorted(pairs.items())}


def check_plan(plan: Sequence[OutputFrame], n_frames: int) -> None:
    """Raise ValueError if a plan refers to frames that an n_frames clip does not have."""
    for index, frame in enumerate(plan):
        if not isinstance(frame, OutputFrame):
            raise TypeError(f"plan entries must be OutputFrame; entry {index} is {type(frame).__name__}")
        last = frame.source + (0 if frame.is_copy else 1)
        if last >= n_frames:
            raise ValueError(f"plan entry {index} ({frame}) needs source frame {last}, but the clip has "
                             f"only {n_frames} frame(s)")
