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
    """[h*w] int64 id of each maximal run of `free` pixels along dim (blocked pixels get ids of their own)."""
    length = free.shape[dim]
    breaks = (~free).long().cumsum(dim) * 2 + (~free).long()  # a blocked pixel is its own run
    lines = torch.arange(free.shape[1 - dim]).view((-1, 1) if dim == 1 else (1, -1))
    return (lines * (2 * length + 2) + breaks).flatten()


def _spread_min(labels: torch.Tensor, ids: torch.Tensor, size: int) -> torch.Tensor:
    """[n] labels replaced by the smallest label of their run (ids [n], fewer than size runs)."""
    out = torch.full((size,), labels.numel(), dtype=labels.dtype)
    return out.scatter_reduce(0, ids, labels, reduce="amin", include_self=False)[ids]


def components(mask: torch.Tensor) -> torch.Tensor:
    """[h,w] int64 label of each 4-connected region of mask (the smallest pixel index in it), -1 outside.

    Labels spread along whole rows and columns at once and jump along their own chains (a pixel takes the label
    of the pixel its label names), so a long thin rim needs few rounds."""
    n = mask.numel()
    flat_mask = mask.flatten()
    rows, cols = _runs(mask, 1), _runs(mask, 0)
    size = int(max(rows.max(), cols.max())) + 1
    labels = torch.arange(n)
    while True:
        spread = _spread_min(_spread_min(labels, rows, size), cols, size)
        spread = torch.where(flat_mask, spread[spread], spread)
        if torch.equal(spread, labels):
            return torch.where(flat_mask, labels, -1).view_as(mask)
        labels = spread


def enclosed(mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """([h,w] bool the regions of False that mask [h,w] encloses (not reaching the border), [h,w] int64 the area
    of the region each such pixel is in, 0 elsewhere)."""
    outside = ~mask
    labels = components(outside) + 1
    border = torch.cat([labels[0], labels[-1], labels[:, 0], labels[:, -1]])
    reaching = torch.zeros(mask.numel() + 1, dtype=torch.bool)
    reaching[border] = True
    holes = outside & ~reaching[labels]
    areas = torch.bincount(labels[holes], minlength=mask.numel() + 1)
    return holes, torch.where(holes, areas[labels], 0)


def fill_holes(mask: torch.Tensor) -> torch.Tensor:
    """mask [h,w] bool with every region of False it encloses (not reaching the border) set True."""
    return mask | enclosed(mask)[0]


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
