"""Regenerate the example frames: a textured backdrop with a disc and a bar moving across it."""
from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

H, W, N = 192, 256, 3


def render(i: int) -> np.ndarray:
    """Frame i as uint8 [H,W,3]."""
    y, x = np.mgrid[0:H, 0:W].astype(np.float32)
    rng = np.random.default_rng(7)
    noise = rng.random((H // 8, W // 8)).repeat(8, 0).repeat(8, 1)
    backdrop = np.stack([0.35 + 0.3 * x / W, 0.3 + 0.25 * noise, 0.55 - 0.3 * y / H], -1)
    cx, cy = 70 + 28 * i, 96 + 6 * i
    disc = ((x - cx) ** 2 + (y - cy) ** 2) < 30 ** 2
    stripes = 0.5 + 0.5 * np.sin((x - cx) / 4.0)
    backdrop[disc] = np.stack([0.95 * np.ones_like(stripes), 0.6 * stripes, 0.15 * np.ones_like(stripes)], -1)[disc]
    bar = (np.abs(x - (200 - 12 * i)) < 8) & (y > 20) & (y < 170)
    backdrop[bar] = [0.1, 0.8, 0.3]
    return (np.clip(backdrop, 0, 1) * 255 + 0.5).astype(np.uint8)


if __name__ == "__main__":
    out = Path(__file__).with_name("frames")
    out.mkdir(exist_ok=True)
    for i in range(N):
        Image.fromarray(render(i)).save(out / f"frame_{i:03d}.png", optimize=True)
