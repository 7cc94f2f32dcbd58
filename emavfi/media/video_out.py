"""Video files out with PyAV: full bit depth, alpha, colour tags and audio kept (the codecs: codecs.py).

Frames are float32 tensors [C,H,W] in 0..1, as `video.VideoSource` gives them. A sink encodes into a hidden
temporary beside the target (`files.partial_path`) and renames it into place on `close()`, so no reader ever
sees a half-written video. Colour conversion runs single-threaded (`threads=1`), for the reason given in
video.py.
"""
from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import files
from ..outputs import record_file
from .base import FramesIOError, MediaOptionError
from .channels import alpha_index
from .codecs import (_CODECS, ENCODER_THREADS, MUXERS, _Codec, _container_codecs, _default_codec, _refuse_narrow,
                     _source_depth, check_codec)
from .codecs import available_codecs, check_frame_width, codec_keeps_alpha  # noqa: F401 - also offered here
from .quiet import quietly
from .video import VideoSource, _av

if TYPE_CHECKING:
    import torch  # imported where a frame is encoded: option checks (usage errors) need no PyTorch

_BT709, _LIMITED = 1, 1  # AVCOL_PRI/TRC/SPC_BT709 and AVCOL_RANGE_MPEG
_UNSPECIFIED = 2  # AVCOL_PRI/TRC/SPC_UNSPECIFIED (the range's is 0)


# ----------------------------------------------------------------------------------------------- writing

class VideoSink:
    """Encodes frames, in index order, into a video file that appears under its name only on close().

    codec: one of `available_codecs()` (None: see `_default_codec`). bit_depth: 8 or 10 (default: 10 when
    the source, or bit_depth, is deeper than 8 bits and the codec writes 10-bit, else 8). source: the video
    the frames came from, whose colour tags are copied (and whose YUV matrix and range are used); audio:
    also copy the source's audio streams unchanged (packets remuxed, timestamps kept) — only sensible when
    the output lasts as long as the source.
    """

    def __init__(self, path: str | os.PathLike, fps: Fraction, *, codec: str | None = None,
                 bit_depth: int | None = None, source: VideoSource | None = None, audio: bool = False):
        self.path = Path(path)
        self.fps = Fraction(fps)
        if self.fps <= 0:
            raise FramesIOError(f"video frame rate must be positive; got {self.fps}")
        if codec is not None:
            check_codec(codec, self.path)
        else:
            _container_codecs(self.path)  # refuses unknown extensions now, not after the first frame
        if bit_depth not in (None, 8, 10):
            raise MediaOptionError(f"video bit depth must be 8 or 10; got {bit_depth}")
        if codec is not None and bit_depth is not None and bit_depth not in _CODECS[codec].depth:
            depths = " or ".join(str(d) for d in _CODECS[codec].depth)
            raise MediaOptionError(f"{codec} writes {depths}-bit video, not {bit_depth}-bit; "
                                "use h264_10bit, hevc_10bit, prores_422hq or ffv1 for 10-bit")
        deep_source = _source_depth(source) > 8
        self._alpha = alpha_index(source) if source is not None else 3  # where alpha is among the frames' channels
        source = source if isinstance(source, VideoSource) else None  # a folder of frames has no tags or audio
        if audio and source is None:
            raise ValueError("audio=True needs a video source= (the video whose audio is copied)")
        if audio and source is not None and source.audio_codecs:
            supported = _container_codecs(self.path)
            refused = [name for name in source.audio_codecs if name not in supported]
            if refused:
                raise FramesIOError(f"{self.path.suffix} files cannot hold {', '.join(refused)} audio from "
                                    f"{source.path.name}; write .mov or .mkv, or leave the audio out")
        self.codec = codec
        self._requested_depth = bit_depth
        self._source = source
        self._deep_source = deep_source
        self._audio = audio and source is not None and bool(source.audio_codecs)
        self._tmp = files.partial_path(self.path)
        self._container: Any = None
        self._stream: Any = None
        self._pix_fmt = ""
        self._colour: dict[str, int] = {}
        self._first_index: int | None = None
        self._opening = threading.Lock()
        self._rate = self.fps
        self._dts_from_pts = False
        self._written = 0
        self._audio_input: Any = None
        self._audio_packets: Iterator[Any] | None = None
        self._audio_pending: Any = None
        self._audio_map: dict[int, tuple[Any, int]] = {}

    # -- setup

    def _depth(self, codec: str) -> int:
        depths = _CODECS[codec].depth
        if self._requested_depth is not None:
            return self._requested_depth
        deep = self._deep_source
        return 10 if (deep and 10 in depths) or depths == (10,) else 8

    def _open(self, channels: int, height: int, width: int) -> None:
        av = _av()
        alpha = channels == 4
        if self.codec is None:
            deep = (self._requested_depth or 0) > 8 or self._deep_source
            self.codec = check_codec(_default_codec(self.path, deep, alpha, width), self.path)
        _refuse_narrow(self.codec, width)
        spec = _CODECS[self.codec]
        depth = self._depth(self.codec)
        self._pix_fmt = spec.pix_fmt(depth, alpha, height, width)
        self._colour = self._colour_tags(spec)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        container = av.open(str(self._tmp), "w", format=MUXERS[self.path.suffix.lower()])
        self._container = container
        # The encoder's time base needs a rational rate; limit the denominator for odd rates like 1/3 fps steps.
        self._rate = self.fps.limit_denominator(1_000_000)
        stream = container.add_stream(spec.encoder, rate=self._rate)
        stream.width, stream.height, stream.pix_fmt = width, height, self._pix_fmt
        stream.options = dict(spec.options)
        if spec.dts_from_pts:
            stream.codec_context.max_b_frames = 0
        if spec.reproducible:
            stream.codec_context.thread_type, stream.codec_context.thread_count = "FRAME", ENCODER_THREADS
        if spec.encoder == "libx265" and self.path.suffix.lower() in (".mp4", ".m4v", ".mov"):
            stream.codec_context.codec_tag = "hvc1"  # Apple players refuse FFmpeg's default tag, hev1
        for tag, value in self._colour.items():
            setattr(stream.codec_context, tag, value)
        matrix = getattr(self._source, "display_matrix", None)
        if matrix is not None and not self._source.apply_rotation:  # type: ignore[union-attr]
            stream.set_display_matrix(list(matrix))  # pixels as stored: players turn them as they did the source's
        self._stream = stream
        self._dts_from_pts = spec.dts_from_pts
        if self._audio:
            self._open_audio(container)

    def _colour_tags(self, spec: _Codec) -> dict[str, int]:
        """The source's colour tags when it has any, else BT.709 limited range (what a player assumes)."""
        if self._source is not None:
            tags = dict(self._source.colour)
        else:
            tags = {"color_primaries": _BT709, "color_trc": _BT709, "colorspace": _BT709, "color_range": 0}
        if spec.limited_range or tags["color_range"] == 0:
            tags["color_range"] = _LIMITED
        return tags

    def _open_audio(self, container: Any) -> None:
        source = self._source
        assert source is not None
        self._audio_input = _av().open(str(source.path))
        video = self._audio_input.streams.video[0]
        # Audio is shifted with the video's start so that it stays in sync with the first frame (now at 0).
        offset = Fraction(video.start_time or 0) * Fraction(video.time_base)
        for stream in self._audio_input.streams.audio:
            out = container.add_stream_from_template(stream)
            self._audio_map[stream.index] = (out, round(offset / Fraction(stream.time_base)))
        self._audio_packets = iter(self._audio_input.demux(self._audio_input.streams.audio))

    # -- writing

    @quietly
    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Append frame index ([C,H,W] float 0..1, C = 3 or 4); indices must follow each other."""
        self.append(index, self.convert(index, image))

    def convert(self, index: int, image: torch.Tensor | None) -> Any:
        """Frame index as the encoder takes it (a PyAV frame in its pixel format); several threads may convert
        at once (the first frame opens the file)."""
        if image is None:
            raise ValueError(f"a video sink needs the image for frame {index} (copy_of is not enough)")
        if image.dim() == 3 and image.shape[0] > 3:  # RGB and alpha; extra channels (depth, mattes) stay out
            alpha = [self._alpha] if self._alpha is not None and self._alpha < image.shape[0] else []
            image = image[[0, 1, 2, *alpha]]
        if image.dim() != 3 or image.shape[0] not in (3, 4):
            raise ValueError(f"image must be [3 or 4,H,W]; got {list(image.shape)}")
        with self._opening:
            if self._stream is None:
                self._open(image.shape[0], image.shape[1], image.shape[2])
        height, width = self._stream.height, self._stream.width
        if tuple(image.shape[1:]) != (height, width):
            raise FramesIOError(f"frame {index} is {image.shape[2]}x{image.shape[1]}, but the video "
                                f"{self.path.name} is {width}x{height}; all frames must match")
        return self._to_frame(image)

    @quietly
    def append(self, index: int, frame: Any) -> None:
        """Encode a frame from `convert`; indices must follow each other."""
        if self._first_index is None:
            self._first_index = index
        expected = self._first_index + self._written
        if index != expected:
            raise ValueError(f"video frames must arrive in order: expected frame {expected}, got {index}")
        frame.pts, frame.time_base = self._written, 1 / self._rate
        self._mux_video(self._stream.encode(frame))
        self._written += 1
        self._mux_audio(Fraction(self._written) / self.fps)

    def _mux_video(self, packets: list[Any]) -> None:
        for packet in packets:
            if self._dts_from_pts:
                packet.dts = packet.pts
            self._container.mux(packet)

    def _to_frame(self, image: torch.Tensor) -> Any:
        import torch

        av = _av()
        alpha = "yuva" in self._pix_fmt
        values = image.detach().to("cpu", torch.float32)
        values = values[:4] if alpha else values[:3]
        if alpha and values.shape[0] == 3:
            values = torch.cat([values, torch.ones_like(values[:1])])
        deep = "10le" in self._pix_fmt
        scale, dtype = (65535.0, torch.uint16) if deep else (255.0, torch.uint8)
        # clip into one working copy already in the packed order the format wants, scale, round half to even
        packed = torch.empty((*values.shape[1:], values.shape[0]), dtype=torch.float32)
        codes = torch.clamp(values.permute(1, 2, 0), 0, 1, out=packed).mul_(scale).round_().to(dtype).numpy()
        fmt = ("rgba64le" if alpha else "rgb48le") if deep else ("rgba" if alpha else "rgb24")
        rgb = av.VideoFrame.from_ndarray(codes, format=fmt)
        colour = self._colour
        matrix = colour["colorspace"] if colour["colorspace"] != _UNSPECIFIED else None
        frame = rgb.reformat(format=self._pix_fmt, dst_colorspace=matrix,
                             dst_color_range=colour["color_range"], threads=1)
        for tag, value in colour.items():
            setattr(frame, tag, value)
        return frame

    def _mux_audio(self, until: Fraction | None) -> None:
        """Copy source audio packets up to `until` seconds (None: all), interleaved with the video."""
        if self._audio_packets is None:
            return
        while True:
            packet = self._audio_pending or next(self._audio_packets, None)
            self._audio_pending = None
            if packet is None:
                self._audio_packets = None
                return
            if packet.dts is None and not packet.size:
                continue  # the demuxer's end-of-stream marker
            out, shift = self._audio_map[packet.stream.index]
            stamp = packet.dts if packet.dts is not None else packet.pts
            if until is not None and stamp is not None and (stamp - shift) * Fraction(packet.time_base) > until:
                self._audio_pending = packet
                return
            if packet.pts is not None:
                packet.pts -= shift
            if packet.dts is not None:
                packet.dts -= shift
            packet.stream = out
            self._container.mux(packet)

    # -- finishing

    @quietly
    def close(self) -> None:
        """Flush the encoder, copy the rest of the audio and move the finished file into place."""
        if self._container is None:
            return
        try:
            self._mux_video(self._stream.encode())
            self._mux_audio(None)
            self._container.close()
            self._container = self._stream = None  # the encoder is freed here (x265 prints its summary then)
            self._close_audio()
            files.commit(self._tmp, self.path)
            record_file(self.path)  # what lets a later --overwrite replace it (and nothing else)
        except BaseException:
            self.abort()
            raise

    @quietly
    def abort(self) -> None:
        """Drop the unfinished file (nothing is left under the target name or the temporary)."""
        if self._container is not None:
            # Closing a half-written file may fail; it is deleted anyway.
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = self._stream = None
        self._close_audio()
        self._tmp.unlink(missing_ok=True)

    def _close_audio(self) -> None:
        if self._audio_input is not None:
            with contextlib.suppress(Exception):
                self._audio_input.close()
            self._audio_input = None
        self._audio_packets = None
        self._audio_pending = None

    def __enter__(self) -> VideoSink:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
