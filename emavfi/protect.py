"""Held regions: where a mask is set, an in-between frame shows the nearest source frame instead of the network's.

A `RegionPolicy` says which pixels of source frames lo..hi are held ([K,H,W] float 0..1, like a cut policy it
decides from fixed windows): a user's mask (`TensorMasks`: one per input frame or one for all; the CLI reads
files into it, emavfi.mask_files), the detected burned-in overlays (emavfi.overlays.OverlayFinder), or both
(`HeldRegions`, which also feathers the edge). emavfi.engine.run applies it where an in-between frame is emitted
(`hold`): the frame between source frames i and i + 1 at time t is held where either frame's mask is set, and
takes its pixels there from frame i when t <= 1/2, else from frame i + 1. Inside (mask 1) the result equals that
source frame exactly; where the mask is 0, beyond the feather, it is the network's frame bit for bit. Every
channel is held alike (alpha, mattes, HDR values). Copies of source frames (t = 0, scene cuts) are untouched.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol

import torch
import torch.nn.functional as F

from .settings import DEFAULT_PROTECT_FEATHER, check_feather

if TYPE_CHECKING:
    from .overlays import OverlayFinder
    from .schedule import OutputFrame


HALF = Fraction(1, 2)
Box = tuple[int, int, int, int]  # a bounding box in px: x0, y0, x1, y1 (x1, y1 exclusive)


class RegionPolicy(Protocol):
    """Which pixels of source frames are held."""

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32 in 0..1 (1 = held) for source frames lo..hi (timeline indices)."""
        ...


def feather(masks: torch.Tensor, px: int) -> torch.Tensor:
    """masks [K,H,W] 0..1 with their edge blended outwards over px pixels: held pixels stay exactly 1, a pixel d px
    outside gets at most 1 - d / (px + 1) (chamfer distance), and pixels farther than px stay as they were."""
    if px == 0 or not bool((masks > 0).any()):
        return masks
    step, diagonal = 1.0 / (px + 1), 1.4142135623730951 / (px + 1)
    out = masks[:, None]
    for _ in range(px):
        padded = F.pad(out, (1, 1, 1, 1))
        h, w = out.shape[-2:]
        straight = torch.maximum(torch.maximum(padded[..., :-2, 1:-1], padded[..., 2:, 1:-1]),
                                 torch.maximum(padded[..., 1:-1, :-2], padded[..., 1:-1, 2:]))
        corner = torch.maximum(torch.maximum(padded[..., :-2, :-2], padded[..., :-2, 2:]),
                               torch.maximum(padded[..., 2:, :-2], padded[..., 2:, 2:]))
        out = torch.maximum(out, torch.maximum(straight - step, corner - diagonal).clamp(min=0)[..., :h, :w])
    return out[:, 0]


def hold(image: torch.Tensor, window: torch.Tensor, masks: torch.Tensor, pair: int, t: Fraction) -> torch.Tensor:
    """image [C,H,W], the in-between frame of local pair `pair` at t, held where masks [K,H,W] of window [K,C,H,W]
    (the batch's source frames) are set: the nearer source frame's pixels (the earlier on a tie)."""
    weight = torch.maximum(masks[pair], masks[pair + 1])
    if not bool((weight > 0).any()):
        return image
    nearest = window[pair + int(t > HALF)].to(image.dtype)
    if nearest.shape[0] != image.shape[0]:  # a runtime that makes RGB only of an RGBA window
        nearest = nearest[:image.shape[0]]
    blended = torch.lerp(image, nearest, weight.to(image.dtype)[None])
    inside, outside = (weight >= 1)[None], (weight <= 0)[None]
    return torch.where(inside, nearest, torch.where(outside, image, blended))


class TensorMasks:
    """Masks given as a tensor: [N,H,W] (one per input frame) or [1,H,W] / [H,W] (one for the whole shot), 0..1.

    index: the input frame of each timeline frame (default the same; with held-frame dedupe, the kept ones).
    """

    def __init__(self, masks: torch.Tensor, index: Callable[[int], int] | None = None):
        masks = check_masks(masks)
        self.given, self.index = masks, index or (lambda j: j)

    def masks_for(self, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32 of timeline frames lo..hi."""
        if self.given.shape[0] == 1:
            return self.given.expand(hi - lo + 1, -1, -1)
        return torch.stack([self.given[self.index(j)] for j in range(lo, hi + 1)])

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """The masks of timeline frames lo..hi, checked against the frames' size."""
        check_size(tuple(self.given.shape[-2:]), tuple(frames.size), "the mask")
        return self.masks_for(lo, hi)


def check_masks(masks: object) -> torch.Tensor:
    """masks as float32 [N,H,W] in 0..1 on the CPU, or a one-line ValueError."""
    if not isinstance(masks, torch.Tensor) or masks.dim() not in (2, 3) or masks.numel() == 0:
        got = list(masks.shape) if isinstance(masks, torch.Tensor) else type(masks).__name__
        raise ValueError(f"a protect mask must be a tensor [N,H,W] or [H,W] (0..1, 1 = held); got {got}")
    masks = masks.detach().to("cpu", torch.float32)
    masks = masks[None] if masks.dim() == 2 else masks
    return masks.nan_to_num(0.0).clamp(0, 1)


def check_size(mask: tuple[int, ...], frames: tuple[int, ...], what: str) -> None:
    """A one-line ValueError when a mask's (H, W) is not the frames'."""
    if tuple(mask) != tuple(frames):
        raise ValueError(f"{what} is {mask[1]}x{mask[0]} but the frames are {frames[1]}x{frames[0]}: "
                         "give a mask of the frames' size")


class HeldRegions:
    """The engine's `protect`: the union of several policies (user masks, detected overlays), feathered."""

    def __init__(self, policies: Sequence[RegionPolicy], feather_px: int = DEFAULT_PROTECT_FEATHER):
        self.policies, self.feather_px = list(policies), check_feather(feather_px)

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32: the policies' masks, the largest of each pixel, feathered."""
        union = None
        for policy in self.policies:
            found = policy.masks(frames, lo, hi)
            union = found if union is None else torch.maximum(union, found)
        if union is None:
            return torch.zeros(hi - lo + 1, *frames.size)
        return feather(union, self.feather_px)


def held_regions(n: int, mask: torch.Tensor | None = None, *, overlays: bool = False,
                 feather_px: int = DEFAULT_PROTECT_FEATHER, index: Callable[[int], int] | None = None,
                 overlays_seen: Callable[[int, torch.Tensor], None] | None = None) -> HeldRegions | None:
    """The `protect` policy for a clip of n timeline frames: a mask tensor ([N,H,W] one per input frame, or
    [H,W] / [1,H,W] for all), the detected burned-in overlays, or both; None when neither is asked for.

    overlays_seen(j, mask [H,W] bool) is called once for each frame whose overlays were decided (e.g. to write
    or return the detected masks).
    """
    policies: list[RegionPolicy] = []
    if mask is not None:
        tensor = check_masks(mask)
        if tensor.shape[0] not in (1, n) and index is None:
            raise ValueError(f"give one protect mask per input frame ({n}) or one for all; got {tensor.shape[0]}")
        policies.append(TensorMasks(tensor, index))
    if overlays:
        from .overlays import OverlayFinder

        policies.append(OverlayFinder(n, seen=overlays_seen))
    return HeldRegions(policies, feather_px) if policies else None


# ----------------------------------------------------------------------------------------------- detected overlays

def share_of(plan: Sequence[OutputFrame], outputs: Iterable[int], n: int) -> list[int]:
    """The source frames (ascending) whose overlays a run of these outputs reports: each source frame belongs to
    the first output at or after it in time (those after the last output: the last output), so the tasks of a
    shot share out its frames, each to one task, and a whole run has them all. plan: in time order."""
    times = [frame.source + frame.t for frame in plan]
    share: list[int] = []
    for k in sorted(set(outputs)):
        first = 0 if k == 0 else math.floor(times[k - 1]) + 1
        last = n - 1 if k == len(plan) - 1 else math.floor(times[k])
        share.extend(range(first, min(last, n - 1) + 1))
    return share


def decide_spans(finder: OverlayFinder, frames: Any, missing: Sequence[int]) -> None:
    """Have `finder` decide the frames `missing` (ascending), each span of consecutive frames at once."""
    start = 0
    for k in range(1, len(missing) + 1):
        if k == len(missing) or missing[k] != missing[k - 1] + 1:
            finder.masks(frames, missing[start], missing[k - 1])
            start = k


def decide_overlays(frames: Any, missing: Sequence[int], seen: Callable[[int, torch.Tensor], None]) -> None:
    """seen(j, mask [H,W] bool) for each frame j of `missing` (ascending) that a run left undecided (a retime that
    skips frames reads no window there), by a finder of its own going forward: the run's has let go of the
    evidence behind its last window. frames: an engine.Frames over the clip (or the frames carried so far)."""
    from .overlays import OverlayFinder

    decide_spans(OverlayFinder(frames.count, seen=seen), frames, missing)


class OverlayShare:
    """The detected overlays (emavfi.overlays.OverlayFinder) as the engine's protect policy of a run that reports
    the source frames `share` (share_of): frames of the share no device batch reads (a retime to fewer frames
    skips pairs) are decided too, before the next batch and by `finish`, so the finder only ever reads forward.
    seen(j, mask [H,W] bool) is called once for each frame of the share; `decisions` are the share's boxes."""

    def __init__(self, n: int, share: Iterable[int], seen: Callable[[int, torch.Tensor], None] | None = None):
        from .overlays import OverlayFinder

        self.share = sorted(set(share))
        self._owned, self._seen, self._next = set(self.share), seen, 0
        self.finder = OverlayFinder(n, seen=self._note)

    def _note(self, j: int, mask: torch.Tensor) -> None:
        if self._seen is not None and j in self._owned:
            self._seen(j, mask)

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32: the overlays of frames lo..hi, once the share's frames before lo are decided."""
        self._catch_up(frames, lo)
        return self.finder.masks(frames, lo, hi)

    def finish(self, frames: Any) -> None:
        """Decide the share's frames that no batch read (call once the run is done, with its frames)."""
        self._catch_up(frames, self.finder.n)

    def _catch_up(self, frames: Any, before: int) -> None:
        start = self._next
        while self._next < len(self.share) and self.share[self._next] < before:
            self._next += 1
        decide_spans(self.finder, frames, [j for j in self.share[start:self._next] if j not in self.finder.decided])

    @property
    def decisions(self) -> dict[int, Box | None]:
        """Each decided frame of the share -> the bounding box of its overlays, or None when it has none."""
        return {j: self.finder.found.get(j) for j in self.share if j in self.finder.decided}


def describe_overlays(decided: Mapping[int, Box | None]) -> str:
    """The run summary of detected overlays: decided frames (frame number -> bounding box or None) -> one line."""
    found = {number: box for number, box in decided.items() if box is not None}
    if not found:
        return f"no burned-in overlays found in {len(decided)} source frames"
    x0, y0 = min(box[0] for box in found.values()), min(box[1] for box in found.values())
    x1, y1 = max(box[2] for box in found.values()), max(box[3] for box in found.values())
    return (f"overlays held in {len(found)} of {len(decided)} source frames, within x {x0}-{x1 - 1}, y {y0}-{y1 - 1} "
            f"(frames {min(found)}-{max(found)})")
