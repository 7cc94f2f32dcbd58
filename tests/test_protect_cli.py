"""python -m emavfi interpolate --protect / --protect-overlays on real photographs: held pixels, tasks, bad input."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import emavfi
from emavfi import cli, loading, provenance
from emavfi.config import ModelConfig

oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(monkeypatch):
    torch.manual_seed(0)
    model = emavfi.build_model(ModelConfig(width=4, depths=(1, 1, 1, 2, 2))).eval()
    monkeypatch.setattr(loading, "load_model_for", lambda job, state=None, progress=None: model)
    return model


def _save(path: Path, image: np.ndarray) -> Path:
    assert oiio.ImageBuf(np.ascontiguousarray(np.rint(image * 255).astype(np.uint8))).write(str(path))
    return path


def _read(path: Path) -> np.ndarray:
    return oiio.ImageBuf(str(path)).get_pixels(oiio.UINT8)


def _pan(folder: Path, n: int, h: int = 48, w: int = 64, step: int = 3, first: int = 1001) -> list[np.ndarray]:
    """n frames of the astronaut photograph panning `step` px a frame, numbered from `first`."""
    folder.mkdir(parents=True, exist_ok=True)
    photo = data.astronaut().astype(np.float32) / 255
    views = [photo[120:120 + h, 40 + step * i:40 + step * i + w] for i in range(n)]
    for i, view in enumerate(views):
        _save(folder / f"plate.{first + i}.png", view)
    return views


def _run(*argv: object) -> int:
    return cli.main([str(a) for a in argv])


def _outputs(folder: Path) -> list[np.ndarray]:
    return [_read(p) for p in sorted(folder.glob("plate_*.png")) or sorted(folder.glob("*.png"))]


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_mask_holds_its_region_and_tasks_equal_the_whole_run(tmp_path, tiny, capsys):
    inp = tmp_path / "in"
    views = _pan(inp, 5)
    mask = np.zeros((48, 64), np.float32)
    mask[4:20, 6:40] = 1
    _save(tmp_path / "mask.png", mask)
    base = ["interpolate", inp, "-m", "2", "--device", "cpu", "--protect-feather", "0"]
    assert _run(*base, "-o", tmp_path / "plain") == 0
    assert _run(*base, "--protect", tmp_path / "mask.png", "-o", tmp_path / "held") == 0
    plain, held = _outputs(tmp_path / "plain"), _outputs(tmp_path / "held")
    assert len(plain) == len(held) == 9
    sources = [_read(p) for p in sorted(inp.glob("*.png"))]
    inside = mask > 0
    for k in range(1, 9, 2):  # in-betweens at t = 1/2: the earlier frame inside, the plain run outside
        assert np.array_equal(held[k][inside], sources[k // 2][inside])
        assert np.array_equal(held[k][~inside], plain[k][~inside])
        assert not np.array_equal(plain[k][inside], sources[k // 2][inside])
    record = json.loads((tmp_path / "held" / ".emavfi-run.json").read_text())
    assert record["protect"] == {"mask_sha256": provenance.file_sha256(tmp_path / "mask.png"), "feather": 0,
                                 "overlays": False}
    assert "protect" not in json.loads((tmp_path / "plain" / ".emavfi-run.json").read_text())
    for frames in ("1005-1009", "1001-1004"):  # tasks in any order write the same files
        assert _run(*base, "--protect", tmp_path / "mask.png", "-o", tmp_path / "tasks", "--frames", frames) == 0
    assert [a.tobytes() for a in _outputs(tmp_path / "tasks")] == [a.tobytes() for a in held]


def test_an_empty_mask_changes_nothing_and_says_nothing(tmp_path, tiny, capsys):
    inp = tmp_path / "in"
    _pan(inp, 4)
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(4):
        _save(masks / f"m.{1001 + i}.png", np.zeros((48, 64), np.float32))
    base = ["interpolate", inp, "-m", "3", "--device", "cpu"]
    assert _run(*base, "-o", tmp_path / "plain") == 0
    capsys.readouterr()
    assert _run(*base, "--protect", masks, "-o", tmp_path / "held") == 0
    assert "warning" not in capsys.readouterr().err
    assert [a.tobytes() for a in _outputs(tmp_path / "plain")] == [a.tobytes() for a in _outputs(tmp_path / "held")]


def _bad(tmp_path: Path, capsys, argv: list) -> str:
    assert _run("interpolate", tmp_path / "in", "-o", tmp_path / "out", "--device", "cpu", *argv) == 2
    return _one_line(capsys.readouterr().err)


def test_bad_masks_are_refused_in_one_line_before_the_model_loads(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loading, "load_model_for", lambda *a, **k: pytest.fail("the model must not load"))
    _pan(tmp_path / "in", 4)
    _save(tmp_path / "small.png", np.ones((24, 32), np.float32))
    assert "is 32x24 but the input frames are 64x48" in _bad(tmp_path, capsys, ["--protect", tmp_path / "small.png"])
    gappy = tmp_path / "gappy"
    gappy.mkdir()
    for number in (1001, 1002, 1004):
        _save(gappy / f"m.{number}.png", np.ones((48, 64), np.float32))
    assert "miss frame numbers 1003" in _bad(tmp_path, capsys, ["--protect", gappy])
    assert "mask not found" in _bad(tmp_path, capsys, ["--protect", tmp_path / "nothing.png"])
    assert "add --protect-overlays" in _bad(tmp_path, capsys, ["--protect-overlays-out", tmp_path / "o"])
    assert "feather must be a whole number" in _bad(tmp_path, capsys, ["--protect-feather", "500"])


def test_a_mask_video_with_another_frame_count_is_refused(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(loading, "load_model_for", lambda *a, **k: pytest.fail("the model must not load"))
    av = pytest.importorskip("av")
    _pan(tmp_path / "in", 4)
    with av.open(str(tmp_path / "mask.mp4"), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(6):
            frame = av.VideoFrame.from_ndarray(np.full((48, 64, 3), 255, np.uint8), format="rgb24")
            container.mux(stream.encode(frame))
        container.mux(stream.encode())
    assert "has 6 frames but the input has 4" in _bad(tmp_path, capsys, ["--protect", tmp_path / "mask.mp4"])


def test_a_colour_mask_uses_its_first_channel_and_says_so(tmp_path, tiny, capsys):
    inp = tmp_path / "in"
    _pan(inp, 3)
    colour = np.zeros((48, 64, 3), np.float32)
    colour[10:20, 10:30, 0] = 1  # red: held
    colour[30:40, 10:30, 1] = 1  # green only: not held
    _save(tmp_path / "mask.png", colour)
    assert _run("interpolate", inp, "-o", tmp_path / "out", "-m", "2", "--device", "cpu", "--protect",
                tmp_path / "mask.png", "--protect-feather", "0") == 0
    assert "is not greyscale: its first channel (red) is used" in capsys.readouterr().err
    out, sources = _outputs(tmp_path / "out"), [_read(p) for p in sorted(inp.glob("*.png"))]
    assert np.array_equal(out[1][10:20, 10:30], sources[0][10:20, 10:30])
    assert not np.array_equal(out[1][30:40, 10:30], sources[0][30:40, 10:30])


def test_burned_in_timecode_is_found_held_written_and_summarised(tmp_path, tiny, capsys):
    """A timecode box over a pan: found, written as masks, its in-between pixels are the nearest frame's."""
    from benchmarks.overlay_dataset import timecode

    photo = data.astronaut().astype(np.float32) / 255
    frames = torch.stack([torch.from_numpy(photo[100:244, 30 + 4 * i:286 + 4 * i]).permute(2, 0, 1)
                          for i in range(28)])
    frames, truth = timecode(frames.contiguous())
    inp = tmp_path / "in"
    inp.mkdir()
    for i, frame in enumerate(frames):
        _save(inp / f"plate.{1001 + i}.png", frame.permute(1, 2, 0).numpy())
    masks = tmp_path / "masks"
    assert _run("interpolate", inp, "-o", tmp_path / "out", "-m", "2", "--device", "cpu", "--protect-overlays",
                "--protect-overlays-out", masks, "--protect-feather", "1") == 0
    err = capsys.readouterr().err
    assert "overlays held in 28 of 28 source frames, within x " in err
    written = sorted(masks.glob("overlays.*.png"))
    assert [p.name for p in written][:2] == ["overlays.001001.png", "overlays.001002.png"] and len(written) == 28
    found = _read(written[10])[..., 0] > 0
    box = truth[10].numpy()
    assert (found & box).sum() >= 0.9 * box.sum() and (found & ~box).sum() <= 0.1 * found.sum()
    out, sources = _outputs(tmp_path / "out"), [_read(p) for p in sorted(inp.glob("*.png"))]
    held = found & np.asarray(_read(written[11])[..., 0] > 0)
    assert np.array_equal(out[21][held], sources[10][held])  # between frames 10 and 11 at t = 1/2: frame 10


def test_dedupe_and_a_retime_keep_their_frame_count_with_masks(tmp_path, tiny, capsys):
    """Held frames are dropped as without a mask; each kept frame takes the mask with its own frame number."""
    inp = tmp_path / "in"
    views = _pan(tmp_path / "views", 4)
    inp.mkdir()
    for i, k in enumerate([0, 0, 1, 2, 2, 3]):  # frames 1002 and 1005 hold the one before
        _save(inp / f"plate.{1001 + i}.png", views[k])
    masks = tmp_path / "masks"
    masks.mkdir()
    for i in range(6):
        mask = np.zeros((48, 64), np.float32)
        mask[2 + 6 * i:8 + 6 * i, 4:60] = 1  # a different band per frame number
        _save(masks / f"m.{1001 + i}.png", mask)
    for extra in (["--dedupe", "-m", "2"], ["--fps", "60", "--source-fps", "24"]):
        assert _run("interpolate", inp, "-o", tmp_path / f"plain{len(extra)}", "--device", "cpu", *extra) == 0
        assert _run("interpolate", inp, "-o", tmp_path / f"held{len(extra)}", "--device", "cpu", "--protect", masks,
                    *extra) == 0
        plain, held = _outputs(tmp_path / f"plain{len(extra)}"), _outputs(tmp_path / f"held{len(extra)}")
        assert len(plain) == len(held) > 6
        assert any(not np.array_equal(a, b) for a, b in zip(plain, held))


def _timecode_shot(folder: Path, held: tuple[int, ...] = ()) -> torch.Tensor:
    """A burned-in timecode over two 30-frame pans (astronaut, then coffee the other way: a cut after frame 29),
    saved as plate.1001.png ...; each frame of `held` repeated once right after it (a held frame, timecode and
    all). Returns the frames [N,3,144,256] as the CLI decodes them (8-bit codes / 255)."""
    pytest.importorskip("PIL", reason="the timecode is drawn with Pillow")
    from benchmarks import overlay_dataset

    pictures = torch.cat([overlay_dataset.pan("astronaut", 2.5, n=30), overlay_dataset.pan("coffee", -3.0, n=30)])
    frames, _ = overlay_dataset.timecode(pictures)
    frames = torch.cat([frames[i:i + 1].expand(2 if i in held else 1, -1, -1, -1) for i in range(frames.shape[0])])
    folder.mkdir(parents=True)
    for i, frame in enumerate(frames):
        _save(folder / f"plate.{1001 + i}.png", frame.permute(1, 2, 0).numpy())
    return torch.stack([torch.from_numpy(_read(p).astype(np.float32) / np.float32(255)).permute(2, 0, 1)
                        for p in sorted(folder.glob("plate.*.png"))])


def _summary(found: torch.Tensor, first: int = 1001) -> str:
    """The run summary one expects of detected masks [N,H,W] bool of input frames numbered from `first`."""
    frames = [i for i in range(found.shape[0]) if found[i].any()]
    ys, xs = found.any(0).any(1).nonzero().flatten(), found.any(0).any(0).nonzero().flatten()
    return (f"overlays held in {len(frames)} of {found.shape[0]} source frames, within x {int(xs[0])}-{int(xs[-1])}, "
            f"y {int(ys[0])}-{int(ys[-1])} (frames {first + frames[0]}-{first + frames[-1]})")


def _masks(folder: Path) -> tuple[list[str], torch.Tensor]:
    written = sorted(folder.glob("overlays.*.png"))
    return [p.name for p in written], torch.stack([torch.from_numpy(_read(p)[..., 0] > 0) for p in written])


def test_a_retime_to_fewer_frames_writes_every_input_frames_overlays_once_across_tasks(tmp_path, tiny, capsys):
    """24 -> 5 fps reads only a fifth of the pairs: the masks and the summary still cover every input frame,
    equal to detect_overlays on the whole clip; --frames tasks share the input frames out, each to one task."""
    from emavfi import ranges
    from emavfi.overlays import detect_overlays

    frames = _timecode_shot(tmp_path / "in")
    expected = detect_overlays(frames)
    assert expected.any(dim=(1, 2)).sum() >= 50 and not expected.all()  # found in most frames, not everywhere
    base = ["interpolate", tmp_path / "in", "--device", "cpu", "--source-fps", "24", "--fps", "5",
            "--protect-overlays"]
    assert _run(*base, "-o", tmp_path / "out", "--protect-overlays-out", tmp_path / "found") == 0
    err = capsys.readouterr().err
    assert len(_outputs(tmp_path / "out")) == 13  # 60 frames at 24 fps -> 12.5 s at 5 fps
    names, found = _masks(tmp_path / "found")
    assert names == [f"overlays.{1001 + i:06d}.png" for i in range(60)]
    assert torch.equal(found, expected)
    assert _summary(expected) in err.splitlines(), err
    lines = []
    for task in ranges.split_tasks(13, tasks=3):  # tasks own the frames up to their last output (the last: all)
        assert _run(*base, "-o", tmp_path / "tasks", "--protect-overlays-out", tmp_path / "shared", "--frames",
                    ranges.format_range(task, 1001)) == 0
        lines += [line for line in capsys.readouterr().err.splitlines() if line.startswith("overlays held in")]
    counts = [[int(word) for word in line.split()[3:6:2]] for line in lines]
    assert len(counts) == 3 and [sum(c) for c in zip(*counts)] == [int(expected.any(dim=(1, 2)).sum()), 60], lines
    assert _masks(tmp_path / "shared")[0] == names and torch.equal(_masks(tmp_path / "shared")[1], expected)


def test_dedupe_writes_a_held_frame_the_overlays_of_the_frame_it_repeats(tmp_path, tiny, capsys):
    """Input frames 1011 and 1041 repeat the one before (timecode and all): dropped as held, yet each still gets
    its mask (its drawing's), and the summary counts input frames."""
    from emavfi.overlays import detect_overlays

    frames = _timecode_shot(tmp_path / "in", held=(10, 39))
    assert frames.shape[0] == 62
    kept = [i for i in range(62) if i not in (11, 41)]
    on_timeline = detect_overlays(frames[kept])
    expected = on_timeline[[kept.index(i) if i in kept else kept.index(i - 1) for i in range(62)]]
    assert _run("interpolate", tmp_path / "in", "-o", tmp_path / "out", "-m", "2", "--device", "cpu", "--dedupe",
                "--protect-overlays", "--protect-overlays-out", tmp_path / "found") == 0
    err = capsys.readouterr().err
    assert "2 held frames dropped (dedupe)" in err and len(_outputs(tmp_path / "out")) == 2 * 62 - 1
    names, found = _masks(tmp_path / "found")
    assert names == [f"overlays.{1001 + i:06d}.png" for i in range(62)] and torch.equal(found, expected)
    assert _summary(expected) in err.splitlines(), err
