"""emavfi.schedule: exact timesteps, plans, fps retiming and scene-cut detection."""
from __future__ import annotations

import math
import random
import time
from fractions import Fraction
from pathlib import Path

import pytest

from emavfi import schedule
from emavfi.schedule import OutputFrame


pytestmark = pytest.mark.usefixtures("one_thread")


# ----------------------------------------------------------------------------------------------- timesteps

@pytest.mark.parametrize("m", [2, 3, 7, 16])
def test_multiplier_timesteps_are_exact_and_even(m):
    ts = schedule.multiplier_timesteps(m)
    assert len(ts) == m - 1
    assert all(isinstance(t, Fraction) for t in ts)
    gaps = [b - a for a, b in zip([Fraction(0)] + ts, ts + [Fraction(1)])]
    assert set(gaps) == {Fraction(1, m)}


@pytest.mark.parametrize("bad", [1, 17, 0, -2, 2.0, True, "4"])
def test_multiplier_out_of_range_is_rejected_with_the_value(bad):
    with pytest.raises(ValueError, match="2 to 16"):
        schedule.multiplier_timesteps(bad)


def test_parse_timesteps_decimals_and_fractions():
    assert schedule.parse_timesteps_exact("0.25, 0.5,0.75") == [Fraction(1, 4), Fraction(1, 2), Fraction(3, 4)]
    assert schedule.parse_timesteps_exact("1/3 2/3") == [Fraction(1, 3), Fraction(2, 3)]
    assert schedule.parse_timesteps_exact("1/3, 0.5") == [Fraction(1, 3), Fraction(1, 2)]


@pytest.mark.parametrize("text, fragment", [
    ("0.5, 1.5", "got 1.5 in '0.5, 1.5'"),
    ("0, 0.5", "got 0 in"),
    ("0.5, 0.25", "increasing; got 0.25 after 0.5"),
    ("0.5, 0.5", "increasing"),
    ("0.5, abc", "'abc'"),
    ("1/0", "'1/0'"),
    ("  ", "no timesteps"),
])
def test_parse_timesteps_errors_name_the_bad_item(text, fragment):
    with pytest.raises(ValueError) as info:
        schedule.parse_timesteps_exact(text)
    assert fragment in str(info.value)


def test_recursive_levels_power_of_two_only():
    assert [schedule.recursive_levels(m) for m in (2, 4, 8, 16)] == [1, 2, 3, 4]
    with pytest.raises(ValueError, match="power-of-two.*got 6"):
        schedule.recursive_levels(6)


def test_retimes_for_bisection_snap_to_the_nearest_dyadic_time():
    # frames at 0.3 s steps over frames 1 s apart: 0.3 -> 1/4, 0.6 -> 1/2, 0.9 -> frame 1, 1.2 -> 1 + 1/4 ...
    plan = schedule.retime_plan_from_times([0, 1, 2], Fraction(10, 3), dyadic_depth=2)
    assert [f.position for f in plan] == [0, Fraction(1, 4), Fraction(1, 2), 1, Fraction(5, 4), Fraction(3, 2),
                                         Fraction(7, 4)]
    halves = schedule.retime_plan_from_times([0, 1], Fraction(8, 3), dyadic_depth=2)  # 3/8 lies halfway
    assert [f.position for f in halves] == [0, Fraction(1, 2), Fraction(3, 4)]  # halves round up
    exact = schedule.retime_plan(40, 24, 60)
    snapped = schedule.retime_plan(40, 24, 60, dyadic_depth=3)
    for frame, near in zip(exact, snapped):
        assert abs(near.position - frame.position) <= Fraction(1, 16)
        assert schedule.dyadic_depth(near.t) <= 3


# ----------------------------------------------------------------------------------------------- plans

def test_multiplier_plan_layout():
    plan = schedule.multiplier_plan(4, 3)
    assert len(plan) == (4 - 1) * 3 + 1
    assert [f.position for f in plan] == [Fraction(k, 3) for k in range(10)]
    assert [f.source for f in plan if f.is_copy] == [0, 1, 2, 3]
    assert schedule.multiplier_plan(1, 4) == [OutputFrame(0)]
    assert schedule.make_schedule(schedule.Request(multiplier=3), 4, arbitrary_t=True).plan == plan


def test_timesteps_plan_validates_and_orders():
    plan = schedule.timesteps_plan(3, [0.25, Fraction(1, 3)])
    assert [(f.source, f.t) for f in plan] == [
        (0, 0), (0, Fraction(1, 4)), (0, Fraction(1, 3)), (1, 0), (1, Fraction(1, 4)), (1, Fraction(1, 3)), (2, 0)]
    with pytest.raises(ValueError, match="increasing"):
        schedule.timesteps_plan(3, [0.5, 0.25])
    with pytest.raises(ValueError, match=r"\(0, 1\)"):
        schedule.timesteps_plan(3, [1.0])


def test_output_frame_validation():
    with pytest.raises(ValueError):
        OutputFrame(0, 1)
    with pytest.raises(ValueError):
        OutputFrame(-1)
    assert OutputFrame(2, 0.25).t == Fraction(1, 4)


def test_pair_timesteps_and_cuts():
    plan = schedule.multiplier_plan(4, 4)
    assert schedule.pair_timesteps(plan) == {i: (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4)) for i in range(3)}
    cut = schedule.apply_cuts(plan, [1])
    assert len(cut) == len(plan)
    # inside the cut pair: t <= 1/2 repeats frame 1, t > 1/2 repeats frame 2; other pairs untouched
    assert [f for f in cut if f.position >= 1 and f.position <= 2] == [
        OutputFrame(1), OutputFrame(1), OutputFrame(1), OutputFrame(2), OutputFrame(2)]
    assert set(schedule.pair_timesteps(cut)) == {0, 2}


def test_check_plan_rejects_missing_frames():
    schedule.check_plan([OutputFrame(2)], 3)
    with pytest.raises(ValueError, match="needs source frame 3"):
        schedule.check_plan([OutputFrame(2, 0.5)], 3)


# ----------------------------------------------------------------------------------------------- fps

@pytest.mark.parametrize("given, exact", [
    (23.976, Fraction(24000, 1001)), (23.98, Fraction(24000, 1001)), (29.97, Fraction(30000, 1001)),
    (59.94, Fraction(60000, 1001)), ("29.97", Fraction(30000, 1001)), ("24000/1001", Fraction(24000, 1001)),
    (25, Fraction(25)), (12.5, Fraction(25, 2)), (29.9, Fraction(299, 10)), ("30", Fraction(30)),
])
def test_parse_fps(given, exact):
    assert schedule.parse_fps(given) == exact


@pytest.mark.parametrize("bad", [0, -24, "abc", float("nan"), "1/0"])
def test_parse_fps_rejects(bad):
    with pytest.raises(ValueError):
        schedule.parse_fps(bad)


@pytest.mark.parametrize("typed", ["1/1000000", "0.000001", "0.005"])
def test_a_tiny_frame_rate_is_never_rounded_to_zero(typed):
    exact = Fraction(typed) if "/" not in typed else Fraction(*map(int, typed.split("/")))
    assert schedule.parse_fps(typed) == exact  # not snapped to the "NTSC rate" 0 x 1000/1001
    request = schedule.Request(target_fps=schedule.parse_fps(typed), source_fps=Fraction(24))
    assert request.target_fps == exact  # parsed again as a Fraction: still the user's rate
    assert len(schedule.make_schedule(request, 9, True).plan) == 1  # one frame covers 9 frames at 24 fps


@pytest.mark.parametrize("typed, shown", [("-1/24", "'-1/24'"), ("0", "'0'"), (Fraction(-1, 24), "-1/24"), (-3, "-3")])
def test_a_frame_rate_that_is_not_positive_is_shown_as_given(typed, shown):
    with pytest.raises(ValueError) as info:
        schedule.parse_fps(typed)
    assert str(info.value) == f"frame rate must be positive; got {shown}"


def _check_retime(plan, n, src, dst, speed=Fraction(1)):
    step = speed * src / dst
    assert len(plan) == math.floor((n - 1) / step) + 1
    num, den = step.numerator, step.denominator
    for k, frame in enumerate(plan):
        # exact: output k sits at k * step source frames, so there is no drift however long the clip
        assert frame.source * den * frame.t.denominator + frame.t.numerator * den == k * num * frame.t.denominator
    assert plan[-1].position <= n - 1  # nothing after the last source frame ...
    assert len(plan) * step > n - 1  # ... and the next output would fall after it


def test_retime_ntsc_doubling_long_clip_is_exact():
    n = 100_001
    plan = schedule.retime_plan(n, 29.97, 59.94)
    _check_retime(plan, n, Fraction(30000, 1001), Fraction(60000, 1001))
    assert len(plan) == 2 * (n - 1) + 1
    assert all(f.is_copy == (k % 2 == 0) for k, f in enumerate(plan))


def test_retime_film_to_60_no_drift():
    n = 24_000
    plan = schedule.retime_plan(n, "24000/1001", 60)
    _check_retime(plan, n, Fraction(24000, 1001), Fraction(60))
    # the same clip timed by integers: output k lands on source position k * 400 / 1001
    assert len(plan) == (n - 1) * 1001 // 400 + 1
    assert plan[-1].position == (len(plan) - 1) * Fraction(400, 1001)


def test_retime_down_60_to_24_drops_and_blends():
    plan = schedule.retime_plan(11, 60, 24)
    assert [f.position for f in plan] == [0, Fraction(5, 2), 5, Fraction(15, 2), 10]
    assert [f.is_copy for f in plan] == [True, False, True, False, True]


def test_retime_speed_slow_motion_and_snapping():
    plan = schedule.retime_plan(5, 30, speed=0.25)
    assert len(plan) == 17 and [f.t for f in plan[:4]] == [0, Fraction(1, 4), Fraction(1, 2), Fraction(3, 4)]
    snapped = schedule.retime_plan(50, 24, 60, dyadic_depth=2)
    assert all(schedule.dyadic_depth(f.t) <= 2 for f in snapped)
    assert len(snapped) == len(schedule.retime_plan(50, 24, 60))
    # within 1/8 of a source frame of the exact time
    for exact, snap in zip(schedule.retime_plan(50, 24, 60), snapped):
        assert abs(exact.position - snap.position) <= Fraction(1, 8)
    with pytest.raises(ValueError, match="speed"):
        schedule.retime_plan(5, 30, speed=0)


def test_retime_snaps_float_noise_to_copies():
    # 1/3 fps steps: positions land on whole frames exactly every third output
    plan = schedule.retime_plan(4, 10, 30)
    assert [f.is_copy for f in plan] == [True, False, False] * 3 + [True]


# ----------------------------------------------------------------------------------------------- one policy

def test_one_bisection_depth_for_t05_models_everywhere():
    request = schedule.Request(target_fps=schedule.parse_fps("60"), source_fps=schedule.parse_fps("24"))
    non_t = schedule.make_schedule(request, 9, arbitrary_t=False)
    assert all(f.t.denominator <= 1 << schedule.BISECTION_DEPTH for f in non_t.plan)
    assert any(f.t.denominator == 1 << schedule.BISECTION_DEPTH for f in non_t.plan)  # 0.4 -> 7/16
    assert non_t.bisection_depth == schedule.BISECTION_DEPTH and "1/16" in non_t.warning
    exact = schedule.make_schedule(request, 9, arbitrary_t=True)
    assert exact.bisection_depth is None and exact.warning is None
    assert [f.position for f in exact.plan] == [Fraction(2 * k, 5) for k in range(21)]


def test_auto_method_bisects_for_t05_models_and_refuses_what_it_cannot_make():
    assert schedule.make_schedule(schedule.Request(multiplier=8), 3, arbitrary_t=False).bisection_depth == 3
    assert schedule.make_schedule(schedule.Request(multiplier=3), 3, arbitrary_t=True).bisection_depth is None
    with pytest.raises(ValueError, match="power-of-two multiplier .* `_t` model"):
        schedule.make_schedule(schedule.Request(multiplier=3), 3, arbitrary_t=False)
    with pytest.raises(ValueError, match="t = 0.5 only, so it makes only t = k/2"):
        schedule.make_schedule(schedule.Request(timesteps=(Fraction(1, 3),)), 3, arbitrary_t=False)
    direct = schedule.make_schedule(schedule.Request(multiplier=3, method="direct"), 3, arbitrary_t=False)
    assert direct.bisection_depth is None and "t = 0.5 only" in direct.warning
    with pytest.raises(ValueError, match="1/3"):
        schedule.make_schedule(schedule.Request(timesteps=(Fraction(1, 3),), method="bisection"), 3, True)


@pytest.mark.parametrize("fps", ["1e400", "1e12", "1e-400"])
def test_absurd_frame_rates_are_refused_with_their_bound(fps):
    with pytest.raises(ValueError, match="at most 1,000,000"):
        schedule.parse_fps(fps)


@pytest.mark.parametrize("fps, speed", [("6145", 1), ("24", Fraction(1, 257)), ("1000000", 1)])
def test_huge_retimes_are_refused_before_any_plan_is_built(fps, speed):
    request = schedule.Request(target_fps=schedule.parse_fps(fps), source_fps=Fraction(24), speed=speed)
    with pytest.raises(ValueError, match="frames per source frame"):
        schedule.make_schedule(request, 4, arbitrary_t=True)


def test_total_plan_size_is_bounded():
    request = schedule.Request(multiplier=16)
    with pytest.raises(ValueError, match="output frames"):
        schedule.make_schedule(request, schedule.MAX_PLAN_FRAMES // 8, arbitrary_t=True)


def test_request_validation_and_derived_values():
    assert schedule.Request().per_pair == (Fraction(1, 2),)
    assert schedule.Request(multiplier=4, source_fps=Fraction(24)).out_fps == 96
    slow = schedule.Request(speed=Fraction(1, 2), source_fps=Fraction(25))
    assert slow.is_retime and not slow.keeps_duration and slow.out_fps == 25
    assert schedule.Request(target_fps=Fraction(30), source_fps=Fraction(25)).keeps_duration
    for bad, fragment in (({"multiplier": 0}, "multiplier"), ({"multiplier": 2, "timesteps": (Fraction(1, 2),)}, "one of"),
                          ({"speed": 0}, "speed"), ({"multiplier": 2, "speed": 2}, "speed goes with"),
                          ({"method": "magic"}, "method")):
        with pytest.raises(ValueError, match=fragment):
            schedule.Request(**bad)
    with pytest.raises(ValueError, match="source fps"):
        schedule.make_schedule(schedule.Request(target_fps=Fraction(30)), 3, True)


# ----------------------------------------------------------------------------------------------- retime by timestamps

def _copies_and_pairs(plan):
    return [(f.source, f.t) for f in plan]


@pytest.mark.parametrize("source, target, speed, depth, n", [
    ("24000/1001", "60000/1001", 1, None, 50), (25, 30, 1, None, 51), (60, 24, 1, None, 61),
    (24, 60, Fraction(1, 2), None, 30), (24, 60, 1, 4, 40), ("30000/1001", 24, "0.5", 4, 33),
    (24, 24, 1, None, 5), (30, 7, 3, None, 90), (24, 60, 1, None, 1)])
def test_uniform_times_give_exactly_the_fps_retime(source, target, speed, depth, n):
    fps = schedule.parse_fps(source)
    expected = schedule.retime_plan(n, source, target, speed=speed, dyadic_depth=depth)
    times = [Fraction(i) / fps for i in range(n)]
    assert schedule.retime_plan_from_times(times, target, speed=speed, dyadic_depth=depth) == expected
    late = [Fraction(3600) + t for t in times]  # a clip cut from an hour in: only differences matter
    assert schedule.retime_plan_from_times(late, target, speed=speed, dyadic_depth=depth) == expected


def test_vfr_times_copy_the_real_frames_and_fill_long_gaps_at_their_true_place():
    times = [Fraction(k, 30) for k in (0, 1, 2, 6, 7, 15)]
    plan = schedule.retime_plan_from_times(times, 30)
    # 0..2 are on the 30 fps grid; 2 -> 6 is a 4-frame gap (t = 1/4, 1/2, 3/4); 7 -> 15 an 8-frame one.
    expected = ([(0, 0), (1, 0), (2, 0)] + [(2, Fraction(i, 4)) for i in (1, 2, 3)] + [(3, 0), (4, 0)]
                + [(4, Fraction(i, 8)) for i in range(1, 8)] + [(5, 0)])
    assert _copies_and_pairs(plan) == expected
    assert [f.position for f in plan if f.is_copy] == [0, 1, 2, 3, 4, 5]
    # t = 0.5-only models: 1/8 steps snap to quarters, and 7/8 rounds up to a copy of the last frame.
    quarters = schedule.retime_plan_from_times(times, "30", dyadic_depth=2)
    assert _copies_and_pairs(quarters)[8:] == [(4, Fraction(1, 4)), (4, Fraction(1, 4)), (4, Fraction(1, 2)),
                                                (4, Fraction(1, 2)), (4, Fraction(3, 4)), (4, Fraction(3, 4)),
                                                (5, 0), (5, 0)]


def test_vfr_half_speed_and_the_last_frame_only_when_on_the_grid():
    times = [Fraction(0), Fraction(1, 30), Fraction(3, 30)]
    slow = schedule.retime_plan_from_times(times, 30, speed=Fraction(1, 2))  # output k shows k/60 s
    assert _copies_and_pairs(slow) == [(0, 0), (0, Fraction(1, 2)), (1, 0), (1, Fraction(1, 4)),
                                       (1, Fraction(1, 2)), (1, Fraction(3, 4)), (2, 0)]
    assert schedule.retime_plan_from_times(times, 30, speed="0.5") == slow
    off_grid = schedule.retime_plan_from_times([Fraction(0), Fraction(1, 30), Fraction(5, 60)], 30)
    assert _copies_and_pairs(off_grid) == [(0, 0), (1, 0), (1, Fraction(2, 3))]  # 5/60 s itself is not shown
    assert schedule.retime_plan_from_times([Fraction(7, 3)], 30) == [OutputFrame(0)]


def test_times_within_a_millionth_of_a_frame_are_copies_and_floats_are_exact():
    nudged = Fraction(10**7 + 1, 10**7)  # the second frame is 0.1 us late: t = 0.9999999 is that frame
    plan = schedule.retime_plan_from_times([Fraction(0), nudged, Fraction(3)], 1)
    assert plan[:2] == [OutputFrame(0), OutputFrame(1)]
    assert plan[2].source == 1 and plan[2].t == (2 - nudged) / (3 - nudged) and plan[3] == OutputFrame(2)
    assert schedule.retime_plan_from_times([0, 0.5, 1.0], 4) == [OutputFrame(0), OutputFrame(0, Fraction(1, 2)),
                                                                 OutputFrame(1), OutputFrame(1, Fraction(1, 2)),
                                                                 OutputFrame(2)]


@pytest.mark.parametrize("times, target, message", [
    ([], 30, "at least one source frame time"),
    ([Fraction(0), Fraction(1, 30), Fraction(1, 30)], 30,
     r"increasing; times\[2\] = 1/30 is not after times\[1\] = 1/30"),
    ([0, 0.5, 0.25, 1], 30, r"times\[2\] = 0.25 is not after times\[1\] = 0.5"),
    ([0, float("nan"), 1], 30, r"times\[1\] must be finite"),
    ([0, 1, float("inf")], 30, r"times\[2\] must be finite"),
    ([Fraction(0), Fraction(1, 30)], 1_000_000, r"3.33e\+04 frames per source frame; at most 256"),
    ([0, 1, 2], "1e12", "at most 1,000,000"),
])
def test_bad_times_and_rates_are_refused_in_one_line(times, target, message):
    with pytest.raises(ValueError, match=message) as caught:
        schedule.retime_plan_from_times(times, target)
    assert "\n" not in str(caught.value)


def test_huge_vfr_retimes_are_refused_before_any_frame_is_built(monkeypatch):
    def no_frames(*args, **kwargs):
        raise AssertionError("a frame was built before the bounds were checked")

    monkeypatch.setattr(schedule, "OutputFrame", no_frames)
    with pytest.raises(ValueError, match=r"30 fps at speed 1 over the 1000 s gap after times\[1\] makes 3e\+04 frames"):
        schedule.retime_plan_from_times([0, 1, 1001, 1002], 30)
    with pytest.raises(ValueError, match="output frames"):
        schedule.retime_plan_from_times(range(10_000), 250)  # 250 per 1 s gap is allowed, 2.5 M in all is not
    start = time.perf_counter()
    with pytest.raises(ValueError, match="frames per source frame"):
        schedule.retime_plan_from_times([0, 10**12], 1_000_000)
    with pytest.raises(ValueError, match="25,599,745 output frames"):
        schedule.retime_plan_from_times(range(100_000), 256)
    assert time.perf_counter() - start < 5


def test_a_long_vfr_clip_is_planned_in_one_fast_pass():
    rng = random.Random(0)
    times, now = [], Fraction(0)
    for _ in range(100_000):  # 1001/30000 s frames with the odd dropped one, as a phone records
        now += Fraction(1001, 30000) * (1 if rng.random() < 0.95 else 2)
        times.append(now)
    start = time.perf_counter()
    plan = schedule.retime_plan_from_times(times, 30)
    elapsed = time.perf_counter() - start
    assert len(plan) == (times[-1] - times[0]) * 30 // 1 + 1
    assert [f.source for f in plan] == sorted(f.source for f in plan) and plan[-1].source <= len(times) - 1
    assert elapsed < 5, f"{elapsed:.2f} s for 100k frames"


def test_make_schedule_follows_frame_times_for_retimes_only():
    times = [Fraction(k, 30) for k in (0, 1, 2, 6, 7, 15)]
    request = schedule.Request(target_fps=Fraction(30))
    direct = schedule.make_schedule(request, 6, arbitrary_t=True, times=times)
    assert direct.plan == schedule.retime_plan_from_times(times, 30) and direct.bisection_depth is None
    assert direct.warning is None and direct.out_fps == 30
    halving = schedule.make_schedule(request, 6, arbitrary_t=False, times=times)
    assert halving.plan == schedule.retime_plan_from_times(times, 30, dyadic_depth=schedule.BISECTION_DEPTH)
    assert halving.bisection_depth == 3 and "1/16" in halving.warning  # eighths are the finest t here
    uniform = schedule.Request(target_fps=Fraction(60), source_fps=Fraction(24))
    by_fps = schedule.make_schedule(uniform, 9, arbitrary_t=False)
    assert schedule.make_schedule(uniform, 9, False, times=[Fraction(i, 24) for i in range(9)]) == by_fps
    pairs = schedule.make_schedule(schedule.Request(multiplier=2), 6, True, times=times)
    assert pairs == schedule.make_schedule(schedule.Request(multiplier=2), 6, True)
    with pytest.raises(ValueError, match="5 frame times for 6 frames"):
        schedule.make_schedule(request, 6, True, times=times[:5])
    with pytest.raises(ValueError, match="needs a target fps"):
        schedule.make_schedule(schedule.Request(speed=Fraction(1, 2)), 6, True, times=times)


def test_the_cli_keeps_a_tiny_frame_rate_and_shows_a_bad_one_as_typed(capsys):
    from emavfi import cli

    frames = str(Path(__file__).resolve().parents[1] / "examples" / "frames")
    assert cli.main(["plan", frames, "--fps", "1/1000000", "--source-fps", "24"]) == 0
    assert "output frames: 1 " in capsys.readouterr().out
    assert cli.main(["plan", frames, "--fps=-1/24", "--source-fps", "24"]) == 2
    assert capsys.readouterr().err.strip() == "emavfi: error: frame rate must be positive; got '-1/24'"
