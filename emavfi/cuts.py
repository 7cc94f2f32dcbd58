"""Hard scene-cut detection: motion-compensated thumbnail differences judged against their neighbours.

Each frame becomes a small thumbnail (about THUMBNAIL px on the long side) in luma + opponent chroma. For
each consecutive pair, every BLOCK x BLOCK block of the later thumbnail looks for its best match in the
earlier one within +-SEARCH px, after a global gain that undoes exposure steps, so pans, zooms and rotation
find their content again. The pair's evidence is the median block mismatch relative to the picture's
contrast: a cut replaces (nearly) every block, a hand over the lens or content entering at an edge only
some. A pair is a cut when its evidence stands out from the pairs within CUT_CONTEXT of it.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F

from .settings import DEFAULT_CUT_THRESHOLD  # the user's default; a cut: evidence > it x max(typical, EVIDENCE_FLOOR)

CUT_CONTEXT = 6
"""K: the decision for pair i (frames i, i+1) reads only frames max(0, i-K) .. min(n-1, i+1+K)."""

THUMBNAIL = 64  # long side of the analysis thumbnail, px
BLOCK = 8  # matching block, thumbnail px
SEARCH = 4  # motion search radius, thumbnail px: 6 % of the long side per frame
EVIDENCE_FLOOR = 0.12  # still and slow shots with sensor noise score below this
NEIGHBOUR_QUANTILE = 0.7  # "typical" sits above the median, so the onset of fast motion is typical too
BLOCK_QUANTILE = 0.5  # at least half of the picture must change
CONTRAST_FLOOR = 0.04  # luma std below which a picture counts as flat (noise is not contrast)
MAX_GAIN = 1.6  # largest exposure change undone between two frames (about 2/3 of a stop)
PIXELS_PER_BATCH = 1 << 23  # full-resolution pixels thumbnailed at once
# Thumbnail values scored at once: below PyTorch's grain size (32768) its operations run in the calling thread.
# A parallel region per small operation made scoring 20 to 200 times slower while a render's reading and writing
# threads kept the cores busy (each region waits for a core to come free).
SERIAL_VALUES = 1 << 15


def _check_frames(frames: torch.Tensor) -> None:
    """Raise TypeError/ValueError with one-line messages for anything but float [N,C>=3,H,W]."""
    if not isinstance(frames, torch.Tensor):
        raise TypeError(f"frames must be a torch.Tensor [N,C,H,W]; got {type(frames).__name__}")
    if frames.dim() != 4 or frames.shape[1] < 3 or frames.shape[2] < 1 or frames.shape[3] < 1:
        raise ValueError(f"frames must be [N,C>=3,H,W] with RGB first; got shape {list(frames.shape)}")
    if not frames.is_floating_point():
        raise TypeError(f"frames must be a float tensor (0..1, HDR above 1 allowed); got {frames.dtype}")


def check_threshold(threshold: float) -> float:
    """threshold as a float, or a one-line ValueError naming the bad value."""
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or threshold < 0:
        raise ValueError(f"cut threshold must be a finite number >= 0 (0 disables detection); got {threshold!r}")
    return float(threshold)


def thumbnail_size(height: int, width: int) -> tuple[int, int]:
    """(h, w) of the analysis thumbnail: about THUMBNAIL px on the long side, both multiples of BLOCK."""
    shrink = THUMBNAIL / max(height, width)
    return BLOCK * max(1, round(height * shrink / BLOCK)), BLOCK * max(1, round(width * shrink / BLOCK))


def thumbnails(frames: torch.Tensor) -> torch.Tensor:
    """[N,3,h,w] float32 luma + opponent chroma of frames [N,C,H,W] (RGB first), area-averaged.

    Values above 1 (HDR highlights) are compressed logarithmically; 0..1 passes through unchanged.
    """
    _check_frames(frames)
    n, _, height, width = frames.shape
    size = thumbnail_size(height, width)
    # Box-average by a whole factor first (a reshape: several times faster than adaptive pooling), then area.
    factor = max(1, min(height // size[0], width // size[1]))
    h, w = height // factor, width // factor
    step = max(1, PIXELS_PER_BATCH // (height * width))
    out = []
    for start in range(0, n, step):
        rgb = frames[start:start + step, :3, :h * factor, :w * factor]
        rgb = rgb.reshape(rgb.shape[0], 3, h, factor, w, factor).mean(dim=(3, 5), dtype=torch.float32)
        rgb = F.interpolate(rgb, size=size, mode="area").nan_to_num(0.0, posinf=1e4, neginf=0.0)
        rgb = rgb.clamp(max=1) + rgb.clamp(min=1).log()
        r, g, b = rgb.unbind(1)
        luma = 0.299 * r + 0.587 * g + 0.114 * b
        out.append(torch.stack([luma, 0.5 * (b - luma), 0.5 * (r - luma)], 1))
    return torch.cat(out) if out else torch.zeros(0, 3, *size)


def _soften(thumbs: torch.Tensor) -> torch.Tensor:
    """thumbs [B,C,h,w] under a [1,2,1]/4 blur, so fine texture moving by sub-pixel steps still matches."""
    rows = _replicate(thumbs, 1, -1)
    rows = 0.25 * rows[..., :-2] + 0.5 * rows[..., 1:-1] + 0.25 * rows[..., 2:]
    both = _replicate(rows, 1, -2)
    return 0.25 * both[..., :-2, :] + 0.5 * both[..., 1:-1, :] + 0.25 * both[..., 2:, :]


def _replicate(x: torch.Tensor, px: int, dim: int) -> torch.Tensor:
    """x with its first and last rows or columns (dim -2 or -1) repeated px times outside."""
    size = x.shape[dim]
    return torch.cat([x.narrow(dim, 0, 1).repeat_interleave(px, dim), x,
                      x.narrow(dim, size - 1, 1).repeat_interleave(px, dim)], dim)


def _block_means(x: torch.Tensor) -> torch.Tensor:
    """[B,h/BLOCK,w/BLOCK] means of the BLOCK x BLOCK blocks of x [B,h,w] (h, w multiples of BLOCK)."""
    b, h, w = x.shape
    return x.view(b, h // BLOCK, BLOCK, w // BLOCK, BLOCK).mean(dim=(2, 4))


def _gain(earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
    """[B] exposure gain taking later's luma to earlier's: the median ratio of block means, within MAX_GAIN."""
    eps = 1e-3
    ratio = (_block_means(earlier[:, 0]) + eps).log() - (_block_means(later[:, 0]) + eps).log()
    return ratio.flatten(1).median(dim=1).values.clamp(-math.log(MAX_GAIN), math.log(MAX_GAIN)).exp()


def _block_mismatch(earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
    """[B,blocks] mean |difference| of each block of later [B,3,h,w] to its best match in earlier."""
    h, w = later.shape[-2:]
    padded = _replicate(_replicate(earlier, SEARCH, -1), SEARCH, -2)
    best = None
    for dy in range(2 * SEARCH + 1):
        for dx in range(2 * SEARCH + 1):
            block = _block_means((later - padded[..., dy:dy + h, dx:dx + w]).abs().sum(dim=1))
            best = block if best is None else torch.minimum(best, block)
    return best.flatten(1)


def _pair_scores(earlier: torch.Tensor, later: torch.Tensor) -> torch.Tensor:
    """[B] evidence that thumbnails later [B,3,h,w] start a new shot after earlier [B,3,h,w]."""
    earlier, later = _soften(earlier), _soften(later)
    later = later * _gain(earlier, later).view(-1, 1, 1, 1)
    contrast = 0.5 * (earlier[:, 0].flatten(1).std(dim=1) + later[:, 0].flatten(1).std(dim=1))
    mismatch = _block_mismatch(earlier, later).quantile(BLOCK_QUANTILE, dim=1)
    return mismatch / contrast.clamp(min=CONTRAST_FLOOR)


def cut_scores(frames: torch.Tensor) -> torch.Tensor:
    """[N-1] float32 cut evidence per pair of frames [N,C,H,W] (float, RGB first, 0..1 or HDR), on CPU.

    Units: median block mismatch / luma contrast. Motion and noise score about 0.02-0.4, cuts 0.5-5. The
    score of pair i reads frames i and i+1 only; memory beyond the input is thumbnails (~50 KB a frame).
    """
    return thumbnail_scores(thumbnails(frames))


def thumbnail_scores(thumbs: torch.Tensor) -> torch.Tensor:
    """[N-1] cut evidence per pair of thumbnails [N,3,h,w] (from `thumbnails`, made once per frame): cut_scores
    without the frames."""
    pairs = thumbs.shape[0] - 1
    if pairs < 1:
        return torch.zeros(0)
    scores = []
    step = max(1, SERIAL_VALUES // thumbs[0].numel())
    for start in range(0, pairs, step):
        stop = min(start + step, pairs)
        scores.append(_pair_scores(thumbs[start:stop], thumbs[start + 1:stop + 1]))
    return torch.cat(scores)


def local_baseline(scores: torch.Tensor) -> torch.Tensor:
    """[P] float64 typical evidence around each pair: a quantile of the other scores within CUT_CONTEXT (0 if none)."""
    if scores.numel() < 2:
        return torch.zeros(scores.numel(), dtype=torch.float64)
    padded = F.pad(scores.double()[None], (CUT_CONTEXT, CUT_CONTEXT), value=math.nan)[0]
    windows = padded.unfold(0, 2 * CUT_CONTEXT + 1, 1).clone()  # [P, 2K+1], the pair itself at K
    windows[:, CUT_CONTEXT] = math.nan
    return windows.nanquantile(NEIGHBOUR_QUANTILE, dim=1)


def decide_cuts(scores: torch.Tensor, threshold: float = DEFAULT_CUT_THRESHOLD) -> list[int]:
    """Indices of scores [P] (from cut_scores) above threshold x max(local_baseline, EVIDENCE_FLOOR)."""
    threshold = check_threshold(threshold)
    if threshold == 0 or scores.numel() == 0:
        return []
    bar = threshold * local_baseline(scores).clamp(min=EVIDENCE_FLOOR)
    return torch.nonzero(scores.double() > bar).flatten().tolist()


def detect_cuts(frames: torch.Tensor, threshold: float = DEFAULT_CUT_THRESHOLD) -> list[int]:
    """Local pair indices i (frames i, i+1) of frames [N,C,H,W] judged hard cuts; threshold 0 disables.

    frames: float on CPU, RGB first (alpha and other channels ignored), 0..1 or HDR above 1, any size.
    threshold: see DEFAULT_CUT_THRESHOLD. The decision for pair i reads only frames within CUT_CONTEXT pairs
    of it, so any slice of the clip holding frames max(0, i-K) .. min(N-1, i+1+K) decides pair i the same.
    """
    _check_frames(frames)
    if check_threshold(threshold) == 0:
        return []
    return decide_cuts(cut_scores(frames), threshold)


def describe_cuts(found: list[int] | tuple[int, ...], limit: int = 12) -> str:
    """Cut positions for a report: "12|13, 40|41" (pair i = frames i, i+1, 0-based), the first `limit` of them."""
    text = ", ".join(f"{i}|{i + 1}" for i in sorted(found)[:limit])
    return text + (f" and {len(found) - limit} more" if len(found) > limit else "")
