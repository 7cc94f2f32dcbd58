"""Training triplets from the user's clips: folders of frames and video files, streamed one frame at a time.

A clip is a folder of numbered frames or a video; DATA may be one clip or a folder of clips (sub-folders
and videos). Every start frame i of a clip with room for a window of 2*max_gap+1 frames is one training
window. A sample picks, from its window:
  - t = 0.5 variants: frames (i, i+k, i+2k), k uniform in 1..max_gap (max_gap 1 = Vimeo90K triplets);
  - `_t` variants: three distinct frames a < g < b uniform in the window, t = (g-a)/(b-a) — the
    septuplet protocol of RIFE (Huang et al. 2022, `dataset.py`), which the EMA-VFI paper cites for
    its arbitrary-timestep models (the official repository releases no such training code).
Every random choice of a sample (window order, frames, crop, augmentations) is a pure function of
(seed, sample position in the run): the same run gives the same batches however many Ray workers share
it, and a resumed run continues with exactly the batches an uninterrupted one would have seen.
"""
from __future__ import annotations

import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..media import VIDEO_EXTENSIONS, FramesIOError, open_source
from ..media.folder import list_frames
from ..media.images import IMAGE_EXTENSIONS

_NUMBER = re.compile(r"(\d+)(?=\.[^.]+$)")
OPEN_VIDEOS = 4  # decoders kept open per process (each holds a file handle and a few frames)


class DataError(ValueError):
    """The training data cannot be used: wrong layout, missing frames, mixed sizes (one line naming it)."""


@dataclass(frozen=True)
class Clip:
    """One clip: where it is, how many frames, and their size (height, width)."""

    path: str
    count: int
    size: tuple[int, int]

    def describe(self) -> str:
        return f"{Path(self.path).name} ({self.count} frames {self.size[1]}x{self.size[0]})"


@dataclass(frozen=True)
class Sample:
    """One training triplet: clip index, frame indices a < g < b, timestep t = (g-a)/(b-a), and its rng seed."""

    clip: int
    frames: tuple[int, int, int]
    t: float
    seed: tuple[int, ...]


def _is_video(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in VIDEO_EXTENSIONS


def _has_frames(folder: Path) -> bool:
    return any(p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_EXTENSIONS
               for p in folder.iterdir())


def clip_paths(data: Path) -> list[Path]:
    """The clips of one DATA path: itself (a video or a folder of frames), or the clips in it."""
    if not data.exists():
        raise DataError(f"training data not found: {data}")
    if _is_video(data) or (data.is_dir() and _has_frames(data)):
        return [data]
    if not data.is_dir():
        raise DataError(f"{data} is neither a folder nor a video ({', '.join(VIDEO_EXTENSIONS)})")
    found = sorted((p for p in data.iterdir() if not p.name.startswith(".")
                    and (_is_video(p) or (p.is_dir() and _has_frames(p)))), key=lambda p: p.name)
    if not found:
        raise DataError(f"{data} holds no clips: expected numbered frames ({', '.join(IMAGE_EXTENSIONS)}), a video, "
                        "or sub-folders of frames / videos (one clip each)")
    return found


def _check_numbering(folder: Path, names: list[str]) -> None:
    """Numbered frames must be consecutive: a gap would put a wrong time between a triplet's frames."""
    numbers = [(int(m.group(1)), n) for n in names if (m := _NUMBER.search(n))]
    if len(numbers) != len(names):
        return  # not a numbered sequence: natural order is all we know
    for (low, first), (high, second) in zip(numbers, numbers[1:]):
        if high != low + 1:
            missing = high - low - 1
            raise DataError(f"{folder}: {missing} frame(s) missing between {first} and {second}; restore them or "
                            "split the clip into two folders at the gap")


def _check_sizes(paths: list[Path], size: tuple[int, int]) -> None:
    """Every frame of a folder has the first frame's size (headers only: no pixels are decoded)."""
    from ..media.base import import_oiio

    oiio = import_oiio()
    for path in paths[1:]:
        image = oiio.ImageInput.open(str(path))
        if image is None:
            oiio.geterror()
            raise DataError(f"cannot read frame {path} (not an image, or damaged); replace or remove it")
        spec = image.spec()
        image.close()
        if (spec.height, spec.width) != size:
            raise DataError(f"{path} is {spec.width}x{spec.height} but {paths[0].name} is {size[1]}x{size[0]}; "
                            "all frames of a clip must have one size")


def scan_clip(path: Path) -> Clip:
    """Open one clip, check its layout (numbering, one frame size) and count its frames."""
    try:
        source = open_source(path)
    except FramesIOError as exc:
        raise DataError(str(exc)) from None
    if path.is_dir():
        paths = list_frames(path)
        _check_numbering(path, [p.name for p in paths])
        _check_sizes(paths, source.size)
        return Clip(str(path), len(paths), tuple(source.size))
    from .video_frames import VideoFrames

    video = VideoFrames(str(path))
    video.close()
    return Clip(str(path), len(video), tuple(source.size))


def scan(data: list[str | os.PathLike], crop: int, gap: int) -> list[Clip]:
    """All clips of the DATA paths, checked for the crop and window size before any training starts."""
    clips = [scan_clip(p) for d in data for p in clip_paths(Path(d))]
    if len({Path(c.path).resolve() for c in clips}) != len(clips):
        raise DataError("the same clip is given twice; list each DATA path once")
    need = 2 * gap + 1
    for clip in clips:
        if min(clip.size) < crop:
            raise DataError(f"{clip.describe()} is smaller than --crop {crop}; use a smaller --crop "
                            f"(a multiple of 32 up to {min(clip.size) // 32 * 32})")
        if clip.count < need:
            raise DataError(f"{clip.describe()} is too short: --max-gap {gap} needs {need} frames per window")
    return clips


class Triplets:
    """The sampling plan: windows of every clip, and the sample at any position of the run."""

    def __init__(self, clips: list[Clip], gap: int, arbitrary_t: bool, seed: int):
        self.clips, self.gap, self.arbitrary_t, self.seed = clips, gap, arbitrary_t, seed
        self.starts = np.cumsum([0] + [c.count - 2 * gap for c in clips])
        self._order: tuple[int, np.ndarray] | None = None

    def __len__(self) -> int:
        """Training windows (samples per epoch)."""
        return int(self.starts[-1])

    def _window(self, position: int) -> int:
        epoch, offset = divmod(position, len(self))
        if self._order is None or self._order[0] != epoch:
            self._order = (epoch, np.random.default_rng([self.seed, epoch, 0]).permutation(len(self)))
        return int(self._order[1][offset])

    def sample(self, position: int) -> Sample:
        """The sample at global position `position` (= step * batch + slot)."""
        window = self._window(position)
        clip = int(np.searchsorted(self.starts, window, side="right") - 1)
        first = window - int(self.starts[clip])
        rng = np.random.default_rng([self.seed, position, 1])
        if self.arbitrary_t:
            a, g, b = sorted(int(i) for i in rng.choice(2 * self.gap + 1, size=3, replace=False))
        else:
            k = int(rng.integers(1, self.gap + 1))
            a, g, b = 0, k, 2 * k
        return Sample(clip, (first + a, first + g, first + b), (g - a) / (b - a), (self.seed, position, 2))


class FrameReader:
    """Reads frames of the clips on demand ([3,H,W] float32 in 0..1; NaN -> 0, out-of-range clamped)."""

    def __init__(self, clips: list[Clip]):
        self.clips = clips
        self._sources: dict[int, Any] = {}
        self._videos: OrderedDict[int, Any] = OrderedDict()

    def read(self, clip: int, index: int) -> torch.Tensor:
        """Frame `index` of clip `clip`, RGB only."""
        path = Path(self.clips[clip].path)
        if path.is_dir():
            source = self._sources.get(clip)
            if source is None:
                source = self._sources[clip] = open_source(path)
            frame = source.read(index)
        else:
            frame = self._video(clip).read(index)
        return torch.nan_to_num(frame[:3], nan=0.0, posinf=1.0, neginf=0.0).clamp_(0, 1)

    def _video(self, clip: int) -> Any:
        from .video_frames import VideoFrames

        if clip in self._videos:
            self._videos.move_to_end(clip)
        else:
            self._videos[clip] = VideoFrames(self.clips[clip].path)
            if len(self._videos) > OPEN_VIDEOS:
                self._videos.popitem(last=False)[1].close()
        return self._videos[clip]

    def close(self) -> None:
        """Close open video decoders."""
        for video in self._videos.values():
            video.close()
        self._videos.clear()
