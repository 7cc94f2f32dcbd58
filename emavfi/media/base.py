"""What every frame source and sink offers (folders of images; video files: video.py, video_out.py), and the error.

Frames travel as [C,H,W] float32 tensors in the WORKING encoding: display-referred sRGB-encoded Rec.709
(what the network was trained on), values above 1 and below 0 allowed. Channels: R, G, B first, then alpha
and any extra channels of the file, which are passed through unconverted.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from ..errors import EmaVfiError
from ..sequences import natural_key
from ..settings import BIT_DEPTHS

if TYPE_CHECKING:
    import torch

MISSING_PACKAGES = "the CLI's frame I/O needs OpenImageIO and OpenColorIO: pip install -r requirements-cli.txt"
# A path with one of these extensions is a video file (PyAV); anything else is a folder of frames.
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts", ".mxf")
INTEGER_DEPTHS = ("8", "10", "12", "16")


class FramesIOError(EmaVfiError, OSError):
    """A frame could not be read or written, a colour space is unknown, or a needed package is missing."""


class MediaOptionError(FramesIOError, ValueError):
    """An output or colour option (colour space, codec, format, bit depth) cannot work: a usage error."""


@dataclass(frozen=True)
class FrameFormat:
    """How frames are stored: extension (".exr", lower case, ".jpg"/".tif" spelt short), bit_depth (one of
    BIT_DEPTHS) and the channel count of the file (1 = gray, 2 = gray + alpha, 3 = RGB, 4+ = RGB + more)."""

    extension: str
    bit_depth: str
    channels: int

    @property
    def is_float(self) -> bool:
        return self.bit_depth in ("half", "float")

    @property
    def is_gray(self) -> bool:
        return self.channels in (1, 2)

    def describe(self) -> str:
        """E.g. 'EXR half', 'DPX 10-bit', 'PNG 8-bit gray'."""
        depth = self.bit_depth if self.is_float else f"{self.bit_depth}-bit"
        kind = " gray" if self.is_gray else ""
        return f"{self.extension.lstrip('.').upper()} {depth}{kind}"


class Source(Protocol):
    path: Path
    fps: Fraction | None          # from metadata (EXR/DPX framerate attribute, video stream); None if unknown
    size: tuple[int, int]         # (height, width)
    channels: int                 # channels delivered by frames(): 3 (RGB) or more (alpha/extra after RGB)
    count_hint: int               # announced frame count (folder: exact; video: header, may be wrong)

    def frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """[C,H,W] float32 in the WORKING encoding, until the real end."""
        ...

    def count(self) -> int:
        """Exact frame count (folder: files; video: may decode/demux everything)."""
        ...

    def describe(self) -> str:
        """One line for the CLI: "412 EXR frames 1920x1080 half, ACEScg -> working"."""
        ...


class Sink(Protocol):
    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """index: GLOBAL output index (0-based, the file name adds start_number); image [C,H,W] float32 in the
        working encoding (None allowed when copy_of is given); copy_of: source frame index when this output is
        an exact copy."""
        ...

    def close(self) -> None:
        """Finish (video: move the file into place)."""
        ...

    def abort(self) -> None:
        """Drop unfinished work; never deletes complete frames."""
        ...


def import_oiio() -> Any:
    """OpenImageIO, imported on first use (ComfyUI never needs it)."""
    try:
        import OpenImageIO
    except ImportError:
        raise FramesIOError(MISSING_PACKAGES) from None
    return OpenImageIO


def import_ocio() -> Any:
    """PyOpenColorIO, imported on first use."""
    try:
        import PyOpenColorIO
    except ImportError:
        raise FramesIOError(MISSING_PACKAGES) from None
    return PyOpenColorIO
