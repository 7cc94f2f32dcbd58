"""Frames in and out for the CLI: folders of images (OpenImageIO), colour (OpenColorIO), video files (PyAV).

Nothing here is imported by the ComfyUI nodes (they take IMAGE tensors), and OpenImageIO, OpenColorIO and
PyAV are imported only when a source or sink is opened.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from .base import BIT_DEPTHS, VIDEO_EXTENSIONS, FrameFormat, FramesIOError, Sink, Source, natural_key

__all__ = ["BIT_DEPTHS", "VIDEO_EXTENSIONS", "FrameFormat", "FramesIOError", "Sink", "Source", "natural_key",
           "open_sink", "open_source"]


def open_source(path: str | os.PathLike, *, colorspace: str | None = None, ocio: str | None = None) -> Source:
    """A folder of frames (FolderSource) or a video file (VideoSource, by extension).

    colorspace: the frames' colour space (a name, alias or role of the OCIO config; default guessed from the
    format and metadata); ocio: the OCIO config, a path or an ocio:// URI (default $OCIO, else the built-in
    ACES studio config).
    """
    path = Path(path)
    if path.is_dir():
        from .folder import FolderSource
        return FolderSource(path, colorspace=colorspace, ocio=ocio)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        if not path.is_file():
            raise FramesIOError(f"input video not found: {path}")
        if colorspace or ocio:
            raise FramesIOError(f"colorspace and ocio apply to folders of image frames; the colour of {path.name} "
                                "comes from its stream's colour tags")
        from .video import VideoSource
        return VideoSource(path)
    if path.exists():
        raise FramesIOError(f"{path} is neither a folder of frames nor a video ({', '.join(VIDEO_EXTENSIONS)})")
    raise FramesIOError(f"input not found: {path}")


def open_sink(path: str | os.PathLike, source: Source, **options: Any) -> Sink:
    """A video file (VideoSink) when path has a video extension, else a folder of frames (FolderSink).

    Video options: fps (required), codec, bit_depth, audio (see video_out.VideoSink). Folder options: total
    (required), start_number, format, bit_depth, out_fps, timecode_rate, colorspace, ocio (see
    folder.FolderSink); a folder sink also takes a video source (its frames are written as sRGB images).
    """
    path = Path(path)
    if path.suffix.lower() in VIDEO_EXTENSIONS:
        from .video_out import VideoSink
        fps = options.pop("fps")
        return VideoSink(path, fps, source=source, **options)
    from .folder import FolderSink
    return FolderSink(path, source, **options)
