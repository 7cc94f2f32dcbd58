"""emavfi.cuts: categories of the photograph evaluation set, the fixed-context contract, HDR, validation."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from emavfi import cuts
from emavfi.cuts import CUT_CONTEXT, DEFAULT_CUT_THRESHOLD, cut_scores, decide_cuts, detect_cuts, local_baseline

# Two or three of the hardest clips of each category of benchmarks/cut_dataset.py (the benchmark runs all).
CLIPS = {
    "same-scene cut": ["reverse shot chelsea", "reverse shot rocket", "same clock halves",
                       "reframe immunohistochemistry", "punch-in coffee"],
    "cross-scene cut": ["camera to coins"],
    "cut from black": ["black then rocket"],
    "cut after first frame": ["astronaut frame then astronaut"],
    "two cuts": ["camera/camera/camera"],
    "pan": ["still then whip pan chelsea", "pan hubble_deep_field +12,-4 px"],
    "zoom": ["zoom coffee x1.06/frame"],
    "rotation": ["rotate coins -12 deg/frame"],
    "exposure step": ["exposure x0.93 astronaut", "exposure x0.85 coffee", "exposure x1.15 rocket"],
    "occluder": ["hand over coffee in 4 frames", "hand over stereo_motorcycle in 6 frames"],
    "static noise": ["still coffee x0.2 noise 0.012", "flat grey wall noise 0.01"],
    "dissolve": ["dissolve astronaut to chelsea"],
}
NAMES = [name for names in CLIPS.values() for name in names]


@pytest.fixture(scope="module")
def clips():
    pytest.importorskip("skimage", reason="the evaluation set is rendered from scikit-image's photographs")
    from benchmarks.cut_dataset import make_clips

    before = torch.get_num_threads()
    torch.set_num_threads(1)  # small tensors; spinning threads crawl on a busy machine
    yield {clip.name: clip for clip in make_clips(names=NAMES)}
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def scores(clips):
    return {name: cut_scores(clip.frames) for name, clip in clips.items()}


@pytest.mark.parametrize("name", NAMES, ids=[f"{c}: {n}" for c, names in CLIPS.items() for n in names])
def test_eval_set_clip(clips, scores, name):
    clip = clips[name]
    assert clip.category in CLIPS and name in CLIPS[clip.category]
    found = set(decide_cuts(scores[name])) - set(clip.ignore)  # inside a dissolve either answer is fine
    assert found == set(clip.cuts), f"{clip.category} '{name}': cuts {sorted(found)}, expected {sorted(clip.cuts)}"


def test_detect_cuts_is_decide_cuts_of_cut_scores(clips, scores):
    for name in ("two cuts", "cut from black"):
        clip = clips[CLIPS[name][0]]
        assert detect_cuts(clip.frames) == decide_cuts(scores[clip.name]) == sorted(clip.cuts)


def test_same_palette_cut_that_the_old_detector_missed(clips):
    # The right half mirrored: exactly the same colours, so any colour-distribution score is ~0.
    photo = clips["reverse shot chelsea"].frames[:8]
    mirrored = torch.cat([photo, photo[-1:].flip(-1).repeat(8, 1, 1, 1)])
    assert detect_cuts(mirrored) == [7]
    assert detect_cuts(clips["reverse shot chelsea"].frames) == [15]


def test_pair_scores_do_not_depend_on_batching(clips, monkeypatch):
    frames = torch.cat([clips[n].frames for n in ("camera/camera/camera", "black then rocket", "camera to coins")])
    whole = cut_scores(frames)  # 95 pairs: many batches of SERIAL_VALUES
    assert whole.shape == (95,)
    for i in range(0, 95, 7):
        assert torch.equal(cut_scores(frames[i:i + 2]), whole[i:i + 1]), f"pair {i}"
    monkeypatch.setattr(cuts, "SERIAL_VALUES", 5 << 15)
    monkeypatch.setattr(cuts, "PIXELS_PER_BATCH", 3 * 96 * 128)
    assert torch.equal(cut_scores(frames), whole)


def test_decision_depends_only_on_the_context_span_every_slice(scores):
    """Exhaustive: every slice [a, b) of the scores, every pair whose span it holds: same baseline, same decision."""
    for name in ("camera/camera/camera", "black then rocket", "still then whip pan chelsea",
                 "pan hubble_deep_field +12,-4 px", "hand over coffee in 4 frames"):
        s = scores[name]
        pairs = s.shape[0]
        baseline = local_baseline(s)
        whole = {t: set(decide_cuts(s, t)) for t in (0.5, 1.05, DEFAULT_CUT_THRESHOLD)}
        assert any(0 < len(cuts) < pairs for cuts in whole.values()), f"{name}: all pairs decided one way"
        for a in range(pairs):
            for b in range(a + 1, pairs + 1):
                local_baseline_ab = local_baseline(s[a:b])
                local = {t: set(decide_cuts(s[a:b], t)) for t in whole}
                for i in range(a, b):
                    if (a <= i - CUT_CONTEXT or a == 0) and (b > i + CUT_CONTEXT or b == pairs):
                        where = f"{name} pair {i} slice {a}:{b}"
                        assert local_baseline_ab[i - a] == baseline[i], where
                        assert all(((i - a) in local[t]) == (i in whole[t]) for t in whole), where


def test_detect_cuts_on_minimal_frame_slices_matches_whole_clip(clips):
    """End to end on frames: for every pair, the smallest slice of frames holding its span."""
    frames = clips["camera/camera/camera"].frames[6:]  # cuts at local pairs 9 and 12, a slow shot either side
    n = frames.shape[0]
    whole_scores = cut_scores(frames)
    whole = {t: set(detect_cuts(frames, t)) for t in (0.3, DEFAULT_CUT_THRESHOLD)}
    assert whole[DEFAULT_CUT_THRESHOLD] == {9, 12} and 2 < len(whole[0.3]) < n - 2  # both ways at 0.3
    for i in range(n - 1):
        start, stop = max(0, i - CUT_CONTEXT), min(n, i + 2 + CUT_CONTEXT)
        local_scores = cut_scores(frames[start:stop])
        assert torch.equal(local_scores, whole_scores[start:stop - 1]), f"scores of frames {start}:{stop}"
        for threshold, cuts_whole in whole.items():
            local = decide_cuts(local_scores, threshold)
            assert ((i - start) in local) == (i in cuts_whole), f"t={threshold} pair {i} frames {start}:{stop}"


def test_local_baseline_reads_exactly_the_neighbours_within_context():
    generator = torch.Generator().manual_seed(2)
    for distance in range(-CUT_CONTEXT - 3, CUT_CONTEXT + 4):
        scores = 1 + torch.rand(40, generator=generator)
        scores[20 + distance] = 0.0  # the lowest: raising it moves the quantile of every window it is in
        before = local_baseline(scores)[20]
        scores[20 + distance] = 1e3
        moved = local_baseline(scores)[20] != before
        assert moved == (1 <= abs(distance) <= CUT_CONTEXT), f"pair 20 vs a change {distance} pairs away"


def _inverse_tone_map(frames: torch.Tensor) -> torch.Tensor:
    """0..1 display frames to HDR with highlights up to 8 (1 -> 8, 0.5 -> 0.89, dark values nearly unchanged)."""
    return frames / (1 - 0.875 * frames)


@pytest.mark.parametrize("make_hdr", [lambda f: 8 * f, _inverse_tone_map], ids=["gain x8", "highlights to 8"])
def test_hdr_finds_the_same_cuts(clips, scores, make_hdr):
    peak = 0.0
    for name in ("reverse shot rocket", "camera to coins", "black then rocket", "exposure x0.93 astronaut",
                 "hand over coffee in 4 frames", "still then whip pan chelsea"):
        hdr = make_hdr(clips[name].frames)
        peak = max(peak, hdr.max().item())
        assert detect_cuts(hdr) == decide_cuts(scores[name]) == sorted(clips[name].cuts), name
    assert peak > 6


def test_alpha_and_extra_channels_are_ignored(clips):
    frames = clips["camera to coins"].frames
    rgba = torch.cat([frames, torch.rand(frames.shape[0], 2, *frames.shape[2:])], 1)
    assert torch.equal(cut_scores(rgba), cut_scores(frames))


def test_threshold_zero_disables_and_larger_thresholds_find_fewer(clips):
    frames = clips["camera/camera/camera"].frames
    assert detect_cuts(frames, 0) == [] and detect_cuts(frames, 0.0) == []
    counts = [len(detect_cuts(frames, t)) for t in (0.2, 1.0, DEFAULT_CUT_THRESHOLD, 50.0)]
    assert counts == sorted(counts, reverse=True) and counts[0] > 2 and counts[-1] == 0


def test_short_clips(clips):
    frames = clips["camera to coins"].frames
    assert detect_cuts(frames[:0]) == [] and cut_scores(frames[:0]).shape == (0,)
    assert detect_cuts(frames[:1]) == [] and cut_scores(frames[:1]).shape == (0,)
    assert detect_cuts(frames[15:17]) == [0]  # the cut, with no neighbours to compare with
    assert detect_cuts(frames[3:5]) == []  # a slow pan
    assert detect_cuts(clips["black then rocket"].frames[:2]) == [0]


def test_any_frame_size_and_half_precision():
    generator = torch.Generator().manual_seed(1)
    for size in ((1, 1), (7, 300), (300, 7), (720, 1280)):
        # a smooth picture: iid pixel noise would average to flat grey in the thumbnail
        shot = F.interpolate(torch.rand(1, 3, 3, 4, generator=generator), size=size, mode="bilinear")
        frames = torch.cat([shot.expand(3, -1, -1, -1), 1 - shot.expand(3, -1, -1, -1)])
        assert cut_scores(frames).shape == (5,)
        if min(size) > 1:
            assert detect_cuts(frames) == [2] and detect_cuts(frames.half()) == [2], size


@pytest.mark.parametrize("frames, error, message", [
    ([[0.5]], TypeError, "must be a torch.Tensor"),
    (torch.zeros(3, 8, 8), ValueError, r"\[N,C>=3,H,W\] with RGB first; got shape \[3, 8, 8\]"),
    (torch.zeros(2, 1, 8, 8), ValueError, r"got shape \[2, 1, 8, 8\]"),
    (torch.zeros(2, 3, 0, 8), ValueError, "got shape"),
    (torch.zeros(2, 3, 8, 8, dtype=torch.uint8), TypeError, "must be a float tensor .* got torch.uint8"),
])
def test_bad_frames(frames, error, message):
    for function in (detect_cuts, cut_scores):
        with pytest.raises(error, match=message):
            function(frames)


@pytest.mark.parametrize("threshold", [-1, -0.5, float("nan"), float("inf"), "3", None, True])
def test_bad_threshold(threshold):
    with pytest.raises(ValueError, match=r"cut threshold must be a finite number >= 0 \(0 disables detection\); got"):
        detect_cuts(torch.zeros(3, 3, 8, 8), threshold)
    with pytest.raises(ValueError, match="cut threshold"):
        decide_cuts(torch.zeros(2), threshold)


def test_messages_are_one_line():
    for call in (lambda: detect_cuts(torch.zeros(2, 2, 4, 4)), lambda: detect_cuts(torch.zeros(2, 3, 4, 4), -1)):
        with pytest.raises(ValueError) as info:
            call()
        assert "\n" not in str(info.value)
