"""Source frames of a streamed render: a sliding window over a file source, each frame decoded once.

The engine (emavfi.engine) reads the frames of each device batch, and of the scene-cut window around it,
through `FrameBuffer.get`; frames it has moved past are dropped, so memory holds a few batches at most.
"""
from __future__ import annotations

from collections.abc import Iterator

import torch

from .media import FramesIOError, Source

# A gap of more frames than this (resume, --frames) re-opens the source at the next frame instead of reading on.
_READ_AHEAD = 64


class FrameBuffer:
    """Source frames lo..hi for batches that move forward, each frame decoded once; a jump back restarts.

    An `engine.Frames`. skip_damaged: a frame that cannot be read is recorded in `damaged` (index -> message)
    and stands in as zeros, instead of stopping the run; the engine then leaves out whatever needs it.
    """

    def __init__(self, source: Source, count: int, skip_damaged: bool = False):
        self.source, self.count, self.skip_damaged = source, count, skip_damaged
        self.size = source.size
        self.damaged: dict[int, str] = {}
        self._frames: dict[int, torch.Tensor] = {}
        self._iterator: Iterator[torch.Tensor] | None = None
        self._next = 0

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, C, H, W] float32 in the working encoding."""
        for index in [i for i in self._frames if i < lo]:
            del self._frames[index]
        missing = [i for i in range(lo, hi + 1) if i not in self._frames]
        if missing:
            start = missing[0]
            if self._iterator is None or start < self._next or start > self._next + _READ_AHEAD:
                self._iterator, self._next = self.source.frames(start), start
            while self._next <= hi:
                frame = self._read_next()
                if self._next >= lo:
                    self._frames[self._next] = frame
                self._next += 1
        return torch.stack([self._frames[i] for i in range(lo, hi + 1)])

    def _read_next(self) -> torch.Tensor:
        assert self._iterator is not None
        try:
            frame = next(self._iterator, None)
        except FramesIOError as exc:
            if not self.skip_damaged:
                raise
            self.damaged[self._next] = str(exc)
            self._iterator = self.source.frames(self._next + 1)  # a generator that raised is finished
            return torch.zeros(self.source.channels, *self.source.size)
        if frame is None:  # not a usage error (exit 1): the input changed under the run
            raise FramesIOError(f"the input ended after {self._next} frames while {self.count} were counted; "
                                "was it changed during the run?")
        return frame
