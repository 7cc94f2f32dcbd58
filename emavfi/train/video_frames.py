"""Random access to the frames of a video for training: seek to the keyframe before a frame, decode forward.

emavfi.media.VideoSource decodes from the start of the stream (what rendering needs); training reads frames
in random order, so this keeps one decoder open per video, continues forward when the next frame asked
for lies a little ahead, and otherwise seeks. Frame n is the n-th frame in presentation order (the
packets' timestamps, sorted, read once without decoding); pixels are converted by VideoSource.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from ..media import FramesIOError
from ..media.video import VideoSource, _av

FORWARD_LIMIT = 32  # decode on rather than seek when the frame asked for is at most this far ahead


class VideoFrames:
    """Frame n of a video on demand; one open container."""

    def __init__(self, path: str):
        self.source = VideoSource(path)
        av = _av()
        self._container = av.open(str(path))
        self._stream = self._container.streams.video[0]
        self._pts = sorted(p.pts for p in self._container.demux(self._stream) if p.size and p.pts is not None)
        self._index = {pts: i for i, pts in enumerate(self._pts)}
        self._decoder: Iterator[Any] | None = None
        self._next = 0  # index of the frame the open decoder yields next

    def __len__(self) -> int:
        return len(self._pts)

    def read(self, index: int) -> torch.Tensor:
        """Frame `index` as [C,H,W] float32 in 0..1."""
        if not 0 <= index < len(self._pts):
            raise FramesIOError(f"{self.source.path.name} has no frame {index} (it has {len(self._pts)})")
        if self._decoder is None or not self._next <= index <= self._next + FORWARD_LIMIT:
            self._seek(index)
        target = self._pts[index]
        for frame in self._decoder:  # type: ignore[union-attr]
            if frame.pts is None or frame.pts < target:
                continue
            self._next = self._index.get(frame.pts, index) + 1
            return self.source.to_tensor(frame)
        raise FramesIOError(f"cannot decode frame {index} of {self.source.path.name} (damaged or truncated)")

    def _seek(self, index: int) -> None:
        self._container.seek(self._pts[index], stream=self._stream, backward=True, any_frame=False)
        self._decoder = self._container.decode(self._stream)
        self._next = 0  # unknown until a frame is decoded: the next read past this one re-checks

    def close(self) -> None:
        """Release the file."""
        self._container.close()
