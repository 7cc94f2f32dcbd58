"""Argument checks of the library's interpolate functions: one-line errors before any work."""
from __future__ import annotations

import math
from typing import Sequence

import torch

Timesteps = float | Sequence[float]


def check_image(name: str, img: object, hdr: bool = False) -> None:
    """img is a finite float tensor [B,3,H,W] with values in 0..1 (any values with hdr: mapped into range later)."""
    if not isinstance(img, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor [B,3,H,W]; got {type(img).__name__}")
    if not img.is_floating_point():
        raise TypeError(f"{name} must be a float tensor with values in 0..1; got {img.dtype} "
                        "(convert 8-bit images with img.float() / 255)")
    if img.dim() != 4 or img.shape[1] != 3:
        raise ValueError(f"{name} must have shape [B,3,H,W]; got {list(img.shape)} "
                         "(ComfyUI images are [B,H,W,C]: use img.movedim(-1, 1))")
    if img.shape[0] == 0 or img.shape[2] == 0 or img.shape[3] == 0:
        raise ValueError(f"{name} is empty: shape {list(img.shape)}")
    if not torch.isfinite(img).all():
        raise ValueError(f"{name} contains NaN or Inf values")
    if hdr:
        return
    lo, hi = img.min().item(), img.max().item()
    if lo < -1e-4 or hi > 1 + 1e-4:
        raise ValueError(f"{name} values must be in [0, 1]; got [{lo:.4g}, {hi:.4g}] (for HDR or linear-light "
                         "frames use emavfi.clips.interpolate_clip, which maps them into range and back)")


def check_aux(name: str, aux: object, like: torch.Tensor) -> None:
    """aux is a float tensor [B,K,H,W] matching `like` in batch and size."""
    if not isinstance(aux, torch.Tensor) or aux.dim() != 4 or aux.shape[0] != like.shape[0] \
            or aux.shape[2:] != like.shape[2:]:
        raise ValueError(f"{name} must be a tensor [B,K,H,W] matching {list(like.shape)}; "
                         f"got {list(aux.shape) if isinstance(aux, torch.Tensor) else type(aux).__name__}")
    if not torch.isfinite(aux).all():
        raise ValueError(f"{name} contains NaN or Inf values")


def check_frames(img0: torch.Tensor, img1: torch.Tensor, aux0: torch.Tensor | None, aux1: torch.Tensor | None,
                 hdr: bool = False) -> None:
    """Two frame batches of one shape, and their extra channels given together or not at all (hdr: see check_image)."""
    check_image("img0", img0, hdr)
    check_image("img1", img1, hdr)
    if img0.shape != img1.shape:
        raise ValueError(f"img0 and img1 must have the same shape; got {list(img0.shape)} and {list(img1.shape)}")
    if img0.dtype != img1.dtype or img0.device != img1.device:
        raise TypeError(f"img0 and img1 must share dtype and device; got {img0.dtype}/{img0.device} "
                        f"and {img1.dtype}/{img1.device}")
    if (aux0 is None) != (aux1 is None):
        raise ValueError("pass both aux0 and aux1, or neither")
    if aux0 is not None:
        check_aux("aux0", aux0, img0)
        check_aux("aux1", aux1, img0)
        if aux0.shape != aux1.shape:
            raise ValueError(f"aux0 and aux1 must have the same shape; got {list(aux0.shape)} and {list(aux1.shape)}")


def check_indices(first: object, second: object, n_frames: int, device: torch.device) -> tuple[torch.Tensor, ...]:
    """first/second as 1-D long tensors on `device`, same length >= 1, each an index into n_frames frames."""
    out = []
    for name, idx in (("first", first), ("second", second)):
        idx = torch.as_tensor(idx, device=device)
        if idx.dim() != 1 or idx.numel() == 0 or idx.is_floating_point() or idx.dtype == torch.bool:
            raise ValueError(f"{name} must be a non-empty 1-D sequence of frame indices; got {idx.tolist()!r}")
        if int(idx.min()) < 0 or int(idx.max()) >= n_frames:
            raise ValueError(f"{name} indices must be in 0..{n_frames - 1}; got {idx.tolist()}")
        out.append(idx.long())
    if out[0].numel() != out[1].numel():
        raise ValueError(f"first and second must have the same length; got {out[0].numel()} and {out[1].numel()}")
    return tuple(out)


def check_timesteps(timesteps: Timesteps) -> list[float]:
    """The timesteps as a non-empty list of floats in [0, 1]."""
    single = isinstance(timesteps, (int, float)) and not isinstance(timesteps, bool)
    if isinstance(timesteps, (str, bytes)):
        raise TypeError(f"timesteps must be a float or a sequence of floats; got {timesteps!r} "
                        "(parse strings with emavfi.schedule.parse_timesteps_exact)")
    if isinstance(timesteps, torch.Tensor):
        values = [float(v) for v in timesteps.reshape(-1).tolist()]
    elif single:
        values = [float(timesteps)]
    else:
        try:
            values = [float(v) for v in timesteps]
        except (TypeError, ValueError):
            raise TypeError(f"timesteps must be a float or a sequence of floats; got {timesteps!r}") from None
    if not values:
        raise ValueError("timesteps is empty; pass at least one t in [0, 1]")
    for t in values:
        if not math.isfinite(t) or not 0.0 <= t <= 1.0:
            raise ValueError(f"timesteps must be in [0, 1]; got {t}")
    return values



def check_model(model: object) -> None:
    """A one-line TypeError for anything but an EMA-VFI network (a common slip: None from a failed load)."""
    if not (isinstance(model, torch.nn.Module) or is_runtime(model)) or not hasattr(model, "config"):
        raise TypeError(f"model must be an EMA-VFI network from emavfi.load_model or emavfi.build_model; "
                        f"got {type(model).__name__}")


def is_runtime(model: object) -> bool:
    """A model compiled for a runtime (emavfi.backends.RuntimeModel): it runs its own graphs behind as_backend."""
    return not isinstance(model, torch.nn.Module) and callable(getattr(model, "as_backend", None))
