"""The video codecs we write: the table (encoder, bit depths, chroma, alpha, options), what this PyAV build can
encode, which container takes which, and the default for an output."""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from .base import FramesIOError, MediaOptionError
from .channels import alpha_index
from .video import VideoSource, _av

# Output container (FFmpeg muxer) by extension; anything else is refused before work starts.
MUXERS = MappingProxyType({".mp4": "mp4", ".m4v": "mp4", ".mov": "mov", ".mkv": "matroska", ".avi": "avi",
                           ".ts": "mpegts"})
ENCODER_THREADS = 4
"""Frame threads of a reproducible encoder (x264): fixed, as its bytes depend on the count, not on the machine."""


@dataclass(frozen=True)
class _Codec:
    encoder: str
    depth: tuple[int, ...]          # bit depths it writes
    chroma: str                     # "420", "422" or "444" (4:2:0 falls back to 4:4:4 on odd sizes)
    alpha: bool
    options: tuple[tuple[str, str], ...]
    limited_range: bool = False     # the format is always limited range (ProRes), whatever the source
    # This PyAV build's libx265 now and then returns packets with garbage dts (mp4 then refuses them):
    # without B-frames dts must equal pts, so it is set from pts.
    dts_from_pts: bool = False
    # Same frames, same bytes: this build's x264 reads memory it never wrote in its macroblock-tree rate control
    # (the same frames gave other bytes, and pixels up to 60 levels apart, in about half of the runs, and other
    # bytes for every fill of glibc's MALLOC_PERTURB_), so that is off; and its default slice threads cut frames
    # into one slice per core (other bytes on every other machine), so a fixed number of frame threads runs.
    reproducible: bool = False
    min_width: int = 0  # narrower frames are refused: this build's libx265 corrupts memory on 40 and 48 px widths

    def pix_fmt(self, depth: int, alpha: bool, height: int, width: int) -> str:
        """The encoder's pixel format for this depth, alpha and frame size."""
        chroma = "444" if self.chroma == "420" and (height % 2 or width % 2) else self.chroma
        return f"yuv{'a' if alpha and self.alpha else ''}{chroma}p{'10le' if depth > 8 else ''}"


_CODECS = MappingProxyType({
    "h264": _Codec("libx264", (8,), "420", False, (("crf", "16"), ("x264-params", "mbtree=0")), reproducible=True),
    "h264_10bit": _Codec("libx264", (10,), "420", False, (("crf", "16"), ("x264-params", "mbtree=0")),
                         reproducible=True),
    # No x265-params (it would quieten x265's banner): with it, garbage dts come far more often.
    "hevc_10bit": _Codec("libx265", (10,), "420", False, (("crf", "16"),), dts_from_pts=True, min_width=64),
    "prores_422hq": _Codec("prores_ks", (10,), "422", False, (("profile", "3"),), limited_range=True),
    "prores_4444": _Codec("prores_ks", (10,), "444", True, (("profile", "4"),), limited_range=True),
    "ffv1": _Codec("ffv1", (8, 10), "444", True, (("level", "3"), ("slicecrc", "1"))),
})


def _codec_problem(name: str) -> str | None:
    """Why the named codec cannot be used with this PyAV build, or None."""
    av = _av()
    spec = _CODECS[name]
    if spec.encoder not in av.codecs_available:
        return f"this PyAV build has no {spec.encoder} encoder"
    if 10 in spec.depth and spec.encoder == "libx264":
        formats = {f.name for f in av.Codec("libx264", "w").video_formats or ()}
        if "yuv420p10le" not in formats:
            return "this PyAV build's libx264 is 8-bit only (no High 10 profile)"
    return None


def available_codecs() -> list[str]:
    """Names accepted by `check_codec` / `VideoSink(codec=)` that this PyAV build can encode."""
    return [name for name in _CODECS if _codec_problem(name) is None]


def check_codec(name: str, path: str | os.PathLike | None = None) -> str:
    """Validate a codec name (and, given the output path, that its container takes it); returns the name."""
    if name not in _CODECS:
        raise MediaOptionError(f"unknown video codec {name!r}; choose one of: {', '.join(available_codecs())}")
    problem = _codec_problem(name)
    if problem:
        raise MediaOptionError(f"video codec {name!r} is unavailable ({problem}); "
                            f"choose one of: {', '.join(available_codecs())}")
    encoder = _CODECS[name].encoder
    if path is not None and encoder not in _container_codecs(Path(path)):
        takers = [suffix for suffix in MUXERS if encoder in _container_codecs(Path("x" + suffix))]
        raise FramesIOError(f"{Path(path).suffix} files cannot hold {name}; use {' or '.join(takers)} "
                            f"(or another codec: {', '.join(available_codecs())})")
    return name


def _container_codecs(path: Path) -> set[str]:
    muxer = MUXERS.get(path.suffix.lower())
    if muxer is None:
        raise MediaOptionError(f"cannot write video {path.name}: use one of {', '.join(sorted(MUXERS))}")
    with _av().open(io.BytesIO(), "w", format=muxer) as probe:
        return set(probe.supported_codecs)


def _default_codec(path: Path, deep: bool, alpha: bool, width: int | None = None) -> str:
    """The codec used when none is named: ProRes in .mov for >8-bit or alpha, FFV1 for alpha elsewhere,
    10-bit HEVC (else 10-bit H.264, and for frames HEVC refuses) for >8-bit elsewhere, else 8-bit H.264."""
    mov = path.suffix.lower() == ".mov"
    if alpha and (mov or path.suffix.lower() in (".mkv", ".avi")):
        return "prores_4444" if mov else "ffv1"
    if deep:
        if mov:
            return "prores_422hq"
        for name in ("hevc_10bit", "h264_10bit"):
            if _codec_problem(name) is None and (width is None or width >= _CODECS[name].min_width):
                return name
    return "h264"


def check_frame_width(codec: str | None, path: Path, source: Any, bit_depth: int | None = None) -> None:
    """A MediaOptionError when the codec (None: the default for path and source) cannot encode source's frames."""
    width = source.size[1]
    deep = (bit_depth or 0) > 8 or _source_depth(source) > 8
    _refuse_narrow(codec or _default_codec(path, deep, alpha_index(source) is not None, width), width)


def _refuse_narrow(name: str, width: int) -> None:
    least = _CODECS[name].min_width
    if width < least:
        raise MediaOptionError(f"{name} cannot encode frames narrower than {least} px with this PyAV build (its "
                               f"encoder corrupts memory on them) and these are {width} px wide: use --codec "
                               "h264_10bit, or prores_422hq (.mov) or ffv1 (.mkv)")


def codec_keeps_alpha(codec: str | None, path: Path) -> bool:
    """True when the codec (None: the default for path with an alpha source) writes alpha."""
    return _CODECS[codec or _default_codec(path, False, True)].alpha


def _source_depth(source: Any) -> int:
    """Bits per sample of a video or folder source (float frames count as deep); 8 when unknown."""
    if isinstance(source, VideoSource):
        return source.bit_depth
    depth = getattr(getattr(source, "format", None), "bit_depth", "8")
    return 16 if depth in ("half", "float") else int(depth)
