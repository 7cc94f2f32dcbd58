"""Source frames of a streamed render: a sliding buffer over the source, and scene cuts decided over it.

Frames are decoded once each, in order; every pair's cut evidence is computed once, and each decision is
taken from the fixed window of CUT_CONTEXT pairs around it (emavfi.cuts), so it does not depend on how the
render is split into batches, tasks or workers.
"""
from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch

from . import cuts
from .media import FramesIOError
from .settings import SettingsError

# A gap of more frames than this (resume, --frames) re-opens the source at the next frame instead of reading on.
_READ_AHEAD = 64


class FrameBuffer:
    """Source frames lo..hi for batches that move forward, each frame decoded once; a jump back restarts.

    skip_damaged: a frame that cannot be read is recorded in `damaged` (index -> message) and stands in as
    zeros, instead of stopping the run; whatever needs it is then not written (see _run).
    """

    def __init__(self, source: Any, skip_damaged: bool = False):
        self.source, self.skip_damaged = source, skip_damaged
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
        if frame is None:
            raise SettingsError(f"the input ended after {self._next} frames while more were counted; "
                                "was it changed during the run?")
        return frame


class CutFinder:
    """Scene cuts of a streamed shot: each pair's evidence computed once, each decision from its fixed window."""

    def __init__(self, n: int, threshold: float):
        self.n, self.threshold = n, threshold
        self._scores: dict[int, torch.Tensor] = {}

    def cuts(self, frames: FrameBuffer, first_pair: int, end_pair: int) -> list[int]:
        """Global pair indices in [first_pair, end_pair) that are cuts (emavfi.cuts decides from CUT_CONTEXT pairs)."""
        if self.threshold <= 0 or self.n < 2:
            return []
        lo, hi = max(0, first_pair - cuts.CUT_CONTEXT), min(self.n - 2, end_pair - 1 + cuts.CUT_CONTEXT)
        missing = [p for p in range(lo, hi + 1) if p not in self._scores]
        if missing:
            scores = cuts.cut_scores(frames.get(missing[0], missing[-1] + 1))
            for offset, score in enumerate(scores):
                pair = missing[0] + offset
                # a damaged frame stands in as black: its pairs are left out, not counted as cuts
                damaged = pair in frames.damaged or pair + 1 in frames.damaged
                self._scores.setdefault(pair, torch.zeros_like(score) if damaged else score)
        for old in [p for p in self._scores if p < lo]:
            del self._scores[old]
        window = torch.stack([self._scores[p] for p in range(lo, hi + 1)])
        return [lo + i for i in cuts.decide_cuts(window, self.threshold) if first_pair <= lo + i < end_pair]
