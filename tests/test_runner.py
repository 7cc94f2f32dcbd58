"""emavfi.runner: device batches on the global pair grid, bisection, one out-of-memory loop, progress and
cancel per frame and pair, HDR, negatives, alpha, cuts; then the real tiny network."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

import emavfi
from emavfi import clips, engine, hdr, memory, runner, schedule
from emavfi.config import ModelConfig
from emavfi.memory import ClipMemoryError
from emavfi.clips import interpolate_clip
from emavfi.runner import Runner
from emavfi.schedule import OutputFrame

from helpers import TINY


pytestmark = pytest.mark.usefixtures("one_thread")
HALF = Fraction(1, 2)


class FakeModel:
    """Stand-in for an EMAVFI: only what the Runner looks at (config, parameters for device/dtype)."""

    def __init__(self, arbitrary_t: bool = True):
        self.config = ModelConfig(width=4, depths=(1, 1, 1, 2, 2), arbitrary_t=arbitrary_t)
        self._param = torch.zeros(1)

    def parameters(self):
        return iter([self._param])


class Blend:
    """A runner.Backend with zero flow: frame t = (1 - t) * first + t * second; records every call.

    oom(pairs, n_timesteps) -> True makes the call raise out-of-memory like a GPU would.
    """

    def __init__(self, oom=None, oom_exc=lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")):
        self.calls: list[tuple[int, int, tuple[float, ...]]] = []  # (frames sent, pairs, timesteps)
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.aux_channels: list[int] = []
        self.oom, self.oom_exc = oom, oom_exc

    def __call__(self, frames, first, second, timesteps, aux):
        assert frames.shape[1] == 3 and first.shape == second.shape
        # the real network refuses values outside [0, 1], so must this stand-in
        assert float(frames.min()) >= 0 and float(frames.max()) <= 1
        if self.oom is not None and self.oom(len(first), len(timesteps)):
            raise self.oom_exc()
        self.calls.append((frames.shape[0], len(first), tuple(timesteps)))
        self.aux_channels.append(0 if aux is None else aux.shape[1])
        img0, img1 = frames[first], frames[second]
        self.inputs.append((img0.clone(), img1.clone()))
        rgb = torch.stack([(1 - t) * img0 + t * img1 for t in timesteps]).clamp(0, 1)
        fused = None if aux is None else torch.stack([(1 - t) * aux[first] + t * aux[second] for t in timesteps])
        return rgb, fused


def _frames(n: int, c: int = 3, h: int = 8, w: int = 12, seed: int = 0, peak: float = 1.0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * peak


def _expected_blend(frames: torch.Tensor, plan) -> torch.Tensor:
    return torch.stack([frames[f.source] if f.is_copy
                        else (1 - float(f.t)) * frames[f.source] + float(f.t) * frames[f.source + 1] for f in plan])


def _clip(frames, plan, backend=None, **kwargs):
    return interpolate_clip(FakeModel(), frames, plan, backend=backend or Blend(), **kwargs)


def _bisection(n: int, multiplier: int) -> schedule.Schedule:
    """The schedule a t = 0.5-only model gets: bisection to the multiplier's depth."""
    return schedule.make_schedule(schedule.Request(multiplier=multiplier), n, arbitrary_t=False)


# ----------------------------------------------------------------------------------------------- batches

def test_multiplier_copies_are_bit_exact_and_inbetweens_blend():
    frames = _frames(5)
    plan = schedule.multiplier_plan(5, 3)
    fn = Blend()
    out = _clip(frames, plan, fn, chunk=2)
    assert out.shape == (13, 3, 8, 12) and out.dtype == torch.float32
    for k, frame in enumerate(plan):
        if frame.is_copy:
            assert torch.equal(out[k], frames[frame.source])
    torch.testing.assert_close(out, _expected_blend(frames, plan))
    # 4 pairs in batches of 2 sharing their middle frame, all t of a pair in one call
    assert fn.calls == [(3, 2, (1 / 3, 2 / 3))] * 2


def test_automatic_chunk_is_one_pair_on_cpu():
    fn = Blend()
    _clip(_frames(4), schedule.multiplier_plan(4, 2), fn)
    assert fn.calls == [(2, 1, (0.5,))] * 3


def test_consecutive_pairs_share_frames_unless_hdr_maps_them_per_pair():
    frames = _frames(6, c=4)
    plan = schedule.multiplier_plan(6, 2)
    fn = Blend()
    torch.testing.assert_close(_clip(frames, plan, fn, chunk=3), _expected_blend(frames, plan))
    assert fn.calls == [(4, 3, (0.5,)), (3, 2, (0.5,))]  # 5 pairs: 3 + 2, each frame sent once per batch
    hdr_fn = Blend()
    _clip(frames * 3, plan, hdr_fn, chunk=3)
    assert hdr_fn.calls == [(6, 3, (0.5,)), (4, 2, (0.5,))]  # each pair's frames compressed with its own peak
    cut = Blend()
    _clip(frames, plan, cut, chunk=5, cuts=[1])
    assert cut.calls == [(6, 4, (0.5,))]


def test_batches_follow_the_global_pair_grid():
    fn = Blend()
    seen = []
    work = {i: (HALF,) for i in range(7)}  # local pairs 0..6 = global pairs 3..9
    Runner(FakeModel(), chunk=4, backend=fn).run(_frames(8), work, bisection_depth=None, pair_offset=3,
                                                  emit=lambda pair, t, frame: seen.append(pair))
    assert [pairs for _, pairs, _ in fn.calls] == [1, 4, 2]  # global {3}, {4..7}, {8, 9}
    assert seen == list(range(7))
    # the engine makes whole batches of that grid: a task wanting pairs 3..9 of 11 computes 0..11 as a whole run
    plan = schedule.multiplier_plan(12, 2)
    whole, task = Blend(), Blend()
    engine_runner = Runner(FakeModel(), chunk=4, backend=whole)
    engine.run(schedule.Schedule(plan, None, None, None), clips.TensorFrames(_frames(12)), engine_runner,
               clips.TensorSink(torch.empty(23, 3, 8, 12)), engine.GivenCuts([]))
    out = torch.empty(23, 3, 8, 12)
    engine.run(schedule.Schedule(plan, None, None, None), clips.TensorFrames(_frames(12)),
               Runner(FakeModel(), chunk=4, backend=task), clips.TensorSink(out), engine.GivenCuts([]),
               todo=range(7, 19))  # outputs of pairs 3..9
    assert [pairs for _, pairs, _ in whole.calls] == [4, 4, 3]
    assert [pairs for _, pairs, _ in task.calls] == [4, 4, 3]


def test_pairs_with_the_same_t_list_share_a_call():
    n = 9
    plan = schedule.retime_plan(n, 24, 60)  # t-lists alternate between pairs
    fn = Blend()
    out = _clip(_frames(n), plan, fn, chunk=4)
    torch.testing.assert_close(out, _expected_blend(_frames(n), plan))
    work = schedule.pair_timesteps(plan)
    distinct_per_batch = sum(len({work[p] for p in list(work)[i:i + 4]}) for i in range(0, len(work), 4))
    assert len(fn.calls) == distinct_per_batch < len(work)
    assert sum(pairs for _, pairs, _ in fn.calls) == len(work)


def test_recursive_mode_bisects_at_half_only():
    frames = _frames(3)
    plan = schedule.multiplier_plan(3, 4)
    fn = Blend()
    out = _clip(frames, _bisection(3, 4), fn, chunk=2)
    assert all(ts == (0.5,) for _, _, ts in fn.calls)
    # level 1: both pairs' middles in one call; level 2: the four quarter points, `chunk` per call
    assert [pairs for _, pairs, _ in fn.calls] == [2, 2, 2]
    # the quarter point is made from frame 0 and the level-1 middle, not from the two sources
    torch.testing.assert_close(fn.inputs[1][1][0], (frames[0] + frames[1]) / 2)
    torch.testing.assert_close(out, _expected_blend(frames, plan))


def test_the_schedule_decides_direct_or_bisection_and_non_dyadic_t_is_refused():
    fn = Blend()
    _clip(_frames(2), schedule.make_schedule(schedule.Request(multiplier=4), 2, arbitrary_t=True), fn)
    assert fn.calls == [(2, 1, (0.25, 0.5, 0.75))]
    bisect = Blend()
    _clip(_frames(2), _bisection(2, 4), bisect)
    assert [ts for _, _, ts in bisect.calls] == [(0.5,)] * 3
    with pytest.raises(ValueError, match="depth 2 makes t = k / 2\\^2 only; got t = 1/3"):
        _clip(_frames(2), schedule.Schedule(schedule.multiplier_plan(2, 3), 2, None, None))
    with pytest.raises(ValueError, match="depth 1 makes t = k / 2\\^1 only; got t = 1/4"):
        Runner(FakeModel(), backend=Blend()).run(_frames(2), {0: (Fraction(1, 4),)}, bisection_depth=1,
                                                 emit=lambda *a: None)


# ----------------------------------------------------------------------------------------------- out of memory

def test_out_of_memory_halves_the_chunk_and_retries_the_same_pairs():
    frames = _frames(9)
    plan = schedule.multiplier_plan(9, 2)
    fn = Blend(oom=lambda pairs, n_t: pairs > 2)
    runner_ = Runner(FakeModel(), chunk=8, backend=fn)
    out = torch.empty(17, 3, 8, 12)
    seen = []
    runner_.run(frames, schedule.pair_timesteps(plan), bisection_depth=None,
                emit=lambda pair, t, frame: seen.append(pair) or out[2 * pair + 1].copy_(frame))
    torch.testing.assert_close(out[1::2], _expected_blend(frames, plan)[1::2])
    assert runner_.chunk == 2 and seen == list(range(8))
    assert [pairs for _, pairs, _ in fn.calls] == [2, 2, 2, 2]


@pytest.mark.parametrize("make_exc", [
    lambda: RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    lambda: torch.OutOfMemoryError("out of memory"),
    lambda: RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
])
def test_out_of_memory_at_one_pair_gives_a_clear_error(make_exc):
    fn = Blend(oom=lambda pairs, n_t: True, oom_exc=make_exc)
    with pytest.raises(ClipMemoryError, match=r"scale=0\.5.*smaller resolution"):
        _clip(_frames(4), schedule.multiplier_plan(4, 2), fn, chunk=4)


def test_one_pair_with_many_timesteps_splits_the_t_list_on_out_of_memory():
    frames = _frames(2)
    plan = schedule.multiplier_plan(2, 8)
    fn = Blend(oom=lambda pairs, n_t: n_t > 2)
    out = _clip(frames, plan, fn, chunk=1)
    torch.testing.assert_close(out, _expected_blend(frames, plan))
    assert all(len(ts) <= 2 for _, _, ts in fn.calls)
    assert sorted(t for _, _, ts in fn.calls for t in ts) == [k / 8 for k in range(1, 8)]


def test_other_errors_are_not_retried():
    calls = []

    def broken(*args):
        calls.append(1)
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        _clip(_frames(4), schedule.multiplier_plan(4, 2), broken, chunk=4)
    assert len(calls) == 1


def test_oom_classifier():
    assert memory.is_out_of_memory(torch.OutOfMemoryError("x"))
    assert memory.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not memory.is_out_of_memory(RuntimeError("expected scalar type Half"))
    assert not memory.is_out_of_memory(ValueError("out of memory"))


# ----------------------------------------------------------------------------------------------- progress, cancel

@pytest.mark.parametrize("arbitrary_t", [True, False])
def test_progress_advances_per_frame_and_cancel_runs_at_least_once_per_pair(arbitrary_t):
    frames = _frames(3)  # two pairs: the ComfyUI run that used to report progress once
    plan = schedule.multiplier_plan(3, 4)
    seen, checks = [], []
    _clip(frames, plan if arbitrary_t else _bisection(3, 4), chunk=2,
          progress=lambda done, total: seen.append((done, total)), cancel=lambda: checks.append(1))
    assert seen == [(k, 9) for k in range(1, 10)]
    assert len(checks) >= 2 + 1  # per pair, plus before the device call(s)


def test_cancel_stops_between_pairs():
    class Stop(Exception):
        pass

    emitted = []

    def cancel():
        if emitted:  # a frame is out: the next check must stop the run before the next pair's device call
            raise Stop

    fn = Blend()
    with pytest.raises(Stop):
        Runner(FakeModel(), backend=fn).run(_frames(4), {0: (HALF,), 1: (HALF,), 2: (HALF,)}, bisection_depth=None,
                                            emit=lambda *a: emitted.append(a), cancel=cancel)
    assert len(fn.calls) == 1 and len(emitted) == 1


# ----------------------------------------------------------------------------------------------- whole clip

def test_out_argument_is_filled_in_place_and_checked():
    frames = _frames(3)
    plan = schedule.multiplier_plan(3, 2)
    out = torch.full((5, 3, 8, 12), -1.0)
    assert _clip(frames, plan, out=out) is out and float(out.min()) >= 0
    with pytest.raises(ValueError, match=r"\[5, 3, 8, 12\]"):
        _clip(frames, plan, out=torch.empty(4, 3, 8, 12))


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="movedim"):
        _clip(torch.rand(3, 32, 32, 3), [OutputFrame(0)])
    with pytest.raises(ValueError, match="only 3 frame"):
        _clip(_frames(3), [OutputFrame(2, 0.5)])
    with pytest.raises(ValueError, match="cut indices"):
        _clip(_frames(3), [OutputFrame(0)], cuts=[2])
    with pytest.raises(ValueError, match="chunk must be a whole number"):
        Runner(FakeModel(), chunk=-1)
    with pytest.raises(ValueError, match="work keys must be pair indices 0..1"):
        Runner(FakeModel(), backend=Blend()).run(_frames(3), {2: (HALF,)}, bisection_depth=None, emit=print)


def test_alpha_rides_along_as_aux_and_copies_stay_exact():
    frames = _frames(3, c=4)
    plan = schedule.multiplier_plan(3, 2)
    out = _clip(frames, plan)
    assert out.shape == (5, 4, 8, 12)
    assert torch.equal(out[0], frames[0]) and torch.equal(out[4], frames[2])
    torch.testing.assert_close(out, _expected_blend(frames, plan))


def test_cut_pairs_repeat_the_nearer_frame_and_are_not_interpolated():
    frames = _frames(4)
    plan = schedule.multiplier_plan(4, 4)
    fn = Blend()
    out = _clip(frames, plan, fn, cuts=torch.tensor([1]))
    assert sum(pairs for _, pairs, _ in fn.calls) == 2
    # pair 1 spans outputs 4..8: t = 1/4, 1/2 repeat frame 1, t = 3/4 repeats frame 2
    for k, source in ((5, 1), (6, 1), (7, 2)):
        assert torch.equal(out[k], frames[source])
    torch.testing.assert_close(out[:4], _expected_blend(frames, plan)[:4])


# ----------------------------------------------------------------------------------------------- HDR, negatives

def test_hdr_curve_is_identity_below_the_knee_and_inverts():
    peak = torch.tensor([1.0, 4.0, 100.0])
    x = torch.linspace(0, 1, 101).view(1, 1, 1, -1).repeat(3, 1, 1, 1) * peak.view(-1, 1, 1, 1)
    y = hdr.hdr_encode(x, peak)
    assert float(y.max()) <= 1 and torch.allclose(y.amax(dim=(1, 2, 3)), torch.ones(3))
    assert torch.equal(y[0], x[0])  # peak <= 1: untouched
    low = x <= hdr.HDR_KNEE
    assert torch.equal(y[low], x[low])
    assert (y[1:].flatten(1).diff(dim=1) > 0).all()  # strictly increasing, so invertible
    torch.testing.assert_close(hdr.hdr_decode(y, peak), x, rtol=1e-4, atol=1e-5)


def test_hdr_values_above_one_survive_and_stay_between_their_sources():
    frames = _frames(3, peak=8.0)
    plan = schedule.multiplier_plan(3, 2)
    middle = _clip(frames, plan)[1]
    assert float(middle.max()) > 1.5
    lo, hi = torch.minimum(frames[0], frames[1]), torch.maximum(frames[0], frames[1])
    assert bool(((middle >= lo - 1e-4) & (middle <= hi + 1e-4)).all())
    # a still HDR pair comes back unchanged through encode -> network -> decode
    still = torch.stack([frames[0], frames[0]])
    torch.testing.assert_close(_clip(still, plan[:3])[1], frames[0], rtol=1e-4, atol=1e-4)
    assert float(_clip(frames, plan, hdr=False)[1].max()) <= 1


def test_sdr_input_gives_exactly_the_plain_result():
    frames = _frames(4)
    plan = schedule.multiplier_plan(4, 2)
    fn = Blend()
    assert torch.equal(_clip(frames, plan, fn), _clip(frames, plan, hdr=False))
    assert fn.aux_channels == [0, 0, 0]  # no negative part to carry


def test_negative_values_ride_along_like_alpha():
    frames = _frames(3, c=4) - 0.2  # slightly negative RGB, as in ACEScg linear; alpha too (passed as is)
    plan = schedule.multiplier_plan(3, 2)
    fn = Blend()
    out = _clip(frames, plan, fn)
    assert fn.aux_channels == [3 + 1, 3 + 1]  # the negative part of RGB, then alpha
    assert torch.equal(out[0], frames[0]) and torch.equal(out[2], frames[1])
    torch.testing.assert_close(out, _expected_blend(frames, plan))  # zero flow: exact blends, negatives kept
    still = _clip(torch.stack([frames[0], frames[0]]), plan[:3])[1]
    torch.testing.assert_close(still, frames[0])
    assert float(_clip(frames, plan, hdr=False)[1, :3].min()) >= 0


def test_network_input_for_negatives_hdr_and_alpha_is_the_batch_formula():
    """The runner builds its input a frame at a time (a frame's temporaries, not a batch's); it must equal the
    whole-batch formula: positive RGB (compressed per pair above 1), then the negative part, then alpha."""
    frames = _frames(4, c=4, peak=2.5) - 0.3  # HDR highlights, negatives, alpha beside them
    frames[1, :3] = frames[1, :3].clamp(0, 1)  # one frame within 0..1: its pair is still mapped by its neighbour
    plan = schedule.multiplier_plan(4, 2)
    fn = Blend()
    _clip(frames, plan, fn, chunk=3)
    pairs = [0, 1, 2]
    rgb = frames[:, :3]
    peak = rgb.clamp(min=0).amax(dim=(1, 2, 3))
    pair_peak = torch.maximum(peak[pairs], peak[[p + 1 for p in pairs]])
    both = pairs + [p + 1 for p in pairs]
    encoded = hdr.hdr_encode(rgb.clamp(min=0)[both], torch.cat([pair_peak, pair_peak]))
    expected = torch.cat([encoded, rgb.clamp(max=0)[both], frames[both, 3:]], 1)
    sent_first, sent_second = fn.inputs[0]
    assert fn.aux_channels == [3 + 1]
    assert torch.equal(sent_first, expected[:3, :3]) and torch.equal(sent_second, expected[3:, :3])


# ----------------------------------------------------------------------------------------------- memory

def test_pair_memory_estimate_scales_sensibly():
    small, big = emavfi.get_config("ours_small"), emavfi.get_config("ours")

    def pixels_part(*args, **kwargs) -> int:  # what grows with the frame: the total less the fixed scratch
        stages = memory.pair_memory(*args, **kwargs)
        assert stages.total == memory.estimate_pair_bytes(*args, **kwargs)
        return stages.total - stages.fixed

    base = pixels_part(small, 1080, 1920)
    assert pixels_part(small, 1080, 1920, dtype=torch.float16) * 2 == base
    assert pixels_part(big, 1080, 1920) > 1.9 * base
    assert base < pixels_part(small, 1080, 1920, tta=True) < 1.5 * base  # the TTA passes run one after the other
    assert pixels_part(small, 2160, 3840) > 3.9 * base
    assert pixels_part(small, 1080, 1920, n_timesteps=8) > base
    assert memory.pair_memory(small, 1080, 1920).batch(4) - memory.pair_memory(small, 1080, 1920).fixed == 4 * base
    # measured on CPU (benchmarks/bench_memory.py): ours_small_t at 256x448 peaked near 206 MiB
    assert 150 << 20 < memory.estimate_pair_bytes(small, 256, 448) < 400 << 20


def test_auto_chunk_size_bounds():
    assert memory.auto_chunk_size(10 << 30, 1 << 30) == 7
    assert memory.auto_chunk_size(1 << 20, 1 << 30) == 1
    assert memory.auto_chunk_size(1 << 50, 1 << 20, max_chunk=16) == 16


def test_auto_chunk_is_picked_from_free_device_memory(monkeypatch):
    monkeypatch.setattr(runner, "free_memory_bytes", lambda device: 3 * memory.estimate_pair_bytes(TINY, 8, 12) + 10)
    on_gpu = Runner(FakeModel(), device="cuda", backend=Blend())  # never touches the GPU: only sizes batches
    assert on_gpu.chunk == 0 and on_gpu.resolve_chunk(8, 12) == 2 and on_gpu.chunk == 2  # 70 % of three pairs
    assert Runner(FakeModel(), backend=Blend()).chunk == 1


# ----------------------------------------------------------------------------------------------- real model

@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return emavfi.build_model(TINY).eval()


def test_real_tiny_model_matches_direct_interpolate(tiny_model):
    frames = _frames(4, h=40, w=56, seed=3)  # not a multiple of 32: interpolate pads
    plan = schedule.multiplier_plan(4, 3)
    out = interpolate_clip(tiny_model, frames, plan, chunk=2)
    for k, frame in enumerate(plan):
        if frame.is_copy:
            assert torch.equal(out[k], frames[frame.source])
    for pair in range(3):
        expected = emavfi.interpolate(tiny_model, frames[pair:pair + 1], frames[pair + 1:pair + 2], [1 / 3, 2 / 3])
        torch.testing.assert_close(out[3 * pair + 1:3 * pair + 3], expected[:, 0], rtol=1e-4, atol=1e-5)
    one_by_one = interpolate_clip(tiny_model, frames, plan, chunk=1)
    torch.testing.assert_close(out, one_by_one, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("depth", [None, 2])
def test_real_tiny_model_is_bit_identical_however_the_clip_is_split(tiny_model, depth):
    frames = _frames(7, c=4, h=40, w=56, seed=5)
    frames[3:, :3] *= 3  # HDR in the later pairs
    ts = (Fraction(1, 4), HALF, Fraction(3, 4))

    def render(lo: int, hi: int) -> dict:
        got = {}
        Runner(tiny_model, chunk=2).run(frames[lo:hi + 1], {i: ts for i in range(hi - lo)}, bisection_depth=depth,
                                        pair_offset=lo, emit=lambda i, t, f: got.__setitem__((lo + i, t), f))
        return got

    whole = render(0, 6)
    windows = {**render(0, 2), **render(2, 4), **render(4, 6)}  # windows and tasks that start on the grid
    assert whole.keys() == windows.keys() and len(whole) == 18
    assert all(torch.equal(whole[key], windows[key]) for key in whole)
    late_start = render(3, 6)  # starts mid-batch: pair 3 is alone, pairs 4 and 5 are batched as before
    assert all(torch.equal(whole[key], late_start[key]) for key in late_start if key[0] >= 4)


def test_real_tiny_model_alpha_hdr_and_recursion(tiny_model):
    frames = _frames(3, c=4, h=32, w=32, seed=4)
    frames[:, :3] *= 6  # HDR RGB, alpha in 0..1
    plan = schedule.multiplier_plan(3, 4)
    out = interpolate_clip(tiny_model, frames, schedule.Schedule(plan, 2, None, None))
    assert out.shape == (9, 4, 32, 32) and bool(torch.isfinite(out).all())
    assert float(out[1:4, :3].max()) > 1
    assert float(out[:, 3].min()) >= -1e-5 and float(out[:, 3].max()) <= 1 + 1e-5
    # recursion: t = 1/4 equals t = 1/2 between frame 0 and the middle frame the model made
    peak = torch.maximum(frames[0, :3].max(), frames[1, :3].max()).view(1)
    enc = [hdr.hdr_encode(frames[i:i + 1, :3], peak) for i in (0, 1)]
    mid, mid_alpha = emavfi.interpolate(tiny_model, enc[0], enc[1], 0.5, aux0=frames[0:1, 3:], aux1=frames[1:2, 3:])
    quarter = emavfi.interpolate(tiny_model, enc[0], mid, 0.5, aux0=frames[0:1, 3:], aux1=mid_alpha)[0]
    torch.testing.assert_close(out[1, :3], hdr.hdr_decode(quarter, peak)[0], rtol=1e-4, atol=1e-4)


def test_the_estimate_falls_with_the_flow_scale_in_its_flow_stage_only():
    small = emavfi.get_config("ours_small_t")
    stages = [memory.pair_memory(small, 2160, 3840, scale=scale) for scale in (1.0, 0.5, 0.25)]
    totals = [stage.total for stage in stages]
    assert totals[0] > totals[1] > totals[2]
    assert len({stage.full_res for stage in stages}) == 1  # the full-resolution stages do not depend on the scale
    assert stages[0].flow == 16 * stages[2].flow  # the flow stage runs on scale^2 of the pixels
    assert totals == [memory.estimate_pair_bytes(small, 2160, 3840, scale=s) for s in (1.0, 0.5, 0.25)]
