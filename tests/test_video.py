"""emavfi.media.video (reading) and video_out (writing): full-depth decode, codecs, colour tags, audio copy,
atomic writes and one-line errors. Every test video is made here with PyAV, tiny and a few frames long."""
from __future__ import annotations

import os
from fractions import Fraction

import numpy as np
import pytest
import torch

av = pytest.importorskip("av", reason="video tests need PyAV (pip install av)")

from emavfi import files  # noqa: E402
from emavfi.media import video, video_out  # noqa: E402
from emavfi.media.base import FramesIOError  # noqa: E402

BT2020_TAGS = {"color_primaries": 9, "color_trc": 14, "colorspace": 9, "color_range": 1}


def _gradient(height: int = 32, width: int = 64, alpha: bool = False) -> torch.Tensor:
    """[3|4,H,W] float32: smooth ramps whose values mostly fall between 8-bit codes."""
    y, x = torch.meshgrid(torch.arange(height), torch.arange(width), indexing="ij")
    planes = [x / width * 0.8 + 0.1, y / height * 0.8 + 0.1, torch.full((height, width), 0.5123)]
    if alpha:
        planes.append((x + y) / (width + height - 2))
    return torch.stack(planes).float()


def _encode(path, images, *, codec="prores_ks", pix_fmt="yuv422p10le", rate=Fraction(24), options=None,
            pts=None, time_base=None, tags=None, audio_seconds=None):
    """Write a test video with plain PyAV (not the code under test); pts/time_base make it variable-rate."""
    deep = "10" in pix_fmt
    with av.open(str(path), "w") as container:
        stream = container.add_stream(codec, rate=rate)
        stream.height, stream.width = images[0].shape[1:]
        stream.pix_fmt = pix_fmt
        stream.options = options or {}
        if time_base is not None:
            stream.codec_context.time_base = time_base
        for tag, value in (tags or {}).items():
            setattr(stream.codec_context, tag, value)
        audio = container.add_stream("aac", rate=48000) if audio_seconds else None
        for i, image in enumerate(images):
            scale, dtype = (65535, np.uint16) if deep else (255, np.uint8)
            array = np.rint(image.numpy().transpose(1, 2, 0) * scale).astype(dtype)
            fmt = {(3, True): "rgb48le", (4, True): "rgba64le", (3, False): "rgb24", (4, False): "rgba"}
            frame = av.VideoFrame.from_ndarray(array, format=fmt[image.shape[0], deep])
            matrix = (tags or {}).get("colorspace")
            frame = frame.reformat(format=pix_fmt, dst_colorspace=matrix, dst_color_range=1, threads=1)
            for tag, value in (tags or {}).items():
                setattr(frame, tag, value)
            frame.pts = pts[i] if pts else i
            if time_base is not None:
                frame.time_base = time_base
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
        if audio is not None:
            t = np.arange(int(48000 * audio_seconds)) / 48000
            sine = (0.3 * np.sin(2 * np.pi * 440 * t)).astype(np.float32)[None]
            samples = av.AudioFrame.from_ndarray(sine, format="flt", layout="mono")
            samples.sample_rate, samples.pts = 48000, 0
            for packet in [*audio.encode(samples), *audio.encode()]:
                container.mux(packet)
    return path


def _stream_info(path):
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        context = stream.codec_context
        return context.format.name, {tag: int(getattr(context, tag)) for tag in video._COLOUR_TAGS}


def _write(path, images, **kwargs):
    with video_out.VideoSink(path, kwargs.pop("fps", Fraction(24)), **kwargs) as sink:
        for index, image in enumerate(images):
            sink.write(index, image)
    return path


def test_ten_bit_source_is_not_quantised_to_eight_bits(tmp_path):
    image = _gradient()
    path = _encode(tmp_path / "deep.mov", [image] * 2, options={"profile": "3"})
    source = video.VideoSource(path)
    assert (source.bit_depth, source.channels, source.size, source.fps) == (10, 3, (32, 64), Fraction(24))
    assert source.describe() == "deep.mov: ProRes 422 HQ 64x32 10-bit, 24 fps, ~2 frames, no audio"
    frames = list(source.frames())
    assert len(frames) == 2 and frames[0].dtype == torch.float32 and frames[0].shape == (3, 32, 64)
    codes = frames[0] * 255
    off_grid = ((codes - codes.round()).abs() > 0.05).float().mean()
    assert off_grid > 0.5  # 8-bit decoding would put every value on a multiple of 1/255
    assert (frames[0] - image).abs().max() < 0.01  # 4:2:2 chroma at the ramp's edge is the largest error


def test_ten_bit_in_ten_bit_out(tmp_path):
    image = _gradient()
    source = video.VideoSource(_encode(tmp_path / "deep.mov", [image] * 2, options={"profile": "3"}))
    out = _write(tmp_path / "out.mov", source.frames(), source=source)  # default codec: ProRes 422 HQ
    assert _stream_info(out)[0] == "yuv422p10le"
    back = next(video.VideoSource(out).frames())
    assert (back - image).abs().max() < 0.012
    ffv1 = _write(tmp_path / "out.mkv", source.frames(), codec="ffv1", source=source)
    assert _stream_info(ffv1)[0] == "yuv444p10le"  # 10-bit because the source was
    assert _stream_info(_write(tmp_path / "8.mkv", [image], codec="ffv1"))[0] == "yuv444p"
    # libx265 from the PyAV wheels corrupts its heap at width 48, so these tiny tests use width 64.
    hevc = _write(tmp_path / "out.mp4", source.frames(), codec="hevc_10bit", source=source)
    assert _stream_info(hevc)[0] == "yuv420p10le"
    with av.open(str(hevc)) as container:
        assert container.streams.video[0].codec_context.codec_tag == "hvc1"
    assert _stream_info(_write(tmp_path / "odd.mp4", [_gradient(31, 63)], codec="h264"))[0] == "yuv444p"


def test_prores_4444_keeps_alpha(tmp_path):
    image = _gradient(alpha=True)
    out = _write(tmp_path / "alpha.mov", [image] * 2, codec="prores_4444")
    source = video.VideoSource(out)
    assert (source.codec, source._profile) == ("prores", "4444")
    assert source.pix_fmt == "yuva444p12le"  # FFmpeg decodes ProRes 4444 (10-bit in, 12-bit format) to 12 bits
    assert source.channels == 4 and "with alpha" in source.describe()
    back = next(source.frames())
    assert back.shape == (4, 32, 64)
    assert (back[3] - image[3]).abs().max() < 2 / 1023 and (back[:3] - image[:3]).abs().max() < 0.004


def test_header_count_is_only_a_hint_and_timestamps_are_real(tmp_path):
    # AVI stores a variable rate as "null" frames: the muxer fills each gap in pts with an empty chunk, and
    # the header counts them, so it announces 31 frames where 8 decode (like the 444-for-68 AVI in the wild).
    pts = [0, 1, 2, 6, 7, 15, 16, 30]
    images = [torch.full((3, 32, 32), i / 10) for i in range(len(pts))]
    avi = _encode(tmp_path / "vfr.avi", images, codec="mpeg4", pix_fmt="yuv420p", rate=Fraction(30), pts=pts)
    source = video.VideoSource(avi)
    assert source.count_hint == 31 and source.fps == Fraction(30)
    assert len(list(source.frames())) == 8 and source.count() == 8
    assert source.timestamps() == [Fraction(p, 30) for p in pts]
    assert "8 frames" in source.describe()
    assert [float(f.mean()) for f in source.frames(6)] == pytest.approx([0.6, 0.7], abs=0.02)
    # Matroska has no frame count at all: the hint is the packet count; timestamps are in milliseconds.
    ms = [0, 40, 80, 200, 240, 500]
    mkv = _encode(tmp_path / "vfr.mkv", images[:6], codec="libx264", pix_fmt="yuv420p", rate=Fraction(25),
                  pts=ms, time_base=Fraction(1, 1000))
    source = video.VideoSource(mkv)
    assert source.count_hint == 6 and source.count() == 6
    assert source.timestamps() == [Fraction(m, 1000) for m in ms]


def test_colour_tags_are_kept(tmp_path):
    image = _gradient()
    image[0, :, :8] = 0.9  # a saturated patch: a wrong YUV matrix would shift its hue
    image[1:, :, :8] = 0.1
    src = _encode(tmp_path / "hdr.mov", [image], options={"profile": "3"}, tags=BT2020_TAGS)
    source = video.VideoSource(src)
    assert source.colour == BT2020_TAGS
    for codec, name in (("prores_422hq", "a.mov"), ("h264", "b.mp4")):
        out = _write(tmp_path / name, source.frames(), codec=codec, source=source)
        assert _stream_info(out)[1] == BT2020_TAGS
        # Inside the patch (away from 4:2:0 chroma bleeding), a wrong BT.601/709 matrix would be off by ~0.1.
        error = (next(video.VideoSource(out).frames()) - next(source.frames()))[:, :, 1:6].abs().max()
        assert error < 0.01
    untagged = _write(tmp_path / "c.mp4", [image], codec="h264")
    assert _stream_info(untagged)[1] == {"color_primaries": 1, "color_trc": 1, "colorspace": 1, "color_range": 1}


def test_unknown_or_unusable_codec_fails_before_any_work(tmp_path, monkeypatch):
    with pytest.raises(FramesIOError, match=r"unknown video codec 'xvid'; choose one of: h264, .*ffv1"):
        video_out.check_codec("xvid")
    with pytest.raises(FramesIOError, match="unknown video codec"):
        video_out.VideoSink(tmp_path / "a.mp4", Fraction(24), codec="xvid")
    with pytest.raises(FramesIOError, match=r"\.mp4 files cannot hold prores_4444; use \.mov or \.mkv \(or"):
        video_out.VideoSink(tmp_path / "a.mp4", Fraction(24), codec="prores_4444")
    with pytest.raises(FramesIOError, match="h264 writes 8-bit video, not 10-bit"):
        video_out.VideoSink(tmp_path / "a.mp4", Fraction(24), codec="h264", bit_depth=10)
    with pytest.raises(FramesIOError, match="cannot write video a.gif"):
        video_out.VideoSink(tmp_path / "a.gif", Fraction(24))
    assert list(tmp_path.iterdir()) == []

    class EightBitX264:
        name, video_formats = "libx264", [av.VideoFormat("yuv420p")]

    monkeypatch.setattr(av, "Codec", lambda name, mode: EightBitX264())
    with pytest.raises(FramesIOError, match=r"'h264_10bit' is unavailable \(.*8-bit only.*\); choose one of"):
        video_out.check_codec("h264_10bit")
    assert "h264_10bit" not in video_out.available_codecs()


def test_writes_are_atomic_and_follow_the_umask(tmp_path):
    path = tmp_path / "clip.mov"
    sink = video_out.VideoSink(path, Fraction(24), codec="prores_422hq")
    sink.write(0, _gradient())  # ProRes is intra-only: its first packet (and so the file) exists at once
    # What a killed process leaves: only a temporary that files.is_partial recognises, never clip.mp4.
    names = [p.name for p in tmp_path.iterdir()]
    assert len(names) == 1 and files.is_partial(names[0]) and names[0].endswith(".mov")
    sink.abort()
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(KeyboardInterrupt), video_out.VideoSink(path, Fraction(24)) as sink:
        sink.write(0, _gradient())
        raise KeyboardInterrupt
    assert list(tmp_path.iterdir()) == []
    with pytest.raises(ValueError, match="expected frame 1, got 2"):
        with video_out.VideoSink(path, Fraction(24)) as sink:
            sink.write(0, _gradient())
            sink.write(2, _gradient())
    assert list(tmp_path.iterdir()) == []
    old = os.umask(0o027)
    try:
        _write(path, [_gradient()] * 2)
    finally:
        os.umask(old)
    assert sorted(p.name for p in tmp_path.iterdir()) == [".clip.mov.emavfi-run.json", "clip.mov"]  # + our record
    assert path.stat().st_mode & 0o777 == 0o640


def test_audio_is_copied_on_a_retime(tmp_path):
    frames = [torch.full((3, 64, 64), i / 25) for i in range(25)]
    src = _encode(tmp_path / "in.mp4", frames, codec="libx264", pix_fmt="yuv420p", rate=Fraction(25),
                  audio_seconds=1.0)
    source = video.VideoSource(src)
    assert video.has_audio(src) and source.audio_codecs == ["aac"]
    assert source.describe().endswith("25 fps, ~25 frames, audio aac")
    out = _write(tmp_path / "out.mp4", [torch.full((3, 64, 64), i / 30) for i in range(30)],
                 fps=Fraction(30), source=source, audio=True)

    def audio_of(path):
        with av.open(str(path)) as container:
            stream = container.streams.audio[0]
            packets = [p for p in container.demux(stream) if p.size]
            end = max((p.pts + p.duration) * p.time_base for p in packets)
            return stream.codec_context.name, [bytes(p) for p in packets], end

    codec, payload, end = audio_of(out)
    src_codec, src_payload, src_end = audio_of(src)
    assert codec == src_codec == "aac" and payload == src_payload  # remuxed, not re-encoded
    assert abs(end - src_end) <= Fraction(1024, 48000)
    output = video.VideoSource(out)
    assert output.count() == 30 and output.fps == Fraction(30)
    duration = output.timestamps()[-1] + 1 / output.fps
    assert abs(duration - Fraction(25, 25)) <= 1 / output.fps
    assert not video.has_audio(_write(tmp_path / "silent.mp4", frames[:2], source=source))
    assert not video.has_audio(tmp_path / "missing.mp4")


def test_bad_inputs_fail_with_one_line(tmp_path):
    (tmp_path / "text.mp4").write_text("not a video")
    with av.open(str(tmp_path / "sound.mp4"), "w") as container:
        stream = container.add_stream("aac", rate=48000)
        samples = av.AudioFrame.from_ndarray(np.zeros((1, 4800), np.float32), format="flt", layout="mono")
        samples.sample_rate, samples.pts = 48000, 0
        for packet in [*stream.encode(samples), *stream.encode()]:
            container.mux(packet)
    with av.open(str(tmp_path / "empty.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width = stream.height = 16
        stream.pix_fmt = "yuv420p"
        container.start_encoding()  # the header, with a video stream, and then no frame
    (tmp_path / "folder.mov").mkdir()
    cases = {"missing.mp4": "input video not found", "folder.mov": "not a file",
             "text.mp4": "cannot open video .* \\(not a video, or damaged\\)", "sound.mp4": "has no video stream",
             "empty.mkv": "empty.mkv has no video frames"}
    for name, message in cases.items():
        with pytest.raises(FramesIOError, match=message) as caught:
            video.VideoSource(tmp_path / name)
        assert "\n" not in str(caught.value)
