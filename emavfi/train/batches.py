"""Training batches: a worker's share of each global batch, read and augmented one sample at a time, with the
next batch prepared in a background thread while the current step runs (image decoding releases the GIL)."""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import torch

from .augment import augment, random_crop
from .data import FrameReader, Triplets


@dataclass
class Batch:
    """img0, gt, img1: [b,3,crop,crop] float32 in 0..1; t: one float for all, or [b,1,1,1] per sample."""

    img0: torch.Tensor
    gt: torch.Tensor
    img1: torch.Tensor
    t: float | torch.Tensor


def make_batch(triplets: Triplets, reader: FrameReader, positions: list[int], crop: int) -> Batch:
    """The samples at these global positions, cropped and augmented."""
    stacks, times = [], []
    for position in positions:
        sample = triplets.sample(position)
        rng = np.random.default_rng(sample.seed)
        frames = random_crop([reader.read(sample.clip, i) for i in sample.frames], crop, rng)
        # (frame 0, ground truth, frame 1): time reversal then swaps the inputs and keeps the middle
        triplet, t = augment(torch.stack([frames[0], frames[1], frames[2]]), sample.t, rng)
        stacks.append(triplet)
        times.append(t)
    batch = torch.stack(stacks)
    same = all(t == times[0] for t in times)
    t_value: float | torch.Tensor = times[0] if same else torch.tensor(times, dtype=torch.float32).view(-1, 1, 1, 1)
    return Batch(batch[:, 0].contiguous(), batch[:, 1].contiguous(), batch[:, 2].contiguous(), t_value)


class BatchStream:
    """The batches of steps start, start+1, ... for one worker (slots rank*per .. rank*per+per-1 of each step)."""

    def __init__(self, triplets: Triplets, reader: FrameReader, batch: int, rank: int, world: int, crop: int):
        self.triplets, self.reader, self.crop = triplets, reader, crop
        self.batch, self.per, self.rank = batch, batch // world, rank
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="emavfi-batches")
        self._pending: tuple[int, Future[Batch]] | None = None

    def _positions(self, step: int) -> list[int]:
        first = step * self.batch + self.rank * self.per
        return list(range(first, first + self.per))

    def _submit(self, step: int) -> Future[Batch]:
        return self._pool.submit(make_batch, self.triplets, self.reader, self._positions(step), self.crop)

    def get(self, step: int, prefetch_next: bool = True) -> Batch:
        """The batch of `step`; starts preparing step+1."""
        if self._pending is None or self._pending[0] != step:
            if self._pending is not None:
                self._pending[1].cancel()
            self._pending = (step, self._submit(step))
        batch = self._pending[1].result()
        self._pending = (step + 1, self._submit(step + 1)) if prefetch_next else None
        return batch

    def close(self) -> None:
        """Stop the background thread and close the readers."""
        if self._pending is not None:
            self._pending[1].cancel()
        self._pool.shutdown(wait=True)
        self.reader.close()
