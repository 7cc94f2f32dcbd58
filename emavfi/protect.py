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

from collections.abc import Callable, Sequence
from fractions import Fraction
from typing import Any, Protocol

import torch
import torch.nn.functional as F

from .settings import DEFAULT_PROTECT_FEATHER, check_feather


HALF = Fraction(1, 2)


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
