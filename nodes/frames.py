"""Checks of ComfyUI IMAGE / MASK inputs, phrased in ComfyUI's terms (the node name, [B,H,W,C])."""
from __future__ import annotations

import torch


def _shape(x: object) -> str:
    return str(list(x.shape)) if isinstance(x, torch.Tensor) else type(x).__name__


def nonfinite_frames(x: torch.Tensor, batch: int = 16) -> list[int]:
    """Indices of frames holding NaN or Inf, checked a few frames at a time (a whole-clip mask would be big)."""
    bad: list[int] = []
    for start in range(0, x.shape[0], batch):
        finite = torch.isfinite(x[start:start + batch]).flatten(1).all(dim=1)
        bad += [start + int(i) for i in torch.nonzero(~finite).flatten().tolist()]
    return bad


def check_images(images: object, node: str, min_frames: int = 2) -> torch.Tensor:
    """images: IMAGE [B,H,W,C] float in 0..1, C = 3 (RGB) or 4 (RGBA), at least `min_frames` frames."""
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[-1] not in (3, 4):
        raise ValueError(f"{node}: images must be an IMAGE batch [frames, height, width, 3]; got {_shape(images)}")
    if not images.is_floating_point():
        raise ValueError(f"{node}: images must be float (0..1); got {images.dtype}")
    n = images.shape[0]
    if n < min_frames:
        raise ValueError(f"{node} needs at least {min_frames} frames to interpolate between; got {n}. "
                         "Feed a batch of frames (e.g. Load Video, or Image Batch of two images)")
    if images.shape[1] < 1 or images.shape[2] < 1:
        raise ValueError(f"{node}: images are empty: {_shape(images)}")
    bad = nonfinite_frames(images)
    if bad:
        raise ValueError(f"{node}: images contain NaN or Inf values (frames {bad[:5]}{'...' if len(bad) > 5 else ''}); "
                         "fix the node that produced them")
    return images


def check_mask(mask: object | None, images: torch.Tensor, node: str) -> torch.Tensor | None:
    """mask: MASK [B,H,W] (or [H,W] for one frame) float in 0..1 matching the images frame for frame."""
    if mask is None:
        return None
    if isinstance(mask, torch.Tensor) and mask.dim() == 2:
        mask = mask.unsqueeze(0)
    n, h, w = images.shape[:3]
    if not isinstance(mask, torch.Tensor) or mask.dim() != 3:
        raise ValueError(f"{node}: mask must be a MASK batch [frames, height, width]; got {_shape(mask)}")
    if tuple(mask.shape) != (n, h, w):
        raise ValueError(f"{node}: mask does not match the images: mask is {list(mask.shape)} "
                         f"[frames, height, width] but images are {n} frames of {h}x{w}. "
                         "Pass one mask per frame at the image size (resize or repeat the mask first)")
    if not mask.is_floating_point():
        raise ValueError(f"{node}: mask must be float (0..1); got {mask.dtype}")
    bad = nonfinite_frames(mask)
    if bad:
        raise ValueError(f"{node}: mask contains NaN or Inf values (frames {bad[:5]}{'...' if len(bad) > 5 else ''})")
    return mask
