"""Backward warping: sample an image at pixel positions displaced by a flow field."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def base_grid(height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
    """Normalised sampling grid [1,2,H,W] (x then y), each axis linspace(-1, 1)."""
    gx = torch.linspace(-1.0, 1.0, width, device=device, dtype=torch.float32).view(1, 1, 1, width)
    gy = torch.linspace(-1.0, 1.0, height, device=device, dtype=torch.float32).view(1, 1, height, 1)
    return torch.cat([gx.expand(1, 1, height, width), gy.expand(1, 1, height, width)], 1).to(dtype)


def backward_warp(image: torch.Tensor, flow: torch.Tensor, grid: torch.Tensor | None = None) -> torch.Tensor:
    """Sample `image` [B,C,H,W] at (x + flow_x, y + flow_y); flow [B,2,H,W] in pixels; borders replicate.

    Sampling positions are always computed in float32: in fp16/bf16 a normalised coordinate near 1 is only
    resolved to about half a pixel at 2K. `grid` may pass the float32 `base_grid` of this size.
    """
    height, width = flow.shape[-2:]
    work = torch.promote_types(flow.dtype, torch.float32)
    if grid is None or grid.dtype != work:
        grid = base_grid(height, width, flow.device, work)
    flow = flow.to(work)
    # Same arithmetic order as the reference: normalise the flow, then add it to the linspace grid.
    norm_flow = torch.cat([flow[:, 0:1] / ((width - 1.0) / 2.0), flow[:, 1:2] / ((height - 1.0) / 2.0)], 1)
    coords = (grid + norm_flow).permute(0, 2, 3, 1)
    if image.dtype in (torch.float16, torch.bfloat16):
        return sample_border(image.to(work), coords).to(image.dtype)
    return sample_border(image, coords.to(image.dtype))


def sample_border(image: torch.Tensor, coords: torch.Tensor, clamp: bool | None = None) -> torch.Tensor:
    """Bilinear grid_sample (align_corners=True) of image [B,C,H,W] at coords [B,H,W,2] in -1..1, borders replicated.

    clamp (default: on MPS, which rejects padding_mode="border", pytorch #125098): clamp coords to [-1, 1]
    and sample with zero padding instead. With align_corners=True, -1 and 1 are the centres of the edge
    pixels, so a clamped position never reads padding and the result equals border padding.
    """
    if clamp if clamp is not None else image.device.type == "mps":
        return F.grid_sample(image, coords.clamp(-1.0, 1.0), mode="bilinear", padding_mode="zeros",
                             align_corners=True)
    return F.grid_sample(image, coords, mode="bilinear", padding_mode="border", align_corners=True)
