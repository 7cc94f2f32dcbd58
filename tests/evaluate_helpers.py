"""Real-footage builders for the evaluate tests: pans and fades over scikit-image photographs, written in the
published layouts of the benchmark sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

skimage_data = __import__("pytest").importorskip("skimage.data", reason="real photographs come from scikit-image")

PHOTOS = ("astronaut", "coffee", "chelsea", "rocket")


def photo(name: str = "astronaut") -> np.ndarray:
    """A scikit-image photograph as float32 [H,W,3] in 0..1."""
    return getattr(skimage_data, name)()[..., :3].astype(np.float32) / 255


def pan(n: int, h: int = 40, w: int = 56, step: int = 3, name: str = "astronaut", y: int = 60,
        x: int = 150) -> torch.Tensor:
    """n frames [n,3,h,w] of a camera panning `step` px per frame over a photograph (8-bit values)."""
    image = photo(name)
    crops = [image[y + i: y + i + h, x + step * i: x + step * i + w] for i in range(n)]
    return torch.from_numpy(np.round(np.stack(crops) * 255) / 255).permute(0, 3, 1, 2).float().contiguous()


def fade(n: int, h: int = 40, w: int = 56, name: str = "coffee") -> torch.Tensor:
    """n frames of a linear exposure ramp over a still photograph: blending two frames is exact."""
    base = torch.from_numpy(photo(name)[100:100 + h, 200:200 + w]).permute(2, 0, 1)
    return torch.stack([base * (0.4 + 0.05 * i) for i in range(n)])


def blend_backend(frames, first, second, timesteps, aux):
    """A runner.Backend that blends linearly: exact on fades, a simple baseline elsewhere."""
    rgb = torch.stack([(1 - t) * frames[first] + t * frames[second] for t in timesteps])
    return rgb, None


def save_png(path: Path, frame: torch.Tensor) -> Path:
    """Write [3,H,W] 0..1 as an 8-bit RGB PNG (parents created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.round(frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(array).save(path)
    return path
