"""The public `interpolate` call: shapes, padding, TTA, HR mode, timestep reuse, aux channels, bad input."""
from __future__ import annotations

import warnings

import pytest
import torch
import torch.nn.functional as F

import emavfi
from helpers import frames, tiny_model


@pytest.fixture(scope="module")
def model():
    return tiny_model()


def _spy_backbone(model, monkeypatch) -> list[tuple[str, int]]:
    """Record (stage, number of frames or pairs) for every backbone call."""
    calls: list[tuple[str, int]] = []
    bone = model.feature_bone
    frame_features, pair_features = bone.frame_features, bone.pair_features

    def spy_frames(frames):
        calls.append(("frames", frames.shape[0]))
        return frame_features(frames)

    def spy_pairs(feats, first, second, with_motion=True):
        calls.append(("pairs", feats.tokens4.shape[0] // 2 if first is None else first.shape[0]))
        return pair_features(feats, first, second, with_motion)

    monkeypatch.setattr(bone, "frame_features", spy_frames)
    monkeypatch.setattr(bone, "pair_features", spy_pairs)
    return calls


def test_shapes_dtype_and_device_follow_the_inputs(model):
    img0, img1 = frames(2, 40, 56)
    one = emavfi.interpolate(model, img0, img1, 0.5)
    many = emavfi.interpolate(model, img0, img1, [0.25, 0.5, 0.75])
    assert one.shape == (2, 3, 40, 56) and many.shape == (3, 2, 3, 40, 56)
    assert one.dtype == torch.float32 and not one.requires_grad
    assert 0 <= one.min() and one.max() <= 1
    half = emavfi.interpolate(model, img0.double(), img1.double(), 0.5)
    assert half.dtype == torch.float64  # computed in the model's dtype, returned in the input's
    assert torch.allclose(half.float(), one, atol=1e-6)


@pytest.mark.parametrize("kwargs,expected", [
    ({}, [("frames", 2), ("pairs", 1)]),
    ({"tta": True}, [("frames", 2), ("pairs", 1)] * 2),
    ({"fast_tta": True}, [("frames", 4), ("pairs", 2)]),
    ({"scale": 0.5}, [("frames", 2), ("pairs", 1)] * 2),
])
def test_timesteps_share_one_backbone_pass(model, monkeypatch, kwargs, expected):
    calls = _spy_backbone(model, monkeypatch)
    img0, img1 = frames(1, 64, 64)
    emavfi.interpolate(model, img0, img1, [0.125 * i for i in range(1, 8)], **kwargs)
    assert calls == expected


def test_sequence_computes_each_frame_once_and_matches_pairwise_calls(model, monkeypatch):
    clip = torch.cat(frames(3, 48, 64, seed=8))[:5]
    expected = emavfi.interpolate(model, clip[:-1], clip[1:], [0.25, 0.5])
    calls = _spy_backbone(model, monkeypatch)
    together = emavfi.interpolate_sequence(model, clip, [0.25, 0.5], chunk=4)
    assert calls == [("frames", 5), ("pairs", 4)]
    calls.clear()
    one_by_one = emavfi.interpolate_sequence(model, clip, [0.25, 0.5], chunk=3)
    assert calls == [("frames", 4), ("pairs", 3), ("frames", 2), ("pairs", 1)]
    assert torch.allclose(one_by_one, together, atol=1e-6)
    assert together.shape == (2, 4, 3, 48, 64)
    assert torch.allclose(together, expected, atol=1e-6)
    alpha = torch.rand(5, 1, 48, 64)
    _, fused = emavfi.interpolate_sequence(model, clip, 0.5, aux=alpha, fast_tta=True)
    _, pairwise = emavfi.interpolate(model, clip[:-1], clip[1:], 0.5, aux0=alpha[:-1], aux1=alpha[1:], fast_tta=True)
    assert torch.allclose(fused, pairwise, atol=1e-6)
    with pytest.raises(ValueError, match="at least two frames"):
        emavfi.interpolate_sequence(model, clip[:1])


def test_several_timesteps_equal_single_calls(model):
    img0, img1 = frames(2, 64, 96, seed=1)
    ts = [0.2, 0.5, 0.9]
    together = emavfi.interpolate(model, img0, img1, ts)
    for i, t in enumerate(ts):
        assert torch.allclose(together[i], emavfi.interpolate(model, img0, img1, t), atol=1e-6)


@pytest.mark.parametrize("h,w", [(1, 1), (5, 7), (33, 65), (50, 70)])
def test_odd_sizes_match_the_official_padded_pipeline(model, h, w):
    img0, img1 = frames(1, h, w, seed=2)
    ours = emavfi.interpolate(model, img0, img1, 0.5)
    # the official InputPadder: replicate padding, centred, to the next multiple of 32
    d = 32
    ph, pw = ((h // d + 1) * d - h) % d, ((w // d + 1) * d - w) % d
    pad = (pw // 2, pw - pw // 2, ph // 2, ph - ph // 2)
    padded = [F.pad(x, pad, mode="replicate") for x in (img0, img1)]
    with torch.no_grad():
        feats = model.extract(*padded)
        est = model.estimate_flow(*padded, feats, 0.5)
        full = model.synthesize(*padded, feats.appearance, est.flow, est.mask_logit).frame
    assert ours.shape == (1, 3, h, w)
    assert torch.equal(ours, full[:, :, pad[2]:pad[2] + h, pad[0]:pad[0] + w])


def test_hr_mode_pads_to_its_larger_divisor(model):
    img0, img1 = frames(1, 70, 90, seed=3)
    assert emavfi.inference.padding_divisor(0.25) == 64
    out = emavfi.interpolate(model, img0, img1, 0.5, scale=0.25)
    assert out.shape == (1, 3, 70, 90)
    assert not torch.allclose(out, emavfi.interpolate(model, img0, img1, 0.5))


def test_fast_tta_is_correct_for_any_batch(model):
    img0, img1 = frames(3, 64, 64, seed=4)
    fast = emavfi.interpolate(model, img0, img1, [0.3, 0.6], fast_tta=True)
    slow = emavfi.interpolate(model, img0, img1, [0.3, 0.6], tta=True)
    assert torch.allclose(fast, slow, atol=2e-6)
    for i in range(3):
        alone = emavfi.interpolate(model, img0[i:i + 1], img1[i:i + 1], [0.3, 0.6], tta=True)
        assert torch.allclose(fast[:, i], alone[:, 0], atol=2e-6)
    assert not torch.allclose(slow, emavfi.interpolate(model, img0, img1, [0.3, 0.6]), atol=1e-4)


def test_results_do_not_depend_on_earlier_calls(model):
    # the reference caches shifted-window masks by padded area, so a 96x64 call after a 64x96 one differs
    a0, a1 = frames(1, 64, 96, seed=5)
    b0, b1 = frames(1, 96, 64, seed=6)
    first = emavfi.interpolate(model, a0, a1, 0.5)
    emavfi.interpolate(model, b0, b1, 0.5)
    assert torch.equal(first, emavfi.interpolate(model, a0, a1, 0.5))
    assert len(list(model.buffers())) == 0


def test_aux_channels_follow_the_rgb_flow(model):
    img0, img1 = frames(2, 48, 64, seed=7)
    const = torch.full((2, 1, 48, 64), 0.7)
    rgb, alpha = emavfi.interpolate(model, img0, img1, [0.25, 0.75], aux0=const, aux1=const)
    assert alpha.shape == (2, 2, 1, 48, 64)
    assert torch.allclose(alpha, torch.full_like(alpha, 0.7), atol=1e-6)
    assert torch.equal(rgb, emavfi.interpolate(model, img0, img1, [0.25, 0.75]))
    # warping the frames themselves as aux gives the pre-refine blend of the network
    _, blended = emavfi.interpolate(model, img0, img1, 0.25, aux0=img0, aux1=img1)
    d = 32
    pad = (0, 0, (-48 % d) // 2, -48 % d - (-48 % d) // 2)
    p0, p1 = (F.pad(x, pad, mode="replicate") for x in (img0, img1))
    with torch.no_grad():
        feats = model.extract(p0, p1)
        est = model.estimate_flow(p0, p1, feats, 0.25)
        merged = model.synthesize(p0, p1, feats.appearance, est.flow, est.mask_logit).merged
    assert torch.allclose(blended, merged[:, :, pad[2]:pad[2] + 48], atol=1e-6)
    _, tta_alpha = emavfi.interpolate(model, img0, img1, 0.5, aux0=const, aux1=const, fast_tta=True)
    assert torch.allclose(tta_alpha, torch.full_like(tta_alpha, 0.7), atol=1e-6)


def test_non_t_variant_warns_once_per_calling_line_with_a_stable_category():
    model = tiny_model(arbitrary_t=False)
    img0, img1 = frames(1, 32, 32)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("default")  # Python's own once-per-location filter; no state kept by emavfi
        emavfi.interpolate(model, img0, img1, 0.5)
        assert not caught
        for t in ([0.25, 0.5], 0.75):
            emavfi.interpolate(model, img0, img1, t)
        emavfi.interpolate_sequence(model, torch.cat([img0, img1]), 0.25)
    assert [w.category for w in caught] == [emavfi.inference.UntrainedTimestepWarning] * 2
    assert all(w.filename == __file__ for w in caught)  # points at the caller, not at emavfi
    assert "trained for t = 0.5 only" in str(caught[0].message)
    assert not hasattr(emavfi.inference, "_WARNED_T")


def test_a_scheduled_run_is_warned_once_by_its_schedule():
    from emavfi.clips import interpolate_clip
    from emavfi.schedule import Request, make_schedule

    model = tiny_model(arbitrary_t=False)
    clip = torch.cat(frames(1, 32, 32))
    plan = make_schedule(Request(multiplier=3, method="direct"), 2, arbitrary_t=False)
    assert "trained for t = 0.5 only" in plan.warning  # what the CLI and the nodes show, once
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        out = interpolate_clip(model, clip, plan)
    assert out.shape[0] == 4 and not [w for w in caught if w.category is emavfi.inference.UntrainedTimestepWarning]


def _bad(model, img0, img1, t=0.5, **kw):
    return emavfi.interpolate(model, img0, img1, t, **kw)


@pytest.mark.parametrize("make,error,match", [
    (lambda a, b: (a[0], b[0]), ValueError, r"shape \[B,3,H,W\]"),
    (lambda a, b: (a[:, :2], b[:, :2]), ValueError, r"shape \[B,3,H,W\]"),
    (lambda a, b: (a, b[:, :, :16]), ValueError, "same shape"),
    (lambda a, b: (a, b.double()), TypeError, "share dtype"),
    (lambda a, b: ((a * 255).to(torch.uint8), b), TypeError, "float tensor"),
    (lambda a, b: (a[:0], b[:0]), ValueError, "empty"),
    (lambda a, b: (a.clone().index_fill_(3, torch.tensor([3]), float("nan")), b), ValueError, "NaN"),
    (lambda a, b: (a, b.clone().index_fill_(2, torch.tensor([1]), float("inf"))), ValueError, "NaN or Inf"),
    (lambda a, b: (a * 2, b), ValueError, r"values must be in \[0, 1\]"),
    (lambda a, b: (a.numpy(), b), TypeError, "torch.Tensor"),
])
def test_bad_frames_get_one_clear_error(model, make, error, match):
    img0, img1 = frames(1, 32, 32)
    with pytest.raises(error, match=match):
        _bad(model, *make(img0, img1))


@pytest.mark.parametrize("kwargs,error,match", [
    ({"t": 1.5}, ValueError, r"in \[0, 1\]; got 1.5"),
    ({"t": [0.5, -0.1]}, ValueError, r"in \[0, 1\]; got -0.1"),
    ({"t": float("nan")}, ValueError, r"in \[0, 1\]"),
    ({"t": []}, ValueError, "empty"),
    ({"t": "0.5"}, TypeError, "float or a sequence"),
    ({"scale": 0}, ValueError, r"scale must be in \(0, 1\]"),
    ({"scale": 0.3}, ValueError, "whole number"),
    ({"aux0": torch.zeros(1, 1, 32, 32)}, ValueError, "both aux0 and aux1"),
    ({"aux0": torch.zeros(1, 1, 16, 32), "aux1": torch.zeros(1, 1, 16, 32)}, ValueError, "aux0 must be"),
])
def test_bad_options_get_one_clear_error(model, kwargs, error, match):
    img0, img1 = frames(1, 32, 32)
    with pytest.raises(error, match=match):
        _bad(model, img0, img1, **kwargs)


@pytest.mark.parametrize("kwargs", [{}, {"fast_tta": True}, {"tta": True}, {"scale": 0.5}])
def test_batched_timesteps_equal_one_at_a_time(model, kwargs):
    clip = torch.cat(frames(2, 64, 64, seed=9))[:3]
    alpha = torch.rand(3, 1, 64, 64)
    ts = [0.1, 0.4, 0.6, 0.9]
    looped = emavfi.interpolate_sequence(model, clip, ts, aux=alpha, timesteps_per_call=1, **kwargs)
    batched = emavfi.interpolate_sequence(model, clip, ts, aux=alpha, timesteps_per_call=3, **kwargs)
    for one, many in zip(looped, batched):
        assert torch.allclose(one, many, atol=2e-6)
    with pytest.raises(ValueError, match="timesteps_per_call must be a positive integer"):
        emavfi.interpolate_sequence(model, clip, ts, timesteps_per_call=0)


def test_geometry_caches_belong_to_the_model_and_are_bounded_in_bytes():
    import copy
    import pickle

    from emavfi.model import warp, windows

    model = tiny_model()
    img0, img1 = frames(1, 40, 56, seed=10)
    cached = emavfi.interpolate(model, img0, img1, 0.5)
    assert len(model.geometry) > 0 and 0 < model.geometry.nbytes <= model.geometry.max_bytes
    assert model.feature_bone.geometry is model.geometry
    assert not any(hasattr(f, "cache_clear") for f in (warp.base_grid, windows.attention_mask, windows.coordinate_map))
    assert len(copy.deepcopy(model).geometry) == 0 and len(pickle.loads(pickle.dumps(model)).geometry) == 0
    model.float()  # any move or cast (ComfyUI loading/offloading the model) drops the cached tensors
    assert len(model.geometry) == 0
    emavfi.interpolate(model, img0, img1, 0.5)
    model.clear_caches()
    assert len(model.geometry) == 0 and model.geometry.nbytes == 0
    model.geometry.max_bytes = 4096  # too small for the 40x56 grid, big enough for the token-grid tensors
    small = emavfi.interpolate(model, img0, img1, 0.5)
    assert 0 < model.geometry.nbytes <= 4096
    model.geometry.max_bytes = 0
    model.clear_caches()
    uncached = emavfi.interpolate(model, img0, img1, 0.5)
    assert len(model.geometry) == 0
    assert torch.equal(cached, small) and torch.equal(cached, uncached)


def test_interpolate_pairs_shares_frames_between_pairs(model, monkeypatch):
    clip = torch.cat(frames(2, 48, 64, seed=11))  # 4 frames
    first, second = [0, 1, 0], [1, 2, 3]
    calls = _spy_backbone(model, monkeypatch)
    out = emavfi.inference.interpolate_pairs(model, clip, first, second, [0.25, 0.5])
    assert calls == [("frames", 4), ("pairs", 3)] and out.shape == (2, 3, 3, 48, 64)
    monkeypatch.undo()
    expected = emavfi.interpolate(model, clip[first], clip[second], [0.25, 0.5])
    assert torch.allclose(out, expected, atol=1e-6)
    with pytest.raises(ValueError, match=r"second indices must be in 0..3"):
        emavfi.inference.interpolate_pairs(model, clip, [0], [4], [0.5])


@pytest.mark.parametrize("model", [None, "ours_small_t.safetensors", torch.nn.Linear(2, 2)])
def test_a_wrong_model_argument_is_one_clear_type_error(model):
    img0, img1 = frames(h=32, w=32)
    for call in (lambda: emavfi.interpolate(model, img0, img1),
                 lambda: emavfi.interpolate_sequence(model, torch.cat([img0, img1]))):
        with pytest.raises(TypeError, match="model must be an EMA-VFI network"):
            call()


def test_sequence_runs_the_engine_loop_with_hdr_cuts_and_exact_ends(model):
    data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float() / 255
    shot = [photo[:, 40 + 3 * i:104 + 3 * i, 30 + 2 * i:94 + 2 * i] for i in range(5)]
    shot += [photo[:, 300 + 3 * i:364 + 3 * i, 330 - 2 * i:394 - 2 * i] for i in range(4)]  # a cut after frame 4
    clip = torch.stack(shot)
    from emavfi import clips, cuts, schedule

    hdr = clip * 4  # linear light above 1: mapped into range and back, as the command line does
    made = clips.interpolate_clip(model, hdr, schedule.multiplier_plan(9, 2))
    assert torch.equal(emavfi.interpolate_sequence(model, hdr, 0.5), made[1::2])
    out = emavfi.interpolate_sequence(model, clip, [0.25, 0.75], cut_threshold=cuts.DEFAULT_CUT_THRESHOLD)
    assert torch.equal(out[0, 4], clip[4]) and torch.equal(out[1, 4], clip[5])  # the cut pair repeats its sides
    assert not torch.equal(out[0, 3], clip[3])  # a pair inside the shot is interpolated
    ends = emavfi.interpolate_sequence(model, clip, [0, 1])
    assert torch.equal(ends[0], clip[:-1]) and torch.equal(ends[1], clip[1:])
