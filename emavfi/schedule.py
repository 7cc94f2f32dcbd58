"""Which frames to make: timesteps (exact fractions), output plans, retiming and scene cuts. Pure functions.

A *plan* is a list of `OutputFrame`s, one per output frame in output order. Every mode (multiplier,
explicit timesteps, recursive bisection, fps retime) produces the same representation, so `emavfi.clip`
runs them all the same way.
"""
from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from fractions import Fraction

import torch
import torch.nn.functional as F

MAX_MULTIPLIER = 16
# Times closer than 1/SNAP_DENOMINATOR source frames to a source frame are that frame, copied bit-exactly.
SNAP_DENOMINATOR = 10**6
# Cut score: how far, in 0..1 units, the luma + chroma value distributions moved between two frames.
DEFAULT_CUT_THRESHOLD = 0.06
CUT_ANALYSIS_SIZE = 64

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
    values: list[Fraction] = []
    for index, item in enumerate(items):
        value = _parse_one(item, text)
        if not 0 < value < 1:
            raise ValueError(f"timesteps must be in (0, 1); got {item} in {text!r}")
        if values and value <= values[-1]:
            raise ValueError(f"timesteps must be strictly increasing; got {item} after {items[index - 1]} in {text!r}")
        values.append(value)
    return values


def parse_timesteps(text: str) -> list[float]:
    """Parse "0.25, 0.5, 0.75" (fractions like "1/3" too) into floats, strictly increasing, each in (0, 1)."""
    return [float(v) for v in parse_timesteps_exact(text)]


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


def nearest_dyadic(t: Number, depth: int) -> Fraction:
    """The multiple of 1/2^depth nearest to t (halves round up), for retiming with t = 0.5-only models."""
    if isinstance(depth, bool) or not isinstance(depth, int) or not 0 <= depth <= 16:
        raise ValueError(f"depth must be a whole number from 0 to 16; got {depth!r}")
    value = _as_fraction(t, "t")
    steps = 1 << depth
    return Fraction(math.floor(value * steps + Fraction(1, 2)), steps)


# ----------------------------------------------------------------------------------------------- plans

def _check_frame_count(n_frames: int) -> int:
    if isinstance(n_frames, bool) or not isinstance(n_frames, int) or n_frames < 1:
        raise ValueError(f"need at least one input frame; got n_frames={n_frames!r}")
    return n_frames


def timesteps_plan(n_frames: int, timesteps: Sequence[Number]) -> Plan:
    """Each source frame, followed (except the last) by frames at the given t in (0, 1) towards the next."""
    _check_frame_count(n_frames)
    ts = [_as_fraction(t, "timestep") for t in timesteps]
    for i, t in enumerate(ts):
        if not 0 < t < 1:
            raise ValueError(f"timesteps must be in (0, 1); got {float(t)}")
        if i and t <= ts[i - 1]:
            raise ValueError(f"timesteps must be strictly increasing; got {float(t)} after {float(ts[i - 1])}")
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
        if isinstance(value, bool) or not isinstance(value, (int, float, Fraction)):
            raise TypeError(f"frame rate must be a number; got {value!r}")
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"frame rate must be finite; got {value}")
        # repr gives the shortest decimal that round-trips, so 29.97 is 2997/100 and not a binary fraction.
        fps = Fraction(repr(value)) if isinstance(value, float) else Fraction(value)
    fps = _positive_fps(fps, value)
    if fps.denominator != 1:
        ntsc = Fraction(round(fps * Fraction(1001, 1000)) * 1000, 1001)
        # 23.976 and 23.98 both mean 24000/1001; a true 23.9 or 29.9 is left alone.
        if abs(fps - ntsc) < Fraction(1, 100):
            return ntsc
    return fps


def _positive_fps(fps: Fraction, value: object) -> Fraction:
    if fps <= 0:
        raise ValueError(f"frame rate must be positive; got {value!r}")
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
    speed_value = parse_fps(speed) if isinstance(speed, str) else _as_fraction(speed, "speed")
    if speed_value <= 0:
        raise ValueError(f"speed must be positive (0.5 = half-speed slow motion); got {speed!r}")
    step = speed_value * src / dst  # source frames advanced per output frame
    num, den = step.numerator, step.denominator
    count = (n_frames - 1) * den // num + 1
    plan: Plan = []
    for k in range(count):
        source, rest = divmod(k * num, den)  # integer arithmetic: exact and fast on long clips
        if dyadic_depth is not None:
            t = nearest_dyadic(Fraction(rest, den), dyadic_depth)
            rest, den_k = t.numerator, t.denominator
        else:
            den_k = den
        if rest * SNAP_DENOMINATOR < den_k:
            rest = 0
        elif (den_k - rest) * SNAP_DENOMINATOR < den_k:
            source, rest = source + 1, 0
        plan.append(OutputFrame(source, Fraction(rest, den_k)))
    return plan


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


# ----------------------------------------------------------------------------------------------- scene cuts

def _analysis_frames(frames: torch.Tensor) -> torch.Tensor:
    """[N,3,h,w] luma + centred chroma in 0..1 of frames shrunk to about CUT_ANALYSIS_SIZE px."""
    rgb = frames[:, :3].float()
    h, w = rgb.shape[-2:]
    shrink = CUT_ANALYSIS_SIZE / max(h, w)
    if shrink < 1:
        size = (max(1, round(h * shrink)), max(1, round(w * shrink)))
        rgb = F.interpolate(rgb, size=size, mode="area")
    rgb = rgb.clamp(0, 1)  # HDR highlights count as white, the same in every frame
    r, g, b = rgb.unbind(1)
    luma = 0.299 * r + 0.587 * g + 0.114 * b
    return torch.stack([luma, 0.5 + 0.5 * (b - luma) / 0.886, 0.5 + 0.5 * (r - luma) / 0.701], 1)


def cut_scores(frames: torch.Tensor, batch: int = 64) -> torch.Tensor:
    """[N-1] float scores in 0..3 for each consecutive pair of frames [N,C,H,W] (RGB first, 0..1 or HDR).

    The score is the sum over luma and two chroma channels of the 1-D earth mover's distance between the
    two frames' value distributions (mean |sorted(a) - sorted(b)|) on ~64 px thumbnails. It ignores where
    things are, so motion alone scores ~0 while a change of scene moves the distributions.
    """
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] < 3:
        raise ValueError(f"frames must be a tensor [N,C>=3,H,W]; got "
                         f"{list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__}")
    n = frames.shape[0]
    if n < 2:
        return torch.zeros(0)
    sorted_values = []
    for start in range(0, n, batch):
        thumbs = _analysis_frames(frames[start:start + batch])
        sorted_values.append(thumbs.flatten(2).sort(dim=2).values)
    values = torch.cat(sorted_values)  # [N,3,h*w] thumbnails only, small
    return (values[1:] - values[:-1]).abs().mean(dim=2).sum(dim=1)


def detect_cuts(frames: torch.Tensor, threshold: float = DEFAULT_CUT_THRESHOLD) -> list[int]:
    """Pair indices i (frames i, i+1) whose cut score exceeds threshold; threshold <= 0 disables detection."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold):
        raise ValueError(f"cut threshold must be a number (0 disables); got {threshold!r}")
    if threshold <= 0:
        return []
    scores = cut_scores(frames)
    return [int(i) for i in torch.nonzero(scores > threshold).flatten().tolist()]
