"""Real footage for the fine-tuning tests and benchmark: camera pans and zooms over scikit-image photographs
with a second photograph moving across as an occluder, written as numbered 8-bit PNG frames."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def _photo(name: str) -> torch.Tensor:
    from skimage import data

    image = getattr(data, name)()
    image = np.repeat(image[..., None], 3, axis=2) if image.ndim == 2 else image[..., :3]
    return torch.from_numpy(image.astype(np.float32) / 255).permute(2, 0, 1)


def shot(n: int, h: int, w: int, *, background: str = "astronaut", occluder: str = "coffee",
         pan: tuple[float, float] = (2.5, 1.0), zoom: float = 0.004, move: tuple[float, float] = (-3.0, 1.5),
         start: tuple[float, float] = (0.3, 0.3)) -> torch.Tensor:
    """n frames [n,3,h,w] in 0..1: the camera pans `pan` px/frame and zooms in `zoom` per frame over
    `background`; a soft-edged disc cut from `occluder` moves `move` px/frame in front of it."""
    bg, fg = _photo(background), _photo(occluder)
    bh, bw = bg.shape[-2:]
    ys, xs = torch.meshgrid(torch.arange(h, dtype=torch.float32), torch.arange(w, dtype=torch.float32),
                            indexing="ij")
    radius = min(h, w) * 0.3
    frames = []
    for i in range(n):
        scale = 1.0 / (1.0 + zoom * i)
        cx, cy = start[1] * bw + pan[0] * i, start[0] * bh + pan[1] * i
        gx = (cx + (xs - w / 2) * scale) / (bw - 1) * 2 - 1
        gy = (cy + (ys - h / 2) * scale) / (bh - 1) * 2 - 1
        frame = F.grid_sample(bg[None], torch.stack([gx, gy], -1)[None], align_corners=True)[0]
        ox, oy = w * 0.7 + move[0] * i, h * 0.4 + move[1] * i
        fx = ((xs - ox) + fg.shape[-1] / 2) / (fg.shape[-1] - 1) * 2 - 1
        fy = ((ys - oy) + fg.shape[-2] / 2) / (fg.shape[-2] - 1) * 2 - 1
        patch = F.grid_sample(fg[None], torch.stack([fx, fy], -1)[None], align_corners=True)[0]
        alpha = ((radius - ((xs - ox) ** 2 + (ys - oy) ** 2).sqrt()) / 2).clamp(0, 1)
        frames.append(frame * (1 - alpha) + patch * alpha)
    return (torch.stack(frames).clamp(0, 1) * 255).round() / 255


def write_clip(folder: Path, frames: torch.Tensor, prefix: str = "frame", first: int = 1) -> Path:
    """Frames [n,3,h,w] as folder/prefix.0001.png ... (8-bit RGB)."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        array = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
        Image.fromarray(array).save(folder / f"{prefix}.{first + i:04d}.png")
    return folder


SHOTS = (  # (background, occluder, pan, zoom, move): a small data set of different motions
    ("astronaut", "coffee", (2.5, 1.0), 0.004, (-3.0, 1.5)),
    ("chelsea", "rocket", (-2.0, 1.5), -0.003, (2.5, -1.0)),
    ("coffee", "astronaut", (1.5, -2.0), 0.006, (-1.5, -2.5)),
    ("rocket", "chelsea", (-1.0, -1.0), 0.0, (3.5, 0.5)),
)


def dataset(root: Path, n: int, h: int, w: int, shots: int = 3) -> Path:
    """root/<name>/frame.NNNN.png for the first `shots` SHOTS: a folder of clips."""
    for bg, fg, pan, zoom, move in SHOTS[:shots]:
        write_clip(root / f"{bg}_{fg}", shot(n, h, w, background=bg, occluder=fg, pan=pan, zoom=zoom, move=move))
    return root
