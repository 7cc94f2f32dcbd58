"""The refinement U-Net: turns the warped frames and warped backbone features into a residual."""
from __future__ import annotations

from collections.abc import Callable

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

    def forward(self, image_side: Callable[[], torch.Tensor],
                warped: Callable[[int], tuple[torch.Tensor, torch.Tensor]]) -> torch.Tensor:
        """image_side() -> [I0, I1, w0, w1, mask logit, flow] (17 ch); warped(k) -> level k of both frames' warped
        features -> res in (-1, 1).

        Inputs are made when their level needs them and each full-resolution tensor is dropped once read, so the
        peak memory holds one level's inputs at a time (the same arithmetic as making them all first).
        """
        skips: list[torch.Tensor] = []
        held = [_through(self.down0, _joined(image_side(), warped(0)))]  # a holder: popped into each call
        for level, down in enumerate((self.down1, self.down2, self.down3), 1):
            skips.append(held.pop())
            held.append(_through(down, _joined(skips[-1], warped(level))))
        held.append(_through(self.up0, _joined(held.pop(), warped(4))))
        for block in (self.up1, self.up2, self.up3):
            held.append(_through(block, torch.cat([held.pop(), skips.pop()], 1)))
        return 2 * torch.sigmoid(self.conv(held.pop())) - 1


def _joined(x: torch.Tensor, pair: tuple[torch.Tensor, torch.Tensor]) -> torch.Tensor:
    """x and both warped feature maps along channels (arguments passed as temporaries are freed on return)."""
    return torch.cat([x, *pair], 1)


def _through(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """x through the block's layers in order; pass x as a temporary (a call's result): this function then holds the
    only reference, so each layer's input is freed as soon as its output exists."""
    for layer in _layers(block):
        x = layer(x)
    return x


def _layers(block: nn.Module) -> list[nn.Module]:
    """The conv and PReLU layers of a Down or an up block, in order."""
    if isinstance(block, Down):
        return [*block.conv1, *block.conv2]
    return list(block)
