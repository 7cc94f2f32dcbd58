"""Burned-in overlays (timecode, subtitles, logos, HUDs): edges that stay put while the picture moves.

Every frame gets its luma at analysis size (ANALYSIS px on the long side at most), its noise, its signed
gradients and the picture's motion from the frame before (emavfi.overlay_motion: a scale and a shift). A run is
RUN + 1 consecutive frames of one shot; its evidence is computed once. Over a run, a pixel is on a rim when its mean
gradient is clearly above noise (RIM_SIGMAS), sharp (SHARP: the motion blurs the picture's mean edges, not an
overlay's) and steady: it points the same way in most frames (SAME_SIGN: a semi-transparent logo's edges show
through a moving picture that way) or the pixel's value stays put (an opaque box, whatever lies beside it). A rim
pixel is a seed when the picture's motion carries the picture at least MIN_TRAVEL px across its edge during the run,
mostly across (ACROSS: a zoom's still centre, a slow pan and an edge sliding along itself are not) and the run's last
frame is not its first carried by that motion there (EXPLAINED_SIGMAS).

The overlays of frame j: over the runs that hold j (runs never cross a scene cut, emavfi.cuts), the rims connected
to MIN_SEEDS seeds or more, most of them shown in frame j itself (SEEN_SHARE: an overlay that has not appeared yet
is not), gaps up to 2 x BRIDGE bridged, enclosed holes filled (the changing digits of a timecode box, a health bar,
a logo's plate; small holes and the bridges only where the pixels stay put or do not move with the picture, so
the picture between two subtitle lines is not held), and the outermost pixel trimmed where the edge lies inside
it (a central difference marks both sides of an edge). Beside an opaque overlay (OPAQUE: most of its seeds stay
put), within PEEL px of its still pixels, only what stays put, what they enclose and what the overlay covers most
of (COVERED) is kept: the picture around a subtitle's dark outline and between its lines is not.

When a run's pairs of frames all look still (a smooth picture moving under a pixel a frame), its motion is fitted
from its first frame to its last instead.

The decision for frame j reads only frames j - CONTEXT .. j + CONTEXT, so any batch, task or worker decides a
frame the same. Masks come back at full size.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
import torch.nn.functional as F

from . import cuts
from .dedupe import NOISE_FLOOR  # half an 8-bit code value: the quietest footage's noise
from .overlay_masks import components, drop_specks, enclosed, grow, shrink, square_max, trim_edges
from .overlay_motion import Motion, estimate, predict

RUN = 24
"""A run is RUN + 1 consecutive frames (a second at 24 fps); the runs of frame j hold it."""
CONTEXT = RUN + cuts.CUT_CONTEXT
"""The decision for frame j reads only frames max(0, j - CONTEXT) .. min(n - 1, j + CONTEXT)."""
ANALYSIS = 384  # long side of the analysis picture, px
STABLE_SIGMAS = 3.5  # a steady pixel differs from frame j by at most this x the noise of a difference
SAME_SIGN = 0.85  # a rim's gradient points its mean way in this share of the run's frames at least
RIM_SIGMAS = 4.0  # a rim's mean gradient, x the noise of one frame's gradient
SEED_SIGMAS = 3.0  # a seed's mean gradient along the picture's motion, x the same
MIN_TRAVEL = 8.0  # analysis px the picture under a seed moves across it during the run
ACROSS = 0.7  # and this share of its whole travel at least (a straight line sliding nearly along itself: no seed)
SIDE = 2.0  # px either side of a seed where its mean gradient (across the edge) is read
SHARP = 0.3  # and is at most this x the seed's own: the motion blurs the picture's mean edges, not an overlay's
EXPLAINED_SIGMAS = 3.5  # a seed's last frame differs from its first carried by the picture's motion by more
SHOWN = 0.3  # frame j shows a seed: its gradient across the rim is at least this x the run's mean
SEEN_SHARE = 0.5  # of a region's seeds, frame j shows this share at least
MIN_SEEDS = 10  # a region holds this many seeds at least (the picture makes a stray one now and then)
PART_SEEDS = 3 * MIN_SEEDS  # and a shown part of one with an overlay not shown yet (a letter's stem is not)
LARGE_HOLE = 2e-3  # of the analysis picture's pixels: a hole this large is held whole
OPAQUE = 0.3  # of a region's seeds stay put at least: an opaque overlay (a semi-transparent one's change)
PEEL = 3  # analysis px beside an opaque overlay's still pixels where the rest is kept only if they enclose it
COVERED = 0.5  # an overlay covers most of a pixel whose luma varies under this x the picture's beside it
BRIDGE = 2  # analysis px: gaps up to 2 x BRIDGE in a region's rim still enclose its holes
MIN_AREA = 3e-4  # of the analysis picture's pixels: a region's rims and seeds cover this much at least
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
    rgb = frames[:, :3].float()
    if factor > 1:  # reduce first: the rest is then done on a sixteenth of the pixels at 1080p
        rgb = F.avg_pool2d(rgb, factor, ceil_mode=True)
    rgb = rgb.nan_to_num(0.0, posinf=1e4, neginf=0.0)
    rgb = rgb.clamp(max=1) + rgb.clamp(min=1).log()
    return 0.299 * rgb[:, 0] + 0.587 * rgb[:, 1] + 0.114 * rgb[:, 2]


def noise_levels(y: torch.Tensor) -> torch.Tensor:
    """[N] noise std of lumas [N,h,w]: the residual against the 4 neighbours in the quietest tenth of blocks."""
    if min(y.shape[-2:]) < 3:
        return torch.full((y.shape[0],), NOISE_FLOOR)
    residual = y[:, 1:-1, 1:-1] - 0.25 * (y[:, :-2, 1:-1] + y[:, 2:, 1:-1] + y[:, 1:-1, :-2] + y[:, 1:-1, 2:])
    size = max(1, min(NOISE_BLOCK, *residual.shape[-2:]))
    blocks = F.avg_pool2d(residual.square()[:, None], size).flatten(1).sqrt()
    return (blocks.quantile(0.1, dim=1) / math.sqrt(1.25)).clamp(min=NOISE_FLOOR)


def gradients(y: torch.Tensor) -> torch.Tensor:
    """[N,2,h,w] signed central-difference gradients (x, y) of lumas [N,h,w] (0 on the border)."""
    g = torch.zeros(y.shape[0], 2, *y.shape[-2:])
    g[:, 0, :, 1:-1] = (y[:, :, 2:] - y[:, :, :-2]) / 2
    g[:, 1, 1:-1] = (y[:, 2:] - y[:, :-2]) / 2
    return g


# ----------------------------------------------------------------------------------------------- one run

def run_evidence(y: torch.Tensor, g: torch.Tensor, sigma: float, motion: Motion) -> dict[str, torch.Tensor]:
    """Rims, seeds [h,w] bool and the luma range (low, high [h,w]) of one run: lumas y [RUN+1,h,w], their
    gradients g [RUN+1,2,h,w], the run's noise sigma and the picture's motion from its first frame to its last."""
    mean = g.mean(0)
    strength = (mean[0].square() + mean[1].square()).sqrt()  # (torch.norm over dim 0 is slow on CPU)
    direction = mean / strength.clamp(min=1e-9)
    low, high = y.amin(0), y.amax(0)
    steady = ((g * direction).sum(1) > 0).float().mean(0) >= SAME_SIGN
    steady |= high - low <= 2 * STABLE_SIGMAS * math.sqrt(2) * sigma  # an opaque edge, whatever lies beside it
    gradient_noise = sigma / math.sqrt(2)
    step = (direction * SIDE).round().long()
    beside = torch.maximum(*((_shifted(mean[0], s) * direction[0] + _shifted(mean[1], s) * direction[1])
                             for s in (step, -step)))
    rims = steady & (strength > RIM_SIGMAS * gradient_noise) & (beside <= SHARP * strength)
    travel = motion.displacement(*y.shape[-2:])
    across = (direction * travel).sum(0).abs()  # how far the picture moved across the edge
    distance = (travel[0].square() + travel[1].square()).sqrt()
    seeds = rims & (across >= MIN_TRAVEL) & (across >= ACROSS * distance) \
        & (across * strength > SEED_SIGMAS * gradient_noise * distance)
    apart = unexplained(y[0], y[-1], motion) > EXPLAINED_SIGMAS * math.sqrt(2) * sigma
    seeds &= apart
    return {"rims": rims, "seeds": seeds, "low": low, "high": high, "mean": mean, "apart": apart}


def unexplained(first: torch.Tensor, last: torch.Tensor, motion: Motion) -> torch.Tensor:
    """[h,w] how far luma `last` [h,w] is from `first` carried by the picture's motion, at the best of the 3 x 3
    pixels around (the motion is known to about a pixel): small wherever the picture's motion explains it."""
    predicted = F.pad(predict(first, last, motion)[None, None], (1, 1, 1, 1), mode="replicate")[0, 0]
    h, w = last.shape
    return torch.stack([(last - predicted[dy:dy + h, dx:dx + w]).abs() for dy in range(3) for dx in range(3)]).amin(0)


def _shifted(values: torch.Tensor, step: torch.Tensor) -> torch.Tensor:
    """values [h,w] read at each pixel + step [2,h,w] (x, y whole px), clamped to the picture."""
    h, w = values.shape
    ys = (torch.arange(h)[:, None] + step[1]).clamp(0, h - 1)
    xs = (torch.arange(w)[None] + step[0]).clamp(0, w - 1)
    return values[ys, xs]


def typical_motion(pairs: list[Motion]) -> Motion:
    """The motion over a run: its pairs' median motion, once per pair (a pair where an overlay appears or a
    flash goes off fits badly, and a sum would keep its error)."""
    middle = Motion(*(sorted(values)[len(values) // 2] for values in zip(*((m.scale, m.dx, m.dy) for m in pairs))))
    motion = Motion()
    for _ in pairs:
        motion = motion.then(middle)
    return motion


class Evidence(NamedTuple):
    """What the runs that hold a frame say of each pixel, [h,w] each (bool but spread)."""
    seeds: torch.Tensor  # rims the picture moved across during a run, not explained by its motion
    rims: torch.Tensor
    seen: torch.Tensor  # seeds the frame shows: its pixel stays put, or its gradient points the run's mean way
    drawn: torch.Tensor  # rims whose gradient in the frame points the run's mean way
    put: torch.Tensor  # pixels that stay put over a run (the frame's luma within noise of its range)
    apart: torch.Tensor  # pixels whose change over a run the picture's motion does not explain
    spread: torch.Tensor  # float: each pixel's least luma range over a run

    def crop(self, y0: int, y1: int, x0: int, x1: int) -> "Evidence":
        """The evidence of rows y0..y1 - 1 and columns x0..x1 - 1."""
        return Evidence(*(t[y0:y1, x0:x1] for t in self))


def shape(evidence: Evidence, picture: torch.Tensor) -> torch.Tensor:
    """[h,w] bool overlay regions of a frame: the rims connected to MIN_SEEDS seeds or more, most of them seen in
    the frame's own picture [h,w] (an overlay that has not appeared yet is not), gaps up to 2 x BRIDGE bridged,
    enclosed holes filled (narrow ones where a pixel stays put or the picture's motion does not explain it), the
    outermost pixel kept where the edge lies outside it, and beside an opaque overlay only what stays put, what it
    encloses and what it covers most of; specks (under MIN_AREA) are not regions."""
    seen = evidence.seen
    if int(seen.sum()) < MIN_SEEDS:
        return torch.zeros_like(picture, dtype=torch.bool)
    rows, cols = seen.any(1).nonzero().flatten(), seen.any(0).nonzero().flatten()
    margin = max(picture.shape) // 8  # a region reaches this far from its seen seeds at most (work on that part)
    y0, y1 = max(0, int(rows[0]) - margin), min(picture.shape[0], int(rows[-1]) + margin + 1)
    x0, x1 = max(0, int(cols[0]) - margin), min(picture.shape[1], int(cols[-1]) + margin + 1)
    found = torch.zeros_like(picture, dtype=torch.bool)
    found[y0:y1, x0:x1] = _regions(evidence.crop(y0, y1, x0, x1), picture[y0:y1, x0:x1],
                                   MIN_AREA * picture.numel(), LARGE_HOLE * picture.numel())
    return found


def _regions(evidence: Evidence, picture: torch.Tensor, min_area: float, large_hole: float) -> torch.Tensor:
    """shape() on a part of the frame."""
    seeds, put = evidence.seeds, evidence.put
    connected = seeds | evidence.rims
    labels = components(connected) + 1
    count = torch.bincount(labels[seeds], minlength=labels.numel() + 1)
    count_seen = torch.bincount(labels[evidence.seen], minlength=labels.numel() + 1)
    area = torch.bincount(labels[connected], minlength=labels.numel() + 1)
    kept = (count_seen >= MIN_SEEDS) & (count_seen >= SEEN_SHARE * count) & (area >= min_area)
    region = kept[labels] & connected
    unseen = (count_seen >= MIN_SEEDS) & ~kept & (area >= min_area)
    if bool(unseen.any()):  # another overlay, not shown yet, may touch one that is: their drawn parts alone
        region |= _shown_parts(seeds, evidence.drawn & unseen[labels] & connected, min_area)
    bridged = region | shrink(grow(region, BRIDGE), BRIDGE)
    holes, hole_area = enclosed(bridged)
    # a bridge or a small hole (between two subtitle lines, inside a letter) is kept only where it stays put or
    # the picture's motion does not explain it; a large hole (inside a logo's plate) is kept whole
    large = holes & (hole_area >= large_hole)
    filled = trim_edges(region | large | (bridged | holes) & (put | evidence.apart), picture)
    # an opaque overlay stays put where a semi-transparent one changes with the picture beneath it
    opaque = kept & (torch.bincount(labels[seeds & put], minlength=labels.numel() + 1) >= OPAQUE * count)
    core = filled & put & grow(opaque[labels] & connected, BRIDGE)
    region = _beside(filled, core, put | large, evidence.spread)
    return drop_specks(region, max(12, round(min_area)))  # bits a bridge or a trim left on their own


def _shown_parts(seeds: torch.Tensor, shown: torch.Tensor, min_area: float) -> torch.Tensor:
    """[h,w] bool the parts of rims shown in the frame (shown [h,w] bool) that hold PART_SEEDS seeds [h,w] or more,
    most of them (SEEN_SHARE) among the seeds they touch (bits of an overlay shown by chance before it appears
    touch many that are not)."""
    labels = components(shown) + 1
    touching = square_max(labels, 1)  # a seed next to a part counts for it (for the larger label, if two)
    count_seen = torch.bincount(labels[seeds & shown], minlength=labels.numel() + 1)
    count = torch.bincount(touching[seeds], minlength=labels.numel() + 1)
    area = torch.bincount(labels[shown], minlength=labels.numel() + 1)
    kept = (count_seen >= PART_SEEDS) & (count_seen >= SEEN_SHARE * count) & (area >= min_area)
    kept[0] = False
    return kept[labels]


def _beside(filled: torch.Tensor, core: torch.Tensor, kept: torch.Tensor, spread: torch.Tensor) -> torch.Tensor:
    """filled [h,w] bool without the picture beside an opaque overlay's pixels that stay put (core): within PEEL px
    of them only what `kept` marks or they enclose is left (not the dark picture around a subtitle's black outline
    or between its lines), and then the pixels next to it that the overlay covers most of (whose luma `spread`
    over a run is under COVERED x the picture's beside them: an outline's soft edge)."""
    peeled = filled & (kept | enclosed(core)[0] | ~grow(core, PEEL))
    beside = square_max(torch.where(peeled, 0, spread), 2)
    return peeled | filled & grow(peeled, 1) & (spread <= COVERED * beside)


# ----------------------------------------------------------------------------------------------- a clip

class OverlayFinder:
    """The detected overlays as a protect policy (emavfi.protect.RegionPolicy): each frame's evidence and each
    run's computed once, each decision from its fixed window of CONTEXT frames, so a frame is decided the same in
    any batch, task or worker. seen(j, mask [H,W] bool) is called once per decided frame; `found` keeps, for
    each decided frame with an overlay, its bounding box (x0, y0, x1, y1) in px (x1, y1 exclusive)."""

    def __init__(self, n: int, seen: Callable[[int, torch.Tensor], None] | None = None):
        self.n, self.seen = n, seen
        self.decided: set[int] = set()
        self.found: dict[int, tuple[int, int, int, int]] = {}
        self._frame: dict[int, tuple[torch.Tensor, torch.Tensor, float]] = {}  # luma, gradients, noise
        self._motion: dict[int, Motion] = {}  # pair k: frame k to frame k + 1
        self._scores: dict[int, float] = {}
        self._runs: dict[int, dict[str, torch.Tensor]] = {}

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32 (0 or 1): the overlays of frames lo..hi (frames: an engine.Frames)."""
        return self.found_masks(frames, lo, hi).float()

    def found_masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """masks() as [hi - lo + 1, H, W] bool."""
        self._analyse(frames, max(0, lo - CONTEXT), min(self.n - 1, hi + CONTEXT))
        small = torch.stack([self._decide(j) for j in range(lo, hi + 1)])
        masks = full_size(small, tuple(frames.size))
        factor, (height, width) = analysis_factor(*frames.size), tuple(frames.size)
        for j, mask, reduced in zip(range(lo, hi + 1), masks, small):
            if j not in self.decided:
                self.decided.add(j)
                if bool(reduced.any()):  # each analysis pixel stands for a block of factor x factor
                    rows, cols = reduced.any(1).nonzero().flatten(), reduced.any(0).nonzero().flatten()
                    x1, y1 = (int(cols[-1]) + 1) * factor, (int(rows[-1]) + 1) * factor
                    self.found[j] = (int(cols[0]) * factor, int(rows[0]) * factor, min(width, x1), min(height, y1))
                if self.seen is not None:
                    self.seen(j, mask)
        for cache in (self._frame, self._motion, self._scores, self._runs):
            for old in [k for k in cache if k < lo - CONTEXT]:
                del cache[old]
        return masks

    def _analyse(self, frames: Any, lo: int, hi: int) -> None:
        missing = [j for j in range(lo, hi + 1) if j not in self._frame]
        # Pairs let go of with an earlier frame (a read going back, as a VapourSynth seek does) are made again.
        pairs = [p for p in range(lo, hi) if p not in self._scores or p not in self._motion]
        if not missing and not pairs:
            return
        ends = [end for j in missing for end in (j - 1, j)] + [end for p in pairs for end in (p, p + 1)]
        start, stop = max(min(ends), 0), max(ends)  # a frame's pair with the one before needs that one too
        chunk = getattr(frames, "peek", frames.get)(start, stop)  # ahead of the engine's windows: not one
        y = lumas(chunk)
        noise, g = noise_levels(y), gradients(y)
        scores = cuts.cut_scores(chunk) if chunk.shape[0] > 1 else torch.zeros(0)
        damaged = getattr(frames, "damaged", {})
        for offset, j in enumerate(range(start, stop + 1)):
            self._frame.setdefault(j, (y[offset], g[offset], float(noise[offset])))
        for offset, score in enumerate(scores.tolist()):
            pair = start + offset  # a damaged frame stands in as black: not a cut (as engine.CutFinder)
            self._scores.setdefault(pair, 0.0 if pair in damaged or pair + 1 in damaged else score)
        for pair in range(start, stop):
            if pair not in self._motion:
                (a, _, noise_a), (b, _, noise_b) = self._frame[pair], self._frame[pair + 1]
                self._motion[pair] = estimate(a, b, max(noise_a, noise_b))

    def _run(self, start: int) -> dict[str, torch.Tensor]:
        """The evidence of the run of frames start .. start + RUN (computed once)."""
        if start not in self._runs:
            frames = [self._frame[k] for k in range(start, start + RUN + 1)]
            motion = typical_motion([self._motion[pair] for pair in range(start, start + RUN)])
            sigma = sorted(noise for _, _, noise in frames)[len(frames) // 2]
            if motion == Motion():  # under a pixel a frame looks still; over the run it may not be
                motion = estimate(frames[0][0], frames[-1][0], sigma)
            self._runs[start] = run_evidence(torch.stack([y for y, _, _ in frames]),
                                             torch.stack([g for _, g, _ in frames]), sigma, motion)
        return self._runs[start]

    def _decide(self, j: int) -> torch.Tensor:
        """The analysis-size mask of frame j, from frames j - CONTEXT .. j + CONTEXT only."""
        first, last = max(0, j - CONTEXT), min(self.n - 1, j + CONTEXT)
        scores = torch.tensor([self._scores[p] for p in range(first, last)], dtype=torch.float32)
        found = [first + i for i in cuts.decide_cuts(scores)] if scores.numel() else []
        lo = max([i + 1 for i in found if i < j] + [max(0, j - RUN)])
        hi = min([i for i in found if i >= j] + [min(self.n - 1, j + RUN)])
        y, g, noise = self._frame[j]
        seeds = rims = seen = drawn = put = apart = torch.zeros(y.shape, dtype=torch.bool)
        spread = torch.full(y.shape, math.inf)
        tolerance = STABLE_SIGMAS * math.sqrt(2) * noise
        for start in range(lo, hi - RUN + 1):
            run = self._run(start)
            stays = (run["high"] - y <= tolerance) & (y - run["low"] <= tolerance)
            agrees = (g * run["mean"]).sum(0) >= SHOWN * run["mean"].square().sum(0)  # in frame j itself
            seeds, rims = seeds | run["seeds"], rims | run["rims"]
            seen, drawn = seen | run["seeds"] & (stays | agrees), drawn | run["rims"] & agrees
            put, apart = put | stays, apart | run["apart"]
            spread = torch.minimum(spread, run["high"] - run["low"])
        return shape(Evidence(seeds, rims, seen, drawn, put, apart, spread), y)


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
    return OverlayFinder(frames.shape[0]).found_masks(_TensorFrames(frames), 0, frames.shape[0] - 1)


def full_size(masks: torch.Tensor, size: tuple[int, int] | torch.Size) -> torch.Tensor:
    """[N,H,W] bool: analysis-size masks [N,h,w] brought to the frames' size (each pixel takes its block's)."""
    factor = analysis_factor(*size)
    if factor == 1:
        return masks
    big = masks.repeat_interleave(factor, 1).repeat_interleave(factor, 2)
    return big[:, :size[0], :size[1]].contiguous()
