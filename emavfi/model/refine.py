"""The refinement U-Net: turns the warped frames and warped backbone features into a residual."""
from __future__ import annotations

import torch
from torch import nn


class Down(nn.Module):
    """Stride-2 conv + PReLU, then conv + PReLU (keys `conv1.*`, `conv2.*`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv1 = nn.Sequential(nn.Conv2d(cin, cout, 3, 2, 1), nn.PReLU(cout))
        self.conv2 = nn.Sequential(nn.Conv2d(cout, cout, 3, 1, 1), nn.PReLU(cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv2(self.conv1(x))


def up(cin: int, cout: int) -> nn.Sequential:
    """Transposed conv doubling the size, then PReLU."""
    return nn.Sequential(nn.ConvTranspose2d(cin, cout, 4, 2, 1), nn.PReLU(cout))


class RefineUNet(nn.Module):
    """U-Net with warped appearance features of both frames injected at every down level."""

    def __init__(self, c: int):
        super().__init__()
        self.down0 = Down(17 + c, 2 * c)
        self.down1 = Down(4 * c, 4 * c)
        self.down2 = Down(8 * c, 8 * c)
        self.down3 = Down(16 * c, 16 * c)
        self.up0 = up(32 * c, 8 * c)
        self.up1 = up(16 * c, 4 * c)
        self.up2 = up(8 * c, 2 * c)
        self.up3 = up(4 * c, c)
        self.conv = nn.Conv2d(c, 3, 3, 1, 1)

    def forward(self, image_side: torch.Tensor, warped0: list[torch.Tensor], warped1: list[torch.Tensor]) -> torch.Tensor:
        """image_side: [I0, I1, w0, w1, mask logit, flow] (17 ch); warped*: 5 feature levels -> res in (-1, 1)."""
        s0 = self.down0(torch.cat([image_side, warped0[0], warped1[0]], 1))
        s1 = self.down1(torch.cat([s0, warped0[1], warped1[1]], 1))
        s2 = self.down2(torch.cat([s1, warped0[2], warped1[2]], 1))
        s3 = self.down3(torch.cat([s2, warped0[3], warped1[3]], 1))
        x = self.up0(torch.cat([s3, warped0[4], warped1[4]], 1))
        x = self.up1(torch.cat([x, s2], 1))
        x = self.up2(torch.cat([x, s1], 1))
        x = self.up3(torch.cat([x, s0], 1))
        return 2 * torch.sigmoid(self.conv(x)) - 1
