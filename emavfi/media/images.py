"""Image files through OpenImageIO: read and write pixels as stored, and their metadata (timecode: timecode.py).

Pixels are handled in two forms. "Raw": the file's own sample type (uint8, uint16, float16, float32) as
OpenImageIO delivers it, used to copy a frame bit-exactly. "Values": float32, integer codes divided by the
largest code of the bit depth (a 10-bit DPX code 1023 -> 1.0) and float samples as they are.
"""
from __future__ import annotations

import math
import threading
from collections.abc import Callable
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .. import files
from ..errors import one_line  # OpenImageIO repeats a complaint: one_line keeps distinct lines
from ..plans import parse_fps
from .base import BIT_DEPTHS, FrameFormat, FramesIOError, import_oiio
from .quiet import quietly
from .reproducible import finish_dpx, reproducible

if TYPE_CHECKING:
    import torch

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
_EXR_CORE_SWITCH = threading.Lock()  # guards OpenImageIO's process-wide "openexr:core" while a copy opens
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
        raise FramesIOError(f"cannot read frame {path}: {one_line(oiio.geterror(), 'not an image')}")
    try:
        spec = image_input.spec()
        pixels = image_input.read_image(oiio.UNKNOWN)  # native sample type
        if pixels is None:
            raise FramesIOError(f"cannot read frame {path} (truncated or damaged): "
                                f"{one_line(image_input.geterror(), 'decode failed')}")
        spec = oiio.ImageSpec(spec)
    finally:
        image_input.close()
        oiio.geterror()  # clear, so OpenImageIO does not print it at exit
    if pixels.ndim == 2:
        pixels = pixels[:, :, None]
    fmt = FrameFormat(canonical_extension(path.suffix), bit_depth_of(spec, path), spec.nchannels)
    return RawImage(path, pixels, spec, fmt)


@quietly
def read_header(path: str | Path) -> tuple[Any, FrameFormat]:
    """(ImageSpec, FrameFormat) of path's first subimage, without decoding its pixels; FramesIOError (one line
    naming the file) when it is empty or not an image."""
    path = Path(path)
    oiio = import_oiio()
    try:
        if path.stat().st_size == 0:
            raise FramesIOError(f"frame {path} is empty (0 bytes): an interrupted copy or render? replace it")
    except OSError as exc:
        raise FramesIOError(f"cannot read frame {path}: {exc.strerror or exc}") from None
    image_input = oiio.ImageInput.open(str(path))
    if image_input is None:
        raise FramesIOError(f"cannot read frame {path}: {one_line(oiio.geterror(), 'not an image')}")
    try:
        spec = oiio.ImageSpec(image_input.spec())
    finally:
        image_input.close()
        oiio.geterror()
    return spec, FrameFormat(canonical_extension(path.suffix), bit_depth_of(spec, path), spec.nchannels)


def to_values(raw: np.ndarray, bit_depth: str) -> np.ndarray:
    """Raw samples -> float32 values (integer code / largest code; floats unchanged)."""
    if bit_depth in ("half", "float"):
        return raw.astype(np.float32)
    if bit_depth in ("10", "12"):
        # OpenImageIO widens 10/12-bit codes to 16 bits by bit replication; the top bits are the code.
        raw = raw >> (16 - int(bit_depth))
    return raw.astype(np.float32) / np.float32((1 << int(bit_depth)) - 1)


def to_tensor(raw: np.ndarray, bit_depth: str) -> torch.Tensor:
    """Raw samples [H,W,C] -> [C,H,W] float32 values, as `to_values` makes them, in one new buffer."""
    import torch

    if bit_depth in ("10", "12"):
        raw = raw >> (16 - int(bit_depth))
    samples = torch.from_numpy(np.ascontiguousarray(raw)).permute(2, 0, 1)
    values = torch.empty(samples.shape, dtype=torch.float32).copy_(samples)
    return values if bit_depth in ("half", "float") else values.div_((1 << int(bit_depth)) - 1)


def from_values(values: np.ndarray, bit_depth: str, *, owned: bool = False) -> np.ndarray:
    """float32 values -> raw samples for bit_depth (integers rounded and clipped to 0..1; NaN -> 0); owned: values
    is the caller's scratch array, which integer encodings then work in instead of a copy."""
    if bit_depth == "half":
        return np.ascontiguousarray(values, dtype=np.float16)
    if bit_depth == "float":
        return np.ascontiguousarray(values, dtype=np.float32)
    bits = int(bit_depth)
    top = (1 << bits) - 1
    codes = np.nan_to_num(values, nan=0.0, copy=not owned)  # worked on in place: clip, scale, round
    np.clip(codes, 0.0, 1.0, out=codes)
    codes *= top
    np.rint(codes, out=codes)
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
            raise FramesIOError(f"cannot write {path.name}: {one_line(oiio.geterror(), 'unknown format')}")
        try:
            if not output.open(str(tmp), spec):
                raise FramesIOError(f"cannot write {path}: {one_line(output.geterror(), 'open failed')}")
            ok = output.write_image(np.ascontiguousarray(pixels))
            if not output.close() or not ok:
                raise FramesIOError(f"cannot write {path}: {one_line(output.geterror(), 'write failed')}")
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
    # Writer threads copy at once: unguarded, one would restore the switch while another opens.
    with _EXR_CORE_SWITCH:
        core = oiio.get_int_attribute("openexr:core", 0)
        oiio.attribute("openexr:core", 0)
        try:
            image_input = oiio.ImageInput.open(str(source))
        finally:
            oiio.attribute("openexr:core", core)
    if image_input is None:
        raise FramesIOError(f"cannot read frame {source}: {one_line(oiio.geterror(), 'not an image')}")
    try:
        spec = reproducible(make_spec(oiio.ImageSpec(image_input.spec())))

        def writer(tmp: Path) -> None:
            output = oiio.ImageOutput.create(str(tmp))
            if output is None or not output.open(str(tmp), spec):
                raise FramesIOError(f"cannot write {path}: {one_line(oiio.geterror(), 'open failed')}")
            ok = output.copy_image(image_input)
            error = output.geterror() or image_input.geterror()
            if not output.close() or not ok:
                raise FramesIOError(f"cannot copy frame {source} to {path.name} (truncated or damaged?): "
                                    f"{one_line(error, 'copy failed')}")
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
            try:  # a float (single precision in DPX): the nearest simple fraction, then the one rule for rates
                return parse_fps(Fraction(value).limit_denominator(1001))
            except ValueError:
                return None  # beyond any real frame rate: unknown
    return None


def set_fps(spec: Any, fps: Fraction, *, extension: str) -> None:
    oiio = import_oiio()
    spec.attribute("FramesPerSecond", oiio.TypeRational, (fps.numerator, fps.denominator))
    if extension == ".dpx":
        spec.attribute("dpx:FrameRate", float(fps))
        if spec.getattribute("dpx:TemporalFrameRate") is not None:
            spec.attribute("dpx:TemporalFrameRate", float(fps))


__all__ = ["BIT_DEPTHS", "DEPTHS", "IMAGE_EXTENSIONS", "RawImage", "attributes", "canonical_extension",
           "copy_attributes", "fps_of", "from_values", "read_raw", "set_fps", "to_values", "verify", "write_raw"]
