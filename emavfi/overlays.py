"""Burned-in overlays (timecode, subtitles, logos, HUDs): pixels that stay put while the picture moves.

A pixel of frame j belongs to an overlay when, over a run of RUN + 1 consecutive frames of j's shot that holds j,
(1) it stays within noise of its value in frame j (STABLE_SIGMAS x the footage's own noise, measured in its
quietest blocks), (2) frame j has an edge there (a gradient of STRUCTURE_SIGMAS x noise: flat sky in a pan stays
put too, but holding it would change nothing), and (3) the picture moves meanwhile: at least MOVING_FRACTION of
frame j's textured blocks change beyond noise during the run, after a global gain and offset are undone (so a fade, a
still shot and a small object crossing a still background are not "moving pictures"). Runs never cross a
scene cut (emavfi.cuts). The edges found are grown into the steady pixels around them (GROW px), enclosed
holes are filled (the changing digits of a timecode box, a moving health bar in a HUD panel) and specks
under MIN_AREA are dropped.

The decision for frame j reads only frames j - CONTEXT .. j + CONTEXT, so any batch, task or worker decides
a frame the same. Work is done at ANALYSIS px on the long side at most (box-reduced); masks come back at
full size. A semi-transparent logo is found where its edges show steadily through the moving picture.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch
import torch.nn.functional as F

from . import cuts
from .dedupe import NOISE_FLOOR  # half an 8-bit code value: the quietest footage's noise

RUN = 24
"""A pixel must stay put for RUN + 1 consecutive frames (a second at 24 fps) that include the frame."""
CONTEXT = RUN + cuts.CUT_CONTEXT
"""The decision for frame j reads only frames max(0, j - CONTEXT) .. min(n - 1, j + CONTEXT)."""
ANALYSIS = 960  # long side of the analysis picture, px
STABLE_SIGMAS = 3.5  # a steady pixel differs from frame j by at most this x the noise of a difference
STRUCTURE_SIGMAS = 5.0  # an edge: a central-difference gradient above this x the noise
MOVING_FRACTION = 0.5  # of frame j's textured blocks that must change during the run
MOTION_BLOCKS = 16  # blocks across the long side for that count
BLOCK_CHANGED = 0.3  # a block changes when this share of its edge pixels does
CORNER, CORNER_SIGMAS = 5, 6.0  # a seed has texture in every direction: structure-tensor window px, its strength
SHIFT_PEAK = 0.5  # a camera shift's correlation peak, of the highest one (an overlay's own is at no shift)
BRIDGE = 6  # analysis px: gaps up to 2 x BRIDGE in a region's rim still enclose its holes
GROW = 4  # analysis px the regions grow into steady pixels around them
MIN_AREA = 1.5e-4  # of the analysis picture's pixels, at least 12: smaller specks are dropped
NOISE_BLOCK = 8


# ----------------------------------------------------------------------------------------------- per frame

def analysis_factor(height: int, width: int) -> int:
    """The box-reduction factor of the analysis picture."""
    return max(1, math.ceil(max(height, width) / ANALYSIS))


def lumas(frames: torch.Tensor) -> torch.Tensor:
    """[N,h,w] float32 luma of frames [N,C>=3,H,W] (RGB first) at analysis size; HDR above 1 compressed."""
    if frames.dim() != 4 or frames.shape[1] < 3:
        raise ValueError(f"frames must be [N,C>=3,H,W] with RGB first; got shape {list(frames.shape)}")
    factor = analysis_factor(*frames.shape[-2:])
    rgb = frames[:, :3].float().nan_to_num(0.0, posinf=1e4, neginf=0.0)
    rgb = rgb.clamp(max=1) + rgb.clamp(min=1).log()
    y = (0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2])[:, None]
    if factor > 1:
        y = F.avg_pool2d(y, factor, ceil_mode=True)
    return y[:, 0]


def noise_levels(y: torch.Tensor) -> torch.Tensor:
    """[N] noise std of lumas [N,h,w]: the residual against the 4 neighbours in the quietest tenth of blocks."""
    if min(y.shape[-2:]) < 3:
        return torch.full((y.shape[0],), NOISE_FLOOR)
    residual = y[:, 1:-1, 1:-1] - 0.25 * (y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:])
    size = max(1, min(NOISE_BLOCK, *residual.shape[-2:]))
    blocks = F.avg_pool2d(residual.square()[:, None], size).flatten(1).sqrt()
    return (blocks.quantile(0.1, dim=1) / math.sqrt(1.25)).clamp(min=NOISE_FLOOR)


def edges(y: torch.Tensor) -> torch.Tensor:
    """[h,w] the larger central-difference gradient of luma [h,w] (0 on the border)."""
    g = torch.zeros_like(y)
    g[:, 1:-1] = (y[:, 2:] - y[:, :-2]).abs() / 2
    gy = torch.zeros_like(y)
    gy[1:-1] = (y[2:] - y[:-2]).abs() / 2
    return torch.maximum(g, gy)


def corners(y: torch.Tensor) -> torch.Tensor:
    """[h,w] the smaller eigenvalue of the structure tensor of luma [h,w] over CORNER px: texture in every direction
    (an edge along the motion of a pan stays put too, a corner or a letter does not)."""
    gx, gy = torch.zeros_like(y), torch.zeros_like(y)
    gx[:, 1:-1], gy[1:-1] = (y[:, 2:] - y[:, :-2]) / 2, (y[2:] - y[:-2]) / 2
    xx, yy, xy = F.avg_pool2d(torch.stack([gx * gx, gy * gy, gx * gy])[:, None], CORNER, 1, CORNER // 2,
                              count_include_pad=False)[:, 0]
    return (xx + yy) / 2 - (((xx - yy) / 2).square() + xy.square()).sqrt()


def global_shift(a: torch.Tensor, b: torch.Tensor) -> tuple[int, int] | None:
    """The whole-pixel shift (dy, dx) that best takes luma b [h,w] onto a (phase correlation), or None when no
    shift other than none stands out (a still shot, a zoom): the picture's own motion between two frames."""
    h, w = a.shape
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None]
    fa, fb = (torch.fft.rfft2((x - x.mean()) * window) for x in (a, b))
    cross = fa * fb.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp(min=1e-9), s=(h, w))
    near = surface.clone()
    near[[0, 0, 0, 1, -1, 1, -1, 1, -1], [0, 1, -1, 0, 0, 1, -1, -1, 1]] = -math.inf
    peak = int(near.flatten().argmax())
    if float(near.flatten()[peak]) < SHIFT_PEAK * float(surface.max()):
        return None
    dy, dx = divmod(peak, w)
    return (dy - h if dy > h // 2 else dy), (dx - w if dx > w // 2 else dx)


# ----------------------------------------------------------------------------------------------- one decision

def decide_frame(y: torch.Tensor, noise: torch.Tensor, centre: int) -> torch.Tensor:
    """[h,w] bool overlay mask of frame `centre` of lumas y [W,h,w] (one shot, the frames around it; noise [W]).

    Frames beyond RUN of the centre are not read; fewer than RUN + 1 frames in all decide nothing.
    """
    lo, hi = max(0, centre - RUN), min(y.shape[0] - 1, centre + RUN)
    y, noise, centre = y[lo:hi + 1], noise[lo:hi + 1], centre - lo
    count = y.shape[0]
    if count < RUN + 1:
        return torch.zeros(y.shape[-2:], dtype=torch.bool)
    sigma = float(noise.median())
    tol = STABLE_SIGMAS * math.sqrt(2) * sigma
    base = y[centre]
    unstable = (y - base).abs() > tol  # [W,h,w]
    edge = edges(base) > STRUCTURE_SIGMAS * sigma
    # the picture's own change: each frame against frame j's picture under a matched gain and offset
    mean, std = y.flatten(1).mean(1), y.flatten(1).std(1)
    gain = std / std[centre].clamp(min=1e-6)
    matched = gain.view(-1, 1, 1) * (base - mean[centre]) + mean.view(-1, 1, 1)
    changed = ((y - matched).abs() > tol) & edge
    steady = torch.zeros_like(edge)
    if not edge.any():
        return steady
    # counts over every run of RUN + 1 frames that holds the centre, from cumulative sums over frames
    zero = torch.zeros(1, *edge.shape, dtype=torch.int32)
    unstable_sum = torch.cat([zero, unstable.int().cumsum(0, dtype=torch.int32)])
    changed_sum = torch.cat([zero, changed.int().cumsum(0, dtype=torch.int32)])
    # the picture moves when most of its textured blocks change (a walking figure on a still set: a few)
    block = max(8, max(edge.shape) // MOTION_BLOCKS)
    edges_in = F.avg_pool2d(edge[None, None].float(), block, ceil_mode=True)
    textured = edges_in > 0
    needed = MOVING_FRACTION * int(textured.sum())
    for start in range(max(0, centre - RUN), min(centre, count - 1 - RUN) + 1):
        stop = start + RUN + 1
        moved = F.avg_pool2d(((changed_sum[stop] - changed_sum[start]) > 0).float()[None, None], block, ceil_mode=True)
        if int((textured & (moved > BLOCK_CHANGED * edges_in)).sum()) >= needed:
            steady |= unstable_sum[stop] == unstable_sum[start]
    seeds = steady & (corners(base) > (CORNER_SIGMAS * sigma) ** 2)
    for far in {0, count - 1} - {centre}:  # what the camera's own shift also explains is not an overlay's
        shift = global_shift(base, y[far])
        if shift is not None:
            seeds &= (torch.roll(y[far], shift, (0, 1)) - base).abs() > tol
    return _shape(seeds, steady & edge, steady)


def _shape(seeds: torch.Tensor, rims: torch.Tensor, steady: torch.Tensor) -> torch.Tensor:
    """The overlay regions: the seeds with the steady edges (rims) connected to them, GROW px more of steady
    pixels around, enclosed holes filled (changing digits, a moving bar), specks dropped."""
    if not seeds.any():
        return seeds
    connected = seeds | rims
    labels = components(connected)
    kept = torch.zeros(labels.numel() + 1, dtype=torch.bool)
    kept[labels[seeds] + 1] = True
    region = kept[labels + 1] & connected
    for _ in range(GROW):
        region = (F.max_pool2d(region[None, None].float(), 3, 1, 1)[0, 0] > 0) & steady | region
    # a rim with gaps (where the picture matches the box's colour) still encloses: close it before filling
    size = 2 * BRIDGE + 1
    closed = -F.max_pool2d(-F.max_pool2d(region[None, None].float(), size, 1, BRIDGE), size, 1, BRIDGE)[0, 0] > 0
    region = fill_holes(region | (fill_holes(closed) & steady))
    return drop_specks(region, max(12, round(MIN_AREA * region.numel())))


# ----------------------------------------------------------------------------------------------- masks

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


# ----------------------------------------------------------------------------------------------- a clip

class OverlayFinder:
    """The detected overlays as a protect policy (emavfi.protect.RegionPolicy): each frame's evidence computed
    once, each decision from its fixed window of CONTEXT frames, so a frame is decided the same in any batch,
    task or worker. seen(j, mask [H,W] bool) is called once per decided frame; `found` keeps, for each decided
    frame with an overlay, its bounding box (x0, y0, x1, y1) in px (x1, y1 exclusive)."""

    def __init__(self, n: int, seen: Callable[[int, torch.Tensor], None] | None = None):
        self.n, self.seen = n, seen
        self.decided: set[int] = set()
        self.found: dict[int, tuple[int, int, int, int]] = {}
        self._y: dict[int, torch.Tensor] = {}
        self._noise: dict[int, float] = {}
        self._scores: dict[int, float] = {}

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32 (0 or 1): the overlays of frames lo..hi (frames: an engine.Frames)."""
        self._analyse(frames, max(0, lo - CONTEXT), min(self.n - 1, hi + CONTEXT))
        small = torch.stack([self._decide(j) for j in range(lo, hi + 1)])
        masks = full_size(small, tuple(frames.size))
        for j, mask in zip(range(lo, hi + 1), masks):
            if j not in self.decided:
                self.decided.add(j)
                if bool(mask.any()):
                    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
                    self.found[j] = (int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1)
                if self.seen is not None:
                    self.seen(j, mask)
        for old in [j for j in self._y if j < lo - CONTEXT]:
            del self._y[old], self._noise[old]
            self._scores.pop(old, None)
        return masks.float()

    def _analyse(self, frames: Any, lo: int, hi: int) -> None:
        missing = [j for j in range(lo, hi + 1) if j not in self._y]
        if not missing:
            return
        start, stop = max(missing[0] - 1, 0), missing[-1]  # a pair's cut evidence needs the frame before too
        chunk = frames.get(start, stop)
        y = lumas(chunk)
        noise = noise_levels(y)
        scores = cuts.cut_scores(chunk) if chunk.shape[0] > 1 else torch.zeros(0)
        damaged = getattr(frames, "damaged", {})
        for offset, j in enumerate(range(start, stop + 1)):
            self._y.setdefault(j, y[offset])
            self._noise.setdefault(j, float(noise[offset]))
        for offset, score in enumerate(scores.tolist()):
            pair = start + offset  # a damaged frame stands in as black: not a cut (as engine.CutFinder)
            self._scores.setdefault(pair, 0.0 if pair in damaged or pair + 1 in damaged else score)

    def _decide(self, j: int) -> torch.Tensor:
        """The analysis-size mask of frame j, from frames j - CONTEXT .. j + CONTEXT only."""
        first, last = max(0, j - CONTEXT), min(self.n - 1, j + CONTEXT)
        scores = torch.tensor([self._scores[p] for p in range(first, last)], dtype=torch.float32)
        found = [first + i for i in cuts.decide_cuts(scores)] if scores.numel() else []
        lo = max([i + 1 for i in found if i < j] + [max(0, j - RUN)])
        hi = min([i for i in found if i >= j] + [min(self.n - 1, j + RUN)])
        y = torch.stack([self._y[k] for k in range(lo, hi + 1)])
        noise = torch.tensor([self._noise[k] for k in range(lo, hi + 1)])
        return decide_frame(y, noise, j - lo)


class _TensorFrames:
    def __init__(self, frames: torch.Tensor):
        self.frames, self.count, self.size, self.damaged = frames, frames.shape[0], tuple(frames.shape[-2:]), {}

    def get(self, lo: int, hi: int) -> torch.Tensor:
        return self.frames[lo:hi + 1]


def detect_overlays(frames: torch.Tensor) -> torch.Tensor:
    """[N,H,W] bool: the burned-in overlays of each frame of a clip, frames [N,C,H,W] (float, CPU, RGB first).

    Each frame's decision reads only the frames within CONTEXT of it (see the module docstring), so this equals
    what the engine holds with --protect-overlays however the clip is split.
    """
    if frames.dim() != 4 or frames.shape[1] < 3 or not frames.is_floating_point():
        raise ValueError(f"frames must be float [N,C>=3,H,W] with RGB first; got {frames.dtype} "
                         f"{list(frames.shape)}")
    return OverlayFinder(frames.shape[0]).masks(_TensorFrames(frames), 0, frames.shape[0] - 1) > 0


def full_size(masks: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """[N,H,W] bool: analysis-size masks [N,h,w] brought to the frames' size (each pixel takes its block's)."""
    factor = analysis_factor(*size)
    if factor == 1:
        return masks
    big = masks.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
    return big[:, :size[0], :size[1]].contiguous()
