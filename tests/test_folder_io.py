"""emavfi.media folder sources and sinks: order, naming, gray, extra channels, errors, modes, lazy imports."""
from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest
import torch

pytest.importorskip("OpenImageIO", reason="frame I/O tests need openimageio (requirements-cli.txt)")
pytest.importorskip("PyOpenColorIO", reason="frame I/O tests need opencolorio (requirements-cli.txt)")

from test_images import H, W, make_sequence, photo, read_raw, write_frame  # noqa: E402

from emavfi import files  # noqa: E402
from emavfi.errors import EmaVfiError  # noqa: E402
from emavfi.media import FramesIOError, base, open_sink, open_source  # noqa: E402
from emavfi.media import folder as folder_io  # noqa: E402


def test_natural_order_skips_hidden_and_partial_files_and_refuses_mixed(tmp_path):
    for name in ("f10.png", "f9.png", "f100.png"):
        write_frame(tmp_path / name, photo(), "uint8")
    (tmp_path / ".hidden.png").write_bytes(b"x")
    files.partial_path(tmp_path / "f11.png").write_bytes(b"x")
    (tmp_path / "notes.txt").write_text("x")
    assert [p.name for p in folder_io.list_frames(tmp_path)] == ["f9.png", "f10.png", "f100.png"]
    write_frame(tmp_path / "f11.exr", photo(), "half")
    with pytest.raises(FramesIOError, match=r"holds 2 sequences: f#.png \(3 files\), f##.exr \(1 file\); pick one with --pattern 'f#.png'"):
        folder_io.list_frames(tmp_path)
    with pytest.raises(FramesIOError, match="not found"):
        open_source(tmp_path / "missing")


def test_frames_that_do_not_match_are_named(tmp_path):
    make_sequence(tmp_path, ".png", "uint8", n=2)
    write_frame(tmp_path / "plate.1003.png", photo(4), "uint8")  # RGBA among RGB frames
    frames = open_source(tmp_path).frames(start=1)
    next(frames)
    with pytest.raises(FramesIOError, match=r"plate\.1003\.png is 48x32 with 4 channels.*all frames must match"):
        next(frames)


def test_source_reads_one_file_at_a_time(tmp_path, monkeypatch):
    make_sequence(tmp_path, ".png", "uint8", n=3)
    source = open_source(tmp_path)
    assert source.count() == source.count_hint == 3
    read = []
    original = folder_io.read_raw
    monkeypatch.setattr(folder_io, "read_raw", lambda path: (read.append(path.name), original(path))[1])
    frames = source.frames(start=1)
    first = next(frames)
    assert read == ["plate.1002.png"] and first.shape == (3, H, W) and first.dtype == torch.float32


def test_output_names_follow_start_number_and_total(tmp_path):
    make_sequence(tmp_path / "in", ".png", "uint8", n=1)
    source = open_source(tmp_path / "in")
    assert open_sink(tmp_path / "a", source, total=5).path(3).name == "frame_000003.png"
    assert open_sink(tmp_path / "b", source, total=5, start_number=1001).path(0).name == "frame_001001.png"
    assert open_sink(tmp_path / "c", source, total=2_000_000, start_number=1).path(0).name == "frame_0000001.png"


def test_gray_in_gray_out_for_copies_and_in_betweens(tmp_path):
    make_sequence(tmp_path / "in", ".png", "uint16", n=2, channels=1)
    source = open_source(tmp_path / "in")
    assert source.format.channels == 1 and source.channels == 3
    a, b = list(source.frames())
    assert torch.equal(a[0], a[1]) and torch.equal(a[0], a[2])
    sink = open_sink(tmp_path / "out", source, total=3)
    sink.write(0, None, copy_of=0)
    sink.write(1, (a + b) / 2)          # an in-between with equal channels
    tinted = a.clone()
    tinted[0] += 0.01                   # a network output whose channels drift apart a little
    sink.write(2, tinted)
    outs = [read_raw(sink.path(i)) for i in range(3)]
    assert [o.pixels.shape[2] for o in outs] == [1, 1, 1]
    assert all(o.format.bit_depth == "16" for o in outs)
    assert np.array_equal(outs[0].pixels, read_raw(source.paths[0]).pixels)
    expected = np.rint(((a[0] + b[0]) / 2).numpy() * 65535).astype(np.uint16)
    assert np.array_equal(outs[1].pixels[:, :, 0], expected)
    mean = np.rint(np.clip((a[0] + 0.01 / 3).numpy(), 0, 1) * 65535)
    assert np.abs(outs[2].pixels[:, :, 0].astype(float) - mean).max() <= 1
    assert sink.verify(sink.path(2))


def test_gray_with_alpha_stays_two_channels(tmp_path):
    values = np.concatenate([photo(1), np.linspace(0, 1, H * W, dtype=np.float32).reshape(H, W, 1)], axis=2)
    (tmp_path / "in").mkdir()
    write_frame(tmp_path / "in" / "a.1.png", values, "uint8")
    source = open_source(tmp_path / "in")
    assert source.channels == 4
    sink = open_sink(tmp_path / "out", source, total=1)
    sink.write(0, source.read(0))
    assert np.array_equal(read_raw(sink.path(0)).pixels, read_raw(source.paths[0]).pixels)


def test_extra_channels_follow_rgb_unconverted_and_keep_their_names(tmp_path):
    (tmp_path / "in").mkdir()
    values = np.concatenate([photo(4), np.full((H, W, 1), 7.5, np.float32)], axis=2)
    values = values[:, :, [3, 0, 1, 2, 4]]  # stored A, R, G, B, Z
    write_frame(tmp_path / "in" / "a.1.exr", values, "float", names=("A", "R", "G", "B", "Z"),
                attrs={"oiio:ColorSpace": "ACEScg"})
    source = open_source(tmp_path / "in")
    frame = source.read(0)
    assert source.channels == 5 and frame.shape[0] == 5
    assert torch.equal(frame[4], torch.full((H, W), 7.5)) and torch.equal(frame[3], torch.from_numpy(values[:, :, 0]))
    sink = open_sink(tmp_path / "out", source, total=1)
    sink.write(0, frame)
    out = read_raw(sink.path(0))
    assert set(out.channel_names) == {"A", "R", "G", "B", "Z"}
    by_name = {n: out.pixels[:, :, i] for i, n in enumerate(out.channel_names)}
    assert np.array_equal(by_name["Z"], values[:, :, 4]) and np.array_equal(by_name["A"], values[:, :, 0])
    assert np.allclose(by_name["R"], values[:, :, 1], atol=1e-6)


def test_bit_depth_and_format_options(tmp_path):
    make_sequence(tmp_path / "in", ".dpx", "uint16", n=1, bits=10)
    source = open_source(tmp_path / "in")
    assert open_sink(tmp_path / "a", source, total=1, bit_depth="16").format.bit_depth == "16"
    assert open_sink(tmp_path / "b", source, total=1, format="exr").format.bit_depth == "half"
    assert open_sink(tmp_path / "c", source, total=1, format="tiff").format.bit_depth == "16"
    with pytest.raises(FramesIOError, match="bit_depth '10' is not available for PNG frames; use one of 16, 8"):
        open_sink(tmp_path / "d", source, total=1, format="png", bit_depth="10")
    with pytest.raises(FramesIOError, match="cannot write '.gif' frames"):
        open_sink(tmp_path / "e", source, total=1, format="gif")
    sink = open_sink(tmp_path / "f", source, total=1, bit_depth="16")
    sink.write(0, None, copy_of=0)  # another depth: decoded and written, 10-bit code c -> 16-bit c * 65535/1023
    codes = read_raw(source.paths[0]).pixels >> 6
    got = read_raw(sink.path(0))
    assert got.format.bit_depth == "16"
    assert np.array_equal(got.pixels, np.rint(codes / 1023 * 65535).astype(np.uint16))


def test_files_get_the_umask_mode(tmp_path):
    make_sequence(tmp_path / "in", ".exr", "half", n=1)
    source = open_source(tmp_path / "in")
    sink = open_sink(tmp_path / "out", source, total=2)
    old = os.umask(0o027)
    try:
        sink.write(0, None, copy_of=0)
        sink.write(1, source.read(0))
    finally:
        os.umask(old)
    assert [sink.path(i).stat().st_mode & 0o777 for i in range(2)] == [0o640, 0o640]
    assert not list(files.stale_partials(tmp_path / "out"))


def test_errors_are_emavfi_errors_and_missing_packages_say_what_to_install(monkeypatch):
    assert issubclass(FramesIOError, EmaVfiError)
    monkeypatch.setitem(sys.modules, "OpenImageIO", None)
    monkeypatch.setitem(sys.modules, "PyOpenColorIO", None)
    for needs in (base.import_oiio, base.import_ocio):
        with pytest.raises(FramesIOError) as err:
            needs()
        assert str(err.value) == ("the CLI's frame I/O needs OpenImageIO and OpenColorIO: "
                                  "pip install -r requirements-cli.txt")


def test_importing_media_loads_neither_library():
    code = ("import sys, emavfi.media, emavfi.media.folder, emavfi.media.images, emavfi.media.colour; "
            "print('OpenImageIO' in sys.modules, 'PyOpenColorIO' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    assert out.stdout.split() == ["False", "False"]


def test_a_source_without_files_writes_8_bit_srgb_png(tmp_path):
    from fractions import Fraction

    class Frames:  # what a video source offers: frames, no file metadata
        path = tmp_path / "clip.mov"
        fps = Fraction(24000, 1001)
        size = (H, W)
        channels = 3
        count_hint = 1

    sink = folder_io.FolderSink(tmp_path / "out", Frames(), total=1)
    assert sink.format == base.FrameFormat(".png", "8", 3) and sink.colour.identity
    image = torch.from_numpy(photo().transpose(2, 0, 1).copy())
    sink.write(0, image)
    out = read_raw(sink.path(0))
    assert np.array_equal(out.pixels, np.rint(photo() * 255).astype(np.uint8))
    with pytest.raises(ValueError, match="copy_of names a frame of a folder source"):
        sink.write(1, None, copy_of=0)


def test_open_source_refuses_colour_options_for_a_video(tmp_path):
    clip = tmp_path / "clip.mov"
    clip.write_bytes(b"not really")
    with pytest.raises(FramesIOError, match="colorspace and ocio apply to folders of image frames"):
        open_source(clip, colorspace="ACEScg")
    (tmp_path / "clip.txt").write_text("x")
    with pytest.raises(FramesIOError, match="neither a folder of frames nor a video"):
        open_source(tmp_path / "clip.txt")
