"""Video files in with PyAV: full bit depth, alpha, real timestamps, colour tags and audio streams noted.

Frames are float32 tensors [C,H,W] in 0..1: RGB, then alpha when the stream has one. Sources deeper than
8 bits are converted through 16-bit RGB (rgb48le/rgba64le), so 10-bit values are not rounded to the 8-bit
grid. A container's frame count is only a hint: `frames()` decodes until the stream really ends, and
`count()`/`timestamps()` come from decoding. Writing (VideoSink, the codec table) is in video_out.py.

Colour conversion runs single-threaded (`threads=1`): FFmpeg 8.1's threaded swscale was seen to return
different YUV planes for the same small RGB frame from one call to the next; one thread is always the same,
and its cost is small next to the model.
"""
from __future__ import annotations

import itertools
import os
import weakref
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from ..errors import one_line
from .base import FramesIOError
from .images import to_tensor

if TYPE_CHECKING:
    import torch  # imported where a frame is decoded: reading headers (`emavfi plan`) needs no PyTorch
_FRIENDLY = MappingProxyType({"prores": "ProRes", "h264": "H.264", "hevc": "HEVC", "ffv1": "FFV1", "dnxhd": "DNxHD",
             "mpeg4": "MPEG-4", "vp9": "VP9", "av1": "AV1", "png": "PNG", "qtrle": "QuickTime RLE"})
_COLOUR_TAGS = ("color_primaries", "color_trc", "colorspace", "color_range")


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise FramesIOError("video input and output need PyAV: pip install av "
                            "(or use a folder of PNG/EXR frames)") from None
    return av


def has_audio(path: str | os.PathLike) -> bool:
    """True if path is a readable media file with at least one audio stream."""
    path = Path(path)
    if not path.is_file():
        return False
    try:
        with _av().open(str(path)) as container:
            return bool(container.streams.audio)
    except FramesIOError:
        raise
    except Exception:  # PyAV raises its own error types for unreadable files
        return False


def _format_fps(fps: Fraction) -> str:
    return f"{float(fps):.3f}".rstrip("0").rstrip(".")


class VideoSource:
    """Frames of a video file's first video stream, decoded one at a time at the stream's full bit depth.

    fps is FFmpeg's average frame rate of the stream (avg_frame_rate: the container's frame count over its
    duration, or FFmpeg's estimate from the first packets), as an exact Fraction (NTSC stays 30000/1001),
    falling back to the guessed (r_frame_rate) rate. For a variable-frame-rate file it is only nominal — an
    AVI counts its "dropped" null frames in both — so retime by `timestamps()` instead.
    """

    def __init__(self, path: str | os.PathLike, *, apply_rotation: bool = False):
        self.path = Path(path)
        self.apply_rotation = apply_rotation
        if not self.path.exists():
            raise FramesIOError(f"input video not found: {self.path}")
        if not self.path.is_file():
            raise FramesIOError(f"input video is not a file: {self.path}")
        av = _av()
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise FramesIOError(f"{self.path.name} has no video stream")
                stream = container.streams.video[0]
                context = stream.codec_context
                if not context.format or not context.width:
                    raise FramesIOError(f"{self.path.name}: cannot decode its video stream "
                                        f"({context.name or 'unknown codec'})")
                rate = stream.average_rate or stream.guessed_rate
                self.fps: Fraction | None = Fraction(rate) if rate else None
                self.size = (context.height, context.width)
                self.pix_fmt: str = context.format.name
                components = context.format.components
                self.channels = 4 if any(c.is_alpha for c in components) else 3
                self.bit_depth: int = max(c.bits for c in components)
                self.codec: str = context.name
                self._profile: str | None = context.profile
                self.colour: dict[str, int] = {tag: int(getattr(context, tag)) for tag in _COLOUR_TAGS}
                self.audio_codecs: list[str] = [s.codec_context.name for s in container.streams.audio]
                # The header's count may be wrong (VFR AVIs count null frames); absent, count packets.
                self.count_hint: int = stream.frames or sum(1 for p in container.demux(stream) if p.size)
        except FramesIOError:
            raise
        except av.error.EOFError:  # FFmpeg's probe ran out of file before it found a frame
            raise FramesIOError(f"{self.path.name} has no video frames (empty or truncated)") from None
        except Exception as exc:  # PyAV raises its own error types for unreadable files
            raise FramesIOError(f"cannot open video {self.path} (not a video, or damaged): {exc}") from None
        if self.count_hint == 0:
            raise FramesIOError(f"{self.path.name} has no video frames (empty or truncated)")
        self._opened: tuple[Any, Iterator[Any], weakref.finalize] | None = None
        self.display_matrix, self.rotation = self._display_matrix()
        if self.apply_rotation and self.rotation % 180:
            self.size = (self.size[1], self.size[0])
        self._count: int | None = None
        self._timestamps: list[Fraction] | None = None

    def _decoded(self, container: Any) -> Iterator[Any]:
        """Every decodable frame of the stream, in order; packets that fail to decode are skipped."""
        av = _av()
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        for packet in container.demux(stream):
            try:
                yield from packet.decode()
            except av.error.InvalidDataError:
                continue  # a damaged packet: the frames around it still decode

    def to_tensor(self, frame: Any) -> torch.Tensor:
        """A decoded PyAV frame as [C,H,W] float 0..1 at the file's bit depth (also used by fine-tuning's seeking reader)."""
        deep = self.bit_depth > 8
        fmt = ("rgba64le" if deep else "rgba") if self.channels == 4 else ("rgb48le" if deep else "rgb24")
        # PyAV assumes an unspecified source range; give swscale the frame's own so full-range YUV stays full.
        array = frame.to_ndarray(format=fmt, src_color_range=frame.color_range, threads=1)
        import torch

        values = to_tensor(array, "16" if deep else "8")
        if self.apply_rotation and self.rotation:  # upright: the display matrix turns the picture counter-clockwise
            values = torch.rot90(values, self.rotation // 90, dims=(1, 2)).contiguous()
        return values

    def frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Frames from index start on ([C,H,W] float32 0..1), until the stream really ends."""
        return map(self.to_tensor, self.raw_frames(start))

    def decode(self, frame: Any) -> torch.Tensor:
        """A frame from `raw_frames` as a tensor (`to_tensor`)."""
        return self.to_tensor(frame)

    def raw_frames(self, start: int = 0) -> Iterator[Any]:
        """Decoded PyAV frames from index start on (compact: the stream's own pixel format). A packet that does not
        decode is a FramesIOError naming its frame (frames after it still decode when read from there on). The
        first call from frame 0 goes on from the frame the file was opened with (it is not decoded again)."""
        opened, self._opened = self._opened, None
        if opened is not None:
            opened[2].detach()  # closed here instead, when the frames are read
            if start > 0:
                opened[0].close()
                opened = None
        container, frames = opened[:2] if opened is not None else self._start(start)
        try:
            yield from frames
        finally:
            container.close()

    def _start(self, start: int) -> tuple[Any, Iterator[Any]]:
        """An open container and its decoded frames from start on."""
        av = _av()
        try:
            container = av.open(str(self.path))
        except av.error.FFmpegError as exc:
            raise FramesIOError(f"cannot open video {self.path.name}: {exc}") from None
        container.streams.video[0].thread_type = "AUTO"
        return container, self._decode_from(container, start)

    def _decode_from(self, container: Any, start: int) -> Iterator[Any]:
        av = _av()
        index = 0
        try:
            for packet in container.demux(container.streams.video[0]):
                try:
                    decoded = packet.decode()
                except av.error.FFmpegError as exc:
                    if packet.size and index >= start:
                        raise FramesIOError(f"cannot decode frame {index} of {self.path.name} (damaged): "
                                            f"{one_line(exc)}") from None
                    index += 1 if packet.size else 0
                    continue
                for frame in decoded:
                    if index >= start:
                        yield frame
                    index += 1
        except av.error.FFmpegError as exc:
            raise FramesIOError(f"cannot decode {self.path.name} after frame {index - 1}: {exc}") from None

    def _display_matrix(self) -> tuple[tuple[int, ...] | None, int]:
        """The first frame's display matrix (9 ints, FFmpeg's layout; None when absent or the identity) and its
        rotation in degrees counter-clockwise, a multiple of 90 (0 when none). The decoder is kept, at that frame,
        for the first `raw_frames()` (each frame is decoded once)."""
        try:
            container, frames = self._start(0)
        except FramesIOError:
            return None, 0
        try:
            frame = next(frames, None)
        except FramesIOError:
            frame = None
        if frame is None:  # no frame, or a damaged first one: the render says so where it reads it
            container.close()
            return None, 0
        self._opened = (container, itertools.chain([frame], frames), weakref.finalize(self, container.close))
        side = frame.side_data.get("DISPLAYMATRIX")  # by name: PyAV 18.1.1 iterates its keys, 18.1.0 the data
        data = bytes(side) if side is not None else None
        if data is None or len(data) != 36:
            return None, 0
        rotation = int(round(frame.rotation or 0)) % 360
        matrix = tuple(int.from_bytes(data[i:i + 4], "little", signed=True) for i in range(0, 36, 4))
        identity = (1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
        return (None if matrix == identity else matrix), 90 * round(rotation / 90) % 360

    def _scan(self) -> None:
        """Count and timestamps from the stream's packets, no frame decoded (frames are decoded once, by the
        render); a stream whose packets carry no timestamps is decoded instead."""
        av = _av()
        stamps: list[Fraction] | None = []
        try:
            with av.open(str(self.path)) as container:
                for packet in container.demux(container.streams.video[0]):
                    if not packet.size or packet.is_discard:  # end marker, AVI null frame, edit-list leader
                        continue
                    if packet.pts is None or packet.time_base is None:
                        stamps = None
                        break
                    stamps.append(packet.pts * Fraction(packet.time_base))
        except av.error.FFmpegError as exc:
            raise FramesIOError(f"cannot read {self.path.name}: {exc}") from None
        if stamps is None:
            stamps = self._decoded_stamps()
        stamps.sort()  # packets come in decoding order
        first = stamps[0] if stamps else Fraction(0)
        self._timestamps = [stamp - first for stamp in stamps]
        self._count = len(stamps)

    def _decoded_stamps(self) -> list[Fraction]:
        av = _av()
        stamps: list[Fraction] = []
        try:
            with av.open(str(self.path)) as container:
                for frame in self._decoded(container):
                    if frame.pts is None or frame.time_base is None:
                        step = 1 / self.fps if self.fps else Fraction(0)
                        stamps.append(stamps[-1] + step if stamps else Fraction(0))
                    else:
                        stamps.append(frame.pts * Fraction(frame.time_base))
        except av.error.FFmpegError as exc:
            raise FramesIOError(f"cannot decode {self.path.name} after frame {len(stamps) - 1}: {exc}") from None
        return stamps

    def _checked(self, stamps: list[Fraction]) -> list[Fraction]:
        """The timestamps, refused with the file and frame named where one is not after the one before."""
        for index in range(1, len(stamps)):
            if stamps[index] <= stamps[index - 1]:
                how = "the same" if stamps[index] == stamps[index - 1] else "an earlier"
                raise FramesIOError(f"{self.path.name}: frame {index} has {how} timestamp as frame {index - 1} "
                                    f"({float(stamps[index]):.6g} s after the first frame), so a retime cannot place "
                                    "it; re-mux the file with fresh timestamps, or use -m")
        return stamps

    def variable_rate(self) -> bool:
        """True when a frame is more than a tenth of a frame off the constant-rate grid (timestamps rounded to a
        millisecond time base count as constant)."""
        if self._timestamps is None:
            self._scan()
        stamps = self._timestamps or []
        if self.fps is None or not stamps:
            return False
        step = 1 / Fraction(self.fps)
        return any(abs(t - stamps[0] - i * step) > step / 10 for i, t in enumerate(stamps))

    def rotation_note(self, apply: bool, video_out: bool) -> str | None:
        """One line saying what happens to the file's display rotation (None when it has none)."""
        if not self.rotation and self.display_matrix is None:
            return None
        turned = f"{self.path.name} is shown turned {self.rotation} degrees counter-clockwise (display matrix)"
        if apply:
            return f"{turned}: its pixels are rotated upright (--apply-rotation)"
        where = "the output video's display matrix" if video_out else "the frames' Orientation attribute"
        return f"{turned}: pixels kept as stored, the rotation carried to {where} (--apply-rotation turns them upright)"

    def rotation_outcome(self, apply: bool, video_out: bool) -> str | None:
        """What became of the file's display rotation, for the run's summary line (None when it has none)."""
        if not self.rotation and self.display_matrix is None:
            return None
        if apply:
            return f"pixels rotated {self.rotation}\N{DEGREE SIGN} upright (--apply-rotation)"
        where = "the video's display matrix" if video_out else "the frames' Orientation attribute"
        return (f"rotation {self.rotation}\N{DEGREE SIGN} carried as {where}, pixels kept as stored (add "
                "--apply-rotation to rotate them upright)")

    def count(self) -> int:
        """The number of frames (from the stream's packets, without decoding them; cached)."""
        if self._count is None:
            self._scan()
        return self._count  # type: ignore[return-value]

    def timestamps(self) -> list[Fraction]:
        """Presentation time of each frame in seconds (pts * time_base), the first frame at 0 (cached)."""
        if self._timestamps is None:
            self._scan()
        return list(self._checked(self._timestamps))  # type: ignore[arg-type]

    def describe(self) -> str:
        """One line, e.g. 'edit.mov: ProRes 422 HQ 1920x1080 10-bit, 23.976 fps, ~456 frames, audio aac'."""
        name = _FRIENDLY.get(self.codec, self.codec)
        profile = self._profile
        if self.codec == "prores":  # FFmpeg names only the variant; Apple's names say 422 or 4444
            profile = {"Proxy": "422 Proxy", "LT": "422 LT", "Standard": "422", "HQ": "422 HQ",
                       "XQ": "4444 XQ"}.get(profile or "", profile)
        if profile and profile.lower() != "unknown":
            name += f" {profile}"
        alpha = " with alpha" if self.channels == 4 else ""
        fps = f"{_format_fps(self.fps)} fps" if self.fps else "unknown fps"
        frames = f"{self._count} frames" if self._count is not None else f"~{self.count_hint} frames"
        audio = f"audio {', '.join(self.audio_codecs)}" if self.audio_codecs else "no audio"
        return (f"{self.path.name}: {name} {self.size[1]}x{self.size[0]} {self.bit_depth}-bit{alpha}, "
                f"{fps}, {frames}, {audio}")
