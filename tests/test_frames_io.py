"""emavfi.frames_io: natural order, bit depth, alpha, HDR floats, atomic writes, streaming, video."""
from __future__ import annotations

import sys
from fractions import Fraction

import numpy as np
import pytest
import torch

from emavfi import frames_io
from emavfi.frames_io import FramesIOError, ImageFormat

cv2 = pytest.importorskip("cv2", reason="frame IO tests need opencv-python-headless")


def _rgb(h: int = 6, w: int = 9, c: int = 3, seed: int = 0) -> torch.Tensor:
    return torch.rand(c, h, w, generator=torch.Generator().manual_seed(seed))


def test_natural_order():
    names = ["frame_10.png", "frame_2.png", "Frame_1.png", "frame_002b.png", "frame_100.png"]
    assert sorted(names, key=frames_io.natural_key) == [
        "Frame_1.png", "frame_2.png", "frame_002b.png", "frame_10.png", "frame_100.png"]


def test_list_frames_skips_hidden_and_other_files_and_refuses_mixed(tmp_path):
    for name in ("f10.png", "f9.png", ".f1.png.abc.partial", "notes.txt"):
        (tmp_path / name).write_bytes(b"x")
    assert [p.name for p in frames_io.list_frames(tmp_path)] == ["f9.png", "f10.png"]
    (tmp_path / "f11.jpg").write_bytes(b"x")
    with pytest.raises(FramesIOError, match="mixes"):
        frames_io.list_frames(tmp_path)
    with pytest.raises(FramesIOError, match="not found"):
        frames_io.list_frames(tmp_path / "missing")


@pytest.mark.parametrize("ext, depth, channels", [
    (".png", "uint8", 3), (".png", "uint8", 4), (".png", "uint16", 3), (".png", "uint16", 4),
    (".tif", "uint16", 4), (".tif", "float32", 3),
])
def test_integer_and_float_formats_round_trip_exactly(tmp_path, ext, depth, channels):
    fmt = ImageFormat(ext, depth, channels)
    path = tmp_path / f"a{ext}"
    frames_io.write_image(path, _rgb(c=channels), fmt)
    first, got_fmt = frames_io.read_image(path)
    assert got_fmt == fmt and first.shape == (channels, 6, 9) and first.dtype == torch.float32
    if depth != "float32":  # quantised once; from then on reading and writing is lossless
        levels = 255 if depth == "uint8" else 65535
        assert torch.equal(first * levels, torch.round(first * levels))
    frames_io.write_image(tmp_path / f"b{ext}", first, fmt)
    second, _ = frames_io.read_image(tmp_path / f"b{ext}")
    assert torch.equal(first, second)
    assert (tmp_path / f"a{ext}").read_bytes() == (tmp_path / f"b{ext}").read_bytes()


def test_sixteen_bit_keeps_more_than_eight_bits(tmp_path):
    ramp = torch.linspace(0, 1, 1000).view(1, 1, -1).repeat(3, 2, 1)
    frames_io.write_image(tmp_path / "r.png", ramp, ImageFormat(".png", "uint16", 3))
    back, _ = frames_io.read_image(tmp_path / "r.png")
    assert back[0, 0].unique().numel() == 1000
    assert float((back - ramp).abs().max()) <= 0.5 / 65535 + 1e-7


def test_exr_keeps_values_above_one_and_alpha(tmp_path):
    if not cv2.haveImageWriter("x.exr"):
        pytest.skip("this OpenCV build has no OpenEXR (install opencv-python-headless<5)")
    hdr = _rgb(c=4) * 20
    fmt = ImageFormat(".exr", "float32", 4)
    frames_io.write_image(tmp_path / "h.exr", hdr, fmt)
    back, got = frames_io.read_image(tmp_path / "h.exr")
    assert got == fmt and torch.equal(back, hdr) and float(back.max()) > 1


def test_gray_becomes_rgb_and_jpeg_reads(tmp_path):
    gray = (np.arange(54, dtype=np.uint8).reshape(6, 9) * 4)
    cv2.imwrite(str(tmp_path / "g.png"), gray)
    image, fmt = frames_io.read_image(tmp_path / "g.png")
    assert fmt == ImageFormat(".png", "uint8", 3)
    assert torch.equal(image[0], image[2]) and torch.equal(image[0] * 255, torch.from_numpy(gray).float())
    frames_io.write_image(tmp_path / "c.jpg", _rgb(), ImageFormat(".jpg", "uint8", 3))
    assert frames_io.read_image(tmp_path / "c.jpg")[1] == ImageFormat(".jpg", "uint8", 3)
    with pytest.raises(FramesIOError, match="8-bit only"):
        frames_io.write_image(tmp_path / "d.jpg", _rgb(), ImageFormat(".jpg", "uint16", 3))


def test_channel_order_is_rgb(tmp_path):
    red = torch.zeros(3, 4, 4)
    red[0] = 1
    frames_io.write_image(tmp_path / "r.png", red, ImageFormat(".png", "uint8", 3))
    bgr = cv2.imread(str(tmp_path / "r.png"))
    assert bgr[0, 0].tolist() == [0, 0, 255]
    assert frames_io.read_image(tmp_path / "r.png")[0][:, 0, 0].tolist() == [1, 0, 0]


def test_interrupted_write_leaves_nothing(tmp_path, monkeypatch):
    target = tmp_path / "frame_000001.png"
    frames_io.write_image(target, _rgb(seed=1), ImageFormat(".png", "uint8", 3))
    before = target.read_bytes()
    real_fdopen = frames_io.os.fdopen

    class Interrupted(BaseException):  # like KeyboardInterrupt: not an Exception
        pass

    class HalfWriter:
        def __init__(self, fd, mode):
            self.file = real_fdopen(fd, mode)

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            self.file.close()

        def write(self, data):
            self.file.write(data[: len(data) // 2])
            self.file.flush()
            raise Interrupted

    monkeypatch.setattr(frames_io.os, "fdopen", HalfWriter)
    with pytest.raises(Interrupted):
        frames_io.write_image(target, _rgb(seed=2), ImageFormat(".png", "uint8", 3))
    monkeypatch.undo()
    assert [p.name for p in tmp_path.iterdir()] == [target.name]  # no temporary file left
    assert target.read_bytes() == before  # the old complete frame, not half of the new one


def test_is_complete_image_detects_truncation(tmp_path):
    for ext, depth in ((".png", "uint8"), (".jpg", "uint8"), (".tif", "uint16")):
        path = tmp_path / f"x{ext}"
        frames_io.write_image(path, _rgb(16, 16), ImageFormat(ext, depth, 3))
        assert frames_io.is_complete_image(path)
        data = path.read_bytes()
        path.write_bytes(data[: len(data) // 2])
        assert not frames_io.is_complete_image(path)
    assert not frames_io.is_complete_image(tmp_path / "missing.png")


def test_frame_names_are_zero_padded():
    assert frames_io.frame_name(42, 100, ".png") == "frame_000042.png"
    assert frames_io.frame_name(5, 12_345_678, ".exr") == "frame_00000005.exr"


def test_folder_reader_streams_in_order_and_checks_sizes(tmp_path):
    fmt = ImageFormat(".png", "uint16", 4)
    for i in (1, 2, 10):
        frames_io.write_image(tmp_path / f"f_{i}.png", _rgb(c=4, seed=i), fmt)
    reader = frames_io.open_frames(tmp_path)
    assert len(reader) == 3 and reader.format == fmt and reader.size == (6, 9)
    iterator = reader.frames(1)
    assert not isinstance(iterator, (list, tuple))  # lazy, one frame at a time
    second = next(iterator)
    assert torch.equal(second, frames_io.read_image(tmp_path / "f_2.png")[0])
    frames_io.write_image(tmp_path / "f_11.png", _rgb(7, 9, c=4), fmt)
    with pytest.raises(FramesIOError, match="f_11.png is 9x7"):
        list(frames_io.open_frames(tmp_path).frames())


def test_pillow_fallback_for_8_bit(tmp_path, monkeypatch):
    pytest.importorskip("PIL")
    frames_io.write_image(tmp_path / "a.png", _rgb(c=4), ImageFormat(".png", "uint8", 4))
    expected, _ = frames_io.read_image(tmp_path / "a.png")

    def no_cv2():
        raise ImportError("no cv2")

    monkeypatch.setattr(frames_io, "_cv2", no_cv2)
    image, fmt = frames_io.read_image(tmp_path / "a.png")
    assert fmt == ImageFormat(".png", "uint8", 4) and torch.equal(image, expected)
    frames_io.write_image(tmp_path / "b.png", image, fmt)
    assert torch.equal(frames_io.read_image(tmp_path / "b.png")[0], expected)
    with pytest.raises(FramesIOError, match="opencv"):
        frames_io.write_image(tmp_path / "c.png", image, ImageFormat(".png", "uint16", 4))


def test_video_round_trip(tmp_path):
    pytest.importorskip("av", reason="video tests need PyAV (pip install av)")
    path = tmp_path / "clip.mp4"
    greys = [0.1, 0.4, 0.7, 0.9]
    with frames_io.VideoWriter(path, Fraction(30000, 1001)) as writer:
        for g in greys:
            writer.write(torch.full((3, 48, 64), g))
        assert not path.exists()  # only complete files appear under the final name
    reader = frames_io.open_frames(path)
    assert len(reader) == 4 and reader.fps == Fraction(30000, 1001) and reader.size == (48, 64)
    means = [float(f.mean()) for f in reader.frames()]
    assert means == pytest.approx(greys, abs=0.02)
    assert [float(f.mean()) for f in reader.frames(2)] == pytest.approx(greys[2:], abs=0.02)


def test_video_writer_abort_removes_partial(tmp_path):
    pytest.importorskip("av")
    path = tmp_path / "clip.mp4"
    with pytest.raises(KeyboardInterrupt), frames_io.VideoWriter(path, Fraction(24)) as writer:
        writer.write(torch.rand(3, 32, 32))
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []


def test_unknown_input_is_named(tmp_path):
    with pytest.raises(FramesIOError, match="input not found"):
        frames_io.open_frames(tmp_path / "nothing")
    (tmp_path / "a.txt").write_text("x")
    with pytest.raises(FramesIOError, match="neither a folder"):
        frames_io.open_frames(tmp_path / "a.txt")


def test_missing_optional_packages_are_named(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "av", None)  # makes `import av` raise ImportError
    with pytest.raises(FramesIOError, match="pip install av"):
        frames_io.VideoWriter(tmp_path / "x.mp4", Fraction(24)).write(torch.rand(3, 8, 8))
    (tmp_path / "in.mp4").write_bytes(b"not a video")
    with pytest.raises(FramesIOError, match="pip install av"):
        frames_io.open_frames(tmp_path / "in.mp4")
    monkeypatch.setitem(sys.modules, "PIL", None)
    monkeypatch.setattr(frames_io, "_cv2", lambda: (_ for _ in ()).throw(ImportError("no cv2")))
    with pytest.raises(FramesIOError, match="opencv-python-headless"):
        frames_io.write_image(tmp_path / "a.png", _rgb(), ImageFormat(".png", "uint8", 3))
