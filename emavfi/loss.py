"""Training loss: Laplacian-pyramid L1 on the prediction plus half-weighted terms on both stage blends."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def _gauss_kernel(channels: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    taps = torch.tensor([1.0, 4.0, 6.0, 4.0, 1.0], device=device, dtype=dtype)
    kernel = torch.outer(taps, taps) / 256.0
    return kernel.expand(channels, 1, 5, 5).contiguous()


def _blur(x: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    return F.conv2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), kernel, groups=x.shape[1])


def laplacian_pyramid(img: torch.Tensor, levels: int = 5) -> list[torch.Tensor]:
    """Band-pass levels of `img` [B,C,H,W] (H, W divisible by 2**levels); the low-pass rest is dropped."""
    kernel = _gauss_kernel(img.shape[1], img.device, img.dtype)
    bands, current = [], img
    for _ in range(levels):
        down = _blur(current, kernel)[:, :, ::2, ::2]
        spread = torch.zeros_like(current)
        spread[:, :, ::2, ::2] = down
        bands.append(current - _blur(spread, 4 * kernel))
        current = down
    return bands


def laplacian_loss(pred: torch.Tensor, target: torch.Tensor, levels: int = 5) -> torch.Tensor:
    """Sum over pyramid levels of the mean absolute difference."""
    if pred.shape[-2] % 2 ** levels or pred.shape[-1] % 2 ** levels:
        raise ValueError(f"laplacian_loss needs H and W divisible by {2 ** levels}; got {list(pred.shape)}")
    return sum((a - b).abs().mean() for a, b in zip(laplacian_pyramid(pred, levels), laplacian_pyramid(target, levels)))


def training_loss(outputs: dict[str, object], target: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """Total loss and its unweighted terms [pred, stage-0 blend, stage-1 blend] for `EMAVFI.forward` outputs."""
    terms = [laplacian_loss(outputs["pred"], target)] + [laplacian_loss(m, target) for m in outputs["merged"]]
    return terms[0] + 0.5 * terms[1] + 0.5 * terms[2], terms
