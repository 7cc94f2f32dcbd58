"""emavfi.dedupe: held frames of clips drawn on twos and threes from real photographs, no false holds on pans,
cuts, zooms or noise, the fixed-window contract, the retimed timeline, and `--dedupe` in the CLI."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
import torch

from emavfi import cli, cuts, dedupe, loading, render, schedule
from emavfi.dedupe import HOLD_CONTEXT, decide_held, find_held, measure, schedule_without_held
from emavfi.settings import DEFAULT_DEDUPE_THRESHOLD, RunOptions, SettingsError

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def kit():
    pytest.importorskip("skimage", reason="the clips are rendered from scikit-image's photographs")
    from benchmarks import cut_dataset

    return cut_dataset


def _noisy(frames: torch.Tensor, seed: int, sigma: float = 0.008) -> torch.Tensor:
    """Independent sensor noise on every frame, held ones included (a scan or a camera records each anew)."""
    g = torch.Generator().manual_seed(seed)
    return (frames + sigma * torch.randn(frames.shape, generator=g)).clamp(0, 1)


def _on(drawings: torch.Tensor, holds: list[int]) -> tuple[torch.Tensor, list[int]]:
    """Drawing k shown for holds[k] frames; returns the frames and the indices of the repeats."""
    frames = drawings.repeat_interleave(torch.tensor(holds), 0)
    starts = np.cumsum([0] + holds[:-1])
    held = [i for i in range(len(frames)) if i not in set(starts.tolist())]
    return frames, held


def _pan(kit, name: str, n: int, dx: float = 0.0, dy: float = 0.0, scale: float = 1.3) -> torch.Tensor:
    photo = kit.photos()[name]
    cx, cy = photo.shape[-1] / 2, photo.shape[-2] / 2
    return kit.render(photo, kit.track(kit.View(cx, cy, scale), n, dx=dx, dy=dy))


def _character(kit, n: int) -> torch.Tensor:
    """A small cut-out of chelsea (24x20 px) walking 3 px per drawing over a still view of the rocket."""
    background = _pan(kit, "rocket", 1).expand(n, -1, -1, -1).clone()
    cat = kit.render(kit.photos()["chelsea"], [kit.View(220, 150, 2.0)], size=(20, 24))[0]
    for k in range(n):
        background[k, :, 50:70, 10 + 3 * k:34 + 3 * k] = cat
    return background


def _clips(kit) -> dict[str, tuple[torch.Tensor, list[int]]]:
    twos = _on(_pan(kit, "astronaut", 12, dx=4.0), [2] * 12)
    threes = _on(_pan(kit, "coffee", 10, dx=-3.0, dy=1.0), [3] * 10)
    mixed = _on(_pan(kit, "rocket", 10, dx=2.0, dy=-2.0), [2, 3, 1, 2, 2, 3, 1, 1, 2, 3])
    character = _on(_character(kit, 10), [2, 2, 3, 2, 2, 3, 2, 2, 2, 2])
    # Threes into a cut: the last held frame before the cut stays, so the cut keeps its time.
    a, held_a = _on(_pan(kit, "chelsea", 5, dx=3.0), [3] * 5)
    b, held_b = _on(_pan(kit, "camera", 6, dy=3.0), [3] * 6)
    cut_held = [i for i in held_a if i != len(a) - 1] + [len(a) + i for i in held_b]
    clips = {"astronaut on twos": twos, "coffee on threes": threes, "rocket on ones to threes": mixed,
             "chelsea walking on twos over a still": character, "threes, a cut, threes": (torch.cat([a, b]), cut_held)}
    out = {}
    for seed, (name, (frames, held)) in enumerate(clips.items()):
        out[name] = (_noisy(frames, seed), [i for i in held if i != len(frames) - 1])
    return out


@pytest.fixture(scope="module")
def clips(kit):
    return _clips(kit)


@pytest.mark.parametrize("name", ["astronaut on twos", "coffee on threes", "rocket on ones to threes",
                                  "chelsea walking on twos over a still", "threes, a cut, threes"])
def test_held_frames_of_real_photographs_found_exactly(clips, name):
    frames, held = clips[name]
    assert find_held(frames) == held


def test_a_mouth_that_changes_in_one_small_region_is_a_new_drawing(kit):
    """Only a 12x12 px patch changes (another crop, not a shift): that frame is a drawing, not a hold."""
    still = _pan(kit, "astronaut", 1).expand(6, -1, -1, -1).clone()
    still[3:, :, 40:52, 60:72] = _pan(kit, "coffee", 1)[0, :, 40:52, 60:72]
    assert find_held(_noisy(still, 3)) == [1, 2, 4]


# The hardest negatives of benchmarks/cut_dataset.py: fine texture, small moves, cuts within one palette.
NEGATIVES = ["same clock halves", "reframe immunohistochemistry", "punch-in stereo_motorcycle", "grass to brick",
             "black then rocket", "camera/camera/camera", "pan hubble_deep_field +12,-4 px",
             "pan stereo_motorcycle +8,+3 px", "zoom coffee x1.06/frame", "rotate coins -12 deg/frame",
             "exposure x0.93 stereo_motorcycle", "hand over coffee in 4 frames", "dissolve astronaut to chelsea"]


def test_no_false_holds_on_pans_zooms_rotations_cuts_exposure_and_occluders(kit):
    clips = kit.make_clips(names=NEGATIVES)
    assert len(clips) == len(NEGATIVES)
    false = {c.name: find_held(c.frames) for c in clips}
    assert {name: held for name, held in false.items() if held} == {}


@pytest.mark.parametrize("speed", [0.25, 0.5])
@pytest.mark.parametrize("name", ["astronaut", "chelsea", "grass", "clock", "immunohistochemistry"])
def test_no_false_holds_on_slow_pans_under_noise(kit, name, speed):
    assert find_held(_noisy(_pan(kit, name, 12, dx=speed), 7, sigma=0.012)) == []


def test_frames_that_differ_by_noise_only_are_held(kit):
    for clip in kit.make_clips(names=["still coffee x0.2 noise 0.012", "flat grey wall noise 0.01",
                                      "still then whip pan chelsea"]):
        expected = list(range(1, 12)) if "whip" in clip.name else list(range(1, len(clip.frames) - 1))
        assert find_held(clip.frames) == expected, clip.name


def test_threshold_zero_holds_exact_repeats_only_and_larger_thresholds_hold_more(kit, clips):
    frames, held = _on(_pan(kit, "astronaut", 6, dx=4.0), [2] * 6)
    assert find_held(frames, 0) == held[:-1]  # bit-identical repeats
    noisy, held = clips["astronaut on twos"]
    assert find_held(noisy, 0) == []
    evidence = measure(noisy)
    counts = [len(decide_held(evidence, t)) for t in (0.5, 1.0, 2.0, 4.0)]
    assert counts == sorted(counts) and counts[-1] == len(held) and counts[0] < len(held)


def test_each_decision_reads_only_its_fixed_window(clips):
    """Frame j's decision from frames j-1-K .. j+1+K alone equals the whole clip's, so tasks and workers agree."""
    frames, _ = clips["threes, a cut, threes"]
    n = len(frames)
    whole = set(find_held(frames))
    for j in [1, 2, 3, *range(11, 20), n - 3, n - 2]:  # the ends, and the frames around the cut (pair 14)
        lo, hi = max(0, j - 1 - HOLD_CONTEXT), min(n - 1, j + 1 + HOLD_CONTEXT)
        assert (j - lo in find_held(frames[lo:hi + 1])) == (j in whole), j


@pytest.mark.parametrize("request_, count", [(schedule.Request(multiplier=2, source_fps=Fraction(24)), 2 * 19 + 1),
                                             (schedule.Request(multiplier=3), 3 * 19 + 1),
                                             (schedule.Request(target_fps=Fraction(30), source_fps=Fraction(24)),
                                              19 * 30 // 24 + 1)])
def test_the_drawings_are_retimed_at_their_true_times_over_the_same_duration(request_, count):
    held = [1, 3, 4, 6, 8, 9, 11, 12, 14, 16, 17]  # drawings at 0, 2, 5, 7, 10, 13, 15, 18 and the end, 19
    kept = dedupe.kept_frames(20, held)
    sched = schedule_without_held(request_, 20, held, arbitrary_t=True)
    assert len(sched.plan) == count
    fps = request_.source_fps
    assert sched.out_fps == (None if fps is None else request_.target_fps or fps * request_.multiplier)
    step = Fraction(1, request_.multiplier) if request_.multiplier else fps / request_.target_fps
    for k, frame in enumerate(sched.plan):  # output k shows source time k * step, between the drawings around it
        a = kept[frame.source]
        b = kept[frame.source + 1] if not frame.is_copy else a
        assert a + frame.t * (b - a) == k * step, k
        assert a <= k * step <= b


def test_a_clip_in_memory_loses_its_held_frames_and_keeps_its_duration(clips):
    frames, held = clips["coffee on threes"]
    timeline = dedupe.held_timeline(frames, len(frames), schedule.Request(multiplier=2), True, threshold=None,
                                    cut_threshold=cuts.DEFAULT_CUT_THRESHOLD)
    assert timeline.held == held and timeline.kept == dedupe.kept_frames(len(frames), held)
    sched = timeline.schedule
    assert len(sched.plan) == 2 * (len(frames) - 1) + 1 and sched.out_fps is None
    schedule.check_plan(sched.plan, len(timeline.kept))
    with pytest.raises(ValueError, match="not timesteps"):  # before a frame is read
        dedupe.held_timeline(iter(()), 5, schedule.Request(timesteps=(0.5,)), True, threshold=None, cut_threshold=0)


def test_settings_and_bad_values():
    assert RunOptions(dedupe=True).dedupe_threshold == DEFAULT_DEDUPE_THRESHOLD
    for bad in (-1, float("nan"), 1000, "2", True):
        with pytest.raises(SettingsError, match="dedupe threshold") as info:
            RunOptions(dedupe=True, dedupe_threshold=bad)
        assert "\n" not in str(info.value)
    with pytest.raises(SettingsError, match="dedupe must be true or false"):
        RunOptions(dedupe="yes")


# ----------------------------------------------------------------------------------------------- CLI

oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")


@pytest.fixture
def tiny(monkeypatch):
    from helpers import tiny_model

    model = tiny_model()
    monkeypatch.setattr(loading, "load_model_for", lambda job, state=None, progress=None: model)
    return model


def _write_twos(kit, folder, holds=(2, 3, 2, 1, 2)) -> tuple[list[np.ndarray], list[int]]:
    frames, held = _on(_pan(kit, "astronaut", len(holds), dx=3.0)[:, :, 32:64, 40:88], list(holds))
    frames = _noisy(frames, 11, 0.01)
    folder.mkdir()
    pixels = [np.ascontiguousarray(np.rint(f.permute(1, 2, 0).numpy() * 255).astype(np.uint8)) for f in frames]
    for i, p in enumerate(pixels):
        assert oiio.ImageBuf(p).write(str(folder / f"f.{i:03d}.png"))
    return pixels, held


def _read_all(folder) -> list[np.ndarray]:
    return [oiio.ImageBuf(str(p)).get_pixels(oiio.UINT8) for p in sorted(folder.glob("frame_*.png"))]


def test_cli_dedupe_run_reports_holds_and_places_each_drawing_at_its_time(kit, tmp_path, tiny, capsys):
    pixels, held = _write_twos(kit, tmp_path / "in")
    n = len(pixels)
    held = [i for i in held if i != n - 1]  # the last frame ends the timeline
    args = ["interpolate", str(tmp_path / "in"), "-m", "2", "--device", "cpu", "--dedupe"]
    assert cli.main([*args, "-o", str(tmp_path / "out")]) == 0
    err = capsys.readouterr().err
    assert f"{len(held)} held frames dropped (dedupe)" in err and f"-> {2 * (n - 1) + 1} frames" in err
    out = _read_all(tmp_path / "out")
    assert len(out) == 2 * (n - 1) + 1  # the same duration at twice the rate
    kept = dedupe.kept_frames(n, held)
    for i in kept:  # each drawing at its own time, bit for bit
        assert np.array_equal(out[2 * i], pixels[i]), i
    for i in held:  # a held frame's time now shows the motion towards the next drawing
        assert not np.array_equal(out[2 * i], pixels[i]), i
    for frames in ("9-18", "0-8"):  # farm tasks decide the same holds and write the same files
        assert cli.main([*args, "-o", str(tmp_path / "tasks"), "--frames", frames]) == 0
    assert all(np.array_equal(a, b) for a, b in zip(out, _read_all(tmp_path / "tasks")))
    assert len(_read_all(tmp_path / "tasks")) == len(out)


@pytest.mark.parametrize("extra, fragment", [(["--timesteps", "0.5"], "not --timesteps"),
                                             (["--dedupe-threshold", "-1"], "dedupe threshold"),
                                             (["--on-error", "skip"], "--on-error stop"),
                                             (["--fps", "30"], "--source-fps")])
def test_cli_dedupe_usage_errors_are_one_line(kit, tmp_path, tiny, capsys, extra, fragment):
    _write_twos(kit, tmp_path / "in")
    argv = ["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu", "--dedupe", *extra]
    assert cli.main(argv) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and fragment in err[0], err


def test_ray_workers_decide_the_same_holds_and_write_the_one_process_files(kit, tmp_path):
    ray = pytest.importorskip("ray", reason="needs the optional Ray extra (pip install -r requirements-ray.txt)")
    import emavfi
    from emavfi import distributed, ray_cluster
    from emavfi.schedule import Request
    from emavfi.settings import Settings
    from helpers import random_state

    _, held = _write_twos(kit, tmp_path / "in", holds=(2, 3, 2, 2, 1, 3))
    weights = tmp_path / "ours_small_t.safetensors"
    emavfi.weights.save_safetensors(random_state("ours_small_t"), weights, "ours_small_t")
    settings = Settings(request=Request(multiplier=2), run=RunOptions(dedupe=True), weights=weights, device="cpu")
    one = render.Job(tmp_path / "in", tmp_path / "one", settings)
    render.render(render.prepare(one), loading.load_model_for(one.settings))
    assert not ray.is_initialized()
    ray_cluster.start_local(num_cpus=2)
    try:
        report = distributed.render(render.Job(tmp_path / "in", tmp_path / "ray", settings), workers=2, task_frames=4)
    finally:
        ray.shutdown()
    assert report.written == 2 * (13 - 1) + 1
    one_files, ray_files = (sorted((tmp_path / d).glob("frame_*.png")) for d in ("one", "ray"))
    assert [p.name for p in one_files] == [p.name for p in ray_files] and len(held) == 7
    assert all(a.read_bytes() == b.read_bytes() for a, b in zip(one_files, ray_files))
