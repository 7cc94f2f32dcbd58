"""Small builders shared by the tests: tiny configs, seeded frames and random official-layout weights."""
from __future__ import annotations

from typing import Any

import torch

import emavfi
from emavfi.config import ModelConfig

TINY = ModelConfig(width=4, depths=(1, 1, 1, 2, 2))


def tiny_model(seed: int = 0, arbitrary_t: bool = True) -> emavfi.EMAVFI:
    """A randomly initialised network with every official module, small enough for fast CPU tests."""
    torch.manual_seed(seed)
    cfg = ModelConfig(width=TINY.width, depths=TINY.depths, arbitrary_t=arbitrary_t)
    return emavfi.build_model(cfg).eval()


def frames(b: int = 1, h: int = 64, w: int = 96, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """Two correlated random frames [B,3,H,W] in 0..1 (the second is a shifted copy plus noise)."""
    g = torch.Generator().manual_seed(seed)
    img0 = torch.rand(b, 3, h, w, generator=g)
    img1 = (torch.roll(img0, shifts=(2, 3), dims=(2, 3)) * 0.9 + 0.1 * torch.rand(b, 3, h, w, generator=g))
    return img0, img1


def weight_shapes(variant: str | ModelConfig, library: Any = emavfi) -> dict[str, tuple[int, ...]]:
    """Official key names and shapes of a variant's weights (library: the node pack's own copy of emavfi)."""
    with torch.device("meta"):
        model = library.build_model(variant)
    return {k: tuple(v.shape) for k, v in model.state_dict().items()}


def random_state(variant: str, seed: int = 0) -> dict[str, torch.Tensor]:
    """Random weights with the official key names and shapes of `variant`."""
    g = torch.Generator().manual_seed(seed)
    return {k: torch.randn(shape, generator=g) * 0.02 for k, shape in weight_shapes(variant).items()}
