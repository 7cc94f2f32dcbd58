"""Mask shapes for overlay detection (emavfi.overlays): connected regions, enclosed holes, specks, growing and
shrinking. Pure tensor code on [h,w] bool masks."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def grow(mask: torch.Tensor, px: int = 1) -> torch.Tensor:
    """mask [h,w] bool grown by px (a square of 2 px + 1)."""
    if px <= 0:
        return mask
    return F.max_pool2d(mask[None, None].float(), 2 * px + 1, 1, px)[0, 0] > 0


def shrink(mask: torch.Tensor, px: int = 1) -> torch.Tensor:
    """mask [h,w] bool shrunk by px (what grow of the rest leaves; beyond the border counts as outside)."""
    if px <= 0:
        return mask
    return -F.max_pool2d(-mask[None, None].float(), 2 * px + 1, 1, px)[0, 0] > 0


def _runs(free: torch.Tensor, dim: int) -> torch.Tensor:
    """[h,w] int64 id of each maximal run of `free` pixels along dim (blocked pixels get ids of their own)."""
    length = free.shape[dim]
    breaks = (~free).long().cumsum(dim) * 2 + (~free).long()  # a blocked pixel is its own run
    lines = torch.arange(free.shape[1 - dim]).view((-1, 1) if dim == 1 else (1, -1))
    return lines * (2 * length + 2) + breaks


def _spread(values: torch.Tensor, free: torch.Tensor, dim: int, reduce: str) -> torch.Tensor:
    """values reduced (amax/amin) over each run of free pixels along dim, broadcast back to the run."""
    ids = _runs(free, dim).flatten()
    initial = values.flatten()
    out = torch.full((int(ids.max()) + 1,), 0 if reduce == "amax" else int(initial.max()) + 1, dtype=values.dtype)
    out = out.scatter_reduce(0, ids, initial, reduce=reduce, include_self=False)
    return torch.where(free, out[ids].view_as(values), values)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """mask [h,w] bool with every region of False it encloses (not reaching the border) set True."""
    outside = ~mask
    reach = torch.zeros_like(mask, dtype=torch.long)
    reach[0], reach[-1], reach[:, 0], reach[:, -1] = 1, 1, 1, 1
    reach = reach * outside
    while True:
        spread = _spread(_spread(reach, outside, 1, "amax"), outside, 0, "amax")
        if torch.equal(spread, reach):
            return mask | (outside & (reach == 0))
        reach = spread


def components(mask: torch.Tensor) -> torch.Tensor:
    """[h,w] int64 label of each 4-connected region of mask (the smallest pixel index in it), -1 outside."""
    labels = torch.where(mask, torch.arange(mask.numel()).view_as(mask), torch.full_like(mask, -1, dtype=torch.long))
    while True:
        spread = _spread(_spread(labels, mask, 1, "amin"), mask, 0, "amin")
        if torch.equal(spread, labels):
            return labels
        labels = spread


def drop_specks(mask: torch.Tensor, min_area: int) -> torch.Tensor:
    """mask without its connected regions of fewer than min_area pixels."""
    labels = components(mask)
    areas = torch.bincount(labels[mask], minlength=mask.numel())
    return mask & (areas[labels.clamp(min=0)] >= min_area)


def _neighbours(values: torch.Tensor) -> list[torch.Tensor]:
    """values [h,w] of the 8 neighbours of each pixel (the border repeated)."""
    padded = F.pad(values[None, None].float(), (1, 1, 1, 1), mode="replicate")[0, 0]
    h, w = values.shape
    return [padded[dy:dy + h, dx:dx + w] for dy in range(3) for dx in range(3) if (dy, dx) != (1, 1)]


def trim_edges(region: torch.Tensor, picture: torch.Tensor) -> torch.Tensor:
    """region [h,w] bool without the pixels of its outermost ring whose step in picture [h,w] to the region's
    inside is larger than their step to the outside: an edge lies between two pixels, and finding it marks both."""
    ring = region & ~shrink(region, 1)
    steps = [(n - picture).abs() for n in _neighbours(picture)]
    inner = [n > 0.5 for n in _neighbours(shrink(region, 1))]
    outer = [n < 0.5 for n in _neighbours(region)]
    step_in = torch.stack([torch.where(i, s, 0) for i, s in zip(inner, steps)]).amax(0)
    step_out = torch.stack([torch.where(o, s, 0) for o, s in zip(outer, steps)]).amax(0)
    return region & ~(ring & (step_in > step_out))
