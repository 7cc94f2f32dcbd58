"""Flow / fusion-mask heads: a small conv net per scale, fed with pixel-shuffled backbone features."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def resize(x: torch.Tensor, factor: float) -> torch.Tensor:
    """Bilinear resize by `factor` (align_corners=False, no antialiasing), as the reference does."""
    return F.interpolate(x, scale_factor=factor, mode="bilinear", align_corners=False)


def shuffle_features(x: torch.Tensor) -> torch.Tensor:
    """Two successive PixelShuffle(2): channels / 16, spatial x4 (not the same order as PixelShuffle(4))."""
    return F.pixel_shuffle(F.pixel_shuffle(x, 2), 2)


class FlowHead(nn.Module):
    """Predicts a 4-channel flow (t->0, t->1, in pixels) and a 1-channel mask logit at full resolution.

    The three convs all end in PReLU, the last one included (the reference does so; it matters for parity).
    """

    def __init__(self, in_channels: int, hidden: int, scale: int):
        super().__init__()
        self.scale = scale
        self.conv = nn.Sequential(
            nn.Sequential(nn.Conv2d(in_channels, hidden, 3, 1, 1), nn.PReLU(hidden)),
            nn.Sequential(nn.Conv2d(hidden, hidden, 3, 1, 1), nn.PReLU(hidden)),
            nn.Sequential(nn.Conv2d(hidden, 5, 3, 1, 1), nn.PReLU(5)),
        )

    def forward(self, shuffled: torch.Tensor, image_side: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """shuffled: features at 4/scale of full res; image_side: full-res inputs resized to the same size."""
        out = self.conv(torch.cat([shuffled, image_side], 1))
        up = self.scale / 4
        out = resize(out, up)
        return out[:, :4] * up, out[:, 4:5]
