"""Image sequences and videos in and out, one frame at a time, keeping bit depth and alpha.

Frames are float32 tensors [C,H,W]: RGB, then alpha when the file has one. 8- and 16-bit files map to 0..1;
float files (EXR, float TIFF) keep their values, including those above 1. Every file is written to a
temporary name and renamed, so an interrupted run leaves only complete frames.

Optional packages, imported on first use: opencv-python-headless (all image formats; EXR needs a 4.x wheel),
else pillow (8-bit images only); av (PyAV) for video.
"""
from __future__ import annotations

import contextlib
import os
import re
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .errors import EmaVfiError

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".exr", ".bmp", ".webp")
VIDEO_EXTENSIONS = (".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".mpg", ".mpeg", ".ts")
_EIGHT_BIT_ONLY = (".jpg", ".jpeg", ".bmp", ".webp")
_SCALE = {"uint8": 255.0, "uint16": 65535.0}


class FramesIOError(EmaVfiError, OSError):
    """A frame could not be read or written, or a package needed for it is missing."""


@dataclass(frozen=True)
class ImageFormat:
    """How frames are stored: file extension (".png"), sample type ("uint8", "uint16", "float32"), channels (3|4)."""

    extension: str
    depth: str
    channels: int

    def describe(self) -> str:
        """E.g. '16-bit PNG with alpha'."""
        kind = {"uint8": "8-bit", "uint16": "16-bit", "float32": "float"}[self.depth]
        return f"{kind} {self.extension.lstrip('.').upper()}{' with alpha' if self.channels == 4 else ''}"


# ----------------------------------------------------------------------------------------------- backends

def _cv2() -> Any:
    # OpenCV reads this variable once, when it is imported, and refuses EXR without it.
    os.environ.setdefault("OPENCV_IO_ENABLE_OPENEXR", "1")
    import cv2
    return cv2


def _backend() -> tuple[str, Any]:
    try:
        return "cv2", _cv2()
    except ImportError:
        pass
    try:
        from PIL import Image
        return "pil", Image
    except ImportError:
        raise FramesIOError("reading and writing image files needs OpenCV or Pillow: "
                            "pip install opencv-python-headless") from None


def _needs_cv2(path: Path, what: str) -> FramesIOError:
    return FramesIOError(f"{what} {path.name} needs OpenCV (Pillow only handles 8-bit images): "
                         "pip install 'opencv-python-headless<5'")


def _check_exr_support(cv2: Any, path: Path) -> None:
    if path.suffix.lower() != ".exr":
        return
    try:
        available = cv2.haveImageWriter("frame.exr")
    except cv2.error:
        raise FramesIOError(f"OpenCV's EXR codec is disabled, needed for {path.name}: OpenCV was imported before "
                            "emavfi without OPENCV_IO_ENABLE_OPENEXR=1; set that environment variable") from None
    if not available:
        raise FramesIOError(f"this OpenCV {cv2.__version__} build has no OpenEXR support, needed for {path.name} "
                            "(the 5.x wheels ship without it): pip install 'opencv-python-headless<5'")


# ----------------------------------------------------------------------------------------------- names

def natural_key(name: str) -> tuple:
    """Sort key that orders numbers by value: frame_2 before frame_10."""
    parts = re.split(r"(\d+)", name)
    return tuple(int(part) if i % 2 else part.casefold() for i, part in enumerate(parts))


def list_frames(folder: str | os.PathLike) -> list[Path]:
    """Image files of a folder in natural order (hidden and temporary files skipped); one extension only."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FramesIOError(f"input folder not found: {folder}")
    paths = [p for p in folder.iterdir()
             if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS]
    if not paths:
        raise FramesIOError(f"no image frames ({', '.join(IMAGE_EXTENSIONS)}) in {folder}")
    kinds = sorted({_kind(p.suffix) for p in paths})
    if len(kinds) > 1:
        raise FramesIOError(f"{folder} mixes {' and '.join(kinds)} frames; keep one kind of file per folder")
    return sorted(paths, key=lambda p: natural_key(p.name))


def _kind(suffix: str) -> str:
    suffix = suffix.lower()
    return {".jpeg": ".jpg", ".tiff": ".tif"}.get(suffix, suffix)


def frame_name(index: int, total: int, extension: str, prefix: str = "frame_") -> str:
    """Zero-padded output name, at least 6 digits: frame_000042.png."""
    digits = max(6, len(str(max(total - 1, 0))))
    return f"{prefix}{index:0{digits}d}{extension}"


# ----------------------------------------------------------------------------------------------- images

def _to_tensor(array: np.ndarray, path: Path) -> tuple[torch.Tensor, str]:
    if array.dtype == np.uint8 or array.dtype == np.uint16:
        depth = str(array.dtype)
        values = array.astype(np.float32) / _SCALE[depth]
    elif array.dtype in (np.float32, np.float16, np.float64):
        depth, values = "float32", array.astype(np.float32)
    else:
        raise FramesIOError(f"{path.name}: unsupported sample type {array.dtype} (use 8/16-bit or float images)")
    if values.ndim == 2:
        values = values[:, :, None]
    channels = values.shape[2]
    if channels == 1:
        values = np.repeat(values, 3, axis=2)
    elif channels == 2:  # gray + alpha
        values = np.concatenate([np.repeat(values[:, :, :1], 3, axis=2), values[:, :, 1:]], axis=2)
    elif channels > 4:
        raise FramesIOError(f"{path.name}: {channels} channels; expected gray, RGB or RGBA")
    return torch.from_numpy(np.ascontiguousarray(values.transpose(2, 0, 1))), depth


def read_image(path: str | os.PathLike) -> tuple[torch.Tensor, ImageFormat]:
    """One image file -> ([C,H,W] float32, its format); gray becomes RGB, alpha is kept as channel 4."""
    path = Path(path)
    kind, lib = _backend()
    try:
        data = np.fromfile(path, dtype=np.uint8)  # not imread: that fails on non-ASCII paths on Windows
    except OSError as exc:
        raise FramesIOError(f"cannot read {path}: {exc.strerror or exc}") from None
    if kind == "cv2":
        _check_exr_support(lib, path)
        array = lib.imdecode(data, lib.IMREAD_UNCHANGED)
        if array is None:
            raise FramesIOError(f"cannot decode {path} (truncated or not an image)")
        if array.ndim == 3 and array.shape[2] in (3, 4):
            array = array[:, :, [2, 1, 0, 3][:array.shape[2]]]  # OpenCV's BGR(A) -> RGB(A)
    else:
        array = _pil_read(lib, path)
    tensor, depth = _to_tensor(array, path)
    return tensor, ImageFormat(_kind(path.suffix), depth, tensor.shape[0])


def _pil_read(image_module: Any, path: Path) -> np.ndarray:
    if path.suffix.lower() == ".exr":
        raise _needs_cv2(path, "the EXR file")
    try:
        with image_module.open(path) as img:
            img.load()
            if img.mode in ("I;16", "I;16B", "I", "F") or img.mode.startswith("I;16"):
                raise _needs_cv2(path, "the 16-bit or float image")
            has_alpha = "A" in img.mode or "transparency" in img.info
            return np.asarray(img.convert("RGBA" if has_alpha else "RGB"))
    except FramesIOError:
        raise
    except Exception as exc:  # Pillow raises many types for bad files
        raise FramesIOError(f"cannot decode {path} ({exc})") from None


def _to_array(image: torch.Tensor, fmt: ImageFormat) -> np.ndarray:
    values = image.detach().to("cpu", torch.float32).numpy().transpose(1, 2, 0)
    if fmt.depth == "float32":
        return np.ascontiguousarray(values)
    scale = _SCALE[fmt.depth]
    return np.ascontiguousarray(np.rint(np.clip(values, 0, 1) * scale).astype(fmt.depth))


def encode_image(image: torch.Tensor, fmt: ImageFormat) -> bytes:
    """Encode [C,H,W] float (C = 3 or 4) in fmt's file type and bit depth."""
    if image.dim() != 3 or image.shape[0] not in (3, 4):
        raise ValueError(f"image must be [3 or 4,H,W]; got {list(image.shape)}")
    ext = fmt.extension.lower()
    if fmt.depth != "uint8" and ext in _EIGHT_BIT_ONLY:
        raise FramesIOError(f"{ext} files are 8-bit only; cannot write {fmt.depth} samples")
    if ext == ".exr" and fmt.depth != "float32":
        raise FramesIOError("EXR frames are written as float; got depth " + fmt.depth)
    array = _to_array(image, fmt)
    kind, lib = _backend()
    if kind == "cv2":
        return _cv2_encode(lib, array, ext)
    if fmt.depth != "uint8":
        raise _needs_cv2(Path("frame" + ext), f"writing {fmt.depth}")
    import io
    buffer = io.BytesIO()
    pil_format = {".jpg": "JPEG", ".tif": "TIFF"}.get(ext, ext.lstrip(".").upper())
    options = {"quality": 95} if pil_format == "JPEG" else {"compress_level": 3} if pil_format == "PNG" else {}
    lib.fromarray(array).save(buffer, format=pil_format, **options)
    return buffer.getvalue()


def _cv2_encode(cv2: Any, array: np.ndarray, ext: str) -> bytes:
    if array.shape[2] in (3, 4):
        array = np.ascontiguousarray(array[:, :, [2, 1, 0, 3][:array.shape[2]]])
    params: list[int] = {
        ".png": [cv2.IMWRITE_PNG_COMPRESSION, 3],  # level 3: much faster than the default, files ~5 % larger
        ".jpg": [cv2.IMWRITE_JPEG_QUALITY, 95],
        ".webp": [cv2.IMWRITE_WEBP_QUALITY, 101],  # above 100 = lossless
        ".exr": [cv2.IMWRITE_EXR_TYPE, cv2.IMWRITE_EXR_TYPE_FLOAT],
    }.get(ext, [])
    if ext == ".exr":
        _check_exr_support(cv2, Path("frame.exr"))
    ok, encoded = cv2.imencode(ext, array, params)
    if not ok:
        raise FramesIOError(f"OpenCV could not encode a {array.dtype} {ext} image")
    return encoded.tobytes()


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    """Write data to path via a temporary file in the same folder and a rename: never a partial file."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".partial", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:  # KeyboardInterrupt included: leave nothing half-written behind
        Path(tmp).unlink(missing_ok=True)
        raise


def write_image(path: str | os.PathLike, image: torch.Tensor, fmt: ImageFormat) -> None:
    """Write [C,H,W] float atomically in fmt (file type from fmt.extension, bit depth from fmt.depth)."""
    atomic_write_bytes(path, encode_image(image, fmt))


def is_complete_image(path: str | os.PathLike) -> bool:
    """True if path is a whole image file: PNG/JPEG by their end markers, other types by decoding."""
    path = Path(path)
    try:
        size = path.stat().st_size
        if size == 0:
            return False
        ext = path.suffix.lower()
        if ext in (".png", ".jpg", ".jpeg"):
            with open(path, "rb") as f:
                f.seek(max(0, size - 12))
                tail = f.read()
            return tail.endswith(b"IEND\xaeB`\x82") if ext == ".png" else tail.endswith(b"\xff\xd9")
        read_image(path)
        return True
    except (OSError, EmaVfiError):
        return False


# ----------------------------------------------------------------------------------------------- readers

class FolderReader:
    """A folder of frames, read one file at a time (never the whole clip) in natural order."""

    def __init__(self, folder: str | os.PathLike):
        self.paths = list_frames(folder)
        first, self.format = read_image(self.paths[0])
        self.size = tuple(first.shape[1:])
        self.fps: Fraction | None = None

    def __len__(self) -> int:
        return len(self.paths)

    def read(self, index: int) -> torch.Tensor:
        """Frame index as [C,H,W] float32; the same size and channels as the first frame or FramesIOError."""
        image, fmt = read_image(self.paths[index])
        if tuple(image.shape[1:]) != self.size or image.shape[0] != self.format.channels:
            raise FramesIOError(
                f"{self.paths[index].name} is {image.shape[2]}x{image.shape[1]} with {image.shape[0]} channels, "
                f"but {self.paths[0].name} is {self.size[1]}x{self.size[0]} with {self.format.channels}; "
                "all frames must match")
        return image

    def frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Frames from index start on, one at a time."""
        for index in range(start, len(self.paths)):
            yield self.read(index)


def _av() -> Any:
    try:
        import av
    except ImportError:
        raise FramesIOError("video input and output need PyAV: pip install av "
                            "(or use a folder of PNG/EXR frames)") from None
    return av


class VideoReader:
    """Frames of a video file's first video stream, decoded one at a time (8-bit RGB)."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        if not self.path.is_file():
            raise FramesIOError(f"input video not found: {self.path}")
        av = _av()
        try:
            with av.open(str(self.path)) as container:
                if not container.streams.video:
                    raise FramesIOError(f"{self.path} has no video stream")
                stream = container.streams.video[0]
                rate = stream.average_rate or stream.guessed_rate or stream.base_rate
                self.fps: Fraction | None = Fraction(rate) if rate else None
                self.size = (stream.codec_context.height, stream.codec_context.width)
                count = stream.frames
                if not count:  # not in the header (e.g. some MKV/WebM): count packets, without decoding
                    count = sum(1 for packet in container.demux(stream) if packet.size)
        except FramesIOError:
            raise
        except Exception as exc:  # PyAV raises its own error types for unreadable files
            raise FramesIOError(f"cannot open video {self.path}: {exc}") from None
        self._count = count
        self.format = ImageFormat(".png", "uint8", 3)

    def __len__(self) -> int:
        return self._count

    def frames(self, start: int = 0) -> Iterator[torch.Tensor]:
        """Frames from index start on (earlier ones are decoded and dropped), one at a time."""
        av = _av()
        with av.open(str(self.path)) as container:
            stream = container.streams.video[0]
            stream.thread_type = "AUTO"
            for index, frame in enumerate(container.decode(stream)):
                if index >= start:
                    rgb = frame.to_ndarray(format="rgb24")
                    yield torch.from_numpy(rgb.transpose(2, 0, 1).astype(np.float32) / 255.0)


def open_frames(path: str | os.PathLike) -> FolderReader | VideoReader:
    """A reader for a folder of images or a video file (by extension)."""
    path = Path(path)
    if path.is_dir():
        return FolderReader(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        return VideoReader(path)
    if path.exists():
        raise FramesIOError(f"{path} is neither a folder of frames nor a video ({', '.join(VIDEO_EXTENSIONS)})")
    raise FramesIOError(f"input not found: {path}")


# ----------------------------------------------------------------------------------------------- writers

class VideoWriter:
    """Encodes RGB frames to a video file; the file appears under its name only after close()."""

    def __init__(self, path: str | os.PathLike, fps: Fraction, *, crf: int = 16):
        self.path = Path(path)
        self.fps = Fraction(fps)
        self._tmp = self.path.with_name(f".{self.path.stem}.partial{self.path.suffix}")
        self._crf = crf
        self._container: Any = None
        self._stream: Any = None

    def _open(self, height: int, width: int) -> None:
        av = _av()
        codec = "libx264" if "libx264" in av.codecs_available else "mpeg4"
        self._container = av.open(str(self._tmp), "w")
        # The encoder's time base needs a rational rate; limit the denominator for odd rates like 1/3 fps steps.
        stream = self._container.add_stream(codec, rate=self.fps.limit_denominator(1_000_000))
        stream.width, stream.height = width, height
        # 4:2:0 needs even sides; odd-sized frames keep full chroma instead of being cropped.
        stream.pix_fmt = "yuv420p" if height % 2 == 0 and width % 2 == 0 else "yuv444p"
        if codec == "libx264":
            stream.options = {"crf": str(self._crf)}
        self._stream = stream

    def write(self, image: torch.Tensor) -> None:
        """Append one [C,H,W] float frame (RGB used; values clamped to 0..1)."""
        if self._container is None:
            self._open(image.shape[1], image.shape[2])
        rgb = _to_array(image[:3], ImageFormat(".png", "uint8", 3))
        frame = _av().VideoFrame.from_ndarray(rgb, format="rgb24")
        for packet in self._stream.encode(frame):
            self._container.mux(packet)

    def close(self) -> None:
        """Flush the encoder and move the finished file into place."""
        if self._container is None:
            return
        for packet in self._stream.encode():
            self._container.mux(packet)
        self._container.close()
        self._container = None
        os.replace(self._tmp, self.path)

    def abort(self) -> None:
        """Drop the unfinished file."""
        if self._container is not None:
            # Closing a half-written file may fail; it is deleted anyway.
            with contextlib.suppress(Exception):
                self._container.close()
            self._container = None
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:
        return self

    def __exit__(self, exc_type: Any, exc: Any, tb: Any) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()
