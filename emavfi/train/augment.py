"""The official training augmentations (EMA-VFI `dataset.py`, ../shared/spec §9), applied to one triplet.

In this order, each decided by the sample's own random generator: a random crop (the same window in all
three frames), channel order reversed (RGB <-> BGR, p = 0.5), time reversed (frame 0 <-> frame 1, t -> 1-t,
p = 0.5), vertical flip (p = 0.5), horizontal flip (p = 0.5), and a rotation by 90, 180 or 270 degrees
(p = 0.25 each; no rotation otherwise).
"""
from __future__ import annotations

import numpy as np
import torch


def random_crop(frames: list[torch.Tensor], crop: int, rng: np.random.Generator) -> list[torch.Tensor]:
    """The same crop x crop window of each [C,H,W] frame, its corner uniform over the frame."""
    h, w = frames[0].shape[-2:]
    top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
    return [f[:, top:top + crop, left:left + crop] for f in frames]


def augment(triplet: torch.Tensor, t: float, rng: np.random.Generator) -> tuple[torch.Tensor, float]:
    """triplet [3 frames, C, H, W] as (frame 0, ground truth, frame 1), square -> augmented copy and its t."""
    if rng.random() < 0.5:
        triplet = triplet.flip(1)
    if rng.random() < 0.5:
        triplet, t = triplet.flip(0), 1.0 - t
    if rng.random() < 0.5:
        triplet = triplet.flip(2)
    if rng.random() < 0.5:
        triplet = triplet.flip(3)
    turn = rng.random()
    if turn < 0.75:
        triplet = torch.rot90(triplet, k=1 + int(turn // 0.25), dims=(2, 3))
    return triplet.contiguous(), t
