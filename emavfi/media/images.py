"""Image files through OpenImageIO: read and write pixels as stored, their metadata, and SMPTE timecode.

Pixels are handled in two forms. "Raw": the file's own sample type (uint8, uint16, float16, float32) as
OpenImageIO delivers it, used to copy a frame bit-exactly. "Values": float32, integer codes divided by the
largest code of the bit depth (a 10-bit DPX code 1023 -> 1.0) and float samples as they are.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from .. import files
from .base import BIT_DEPTHS, FrameFormat, FramesIOError, import_oiio
from .quiet import quietly
from .reproducible import finish_dpx, reproducible

# Extension -> bit depths it can store (the first is the default when converting into it).
DEPTHS = {
    ".exr": ("half", "float"),
    ".dpx": ("10", "8", "12", "16"),
    ".tif": ("16", "8", "half", "float"),
    ".png": ("16", "8"),
    ".jpg": ("8",),
}
IMAGE_EXTENSIONS = (".exr", ".dpx", ".tif", ".tiff", ".png", ".jpg", ".jpeg")
MAX_CHANNELS = {".jpg": 3, ".png": 4}
_SAME = {".jpeg": ".jpg", ".tiff": ".tif"}
# Attributes that describe how OpenImageIO read this file, not the image: never copied to an output.
_READ_ONLY = ("oiio:subimages", "oiio:RowsPerChunk", "tiff:RowsPerStrip", "oiio:BitsPerSample",
              "oiio:UnassociatedAlpha")


def canonical_extension(extension: str) -> str:
    """".JPEG" / "jpeg" -> ".jpg"; ".tiff" -> ".tif"."""
    ext = extension.lower()
    ext = ext if ext.startswith(".") else "." + ext
    return _SAME.get(ext, ext)


@dataclass
class RawImage:
    """One frame as stored: pixels [H,W,C] in the file's sample type, its ImageSpec and format."""

    path: Path
    pixels: np.ndarray
    spec: Any
    format: FrameFormat

    @property
    def channel_names(self) -> tuple[str, ...]:
        return tuple(self.spec.channelnames)


def _first_line(text: str, fallback: str) -> str:
    lines = [line.strip() for line in (text or "").splitlines() if line.strip()]
    # OpenImageIO repeats a reader's complaint; keep the distinct ones, on one line.
    return "; ".join(dict.fromkeys(lines)) or fallback


def bit_depth_of(spec: Any, path: Path) -> str:
    """The bit depth name (BIT_DEPTHS) of a file's samples."""
    base = str(spec.format).upper()  # "uint8", "uint16", "half", "float"
    bits = spec.get_int_attribute("oiio:BitsPerSample", 0)
    if base == "UINT8":
        return "8"
    if base == "UINT16":
        return str(bits) if bits in (10, 12) else "16"
    if base == "HALF":
        return "half"
    if base == "FLOAT":
        return "float"
    raise FramesIOError(f"{path}: unsupported sample type {spec.format} (use 8/10/12/16-bit, half or float images)")


@quietly
def read_raw(path: str | Path) -> RawImage:
    """The whole first subimage of path, as stored. FramesIOError (one line naming the file) when the file is
    empty, truncated or not an image."""
    path = Path(path)
    oiio = import_oiio()
    try:
        size = path.stat().st_size
    except OSError as exc:
        raise FramesIOError(f"cannot read frame {path}: {exc.strerror or exc}") from None
    if size == 0:
        raise FramesIOError(f"frame {path} is empty (0 bytes): an interrupted copy or render? replace it")
    image_input = oiio.ImageInput.open(str(path))
    if image_input is None:
        raise FramesIOError(f"cannot read frame {path}: {_first_line(oiio.geterror(), 'not an image')}")
    try:
        spec = image_input.spec()
        pixels = image_input.read_image(oiio.UNKNOWN)  # native sample type
        if pixels is None:
            raise FramesIOError(f"cannot read frame {path} (truncated or damaged): "
                                f"{_first_line(image_input.geterror(), 'decode failed')}")
        spec = oiio.ImageSpec(spec)
    finally:
        image_input.close()
        oiio.geterror()  # clear, so OpenImageIO does not print it at exit
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    fmt = FrameFormat(canonical_extension(path.suffix), bit_depth_of(spec, path), spec.nchannels)
    return RawImage(path, pixels, spec, fmt)


def to_values(raw: np.ndarray, bit_depth: str) -> np.ndarray:
    """Raw samples -> float32 values (integer code / largest code; floats unchanged)."""
    if bit_depth in ("half", "float"):
        return raw.astype(np.float32)
    if bit_depth in ("10", "12"):
        # OpenImageIO widens 10/12-bit codes to 16 bits by bit replication; the top bits are the code.
        raw = raw >> (16 - int(bit_depth))
    return raw.astype(np.float32) / np.float32((1 << int(bit_depth)) - 1)


def from_values(values: np.ndarray, bit_depth: str) -> np.ndarray:
    """float32 values -> raw samples for bit_depth (integers rounded and clipped to 0..1; NaN -> 0)."""
    if bit_depth == "half":
        return np.ascontiguousarray(values, dtype=np.float16)
    if bit_depth == "float":
        return np.ascontiguousarray(values, dtype=np.float32)
    bits = int(bit_depth)
    top = (1 << bits) - 1
    codes = np.rint(np.clip(np.nan_to_num(values, nan=0.0), 0.0, 1.0) * top)
    if bits == 8:
        return codes.astype(np.uint8)
    codes = codes.astype(np.uint16)
    if bits < 16:
        codes = (codes << (16 - bits)) | (codes >> (2 * bits - 16))  # the widening OpenImageIO reads back
    return np.ascontiguousarray(codes)


def oiio_type(bit_depth: str) -> str:
    return {"8": "uint8", "10": "uint16", "12": "uint16", "16": "uint16", "half": "half", "float": "float"}[bit_depth]


@quietly
def write_raw(path: str | Path, pixels: np.ndarray, spec: Any) -> Path:
    """Write [H,W,C] raw samples with spec (its format, channels and metadata) atomically to path."""
    path = Path(path)
    oiio = import_oiio()
    spec = reproducible(spec)
    files.check_space(path.parent, pixels.nbytes + (1 << 16))  # libpng does not notice a full disk

    def writer(tmp: Path) -> None:
        output = oiio.ImageOutput.create(str(tmp))
        if output is None:
            raise FramesIOError(f"cannot write {path.name}: {_first_line(oiio.geterror(), 'unknown format')}")
        try:
            if not output.open(str(tmp), spec):
                raise FramesIOError(f"cannot write {path}: {_first_line(output.geterror(), 'open failed')}")
            ok = output.write_image(np.ascontiguousarray(pixels))
            if not output.close() or not ok:
                raise FramesIOError(f"cannot write {path}: {_first_line(output.geterror(), 'write failed')}")
        finally:
            oiio.geterror()
        finish_dpx(tmp, path)

    try:
        return files.atomic_write(path, writer=writer)
    except FramesIOError:
        files.check_space(path.parent, pixels.nbytes)  # "Write error" on a full disk: say so
        raise


@quietly
def copy_frame(source: str | Path, path: str | Path, make_spec: Callable[[Any], Any]) -> Path:
    """Write source's pixels to path atomically without decoding them where the format allows (EXR: the
    compressed blocks themselves, so even DWAA/B44 copies are bit-exact), with the metadata of
    make_spec(source's ImageSpec). make_spec may raise to refuse the frame."""
    source, path = Path(source), Path(path)
    oiio = import_oiio()
    if source.stat().st_size == 0:
        raise FramesIOError(f"frame {source} is empty (0 bytes): an interrupted copy or render? replace it")
    files.check_space(path.parent, source.stat().st_size + (1 << 16))
    # OpenImageIO copies compressed EXR blocks only with OpenEXR's C++ reader, not the default C core one.
    # Process-wide setting, so it is restored at once; the opened reader keeps the library it was opened with.
    core = oiio.get_int_attribute("openexr:core", 0)
    oiio.attribute("openexr:core", 0)
    try:
        image_input = oiio.ImageInput.open(str(source))
    finally:
        oiio.attribute("openexr:core", core)
    if image_input is None:
        raise FramesIOError(f"cannot read frame {source}: {_first_line(oiio.geterror(), 'not an image')}")
    try:
        spec = reproducible(make_spec(oiio.ImageSpec(image_input.spec())))

        def writer(tmp: Path) -> None:
            output = oiio.ImageOutput.create(str(tmp))
            if output is None or not output.open(str(tmp), spec):
                raise FramesIOError(f"cannot write {path}: {_first_line(oiio.geterror(), 'open failed')}")
            ok = output.copy_image(image_input)
            error = output.geterror() or image_input.geterror()
            if not output.close() or not ok:
                raise FramesIOError(f"cannot copy frame {source} to {path.name} (truncated or damaged?): "
                                    f"{_first_line(error, 'copy failed')}")
            finish_dpx(tmp, path)

        return files.atomic_write(path, writer=writer)
    finally:
        image_input.close()
        oiio.geterror()


def verify(path: str | Path, shape: tuple[int, int, int] | None = None) -> bool:
    """True when path decodes completely (every pixel, not an end marker) and, if given, has shape (H, W, C)."""
    try:
        raw = read_raw(path)
    except FramesIOError:
        return False
    return shape is None or tuple(raw.pixels.shape) == tuple(shape)


def attributes(spec: Any) -> dict[str, Any]:
    """A frame's metadata: name -> value."""
    return {param.name: param.value for param in spec.extra_attribs}


def copy_attributes(spec: Any, target: Any, *, same_format: bool) -> None:
    """Copy the metadata of spec onto target: all of it for the same format; for another format only what is
    not specific to the source's format (compression, 'openexr:', 'dpx:' ... attributes)."""
    prefixes = ("openexr:", "dpx:", "tiff:", "png:", "jpeg:", "compression", "planarconfig")
    for param in spec.extra_attribs:
        if param.name in _READ_ONLY or (not same_format and param.name.startswith(prefixes)):
            continue
        target.attribute(param.name, param.type, param.value)


def fps_of(spec: Any) -> Fraction | None:
    """The frame rate a frame's metadata gives (EXR FramesPerSecond, DPX frame rate), or None."""
    rate = spec.getattribute("FramesPerSecond")
    if isinstance(rate, tuple) and len(rate) == 2 and rate[0] > 0 and rate[1] > 0:
        return Fraction(int(rate[0]), int(rate[1]))
    for key in ("dpx:FrameRate", "dpx:TemporalFrameRate"):
        value = spec.getattribute(key)
        if isinstance(value, float) and math.isfinite(value) and value > 0:
            return _nice_rate(value)
    return None


def _nice_rate(value: float) -> Fraction:
    """23.976 -> 24000/1001; 25.0 -> 25."""
    for candidate in (Fraction(round(value)), Fraction(round(value * 1.001) * 1000, 1001)):
        if abs(float(candidate) - value) < 5e-4:
            return candidate
    return Fraction(value).limit_denominator(1001)


def set_fps(spec: Any, fps: Fraction, *, extension: str) -> None:
    oiio = import_oiio()
    spec.attribute("FramesPerSecond", oiio.TypeRational, (fps.numerator, fps.denominator))
    if extension == ".dpx":
        spec.attribute("dpx:FrameRate", float(fps))
        if spec.getattribute("dpx:TemporalFrameRate") is not None:
            spec.attribute("dpx:TemporalFrameRate", float(fps))


# ----------------------------------------------------------------------------------------------- timecode

def _bcd(value: int) -> int:
    return (value // 10) << 4 | (value % 10)


def _unbcd(value: int) -> int:
    return (value >> 4) * 10 + (value & 0xF)


@dataclass(frozen=True)
class Timecode:
    """SMPTE 12M timecode as OpenEXR/OpenImageIO store it ("smpte:TimeCode": two ints, the time in BCD and
    the user bits). phase: the field/phase bit, which marks the second frame of a pair at rates above 30.
    flags: the other bits (colour frame, binary groups), kept as they were."""

    hours: int
    minutes: int
    seconds: int
    frames: int
    drop: bool = False
    phase: bool = False
    flags: int = 0
    user_bits: int = 0

    _DROP, _COLOUR, _PHASE = 1 << 6, 1 << 7, 1 << 15
    _FLAG_MASK = (1 << 7) | (1 << 23) | (1 << 30) | (1 << 31)

    @classmethod
    def from_smpte(cls, value: Any) -> Timecode:
        time, user = (int(v) & 0xFFFFFFFF for v in value)
        return cls(hours=_unbcd((time >> 24) & 0x3F), minutes=_unbcd((time >> 16) & 0x7F),
                   seconds=_unbcd((time >> 8) & 0x7F), frames=_unbcd(time & 0x3F), drop=bool(time & cls._DROP),
                   phase=bool(time & cls._PHASE), flags=time & cls._FLAG_MASK, user_bits=user)

    def to_smpte(self) -> tuple[int, int]:
        time = (_bcd(self.hours) << 24 | _bcd(self.minutes) << 16 | _bcd(self.seconds) << 8 | _bcd(self.frames)
                | (self._DROP if self.drop else 0) | (self._PHASE if self.phase else 0) | self.flags)
        # OpenImageIO's attribute takes signed ints.
        return tuple(v - (1 << 32) if v >= 1 << 31 else v for v in (time, self.user_bits))  # type: ignore[return-value]

    def __str__(self) -> str:
        sep = ";" if self.drop else ":"
        phase = ".1" if self.phase else ""
        return f"{self.hours:02d}:{self.minutes:02d}:{self.seconds:02d}{sep}{self.frames:02d}{phase}"

    @classmethod
    def parse(cls, text: str) -> Timecode:
        """'01:00:00:00' or, drop-frame, '00:59:59;28'."""
        parts = text.replace(";", ":").split(":")
        if len(parts) != 4 or not all(p.isdigit() for p in parts):
            raise ValueError(f"timecode must be HH:MM:SS:FF; got {text!r}")
        h, m, s, f = map(int, parts)
        return cls(h, m, s, f, drop=";" in text)


def _timebase(rate: Fraction) -> tuple[int, int]:
    """(group, base): rates above 30 count timecode frames in groups (SMPTE frame pairs at 48-60 fps)."""
    nominal = max(1, round(rate))
    group = max(1, math.ceil(nominal / 30))
    return group, max(1, round(nominal / group))


def _is_drop_rate(rate: Fraction) -> bool:
    return rate.denominator == 1001 and _timebase(rate)[1] == 30


def _label_to_count(tc: Timecode, base: int, drop: bool) -> int:
    count = ((tc.hours * 60 + tc.minutes) * 60 + tc.seconds) * base + tc.frames
    if drop:
        minutes = tc.hours * 60 + tc.minutes
        count -= 2 * (minutes - minutes // 10)
    return count


def _count_to_label(count: int, base: int, drop: bool) -> tuple[int, int, int, int]:
    if drop:  # 29.97 drop-frame: labels 00 and 01 skipped each minute except every tenth
        day = 24 * 107892
        count %= day
        tens, rest = divmod(count, 17982)
        count += 18 * tens + (2 * ((rest - 2) // 1798) if rest > 1 else 0)
    else:
        count %= 24 * 3600 * base
    frames = count % base
    seconds = count // base
    return seconds // 3600, seconds // 60 % 60, seconds % 60, frames


def advance_timecode(first: Timecode, source_rate: Fraction, k: int, out_rate: Fraction) -> Timecode:
    """The timecode of output frame k at out_rate when source frame 0 carries `first` at source_rate.

    The first timecode is the same instant in both: its label is converted from the source's timecode base to
    the output's (01:00:00:12 at 24 fps = 01:00:00:15 at 30 fps), then k frames are added at the output rate.
    Above 30 fps the label counts at half the rate and the phase bit marks the second frame of each pair
    (SMPTE ST 12-1 frame pairs): output 5 at 48 fps after 01:00:00:00 is 01:00:00:02 with the phase bit.
    Drop-frame is kept where it exists (the source was drop-frame and the output is 29.97 or 59.94 fps).
    """
    source_rate, out_rate = Fraction(source_rate), Fraction(out_rate)
    s_group, s_base = _timebase(source_rate)
    o_group, o_base = _timebase(out_rate)
    s_drop = first.drop and s_base == 30
    o_drop = first.drop and _is_drop_rate(out_rate)
    source_frame = _label_to_count(first, s_base, s_drop) * s_group + (1 if first.phase and s_group == 2 else 0)
    # The same instant on the output's nominal frame grid (exact when the rates are multiples).
    start = Fraction(source_frame * o_group * o_base, s_group * s_base)
    frame = math.floor(start + Fraction(1, 2)) + k
    label, position = divmod(frame, o_group)
    h, m, s, f = _count_to_label(label, o_base, o_drop)
    return Timecode(h, m, s, f, drop=o_drop, phase=o_group == 2 and position == 1, flags=first.flags,
                    user_bits=first.user_bits)


def timecode_of(spec: Any) -> Timecode | None:
    """The frame's SMPTE timecode (smpte:TimeCode, else DPX's dpx:TimeCode text), or None."""
    value = spec.getattribute("smpte:TimeCode")
    if isinstance(value, tuple) and len(value) == 2:
        return Timecode.from_smpte(value)
    text = spec.getattribute("dpx:TimeCode")
    if isinstance(text, str) and text.strip():
        try:
            return Timecode.parse(text.strip())
        except ValueError:
            return None
    return None


def set_timecode(spec: Any, timecode: Timecode) -> None:
    oiio = import_oiio()
    spec.attribute("smpte:TimeCode", oiio.TypeTimeCode, timecode.to_smpte())
    if spec.getattribute("dpx:TimeCode") is not None:
        spec.attribute("dpx:TimeCode", str(timecode).split(".")[0].replace(";", ":"))


__all__ = ["BIT_DEPTHS", "DEPTHS", "IMAGE_EXTENSIONS", "RawImage", "Timecode", "advance_timecode", "attributes",
           "canonical_extension", "copy_attributes", "fps_of", "from_values", "read_raw", "set_fps",
           "set_timecode", "timecode_of", "to_values", "verify", "write_raw"]
