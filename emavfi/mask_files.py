"""Held-region masks from files for the command line (--protect, --protect-overlays, --protect-overlays-out).

A mask is one image for the whole shot, a folder (a numbered sequence) with one mask per input frame, matched
by frame number (an unnumbered input: by position), or a video with one frame per input frame. Values are
read as stored (no colour conversion): 0 = interpolated, 1 = held, in between blends. A mask with colour
uses its first channel (said in a note); grey stored as RGB is grey. Everything that can be checked without
reading every mask is checked before the model loads (`open_masks`): size, missing numbers, frame count.
"""
from __future__ import annotations

import hashlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from . import provenance
from .errors import SettingsError
from .media import VIDEO_EXTENSIONS
from .sequences import describe_numbers


class MaskFiles:
    """The --protect masks of a shot: one for all, or one per input frame (index -> its mask file or frame)."""

    def __init__(self, path: Path, input_numbers: list[int] | None, n_input: int, size: tuple[int, int]):
        self.path, self.size, self.note = Path(path), size, ""
        self._single: Any = None
        self._video: Any = None
        self._paths: list[Path] = []
        if self.path.is_dir():
            self._paths = _matched_files(self.path, input_numbers, n_input)
        elif self.path.suffix.lower() in VIDEO_EXTENSIONS:
            from .media.video import VideoSource

            self._video = VideoSource(self.path)
            if self._video.count() != n_input:
                raise SettingsError(f"the mask video {self.path.name} has {self._video.count()} frames but the input "
                                    f"has {n_input}: give one mask frame per input frame")
        first = self.read(0)
        _check_size(first.shape, size, self._name(0))
        self._single = first if not (self._paths or self._video) else None

    def _name(self, index: int) -> str:
        return self._paths[index].name if self._paths else self.path.name

    def read(self, index: int) -> Any:
        """[H,W] float32 tensor: the mask of input frame `index`."""
        import torch

        if self._single is not None:
            return self._single
        if self._video is not None:
            return next(self._video.frames(index))[0].clamp(0, 1)
        pixels = _read_image(self._paths[index] if self._paths else self.path)
        if pixels.shape[2] >= 3 and not (np.array_equal(pixels[..., 0], pixels[..., 1])
                                         and np.array_equal(pixels[..., 0], pixels[..., 2])):
            self.note = (f"the protect mask {self._name(index)} is not greyscale: its first channel (red) is used "
                         "as the mask")
        mask = torch.from_numpy(np.ascontiguousarray(pixels[..., 0])).clamp(0, 1)
        _check_size(tuple(mask.shape), self.size, self._name(index))
        return mask

    def sha256(self) -> str:
        """sha256 of the mask file, or of the sha256s of a folder's mask files in order (for the run record)."""
        if not self._paths:
            return provenance.file_sha256(self.path)
        digest = hashlib.sha256()
        for path in self._paths:
            digest.update(provenance.file_sha256(path).encode())
        return digest.hexdigest()


def _read_image(path: Path) -> np.ndarray:
    from .media.images import read_raw, to_values

    raw = read_raw(path)
    return to_values(raw.pixels, raw.format.bit_depth)


def _check_size(shape: tuple[int, ...], size: tuple[int, int], name: str) -> None:
    if tuple(shape[:2]) != tuple(size):
        raise SettingsError(f"the protect mask {name} is {shape[1]}x{shape[0]} but the input frames are "
                            f"{size[1]}x{size[0]}: give masks of the frames' size")


def _matched_files(folder: Path, input_numbers: list[int] | None, n_input: int) -> list[Path]:
    """The mask file of each input frame: by frame number where both are numbered, else by position."""
    from .media.folder import find_sequence

    try:
        sequence = find_sequence(folder)
    except ValueError as exc:
        raise SettingsError(f"--protect {folder}: {exc}") from None
    by_number = dict(zip(sequence.numbers or (), sequence.paths))
    if input_numbers is not None and sequence.numbers:
        missing = [number for number in input_numbers if number not in by_number]
        if missing:
            raise SettingsError(f"the protect masks in {folder} miss frame numbers {describe_numbers(missing)} of "
                                f"the input: give one mask per input frame (or one image for all)")
        return [by_number[number] for number in input_numbers]
    if len(sequence.paths) != n_input:
        raise SettingsError(f"{folder} holds {len(sequence.paths)} protect masks but the input has {n_input} "
                            "frames: give one mask per input frame (or one image for all)")
    return list(sequence.paths)


def open_masks(path: Path, source: Any, n_input: int) -> MaskFiles:
    """The masks for an input source (a FolderSource's frame numbers match them), checked before any work."""
    sequence = getattr(source, "sequence", None)
    numbers = list(sequence.numbers) if sequence is not None and sequence.numbers else None
    return MaskFiles(path, numbers, n_input, tuple(source.size))


class FileMasks:
    """A protect policy (emavfi.protect.RegionPolicy) over MaskFiles; index: the input frame of a timeline frame."""

    def __init__(self, files: MaskFiles, index: Any = None):
        self.files, self.index = files, index or (lambda j: j)

    def masks(self, frames: Any, lo: int, hi: int) -> Any:
        """[hi - lo + 1, H, W] float32 of timeline frames lo..hi."""
        import torch

        return torch.stack([self.files.read(self.index(j)) for j in range(lo, hi + 1)])


class OverlayMasksOut:
    """Writes each detected overlay mask as an 8-bit greyscale PNG, `overlays.<input frame number>.png`, once for
    every input frame the timeline frame stands for (numbers(j): with --dedupe, the held frames after it too)."""

    def __init__(self, folder: Path, numbers: Callable[[int], list[int]]):
        self.folder, self.numbers = Path(folder), numbers
        if self.folder.exists() and not self.folder.is_dir():
            raise SettingsError(f"--protect-overlays-out {self.folder} is a file: give a folder")

    def __call__(self, j: int, mask: Any) -> None:
        from .media.base import import_oiio
        from .media.images import write_raw

        self.folder.mkdir(parents=True, exist_ok=True)
        pixels = (mask.numpy().astype(np.uint8) * 255)[:, :, None]
        spec = import_oiio().ImageSpec(pixels.shape[1], pixels.shape[0], 1, "uint8")
        for number in self.numbers(j):
            write_raw(self.folder / f"overlays.{number:06d}.png", pixels, spec)


def input_numbers(source: Any) -> Callable[[int], list[int]]:
    """The input frames that timeline frame j of a render source stands for, by the number files name them with
    (by position for an unnumbered input): j itself, and with --dedupe (a dedupe.KeptFrames view) the held frames
    after it, which repeat it."""
    sequence = getattr(source, "sequence", None)
    numbers = list(sequence.numbers) if sequence is not None and sequence.numbers else None
    kept = getattr(source, "kept", None)
    n_input = source.count() if kept is None else source.source.count()

    def inputs(j: int) -> list[int]:
        first, stop = (j, j + 1) if kept is None else (kept[j], kept[j + 1] if j + 1 < len(kept) else n_input)
        return [numbers[i] if numbers else i for i in range(first, stop)]

    return inputs


def protection_for(prepared: Any) -> tuple[Any, Any]:
    """(the engine's protect policy or None, the protect.OverlayShare or None) of a prepared job (emavfi.render):
    the overlays of the source frames its requested outputs own (protect.share_of) are decided and written."""
    options = prepared.job.settings.protect
    if not options.active:
        return None, None
    from .protect import HeldRegions, OverlayShare, share_of

    index = getattr(prepared.source, "index", None)  # with --dedupe: the input frame of each timeline frame
    policies: list[Any] = [] if prepared.masks is None else [FileMasks(prepared.masks, index)]
    share = None
    if options.overlays:
        out = None if options.overlays_out is None else OverlayMasksOut(options.overlays_out,
                                                                        input_numbers(prepared.source))
        share = OverlayShare(prepared.n_source, share_of(prepared.schedule.plan, prepared.requested,
                                                         prepared.n_source), seen=out)
        policies.append(share)
    return HeldRegions(policies, options.feather), share


def overlay_report(source: Any, decisions: dict[int, Any]) -> dict[int, Any]:
    """Decided timeline frames (-> bounding box or None) as the input frames they stand for, by number."""
    inputs = input_numbers(source)
    return {number: box for j, box in decisions.items() for number in inputs(j)}
