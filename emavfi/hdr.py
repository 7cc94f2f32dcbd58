"""The invertible tone curve that lets HDR (values above 1) pass through a network trained on 0..1."""
from __future__ import annotations

import torch

# Values up to the knee are fed to the network unchanged; only highlights above it are compressed.
HDR_KNEE = 0.5


def _hdr_curve(peak: torch.Tensor) -> tuple[float, torch.Tensor]:
    """(span above the knee, shoulder stiffness c per row [B,1,1,1]) of the curve that maps peak to 1."""
    span = 1 - HDR_KNEE
    reach = ((peak.clamp(min=1) - HDR_KNEE) / span).view(-1, 1, 1, 1)  # shoulder input at the peak
    return span, reach / (reach - 1).clamp(min=1e-12)  # c with reach / (1 + reach / c) == 1


def hdr_encode(x: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Map [0, peak] into [0, 1]: identity up to HDR_KNEE, then a Reinhard-style shoulder reaching 1 at peak.

    x: [B,C,H,W] float >= 0; peak: [B] float, each row's maximum (rows with peak <= 1 are left unchanged).
    The shoulder u / (1 + u / c) has slope 1 at the knee, so the curve is smooth, and is exactly invertible.
    """
    span, stiffness = _hdr_curve(peak)
    # In place on one working copy: the same operations, in the same order, as the formula above.
    u = x.sub(HDR_KNEE).div_(span).clamp_(min=0)
    shoulder = u.div(stiffness).add_(1)
    u.mul_(span).div_(shoulder).add_(HDR_KNEE)
    del shoulder
    torch.where(x > HDR_KNEE, u, x, out=u)
    u.clamp_(max=1)
    return _unchanged_rows(u, x, peak)


def hdr_decode(y: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Inverse of hdr_encode: [0, 1] back to [0, peak] (rows with peak <= 1 are left unchanged)."""
    span, stiffness = _hdr_curve(peak)
    g = y.sub(HDR_KNEE).div_(span).clamp_(0, 1)
    shoulder = g.div(stiffness).neg_().add_(1)  # 1 - g / c
    g.mul_(span).div_(shoulder).add_(HDR_KNEE)
    del shoulder
    torch.where(y > HDR_KNEE, g, y, out=g)
    return _unchanged_rows(g, y, peak)


def _unchanged_rows(mapped: torch.Tensor, x: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """mapped with the rows whose peak is at most 1 put back to x (they are not mapped)."""
    keep = peak <= 1
    if bool(keep.any()):
        mapped[keep] = x[keep]
    return mapped
