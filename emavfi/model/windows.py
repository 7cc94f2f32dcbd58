"""Window geometry for the transformer stages: centred padding, partitions and attention masks.

Masks are built for the exact geometry (h, w, window, shift), never keyed by area alone. These are pure
factories; the model keeps their results in its own GeometryCache. Sizes may be Python ints (eager) or the
0-dim tensors `torch.jit.trace` hands out for `x.shape[i]`, so traced graphs stay valid at every size.
"""
from __future__ import annotations

import torch

MASKED = -100.0  # the reference masks with -100, not -inf (padded keys stay slightly visible)


def window_padding(h: int, w: int, window: int) -> tuple[int, int, int, int]:
    """Centred zero padding (top, bottom, left, right) that makes h and w multiples of `window`."""
    ph = (-h) % window
    pw = (-w) % window
    return ph // 2, ph - ph // 2, pw // 2, pw - pw // 2


def partition(x: torch.Tensor, window: int) -> torch.Tensor:
    """[N,Hp,Wp,C] -> [N*nW, window*window, C], windows ordered (image, row, col), tokens row-major."""
    n, hp, wp, c = x.shape
    x = x.view(n, hp // window, window, wp // window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, window * window, c)


def unpartition(windows: torch.Tensor, window: int, hp: int, wp: int) -> torch.Tensor:
    """Inverse of `partition`: [N*nW, window*window, C] -> [N,Hp,Wp,C]."""
    c = windows.shape[-1]
    x = windows.view(-1, hp // window, wp // window, window, window, c)
    return x.permute(0, 1, 3, 2, 4, 5).reshape(-1, hp, wp, c)


def _region_mask(labels: torch.Tensor, window: int) -> torch.Tensor:
    """[Hp,Wp] region ids -> [nW, w*w, w*w] with 0 for equal ids and MASKED otherwise."""
    win = partition(labels[None, :, :, None], window).squeeze(-1)
    diff = win[:, :, None] != win[:, None, :]
    return torch.zeros_like(diff, dtype=torch.float32).masked_fill(diff, MASKED)


def _three_way(size: int, first: int, second: int, device: torch.device) -> torch.Tensor:
    """Index 0 below `first`, 1 below `second`, 2 from there on."""
    idx = torch.arange(size, device=device)
    return (idx >= first).long() + (idx >= second).long()


def attention_mask(h: int, w: int, window: int, shift: int, device: torch.device,
                   dtype: torch.dtype = torch.float32) -> torch.Tensor | None:
    """Additive mask [nW, w*w, w*w] for one image of an h x w token grid, or None when nothing is masked.

    Unshifted blocks mask across the centred padding regions. Shifted blocks use the usual shifted-window
    regions of the padded grid, and then also every position the *unshifted* padding mask marks; the two
    describe different layouts, but that is what the official weights were trained with. While tracing, the
    padding mask is always built (all zeros where nothing is padded), so the graph holds at other sizes.
    """
    top, bottom, left, right = window_padding(h, w, window)
    hp, wp = h + top + bottom, w + left + right
    pad_mask = None
    if torch.jit.is_tracing() or top + bottom + left + right > 0:
        rows = _three_way(hp, top, top + h, device)
        cols = _three_way(wp, left, left + w, device)
        pad_mask = _region_mask(rows[:, None] * 3 + cols[None, :], window)
    if shift == 0:
        return None if pad_mask is None else pad_mask.to(dtype)
    rows = _three_way(hp, hp - window, hp - shift, device)
    cols = _three_way(wp, wp - window, wp - shift, device)
    mask = _region_mask(rows[:, None] * 3 + cols[None, :], window)
    if pad_mask is not None:
        mask = mask.masked_fill(pad_mask != 0, MASKED)
    return mask.to(dtype)


def coordinate_map(h: int, w: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """[1,h,w,2] grid of (x, y) coordinates, each linspace(-1, 1) over the unpadded token grid."""
    xs = torch.linspace(-1.0, 1.0, w, device=device, dtype=torch.float32)
    ys = torch.linspace(-1.0, 1.0, h, device=device, dtype=torch.float32)
    grid = torch.stack([xs[None, :].expand(h, w), ys[:, None].expand(h, w)], -1)
    return grid[None].to(dtype)
