"""Burned-in overlay detection (emavfi.overlays) on real photographs: found where composited, never on a moving
picture without one, and decided the same however a clip is split."""
from __future__ import annotations

import pytest
import torch

from emavfi import overlays
from emavfi.overlay_masks import _spread_components, components, drop_specks, fill_holes, square_max, trim_edges

pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytest.importorskip("PIL", reason="the overlays' text is drawn with Pillow")
pytestmark = pytest.mark.usefixtures("one_thread")


def _clip(name: str, frames: slice = slice(None)):
    from benchmarks.overlay_dataset import make_clips

    clip = make_clips(names=[name])[0]
    return clip.frames[frames], clip.truth[frames]


def _scores(found: torch.Tensor, truth: torch.Tensor) -> tuple[float, float]:
    hit = int((found & truth).sum())
    return hit / max(int(found.sum()), 1), hit / max(int(truth.sum()), 1)


@pytest.mark.parametrize("name", ["hud over pan astronaut", "timecode over walking over pan stereo_motorcycle"])
def test_opaque_overlays_over_a_moving_picture_are_found(name):
    frames, truth = _clip(name, slice(0, 40))
    precision, recall = _scores(overlays.detect_overlays(frames), truth)
    assert precision >= 0.95 and recall >= 0.75, (precision, recall)


def test_a_subtitle_is_found_while_it_is_shown_and_not_before_or_after():
    frames, truth = _clip("subtitle over zoom chelsea")
    found = overlays.detect_overlays(frames)
    shown = truth.flatten(1).any(1)
    assert not found[~shown].any()  # before it appears and after it goes: nothing held
    precision, recall = _scores(found[shown], truth[shown])
    assert precision >= 0.9 and recall >= 0.95, (precision, recall)


@pytest.mark.parametrize("name", ["still camera noise 0.02", "fade out still chelsea", "fast ball over still astronaut",
                                  "walking over still coffee", "slow pan astronaut 0.25 px", "cut still to still"])
def test_nothing_is_held_without_an_overlay(name):
    frames, _ = _clip(name, slice(8, 64))
    assert not overlays.detect_overlays(frames).any()


@pytest.mark.parametrize("name", ["zoom astronaut", "fade in pan rocket", "slow pan coffee 0.5 px"])
def test_a_zooms_still_centre_a_fade_in_and_a_slow_pan_are_not_overlays(name):
    frames, _ = _clip(name)  # the zoom's centre barely moves, the fade's first frames are black, the pan's edges
    # slide along themselves
    assert not overlays.detect_overlays(frames).any()


def _composited(picture: torch.Tensor, overlay=None, seed: int = 5):
    """A clip built as the evaluation set builds one: camera noise, the overlay, a light codec noise."""
    from benchmarks.overlay_dataset import CODEC_NOISE, SENSOR_NOISE, _noise

    generator = torch.Generator().manual_seed(seed)
    frames = _noise(picture, generator, SENSOR_NOISE)
    frames, truth = overlay(frames) if overlay else (frames, torch.zeros(frames.shape[0], *frames.shape[-2:]) > 0)
    return _noise(frames, generator, CODEC_NOISE), truth


def test_a_hud_over_a_smooth_picture_panning_under_a_pixel_a_frame_is_found():
    from benchmarks.overlay_dataset import hud, pan

    # the clock photograph is smooth: between two frames 0.9 px apart most of its edges stay put, so each pair
    # looks still; over a run of 25 frames it has moved 21.6 px
    frames, truth = _composited(pan("clock", 0.9)[:40], hud)
    precision, recall = _scores(overlays.detect_overlays(frames), truth)
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_a_figure_walking_over_a_still_picture_is_neither_motion_nor_an_overlay():
    from benchmarks.overlay_dataset import moving_object, still
    from emavfi.overlay_motion import Motion, estimate

    # a bright cut-out crossing the dark coat changes the frame's mean as much as a fade would
    frames, _ = _composited(moving_object(still("camera")[:56], "coffee", (60, 50), (60, 270), (-0.5, -4.0), bob=3))
    y = overlays.lumas(frames)
    assert estimate(y[16], y[40], float(overlays.noise_levels(y[16:17]))) == Motion()
    assert not overlays.detect_overlays(frames).any()


def test_a_subtitle_over_a_dark_picture_holds_little_of_the_picture_between_its_lines():
    frames, truth = _clip("subtitle over pan coffee", slice(6, 66))  # shown in frames 12-59, outlined in black
    found = overlays.detect_overlays(frames)
    precision, recall = _scores(found, truth)
    assert precision >= 0.9 and recall >= 0.95, (precision, recall)
    rows = truth.any(0).any(1).nonzero().flatten()
    band = torch.zeros_like(truth[0])
    band[int(rows[0]):int(rows[-1]) + 1] = True  # the subtitle's rows, both lines and the picture between
    between = band & ~truth[30] & truth[30].any(0)[None]  # the picture among the letters
    assert int((found[30] & between).sum()) <= 0.25 * int(between.sum())


def test_a_hud_that_a_subtitle_will_cover_the_edge_of_is_found_before_the_subtitle_appears():
    frames, truth = _clip("several over pan astronaut", slice(0, 40))  # the subtitle appears in frame 12, on the
    # HUD's top edge: the runs of frames 4-11 see its edges, which frames 4-11 do not show
    precision, recall = _scores(overlays.detect_overlays(frames)[4:12], truth[4:12])
    assert precision >= 0.95 and recall >= 0.95, (precision, recall)


def test_a_semi_transparent_logo_is_found_through_the_moving_picture():
    frames, truth = _clip("logo over fast pan rocket", slice(0, 40))  # plate 35 %, letters 75 % white
    precision, recall = _scores(overlays.detect_overlays(frames), truth)
    assert precision >= 0.9 and recall >= 0.9, (precision, recall)


def test_a_frame_is_decided_the_same_in_any_batch_or_task():
    frames, _ = _clip("several over pan astronaut", slice(0, 50))
    whole = overlays.detect_overlays(frames)
    assert whole.any()
    finder = overlays.OverlayFinder(frames.shape[0])
    source = overlays._TensorFrames(frames)
    for lo in range(20, 49, 2):  # a task from frame 20 on, two frames a batch
        assert torch.equal(finder.masks(source, lo, lo + 1) > 0, whole[lo:lo + 2]), lo
    assert sorted(finder.decided) == list(range(20, 50)) and set(finder.found) <= set(range(20, 50))


def test_a_finder_asked_for_earlier_frames_after_later_ones_decides_them_as_the_whole_clip():
    """A VapourSynth seek back: the frames and pairs let go of after later frames are made again."""
    frames, _ = _clip("several over pan astronaut", slice(0, 72))
    whole = overlays.detect_overlays(frames)
    finder = overlays.OverlayFinder(frames.shape[0])
    source = overlays._TensorFrames(frames)
    for lo, hi in ((60, 62), (2, 4), (40, 41), (3, 3)):
        assert torch.equal(finder.masks(source, lo, hi) > 0, whole[lo:hi + 1]), (lo, hi)


def test_masks_come_back_at_full_size_from_the_reduced_analysis():
    assert overlays.analysis_factor(1080, 1920) == 5 and overlays.analysis_factor(144, 256) == 1
    frames = torch.zeros(1, 3, 1081, 1919)
    assert overlays.lumas(frames).shape == (1, 217, 384)
    masks = torch.zeros(2, 217, 384, dtype=torch.bool)
    masks[0, 216, 3] = True  # the last row: one of five full-size rows is left
    big = overlays.full_size(masks, (1081, 1919))
    assert big.shape == (2, 1081, 1919) and big[0, 1080, 15:20].all() and int(big.sum()) == 5


def test_the_pictures_motion_is_measured_under_an_overlay():
    from emavfi.overlay_motion import estimate

    for name, scale, dx, dy in (("timecode over pan astronaut", 1.0, -2.0, 0.0),
                                ("subtitle over zoom chelsea", 1 / 0.985, 0.0, 0.0),
                                ("hud over fast pan rocket", 1.0, -6.0, 0.0)):
        frames, _ = _clip(name, slice(28, 30))  # the overlay is shown in both
        y = overlays.lumas(frames)
        motion = estimate(y[0], y[1], float(overlays.noise_levels(y).max()))
        assert abs(motion.scale - scale) < 2e-3 and abs(motion.dx - dx) < 0.2 and abs(motion.dy - dy) < 0.2, \
            (name, motion)


def test_holes_are_filled_and_specks_dropped():
    ring = torch.zeros(12, 12, dtype=torch.bool)
    ring[2:9, 2:9] = True
    ring[4:7, 4:7] = False  # a hole: filled
    ring[0, 11] = True  # a speck: dropped
    filled = fill_holes(ring)
    assert filled[2:9, 2:9].all() and filled[0, 11]
    assert not drop_specks(filled, 4)[0, 11] and drop_specks(filled, 4)[2:9, 2:9].all()


def test_regions_are_labelled_as_a_pixel_by_pixel_spread_labels_them():
    import skimage.data as data
    import torch.nn.functional as F

    coins = torch.from_numpy(data.coins()[::3, ::3].copy()).float() / 255
    mask = coins > coins.mean()  # coins and the gaps of a real photograph: many regions of every shape
    labels = torch.where(mask, torch.arange(mask.numel()).view_as(mask), -1)
    while True:  # the slow reference: each pixel takes the smallest label of its 4 neighbours, until none changes
        padded = F.pad(torch.where(mask, labels, mask.numel())[None, None].float(), (1, 1, 1, 1),
                       value=mask.numel())[0, 0].long()
        spread = torch.stack([padded[1:-1, 1:-1], padded[:-2, 1:-1], padded[2:, 1:-1], padded[1:-1, :-2],
                              padded[1:-1, 2:]]).amin(0)
        spread = torch.where(mask, spread, -1)
        if torch.equal(spread, labels):
            break
        labels = spread
    assert torch.equal(components(mask), labels) and len(labels.unique()) > 20


def test_scipys_labels_equal_the_spread_labels_and_square_maxima_a_max_pool():
    import skimage.data as data
    import torch.nn.functional as F

    pytest.importorskip("scipy.ndimage")
    for name in ("camera", "coins"):
        photo = torch.from_numpy(getattr(data, name)().copy()).float()[None, None] / 255
        small = F.interpolate(photo, size=(108, 192), mode="area")[0, 0]
        for mask in (small > small.mean(), small < 0.2, small > 2, small >= 0):
            assert torch.equal(components(mask), _spread_components(mask))
        for px in (1, 2, 3):
            assert torch.equal(square_max(small, px), F.max_pool2d(small[None, None], 2 * px + 1, 1, px)[0, 0])


def test_an_edge_found_on_both_of_its_sides_is_trimmed_to_the_overlays_side():
    picture = torch.full((10, 12), 0.8)
    picture[3:7, 3:9] = 0.1  # a dark box; the region found is one pixel wider all round
    region = torch.zeros(10, 12, dtype=torch.bool)
    region[2:8, 2:10] = True
    assert torch.equal(trim_edges(region, picture), picture < 0.5)
