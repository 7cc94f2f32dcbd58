"""A folder of image frames as a Source, and a folder the output frames go to as a Sink.

FolderSource reads one file at a time (never the whole clip): RGB first, then alpha and extra channels,
gray expanded to RGB, colour converted into the working encoding. FolderSink writes frame k atomically with the
source's metadata and the timecode of output frame k; copies of source frames are the source's own samples
(bit-exact, half stays half). Gray in -> gray out for every frame (the in-betweens are computed in RGB and
written as the mean of R, G and B).
"""
from __future__ import annotations

import os
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import files, sequences
from ..outputs import Naming
from ..sequences import FrameSequence
from ..settings import DEFAULT_COMPRESSION, PNG_DEFAULT_FILTER, check_compression
from .base import BIT_DEPTHS, FrameFormat, FramesIOError, MediaOptionError, Source, import_oiio
from .colour import Colour
from .images import (DEPTHS, IMAGE_EXTENSIONS, MAX_CHANNELS, RawImage, attributes, canonical_extension,
                     copy_attributes, copy_frame, fps_of, from_values, oiio_type, read_header, read_raw, set_fps,
                     to_tensor, to_values, verify, write_raw)
from .timecode import Timecode, advance_timecode, set_timecode, timecode_of

if TYPE_CHECKING:
    import torch  # imported where a frame is decoded: reading headers (`emavfi plan`) needs no PyTorch


def find_sequence(folder: str | os.PathLike, pattern: str | None = None) -> FrameSequence:
    """The one frame sequence of a folder (hidden files and atomic-write temporaries skipped), in frame order;
    pattern (`--pattern`, e.g. "plate.####.exr") picks one where several share the folder."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FramesIOError(f"input folder not found: {folder}")
    paths = [p for p in folder.iterdir() if p.is_file() and not p.name.startswith(".")
             and not files.is_partial(p.name) and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise FramesIOError(f"no image frames ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    try:
        return sequences.group(folder, paths, {e: canonical_extension(e) for e in IMAGE_EXTENSIONS}, pattern)
    except sequences.SequenceError as exc:
        raise MediaOptionError(str(exc)) from None


def list_frames(folder: str | os.PathLike, pattern: str | None = None) -> list[Path]:
    """Image files of a folder's one sequence in frame order (natural order where names carry no number)."""
    return list(find_sequence(folder, pattern).paths)


def _channel_order(names: tuple[str, ...]) -> list[int]:
    """File channel indices in delivery order: R, G, B first (by name where the file names them), then the rest
    in file order. Gray files (1 or 2 channels) keep their order."""
    if len(names) < 3:
        return list(range(len(names)))
    upper = [n.rsplit(".", 1)[-1].upper() for n in names]
    rgb = [upper.index(c) for c in ("R", "G", "B") if c in upper]
    if len(rgb) != 3:
        rgb = [0, 1, 2]
    return rgb + [i for i in range(len(names)) if i not in rgb]


class FolderSource:
    """A folder of frames (EXR, DPX, TIFF, PNG, JPEG), read one file at a time in natural order."""

    def __init__(self, folder: str | os.PathLike, *, colorspace: str | None = None, ocio: str | None = None,
                 pattern: str | None = None):
        self.path = Path(folder)
        self.sequence = find_sequence(self.path, pattern)
        self.paths = list(self.sequence.paths)
        spec, self.format = read_header(self.paths[0])  # its pixels are decoded once, with the others
        self.first_spec = spec
        self.channel_names: tuple[str, ...] = tuple(spec.channelnames)
        self.size: tuple[int, int] = (spec.height, spec.width)
        self.order = _channel_order(self.channel_names)
        gray = self.format.is_gray
        self.channels: int = self.format.channels + (2 if gray else 0)
        self.count_hint: int = len(self.paths)
        self.fps: Fraction | None = fps_of(spec)
        self.timecode: Timecode | None = timecode_of(spec)
        self.attributes = attributes(spec)
        self.colour = Colour.open(colorspace, self.format, self.attributes, ocio=ocio)

    @property
    def colorspace(self) -> str:
        """The config's name of the frames' colour space."""
        return self.colour.name

    def count(self) -> int:
        return len(self.paths)

    def __len__(self) -> int:
        return len(self.paths)

    def describe(self) -> str:
        """E.g. "412 EXR frames 1920x1080 half, ACEScg -> working"."""
        h, w = self.size
        fmt = self.format
        depth = fmt.bit_depth if fmt.is_float else f"{fmt.bit_depth}-bit"
        extra = {1: " gray", 2: " gray+alpha", 3: "", 4: " RGBA"}.get(fmt.channels, f" {fmt.channels} channels")
        rate = f" {float(self.fps):g} fps" if self.fps else ""
        tc = f" TC {self.timecode}" if self.timecode else ""
        numbers = f" ({self.sequence.label} {self.sequence.describe_range()})" if self.sequence.numbers else ""
        kind = fmt.extension.lstrip('.').upper()
        return (f"{len(self.paths)} {kind} frames{numbers} {w}x{h} {depth}{extra}{rate}{tc}, "
                f"{self.colour.describe()}")

    def read_raw(self, index: int) -> RawImage:
        """Frame index as stored, checked against the first frame's size and channels."""
        raw = read_raw(self.paths[index])
        h, w, c = raw.pixels.shape
        if (h, w) != self.size or c != self.format.channels:
            raise FramesIOError(
                f"{raw.path} is {w}x{h} with {c} channels, but {self.paths[0].name} is "
                f"{self.size[1]}x{self.size[0]} with {self.format.channels}; all frames must match")
        return raw

    def decode(self, raw: RawImage) -> torch.Tensor:
        """Raw frame -> [C,H,W] float32 in the working encoding (RGB first; gray expanded to RGB)."""
        pixels = raw.pixels
        if self.order != list(range(pixels.shape[2])):
            pixels = pixels[:, :, self.order]
        if self.format.is_gray:
            pixels = np.concatenate([np.repeat(pixels[:, :, :1], 3, axis=2), pixels[:, :, 1:]], axis=2)
        if self.colour.identity:
            return to_tensor(pixels, raw.format.bit_depth)  # straight to [C,H,W]: one frame-sized buffer
        values = to_values(pixels, raw.format.bit_depth)  # a new array, converted in place
        rgb = self.colour.to_working(np.ascontiguousarray(values[:, :, :3]), owned=True)
        out = np.concatenate([rgb, values[:, :, 3:]], axis=2) if values.shape[2] > 3 else rgb
        import torch

        return torch.from_numpy(np.ascontiguousarray(out.transpose(2, 0, 1), dtype=np.float32))

    def read(self, index: int) -> torch.Tensor:
        """Frame index as [C,H,W] float32 in the working encoding."""
        return self.decode(self.read_raw(index))

    def frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Frames from index start on, one file at a time."""
        for index in range(start, len(self.paths)):
            yield self.read(index)

    def raw_frames(self, start: int = 0) -> Iterator[RawImage]:
        """Frames from index start on as stored (`decode` makes each a tensor), one file at a time."""
        return map(self.read_raw, range(start, len(self.paths)))


class _Generic:
    """What FolderSink needs from a source without files (a video): 8-bit sRGB RGB(A), no metadata."""

    def __init__(self, source: Source, *, ocio: str | None):
        self.inner = source
        self.size = source.size
        self.channels = source.channels
        self.fps = source.fps
        self.timecode: Timecode | None = getattr(source, "timecode", None)
        fmt = getattr(source, "format", None)
        depth = "16" if int(getattr(source, "bit_depth", 8) or 8) > 8 else "8"  # a 10-bit video -> 16-bit PNG
        self.format = fmt if isinstance(fmt, FrameFormat) else FrameFormat(".png", depth, source.channels)
        colour = getattr(source, "colour", None)
        self.colour = colour if isinstance(colour, Colour) else Colour.open(None, FrameFormat(".png", "8", 3), {},
                                                                            ocio=ocio)
        self.channel_names = ("R", "G", "B", "A", *(f"channel{i}" for i in range(4, source.channels)))[:source.channels]
        self.order = list(range(source.channels))
        self.first_spec = import_oiio().ImageSpec(self.size[1], self.size[0], self.channels,
                                                  "uint8" if depth == "8" else "uint16")
        if self.channels > 3:
            self.first_spec.alpha_channel = 3
        rotation = getattr(source, "rotation", 0)
        if rotation and not getattr(source, "apply_rotation", False):  # EXIF orientation of a turned display
            self.first_spec.attribute("Orientation", {90: 8, 180: 3, 270: 6}[rotation])


def _output_depth(source: FrameFormat, extension: str, bit_depth: str | None) -> str:
    allowed = DEPTHS[extension]
    if bit_depth is not None:
        bit_depth = str(bit_depth).lower()
        bit_depth = {"32": "float", "f32": "float", "f16": "half"}.get(bit_depth, bit_depth)
        if bit_depth not in BIT_DEPTHS or bit_depth not in allowed:
            raise MediaOptionError(f"bit_depth {bit_depth!r} is not available for {extension.lstrip('.').upper()} "
                                f"frames; use one of {', '.join(allowed)}")
        return bit_depth
    if extension == source.extension:
        return source.bit_depth
    if source.bit_depth in allowed:
        return source.bit_depth
    precision = {"8": 8, "10": 10, "12": 12, "16": 16, "half": 11, "float": 24}
    wanted = precision[source.bit_depth]
    # The cheapest depth of the same kind (integer or float) that keeps the source's precision, else of any
    # kind, else the finest available.
    same_kind = [d for d in allowed if (d in ("half", "float")) == source.is_float]
    fits = [d for d in same_kind if precision[d] >= wanted] or [d for d in allowed if precision[d] >= wanted]
    return min(fits, key=precision.__getitem__) if fits else max(allowed, key=precision.__getitem__)


class FolderSink:
    """Writes output frame k to folder/frame_{k+start_number}.{ext}, atomically, with the source's metadata.

    format: output extension ("exr", ".png"; default the source's); bit_depth: "8" "10" "12" "16" "half"
    "float" (default the source's, or the nearest the output format stores); out_fps: the output frame rate
    (default the source's); timecode_rate: the rate the output timecode counts at (default out_fps); colorspace:
    the output's colour space (default the source's when the format is the same, else the format's default:
    scene_linear for EXR, Cineon for DPX, sRGB for PNG/JPEG/8-16-bit TIFF).
    """

    def __init__(self, folder: str | os.PathLike, source: Source, *, total: int, start_number: int = 0,
                 format: str | None = None, bit_depth: str | None = None, out_fps: Fraction | None = None,
                 timecode_rate: Fraction | None = None, colorspace: str | None = None, ocio: str | None = None,
                 compression: str | None = None):
        self.folder = Path(folder)
        if not isinstance(source, FolderSource):  # e.g. a video: frames only, no file metadata to carry
            source = _Generic(source, ocio=ocio)
        self.source = source
        self.total = int(total)
        self.start_number = int(start_number)
        self.extension = canonical_extension(format) if format else source.format.extension
        if self.extension not in DEPTHS:
            raise MediaOptionError(f"cannot write {self.extension!r} frames; use one of "
                                f"{', '.join(e.lstrip('.') for e in DEPTHS)}")
        self.bit_depth = _output_depth(source.format, self.extension, bit_depth)
        self.same_format = self.extension == source.format.extension and self.bit_depth == source.format.bit_depth
        self.channels = min(source.format.channels, MAX_CHANNELS.get(self.extension, 1 << 10))
        if source.format.channels >= 3 and self.channels < 3:
            self.channels = 3
        self.out_fps = Fraction(out_fps) if out_fps else source.fps
        self.timecode_rate = Fraction(timecode_rate) if timecode_rate else self.out_fps
        if colorspace:
            self.colour = source.colour.like(colorspace)
        elif self.extension == source.format.extension:
            self.colour = source.colour
        else:
            from .colour import guess_colorspace
            fmt = FrameFormat(self.extension, self.bit_depth, self.channels)
            self.colour = source.colour.like(guess_colorspace(source.colour.config, fmt, {}))
        self.compression = check_compression(self.extension, compression)
        self.digits = max(6, len(str(self.start_number + self.total - 1)))
        self.naming = Naming("frame_", self.digits, self.extension, self.start_number, self.total)

    @property
    def format(self) -> FrameFormat:
        return FrameFormat(self.extension, self.bit_depth, self.channels)

    def path(self, index: int) -> Path:
        """The file of output frame index (global, 0-based)."""
        return self.folder / self.naming.name(index)

    def verify(self, path: str | os.PathLike) -> bool:
        """True when path decodes completely (all pixels) to this sink's size and channels."""
        return verify(path, (*self.source.size, self.channels))

    def timecode(self, index: int) -> Timecode | None:
        """The timecode output frame index carries (None when the source has none)."""
        first = self.source.timecode
        if first is None:
            return None
        default = Fraction(30000, 1001) if first.drop else Fraction(24)
        source_rate = self.source.fps or self.timecode_rate or default
        return advance_timecode(first, source_rate, index, self.timecode_rate or source_rate)

    def _spec(self, template: Any, index: int, *, same_format: bool) -> Any:
        oiio = import_oiio()
        h, w = self.source.size
        spec = oiio.ImageSpec(w, h, self.channels, oiio.TypeDesc(oiio_type(self.bit_depth)))
        # Data and display windows of the source.
        spec.x, spec.y, spec.z = template.x, template.y, template.z
        spec.full_x, spec.full_y, spec.full_z = template.full_x, template.full_y, template.full_z
        spec.full_width, spec.full_height = template.full_width, template.full_height
        spec.full_depth = template.full_depth
        names = self.source.channel_names
        if len(names) == self.channels:
            spec.channelnames = names
        else:  # fewer channels (alpha/extras dropped for JPEG/PNG): the delivered order's first ones
            spec.channelnames = tuple(names[i] for i in self.source.order[:self.channels])
        spec.alpha_channel = template.alpha_channel if template.alpha_channel < self.channels else -1
        copy_attributes(template, spec, same_format=same_format)
        if self.bit_depth in ("10", "12"):
            spec.attribute("oiio:BitsPerSample", int(self.bit_depth))
        if self.colour is not self.source.colour:
            for key in ("colorInteropID", "chromaticities", "oiio:ColorSpace"):
                spec.erase_attribute(key)
            spec.attribute("oiio:ColorSpace", self.colour.interop_id)
            if self.extension == ".dpx":
                spec.attribute("dpx:Transfer", "Logarithmic" if "log" in self.colour.name.lower() else "User defined")
        # The same format keeps the source's compression (copied above) unless one is given; a PNG records no
        # zlib level, so every PNG takes the one given or the default.
        if self.compression is not None or not same_format or self.extension == ".png":
            self._set_compression(spec)
        if self.out_fps:
            set_fps(spec, self.out_fps, extension=self.extension)
        timecode = self.timecode(index)
        if timecode is not None:
            set_timecode(spec, timecode)
        return spec

    def _set_compression(self, spec: Any) -> None:
        """--compression, else the format's default (settings.DEFAULT_COMPRESSION, chosen by measurement)."""
        level = self.compression or DEFAULT_COMPRESSION.get(self.extension)
        if self.extension == ".png":
            spec.attribute("png:compressionLevel", int(level))
            if self.compression is None:
                spec.attribute("png:filter", PNG_DEFAULT_FILTER)
        elif self.extension == ".jpg":
            spec.attribute("compression", "jpeg:95")
        elif level is not None:
            spec.attribute("compression", level)

    def encode(self, image: torch.Tensor) -> np.ndarray:
        """[C,H,W] float working encoding -> [H,W,C] raw samples in the output's format and channel order."""
        if image.dim() != 3 or image.shape[0] != self.source.channels or tuple(image.shape[1:]) != self.source.size:
            raise ValueError(f"frames to write must be [{self.source.channels},{self.source.size[0]},"
                             f"{self.source.size[1]}] like the source; got {list(image.shape)}")
        values = image.detach().cpu().float().numpy().transpose(1, 2, 0)
        rgb = np.ascontiguousarray(values[:, :, :3])
        rgb = self.colour.from_working(rgb, owned=not np.may_share_memory(rgb, values))  # the image is the caller's
        rest = values[:, :, 3:]
        if self.source.format.is_gray:
            equal = np.array_equal(rgb[..., 0], rgb[..., 1]) and np.array_equal(rgb[..., 0], rgb[..., 2])
            # Channels that agree are taken as they are (a mean of three equal floats can round).
            rgb = rgb[:, :, :1] if equal else rgb.mean(axis=2, keepdims=True, dtype=np.float32)
        delivered = np.concatenate([rgb, rest], axis=2) if rest.shape[2] else rgb
        if self.channels == self.source.format.channels and self.source.order == list(range(self.channels)):
            file_order = delivered  # the file's order already
        elif self.channels == self.source.format.channels:
            # Back to the file's channel order.
            file_order = np.empty_like(delivered)
            file_order[:, :, self.source.order] = delivered
        else:
            file_order = delivered[:, :, :self.channels]
        return from_values(file_order, self.bit_depth, owned=not np.may_share_memory(file_order, values))

    @property
    def _copies_files(self) -> bool:
        """Copies of source frames keep the source file's own samples (same format, depth, colour, channels)."""
        return self.same_format and self.colour is self.source.colour \
            and self.channels == self.source.format.channels and isinstance(self.source, FolderSource)

    @property
    def copies_samples(self) -> bool:
        """Copies are written from the samples already decoded (`write`'s raw); EXR copies its compressed blocks
        and JPEG its file instead, and other copies are encoded from the working frame."""
        return self._copies_files and self.extension not in (".exr", ".jpg")

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None,
              raw: RawImage | None = None) -> None:
        """Write output frame index: image in the working encoding, or, for copy_of, source frame copy_of's own
        samples (bit-exact) when the output has the source's format and depth; raw: those samples already read
        (SharedFrames.raw), so the file is not decoded again. Safe to call from several threads at once."""
        self.folder.mkdir(parents=True, exist_ok=True)  # here, not on construction: checks come first
        if copy_of is not None and self._copies_files:
            if self.extension == ".jpg":  # decoding and re-encoding a JPEG is lossy: copy the file itself
                files.atomic_write(self.path(index), self.source.paths[copy_of].read_bytes())
                return
            source_path = self.source.paths[copy_of]
            if raw is not None and self.copies_samples:
                write_raw(self.path(index), raw.pixels, self._spec(raw.spec, index, same_format=True))
                return

            def make_spec(spec: Any) -> Any:
                if (spec.height, spec.width, spec.nchannels) != (*self.source.size, self.source.format.channels):
                    raise FramesIOError(
                        f"{source_path} is {spec.width}x{spec.height} with {spec.nchannels} channels, but "
                        f"{self.source.paths[0].name} is {self.source.size[1]}x{self.source.size[0]} with "
                        f"{self.source.format.channels}; all frames must match")
                return self._spec(spec, index, same_format=True)

            copy_frame(source_path, self.path(index), make_spec)
            return
        if image is None:
            if copy_of is None or not isinstance(self.source, FolderSource):
                raise ValueError("write needs an image unless copy_of names a frame of a folder source")
            image = self.source.read(copy_of)
        same_extension = self.extension == self.source.format.extension
        write_raw(self.path(index), self.encode(image), self._spec(self.source.first_spec, index,
                                                                    same_format=same_extension))

    def close(self) -> None:
        """Nothing to finish: every frame is complete once write returns."""

    def abort(self) -> None:
        """Nothing to drop: frames are written atomically, and complete ones are kept."""
