"""Held regions (emavfi.protect): inside a mask the nearest source frame exactly, outside the run unchanged."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch
from helpers import tiny_model

from emavfi import protect
from emavfi.clips import render_clip
from emavfi.schedule import Request, make_schedule
from emavfi.settings import MAX_PROTECT_FEATHER, ProtectOptions, SettingsError


def _pan(n: int = 7, h: int = 48, w: int = 64, channels: int = 3) -> torch.Tensor:
    """n frames [N,C,H,W] of a real photograph panning 3 px a frame (C = 4: a moving alpha matte too)."""
    import skimage.data

    photo = torch.from_numpy(skimage.data.astronaut()).permute(2, 0, 1).float() / 255
    photo = torch.nn.functional.avg_pool2d(photo[None], 4)[0]
    frames = torch.stack([photo[:, 20:20 + h, 10 + 3 * k:10 + 3 * k + w] for k in range(n)])
    if channels == 4:
        frames = torch.cat([frames, frames[:, 1:2].clone()], 1)
    return frames.contiguous()


def _run(frames: torch.Tensor, multiplier: int = 3, **kwargs) -> torch.Tensor:
    schedule = make_schedule(Request(multiplier=multiplier), frames.shape[0], True)
    return render_clip(tiny_model(), frames, schedule, dtype=torch.float32, **kwargs).frames, schedule.plan


def _box_mask(h: int = 48, w: int = 64) -> torch.Tensor:
    mask = torch.zeros(h, w)
    mask[4:16, 6:30] = 1
    return mask


@pytest.mark.parametrize("channels", [3, 4])
def test_inside_nearest_source_outside_unchanged(channels):
    frames = _pan(channels=channels)
    plain, plan = _run(frames)
    held, _ = _run(frames, protect=protect.held_regions(frames.shape[0], _box_mask(), feather_px=2))
    assert held.shape == plain.shape
    inside = _box_mask() > 0
    beyond = protect.feather(_box_mask()[None], 2)[0] == 0
    for k, frame in enumerate(plan):
        nearest = frames[frame.source + int(frame.t > Fraction(1, 2))] if not frame.is_copy else frames[frame.source]
        assert torch.equal(held[k][:, inside], nearest[:, inside]), k
        assert torch.equal(held[k][:, beyond], plain[k][:, beyond]), k
        if not frame.is_copy:  # the network's frame really differs there: the test could fail
            assert not torch.equal(plain[k][:, inside], nearest[:, inside])
    edge = ~inside & ~beyond
    assert (held != plain)[:, :, edge].any()  # the feather blends


def test_tie_takes_the_earlier_frame_and_copies_are_untouched():
    frames = _pan(4)
    held, plan = _run(frames, multiplier=2, protect=protect.held_regions(4, torch.ones(48, 64), feather_px=0))
    for k, frame in enumerate(plan):
        assert torch.equal(held[k], frames[frame.source]), (k, frame)  # t = 1/2 -> the earlier frame


def test_empty_mask_changes_nothing():
    frames = _pan(5)
    plain, _ = _run(frames)
    held, _ = _run(frames, protect=protect.held_regions(5, torch.zeros(5, 48, 64)))
    assert torch.equal(plain, held)


def test_one_mask_per_frame_is_matched_by_frame():
    frames = _pan(5)
    masks = torch.zeros(5, 48, 64)
    masks[2, 30:40, 40:60] = 1  # frame 2 only: in-betweens of pairs (1, 2) and (2, 3) are held there
    held, plan = _run(frames, protect=protect.held_regions(5, masks, feather_px=0))
    plain, _ = _run(frames)
    region = masks[2] > 0
    for k, frame in enumerate(plan):
        if frame.is_copy:
            continue
        touched = not torch.equal(held[k][:, region], plain[k][:, region])
        assert touched == (frame.source in (1, 2)), (k, frame)


def test_feather_keeps_inside_exact_and_falls_off():
    mask = torch.zeros(1, 20, 20)
    mask[0, 5:10, 5:10] = 1
    soft = protect.feather(mask, 3)[0]
    assert torch.equal(soft[5:10, 5:10], torch.ones(5, 5))
    assert 0 < soft[7, 10] < 1 and soft[7, 11] < soft[7, 10]
    assert soft[7, 14] == 0 and soft[0, 0] == 0


def test_bad_masks_and_settings_are_one_line_errors(tmp_path):
    with pytest.raises(ValueError, match="one protect mask per input frame"):
        protect.held_regions(5, torch.zeros(3, 48, 64))
    with pytest.raises(ValueError, match="is 10x8 but the frames are 64x48"):
        _run(_pan(3), protect=protect.held_regions(3, torch.zeros(8, 10)))
    with pytest.raises(SettingsError, match="protect feather must be a whole number"):
        ProtectOptions(feather=MAX_PROTECT_FEATHER + 1)
    with pytest.raises(SettingsError, match="add --protect-overlays"):
        ProtectOptions(overlays_out=tmp_path)


@pytest.mark.parametrize("request_, n", [(Request(multiplier=2), 10), (Request(source_fps=24, target_fps=5), 50),
                                         (Request(source_fps=24, target_fps=60), 7),
                                         (Request(source_fps=24, target_fps=24, speed=0.5), 9)])
def test_tasks_share_out_the_source_frames_each_to_the_first_output_at_or_after_it(request_, n):
    """A whole run owns every source frame; any split into tasks owns each exactly once, frame j with the first
    output at or after it in time (frames after the last output: the last output's task)."""
    from emavfi import ranges

    plan = make_schedule(request_, n, True).plan
    assert protect.share_of(plan, range(len(plan)), n) == list(range(n))
    times = [frame.source + frame.t for frame in plan]
    for tasks in (2, 3, 5):
        split = ranges.split_tasks(len(plan), tasks=tasks)
        shares = [protect.share_of(plan, task, n) for task in reversed(split)]
        assert sorted(j for share in shares for j in share) == list(range(n))
        for task, share in zip(reversed(split), shares):
            for j in share:
                owner = next((k for k, time in enumerate(times) if time >= j), len(plan) - 1)
                assert owner in task, (j, owner, list(task))
