"""emavfi.clip: chunking, batching, recursion, out-of-memory back-off, progress/cancel, HDR, alpha, cuts."""
from __future__ import annotations

import pytest
import torch

import emavfi
from emavfi import clip, schedule
from emavfi.clip import ClipInterpolator, ClipMemoryError, interpolate_clip
from emavfi.config import ModelConfig
from emavfi.schedule import OutputFrame

from helpers import TINY


pytestmark = pytest.mark.usefixtures("one_thread")


class FakeModel:
    """Stand-in for an EMAVFI: only what clip.py looks at (config, parameters for device/dtype)."""

    def __init__(self, arbitrary_t: bool = True):
        self.config = ModelConfig(width=4, depths=(1, 1, 1, 2, 2), arbitrary_t=arbitrary_t)
        self._param = torch.zeros(1)

    def parameters(self):
        return iter([self._param])


class Blend:
    """Stand-in for emavfi.interpolate: zero flow, so frame t = (1 - t) * img0 + t * img1; records calls.

    oom(batch, n_timesteps) -> True makes the call raise out-of-memory like a GPU would.
    """

    def __init__(self, oom=None, oom_exc=lambda: torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2 GiB")):
        self.calls: list[tuple[int, tuple[float, ...]]] = []
        self.inputs: list[tuple[torch.Tensor, torch.Tensor]] = []
        self.oom, self.oom_exc = oom, oom_exc

    def __call__(self, model, img0, img1, timesteps=0.5, *, tta=False, fast_tta=False, scale=1.0, aux0=None, aux1=None):
        ts = list(timesteps)
        assert img0.shape[1] == 3 and img0.shape == img1.shape
        # the real interpolate refuses values outside [0, 1], so must this stand-in
        assert float(img0.min()) >= 0 and float(img0.max()) <= 1 and float(img1.max()) <= 1
        if self.oom is not None and self.oom(img0.shape[0], len(ts)):
            raise self.oom_exc()
        self.calls.append((img0.shape[0], tuple(ts)))
        self.inputs.append((img0.clone(), img1.clone()))
        rgb = torch.stack([(1 - t) * img0 + t * img1 for t in ts]).clamp(0, 1)
        if aux0 is None:
            return rgb
        return rgb, torch.stack([(1 - t) * aux0 + t * aux1 for t in ts])


class BlendSequence:
    """Stand-in for emavfi.interpolate_sequence: the Blend of every consecutive pair of frames [N,3,H,W]."""

    def __init__(self):
        self.calls: list[tuple[int, tuple[float, ...]]] = []

    def __call__(self, model, frames, timesteps=0.5, *, tta=False, fast_tta=False, scale=1.0, aux=None):
        assert float(frames.min()) >= 0 and float(frames.max()) <= 1
        self.calls.append((frames.shape[0], tuple(timesteps)))
        pair = Blend()
        if aux is None:
            return pair(model, frames[:-1], frames[1:], timesteps)
        return pair(model, frames[:-1], frames[1:], timesteps, aux0=aux[:-1], aux1=aux[1:])


def _frames(n: int, c: int = 3, h: int = 8, w: int = 12, seed: int = 0, peak: float = 1.0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed)) * peak


def _expected_blend(frames: torch.Tensor, plan) -> torch.Tensor:
    return torch.stack([frames[f.source] if f.is_copy
                        else (1 - float(f.t)) * frames[f.source] + float(f.t) * frames[f.source + 1] for f in plan])


# ----------------------------------------------------------------------------------------------- stand-in

def test_multiplier_copies_are_bit_exact_and_inbetweens_blend():
    frames = _frames(5)
    plan = schedule.multiplier_plan(5, 3)
    fn = Blend()
    out = interpolate_clip(FakeModel(), frames, plan, chunk_size=2, interpolate_fn=fn)
    assert out.shape == (13, 3, 8, 12) and out.dtype == torch.float32
    for k, frame in enumerate(plan):
        if frame.is_copy:
            assert torch.equal(out[k], frames[frame.source])
    torch.testing.assert_close(out, _expected_blend(frames, plan))
    # 4 pairs in chunks of 2, all t of a pair in one call
    assert fn.calls == [(2, (1 / 3, 2 / 3))] * 2


def test_consecutive_pairs_share_frames_through_the_sequence_function():
    frames = _frames(6, c=4)
    plan = schedule.multiplier_plan(6, 2)
    pairwise, sequence = Blend(), BlendSequence()
    out = interpolate_clip(FakeModel(), frames, plan, chunk_size=3, interpolate_fn=pairwise, sequence_fn=sequence)
    torch.testing.assert_close(out, _expected_blend(frames, plan))
    assert sequence.calls == [(4, (0.5,)), (3, (0.5,))] and pairwise.calls == []  # 6 frames, 5 pairs: 3 + 2
    # HDR pairs are mapped pair by pair, and cut-split runs are not consecutive: both go pairwise
    hdr, sequence = Blend(), BlendSequence()
    interpolate_clip(FakeModel(), frames * 3, plan, chunk_size=3, interpolate_fn=hdr, sequence_fn=sequence)
    assert sequence.calls == [] and len(hdr.calls) == 2
    cut, sequence = Blend(), BlendSequence()
    interpolate_clip(FakeModel(), frames, plan, chunk_size=5, cuts=[1], interpolate_fn=cut, sequence_fn=sequence)
    assert sequence.calls == [] and cut.calls == [(4, (0.5,))]


def test_pairs_with_the_same_t_list_share_a_call():
    n = 9
    plan = schedule.retime_plan(n, 24, 60)  # t-lists alternate between pairs
    fn = Blend()
    out = interpolate_clip(FakeModel(), _frames(n), plan, chunk_size=4, interpolate_fn=fn)
    torch.testing.assert_close(out, _expected_blend(_frames(n), plan))
    work = schedule.pair_timesteps(plan)
    distinct_per_chunk = sum(len({work[p] for p in list(work)[i:i + 4]}) for i in range(0, len(work), 4))
    assert len(fn.calls) == distinct_per_chunk < len(work)
    assert sum(batch for batch, _ in fn.calls) == len(work)


def test_recursive_mode_bisects_at_half_only():
    frames = _frames(3)
    plan = schedule.multiplier_plan(3, 4)
    fn = Blend()
    out = interpolate_clip(FakeModel(arbitrary_t=False), frames, plan, chunk_size=2, interpolate_fn=fn)
    assert all(ts == (0.5,) for _, ts in fn.calls)
    # level 1: both pairs' middles in one call; level 2: the four quarter points, two per call
    assert [batch for batch, _ in fn.calls] == [2, 2, 2]
    # the quarter point is made from frame 0 and the level-1 middle, not from the two sources
    torch.testing.assert_close(fn.inputs[1][1][0], (frames[0] + frames[1]) / 2)
    torch.testing.assert_close(out, _expected_blend(frames, plan))


def test_recursive_auto_uses_direct_t_for_t_models_and_refuses_non_dyadic():
    fn = Blend()
    interpolate_clip(FakeModel(arbitrary_t=True), _frames(2), schedule.multiplier_plan(2, 4), interpolate_fn=fn)
    assert fn.calls == [(1, (0.25, 0.5, 0.75))]
    with pytest.raises(ValueError, match="recursive.*1/3"):
        interpolate_clip(FakeModel(), _frames(2), schedule.multiplier_plan(2, 3), recursive=True,
                         interpolate_fn=Blend())


def test_out_of_memory_halves_the_chunk_and_retries_the_same_pairs():
    frames = _frames(9)
    plan = schedule.multiplier_plan(9, 2)
    fn = Blend(oom=lambda batch, n_t: batch > 2)
    runner = ClipInterpolator(FakeModel(), chunk_size=8, interpolate_fn=fn)
    out = runner(frames, plan)
    torch.testing.assert_close(out, _expected_blend(frames, plan))
    assert runner.chunk_size == 2
    assert [batch for batch, _ in fn.calls] == [2, 2, 2, 2]


@pytest.mark.parametrize("make_exc", [
    lambda: RuntimeError("CUDA out of memory. Tried to allocate 20.00 MiB"),
    lambda: torch.OutOfMemoryError("out of memory"),
    lambda: RuntimeError("MPS backend out of memory (MPS allocated: 1 GB)"),
])
def test_out_of_memory_at_one_pair_gives_a_clear_error(make_exc):
    fn = Blend(oom=lambda batch, n_t: True, oom_exc=make_exc)
    with pytest.raises(ClipMemoryError, match=r"scale=0\.5.*smaller resolution"):
        interpolate_clip(FakeModel(), _frames(4), schedule.multiplier_plan(4, 2), chunk_size=4, interpolate_fn=fn)


def test_one_pair_with_many_timesteps_splits_the_t_list_on_out_of_memory():
    frames = _frames(2)
    plan = schedule.multiplier_plan(2, 8)
    fn = Blend(oom=lambda batch, n_t: n_t > 2)
    out = interpolate_clip(FakeModel(), frames, plan, chunk_size=1, interpolate_fn=fn)
    torch.testing.assert_close(out, _expected_blend(frames, plan))
    assert all(len(ts) <= 2 for _, ts in fn.calls)
    assert sorted(t for _, ts in fn.calls for t in ts) == [k / 8 for k in range(1, 8)]


def test_other_errors_are_not_retried():
    calls = []

    def broken(*args, **kwargs):
        calls.append(1)
        raise RuntimeError("shape mismatch")

    with pytest.raises(RuntimeError, match="shape mismatch"):
        interpolate_clip(FakeModel(), _frames(4), schedule.multiplier_plan(4, 2), chunk_size=4, interpolate_fn=broken)
    assert len(calls) == 1


def test_oom_classifier():
    assert clip.is_out_of_memory(torch.OutOfMemoryError("x"))
    assert clip.is_out_of_memory(RuntimeError("CUDA error: out of memory"))
    assert not clip.is_out_of_memory(RuntimeError("expected scalar type Half"))
    assert not clip.is_out_of_memory(ValueError("out of memory"))


def test_progress_counts_output_frames_and_cancel_stops_between_chunks():
    frames = _frames(7)
    plan = schedule.multiplier_plan(7, 2)
    seen = []
    interpolate_clip(FakeModel(), frames, plan, chunk_size=2, interpolate_fn=Blend(),
                     progress=lambda done, total: seen.append((done, total)))
    assert len(seen) == 3 and all(total == 13 for _, total in seen)
    dones = [done for done, _ in seen]
    assert dones == sorted(dones) and dones[-1] == 13 and dones[0] < 13

    class Stop(Exception):
        pass

    checks = []

    def cancel_on_second():
        checks.append(1)
        if len(checks) == 2:
            raise Stop

    fn = Blend()
    with pytest.raises(Stop):
        interpolate_clip(FakeModel(), frames, plan, chunk_size=2, interpolate_fn=fn, check_cancel=cancel_on_second)
    assert len(fn.calls) == 1  # the second chunk never started


def test_out_argument_is_filled_in_place_and_checked():
    frames = _frames(3)
    plan = schedule.multiplier_plan(3, 2)
    out = torch.full((5, 3, 8, 12), -1.0)
    result = interpolate_clip(FakeModel(), frames, plan, out=out, interpolate_fn=Blend())
    assert result is out and float(out.min()) >= 0
    with pytest.raises(ValueError, match=r"\[5, 3, 8, 12\]"):
        interpolate_clip(FakeModel(), frames, plan, out=torch.empty(4, 3, 8, 12), interpolate_fn=Blend())


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="movedim"):
        interpolate_clip(FakeModel(), torch.rand(3, 32, 32, 3), [OutputFrame(0)], interpolate_fn=Blend())
    with pytest.raises(ValueError, match="only 3 frame"):
        interpolate_clip(FakeModel(), _frames(3), [OutputFrame(2, 0.5)], interpolate_fn=Blend())
    with pytest.raises(ValueError, match="cut indices"):
        interpolate_clip(FakeModel(), _frames(3), [OutputFrame(0)], cuts=[2], interpolate_fn=Blend())


def test_alpha_rides_along_as_aux_and_copies_stay_exact():
    frames = _frames(3, c=4)
    plan = schedule.multiplier_plan(3, 2)
    out = interpolate_clip(FakeModel(), frames, plan, interpolate_fn=Blend())
    assert out.shape == (5, 4, 8, 12)
    assert torch.equal(out[0], frames[0]) and torch.equal(out[4], frames[2])
    torch.testing.assert_close(out, _expected_blend(frames, plan))


def test_cut_pairs_repeat_the_nearer_frame_and_are_not_interpolated():
    frames = _frames(4)
    plan = schedule.multiplier_plan(4, 4)
    fn = Blend()
    out = interpolate_clip(FakeModel(), frames, plan, cuts=torch.tensor([1]), interpolate_fn=fn)
    assert sum(batch for batch, _ in fn.calls) == 2
    # pair 1 spans outputs 4..8: t = 1/4, 1/2 repeat frame 1, t = 3/4 repeats frame 2
    for k, source in ((5, 1), (6, 1), (7, 2)):
        assert torch.equal(out[k], frames[source])
    torch.testing.assert_close(out[:4], _expected_blend(frames, plan)[:4])


# ----------------------------------------------------------------------------------------------- HDR

def test_hdr_curve_is_identity_below_the_knee_and_inverts():
    peak = torch.tensor([1.0, 4.0, 100.0])
    x = torch.linspace(0, 1, 101).view(1, 1, 1, -1).repeat(3, 1, 1, 1) * peak.view(-1, 1, 1, 1)
    y = clip.hdr_encode(x, peak)
    assert float(y.max()) <= 1 and torch.allclose(y.amax(dim=(1, 2, 3)), torch.ones(3))
    assert torch.equal(y[0], x[0])  # peak <= 1: untouched
    low = x <= clip.HDR_KNEE
    assert torch.equal(y[low], x[low])
    assert (y[1:].flatten(1).diff(dim=1) > 0).all()  # strictly increasing, so invertible
    torch.testing.assert_close(clip.hdr_decode(y, peak), x, rtol=1e-4, atol=1e-5)


def test_hdr_values_above_one_survive_and_stay_between_their_sources():
    frames = _frames(3, peak=8.0)
    plan = schedule.multiplier_plan(3, 2)
    out = interpolate_clip(FakeModel(), frames, plan, interpolate_fn=Blend())
    middle = out[1]
    assert float(middle.max()) > 1.5
    lo, hi = torch.minimum(frames[0], frames[1]), torch.maximum(frames[0], frames[1])
    assert bool(((middle >= lo - 1e-4) & (middle <= hi + 1e-4)).all())
    # a still HDR pair comes back unchanged through encode -> network -> decode
    still = torch.stack([frames[0], frames[0]])
    torch.testing.assert_close(interpolate_clip(FakeModel(), still, plan[:3], interpolate_fn=Blend())[1], frames[0],
                               rtol=1e-4, atol=1e-4)
    clipped = interpolate_clip(FakeModel(), frames, plan, hdr=False, interpolate_fn=Blend())
    assert float(clipped[1].max()) <= 1


def test_sdr_input_gives_exactly_the_plain_result():
    frames = _frames(4)
    plan = schedule.multiplier_plan(4, 2)
    auto = interpolate_clip(FakeModel(), frames, plan, interpolate_fn=Blend())
    plain = interpolate_clip(FakeModel(), frames, plan, hdr=False, interpolate_fn=Blend())
    assert torch.equal(auto, plain)


# ----------------------------------------------------------------------------------------------- memory

def test_pair_memory_estimate_scales_sensibly():
    small, big = emavfi.get_config("ours_small"), emavfi.get_config("ours")
    base = clip.estimate_pair_bytes(small, 1080, 1920)
    assert clip.estimate_pair_bytes(small, 1080, 1920, dtype=torch.float16) * 2 == base
    assert clip.estimate_pair_bytes(big, 1080, 1920) > 1.9 * base
    assert clip.estimate_pair_bytes(small, 1080, 1920, tta=True) > 1.8 * base
    assert clip.estimate_pair_bytes(small, 2160, 3840) > 3.9 * base
    assert clip.estimate_pair_bytes(small, 1080, 1920, n_timesteps=8) > base
    # measured on CPU: ours_small at 256x448 peaked near 240 MiB
    assert 150 << 20 < clip.estimate_pair_bytes(small, 256, 448) < 400 << 20


def test_auto_chunk_size_bounds():
    assert clip.auto_chunk_size(10 << 30, 1 << 30) == 7
    assert clip.auto_chunk_size(1 << 20, 1 << 30) == 1
    assert clip.auto_chunk_size(1 << 50, 1 << 20, max_chunk=16) == 16


def test_auto_chunk_is_picked_from_free_memory(monkeypatch):
    monkeypatch.setattr(clip, "free_memory_bytes", lambda device: 3 * clip.estimate_pair_bytes(TINY, 8, 12) + 10)
    runner = ClipInterpolator(FakeModel(), interpolate_fn=Blend())
    runner(_frames(9), schedule.multiplier_plan(9, 2))
    assert runner.chunk_size == 2  # 70 % of three pairs' worth


# ----------------------------------------------------------------------------------------------- real model

@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    return emavfi.build_model(TINY).eval()


def test_real_tiny_model_matches_direct_interpolate(tiny_model):
    frames = _frames(4, h=40, w=56, seed=3)  # not a multiple of 32: interpolate pads
    plan = schedule.multiplier_plan(4, 3)
    out = interpolate_clip(tiny_model, frames, plan, chunk_size=2)
    for k, frame in enumerate(plan):
        if frame.is_copy:
            assert torch.equal(out[k], frames[frame.source])
    for pair in range(3):
        expected = emavfi.interpolate(tiny_model, frames[pair:pair + 1], frames[pair + 1:pair + 2], [1 / 3, 2 / 3])
        torch.testing.assert_close(out[3 * pair + 1:3 * pair + 3], expected[:, 0], rtol=1e-4, atol=1e-5)
    one_by_one = interpolate_clip(tiny_model, frames, plan, chunk_size=1)
    torch.testing.assert_close(out, one_by_one, rtol=1e-4, atol=1e-5)


def test_real_tiny_model_alpha_hdr_and_recursion(tiny_model):
    frames = _frames(3, c=4, h=32, w=32, seed=4)
    frames[:, :3] *= 6  # HDR RGB, alpha in 0..1
    plan = schedule.multiplier_plan(3, 4)
    out = interpolate_clip(tiny_model, frames, plan, recursive=True)
    assert out.shape == (9, 4, 32, 32) and bool(torch.isfinite(out).all())
    assert float(out[1:4, :3].max()) > 1
    assert float(out[:, 3].min()) >= -1e-5 and float(out[:, 3].max()) <= 1 + 1e-5
    # recursion: t = 1/4 equals t = 1/2 between frame 0 and the middle frame the model made
    peak = torch.maximum(frames[0, :3].max(), frames[1, :3].max()).view(1)
    enc = [clip.hdr_encode(frames[i:i + 1, :3], peak) for i in (0, 1)]
    mid, mid_alpha = emavfi.interpolate(tiny_model, enc[0], enc[1], 0.5, aux0=frames[0:1, 3:], aux1=frames[1:2, 3:])
    quarter = emavfi.interpolate(tiny_model, enc[0], mid, 0.5, aux0=frames[0:1, 3:], aux1=mid_alpha)[0]
    torch.testing.assert_close(out[1, :3], clip.hdr_decode(quarter, peak)[0], rtol=1e-4, atol=1e-4)
