"""Real-footage builders for the evaluate tests: pans and fades over scikit-image photographs, written in the
published layouts of the benchmark sets."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import pytest

skimage_data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")

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


def fade(n: int, h: int = 40, w: int = 56, name: str = "coffee", step: float = 0.05) -> torch.Tensor:
    """n frames of a linear exposure ramp over a still photograph: blending two frames is exact."""
    base = torch.from_numpy(photo(name)[100:100 + h, 200:200 + w]).permute(2, 0, 1)
    return torch.stack([base * (0.4 + step * i) for i in range(n)])


def blend_backend(frames, first, second, timesteps, aux):
    """A runner.Backend that blends linearly: exact on fades, a simple baseline elsewhere."""
    rgb = torch.stack([(1 - t) * frames[first] + t * frames[second] for t in timesteps])
    return rgb, None


def save_png(path: Path, frame: torch.Tensor) -> Path:
    """Write [3,H,W] 0..1 as an 8-bit RGB PNG (parents created)."""
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    array = np.round(frame.clamp(0, 1).permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    Image.fromarray(array).save(path, compress_level=1)
    return path


def triplet(seed: int = 0, h: int = 40, w: int = 56) -> torch.Tensor:
    """Three frames of a pan over a photograph (which photograph and where: by seed)."""
    return pan(3, h=h, w=w, name=PHOTOS[seed % len(PHOTOS)], y=40 + 7 * seed, x=60 + 11 * seed)


def write_vimeo(root: Path, clips: int = 2) -> list[str]:
    """vimeo_triplet layout: tri_testlist.txt + sequences/SEQ/CLIP/im1..3.png."""
    names = [f"00001/{k + 1:04d}" for k in range(clips)]
    root.mkdir(parents=True, exist_ok=True)
    (root / "tri_testlist.txt").write_text("\n".join(names) + "\n\n")
    for k, name in enumerate(names):
        for i, frame in enumerate(triplet(k)):
            save_png(root / "sequences" / name / f"im{i + 1}.png", frame)
    return names


def write_ucf(root: Path, samples: int = 2, h: int = 40, w: int = 56) -> None:
    """UCF101 layout: one folder per sample with frame_00.png, frame_01_gt.png, frame_02.png."""
    for k in range(samples):
        for name, frame in zip(("frame_00.png", "frame_01_gt.png", "frame_02.png"), triplet(k, h=h, w=w)):
            save_png(root / str(k + 1) / name, frame)


def write_snu(root: Path, levels=("easy", "hard")) -> None:
    """SNU-FILM: test-LEVEL.txt lines 'I0 I1 I2' written with the official 'data/SNU-FILM/' prefix."""
    root.mkdir(parents=True, exist_ok=True)
    for k, level in enumerate(levels):
        rel = [f"test/GOPRO_test/clip{k}/{i:06d}.png" for i in range(3)]
        for path, frame in zip(rel, triplet(k)):
            save_png(root / path, frame)
        (root / f"test-{level}.txt").write_text(" ".join(f"data/SNU-FILM/{p}" for p in rel) + "\n")


def write_middlebury(root: Path) -> None:
    """other-data/NAME/frame10.png, frame11.png and other-gt-interp/NAME/frame10i11.png for the 12 names."""
    from emavfi.evaluate.datasets import MIDDLEBURY_NAMES

    for k, name in enumerate(MIDDLEBURY_NAMES):
        first, truth, last = triplet(k, h=24 + 2 * k, w=36 + k)  # sizes differ between samples, as in the set
        save_png(root / "other-data" / name / "frame10.png", first)
        save_png(root / "other-data" / name / "frame11.png", last)
        save_png(root / "other-gt-interp" / name / "frame10i11.png", truth)


def write_x4k(root: Path, scenes: int = 1, frames: int = 33) -> list[torch.Tensor]:
    """XTest layout TYPE/SCENE/0000.png ...: a fade (so blending is exact) per scene."""
    clips = []
    for s in range(scenes):
        clip = fade(frames, h=32, w=40, name=PHOTOS[s], step=0.015)
        for i, frame in enumerate(clip):
            save_png(root / "Type1" / f"TEST0{s + 1}_f0001" / f"{i:04d}.png", frame)
        clips.append(clip)
    return clips


def write_xiph(root: Path, frames: int = 3) -> torch.Tensor:
    """Xiph layout NAME-NNN.png with 4K frames (a photograph enlarged 8x16, panning 16 px per frame)."""
    image = torch.from_numpy(photo("astronaut")).permute(2, 0, 1)
    clip = []
    for k in range(frames):
        crop = image[:, 20:20 + 270, 10 + k:10 + k + 256]
        big = crop.repeat_interleave(8, 1).repeat_interleave(16, 2)  # 2160 x 4096
        clip.append(big)
        save_png(root / f"BoxingPractice-{k + 1:03d}.png", big)
    return torch.stack(clip)


@pytest.fixture
def evaluated_model(monkeypatch):
    """A tiny random network that `evaluate` uses instead of loading weights."""
    from emavfi.evaluate.session import Session
    from helpers import tiny_model

    net = tiny_model(seed=3)
    monkeypatch.setattr(Session, "load_model", lambda self: net)
    return net
