"""Held regions split across work: `--protect MASKS` (one mask per frame) with `--protect-overlays` rendered as
`--frames` tasks and on a real embedded Ray (2 CPUs, 127.0.0.1 only, 2 workers) gives the one-process files byte
for byte, the same run record (the masks' sha256 in it) and the same detected overlay masks.

The shot: 52 PNG frames of 48x112, a burned-in timecode box over a pan of skimage's astronaut, then (a scene cut
after frame 25) over coffee panning the other way; a mask per frame holding a band that moves down the picture;
x2 (103 outputs); random ours_small_t weights (the workers load weights from a file, not a test double).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import emavfi
from emavfi import cli, loading, ranges, render
from emavfi.engine import Report
from emavfi.files import is_partial
from emavfi.outputs import RECORD_NAME
from emavfi.schedule import Request
from emavfi.settings import OutputOptions, ProtectOptions, Settings
from helpers import random_state

ray = pytest.importorskip("ray", reason="the distributed tests need the optional Ray extra "
                                        "(pip install -r requirements-ray.txt)")
oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
pytestmark = pytest.mark.usefixtures("one_thread")
START, FRAMES, OUTPUTS, CUT = 1001, 52, 103, 25


def _save(path: Path, pixels: np.ndarray) -> None:
    assert oiio.ImageBuf(np.ascontiguousarray(np.rint(pixels * 255).astype(np.uint8))).write(str(path))


@pytest.fixture(scope="module")
def shot(tmp_path_factory) -> tuple[Path, Path, Path]:
    """(input folder, mask folder with one mask per input frame number, ours_small_t weights file)."""
    pytest.importorskip("PIL", reason="the timecode is drawn with Pillow")
    from benchmarks import overlay_dataset

    root = tmp_path_factory.mktemp("protect_shot")
    source, masks = root / "plate", root / "masks"
    source.mkdir(), masks.mkdir()
    # each shot long enough for a run of overlays.RUN + 1 frames (runs never cross a cut)
    pictures = torch.cat([overlay_dataset.pan("astronaut", 2.5, n=26), overlay_dataset.pan("coffee", -3.0, n=26)])
    frames, _ = overlay_dataset.timecode(pictures)
    for i, frame in enumerate(frames[..., :48, :112]):
        _save(source / f"plate.{START + i}.png", frame.permute(1, 2, 0).numpy())
        band = np.zeros((48, 112), np.float32)
        band[26 + i // 4:34 + i // 4, 40:100] = 1.0  # below the timecode, a little lower every fourth frame
        _save(masks / f"matte.{START + i}.png", band)
    weights = root / "ours_small_t.safetensors"
    emavfi.weights.save_safetensors(random_state("ours_small_t"), weights, "ours_small_t")
    return source, masks, weights


def _settings(shot: tuple[Path, Path, Path], overlays_out: Path | None = None, frames: str | None = None) -> Settings:
    source, masks, weights = shot
    return Settings(request=Request(multiplier=2), weights=weights, device="cpu",
                    output=OutputOptions(start_number=START, frames=frames),
                    protect=ProtectOptions(mask=masks, feather=2, overlays=True, overlays_out=overlays_out))


@pytest.fixture(scope="module")
def reference(shot, tmp_path_factory) -> tuple[Path, Path, Report]:
    """(output folder, overlay masks folder, report) of the shot rendered in this process in one go."""
    root = tmp_path_factory.mktemp("protect_reference")
    before = torch.get_num_threads()
    torch.set_num_threads(1)  # as the tests' driver: its workers compute with its thread count
    try:
        job = render.Job(shot[0], root / "out", _settings(shot, root / "overlays"))
        report = render.render(render.prepare(job), loading.load_model_for(job.settings))
    finally:
        torch.set_num_threads(before)
    assert report.written == OUTPUTS and report.cuts == [CUT]
    assert report.protected.startswith(f"overlays held in {FRAMES} of {FRAMES} source frames, within x ")
    assert report.protected.endswith(f"(frames {START}-{START + FRAMES - 1})")
    return job.output, root / "overlays", report


def _files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


def _record(folder: Path) -> dict:
    return json.loads((folder / RECORD_NAME).read_text())


def _assert_as_one_process(out: Path, overlays: Path, reference: tuple[Path, Path, Report]) -> None:
    """The same frame files and overlay masks, byte for byte, the same run record, no partial files."""
    expected, got = _files(reference[0]), _files(out)
    assert list(got) == list(expected) and len(got) == OUTPUTS
    differing = [name for name in expected if got[name] != expected[name]]
    assert not differing, f"{len(differing)} of {len(expected)} frames differ, e.g. {differing[0]}"
    assert not [p.name for p in out.iterdir() if is_partial(p.name)]
    assert _files(overlays) == _files(reference[1]) and len(_files(overlays)) == FRAMES
    record, one = _record(out), _record(reference[0])
    assert record == one and len(one["protect"]["mask_sha256"]) == 64, (record, one)
    assert one["protect"] == {"mask_sha256": one["protect"]["mask_sha256"], "feather": 2, "overlays": True}


def test_the_reference_holds_both_the_masks_and_the_overlays(shot, reference, tmp_path):
    """Not a vacuous comparison: the masks and the found timecode change the frames, and the overlay masks
    cover the timecode box."""
    plain = render.Job(shot[0], tmp_path / "plain", Settings(request=Request(multiplier=2), weights=shot[2],
                                                             device="cpu", output=OutputOptions(start_number=START)))
    render.render(render.prepare(plain), loading.load_model_for(plain.settings))
    held, without = _files(reference[0]), _files(plain.output)
    assert list(held) == list(without) and sum(held[k] != without[k] for k in held) >= OUTPUTS // 2 - 1
    box = np.zeros((48, 112), bool)
    box[6:24, 6:98] = True  # where overlay_dataset.timecode burns its box in
    for name in list(_files(reference[1]))[::5]:  # most of the box in both shots, little else
        found = oiio.ImageBuf(str(reference[1] / name)).get_pixels(oiio.UINT8)[..., 0] > 0
        assert (found & box).sum() > 0.6 * box.sum() and (found & ~box).sum() < 0.1 * found.sum(), name


def test_frames_tasks_in_any_order_make_the_one_process_files(shot, reference, tmp_path):
    model = loading.load_model_for(_settings(shot))
    shares = []
    for task in reversed(ranges.split_tasks(OUTPUTS, tasks=4)):  # as a farm might run them, each its own job
        job = render.Job(shot[0], tmp_path / "out", _settings(shot, tmp_path / "overlays",
                                                              ranges.format_range(task, START)))
        report = render.render(render.prepare(job), model)
        assert report.written == len(task)
        shares.append(report.overlays)
    _assert_as_one_process(tmp_path / "out", tmp_path / "overlays", reference)
    # each task reports the source frames it owns (those up to its last output): together, one process's
    assert sum(len(share) for share in shares) == FRAMES
    assert {number: box for share in shares for number, box in share.items()} == reference[2].overlays


def test_two_ray_workers_from_the_command_line_make_the_one_process_files(cluster, shot, reference, tmp_path,
                                                                          capsys):
    source, masks, weights = shot
    assert cli.main([str(a) for a in ("interpolate", source, "-o", tmp_path / "out", "-m", 2, "--device", "cpu",
                                      "--weights", weights, "--start-number", START, "--protect", masks,
                                      "--protect-feather", 2, "--protect-overlays", "--protect-overlays-out",
                                      tmp_path / "overlays", "--ray", "--ray-workers", 2)]) == 0
    err = capsys.readouterr().err
    assert f"wrote {OUTPUTS} frames to " in err and "on 2 Ray worker(s) (7 tasks)" in err, err
    _assert_as_one_process(tmp_path / "out", tmp_path / "overlays", reference)
    assert err.splitlines()[-1] == reference[2].protected, err  # the line one process prints


def test_a_retime_to_fewer_frames_on_ray_writes_and_counts_every_source_frame_once(cluster, shot, tmp_path):
    """24 -> 5 fps (11 outputs, most pairs never read) in tasks of 3 outputs on 2 workers: each input frame's
    overlay mask and the summary equal one process's, which covers all 52 frames."""
    from emavfi import distributed

    def job(name: str) -> render.Job:
        settings = Settings(request=Request(source_fps=24, target_fps=5), weights=shot[2], device="cpu",
                            output=OutputOptions(start_number=START),
                            protect=ProtectOptions(overlays=True, overlays_out=tmp_path / f"{name}_overlays"))
        return render.Job(shot[0], tmp_path / name, settings)

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        one = job("one")
        alone = render.render(render.prepare(one), loading.load_model_for(one.settings))
    finally:
        torch.set_num_threads(before)
    spread = distributed.render(job("ray"), workers=2, task_frames=3)
    assert alone.written == spread.written == 11 and spread.tasks >= 3
    assert len(alone.overlays) == FRAMES and spread.overlays == alone.overlays
    assert spread.protected == alone.protected and alone.protected.startswith(f"overlays held in {FRAMES} of ")
    assert _files(tmp_path / "ray") == _files(tmp_path / "one")
    assert _files(tmp_path / "ray_overlays") == _files(tmp_path / "one_overlays")
    assert len(_files(tmp_path / "one_overlays")) == FRAMES
