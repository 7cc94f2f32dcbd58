"""Every user setting, validated once, before any weights are resolved or frames read.

`RunOptions` holds what both front ends share (the ComfyUI nodes and the CLI); `Settings` adds what a
streaming render needs (model choice, device, output options). Bad values raise `SettingsError` with one
line naming the value and the fix; the CLI turns it into exit code 2, the nodes into a node error.
"""
from __future__ import annotations

import functools
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

from .config import DEFAULT_VARIANT, VARIANTS
from .errors import SettingsError
from .schedule import Request
from .sequences import GAPS

SCALES = (1.0, 0.5, 0.25)  # flow resolution: 1 up to ~1080p, 0.5 for 2K, 0.25 for 4K
MAX_CHUNK = 256  # frame pairs per device batch
PRECISIONS = ("fp32", "fp16", "bf16")  # besides "auto"; what each means: emavfi.devices
DEFAULT_CUT_THRESHOLD = 2.5
"""Scene-cut sensitivity (emavfi.cuts): a pair is a cut when its evidence exceeds threshold x the typical
evidence around it. Sensible values run from about 1.5 (eager) to 6 (strict); 0 disables detection."""
DEFAULT_DEDUPE_THRESHOLD = 2.0
"""Held frames (emavfi.dedupe): how many times the noise-only difference a held frame may differ by: 1.5 strict,
2 default, 4 lenient; 0 = bit-identical repeats only. Values around 1 would miss holds on noisy footage."""
MAX_DEDUPE_THRESHOLD = 20.0
ON_ERROR = ("stop", "skip")
DEFAULT_PROTECT_FEATHER = 2
"""Held regions (emavfi.protect): px over which a mask's edge blends into the interpolated picture."""
MAX_PROTECT_FEATHER = 64
BIT_DEPTHS = ("8", "10", "12", "16", "half", "float")  # which of them a format takes is checked by emavfi.media
MAX_START_NUMBER = 10**8
COMPRESSIONS = {  # --compression per output format, as OpenImageIO names them
    ".png": tuple(str(level) for level in range(10)),  # zlib level
    ".exr": ("none", "rle", "zips", "zip", "piz", "pxr24", "b44", "b44a", "dwaa", "dwab"),
    ".tif": ("none", "lzw", "zip"),
}
DEFAULT_COMPRESSION = {".png": "2", ".exr": "zip", ".tif": "zip"}
"""Without --compression: these for a format other than the input's (and for every PNG, which records no level);
the same format as the input keeps the input's compression. Chosen by measurement (benchmarks/RESULTS.md)."""
PNG_DEFAULT_FILTER = 32
"""With the default PNG level only: libpng's Up row filter (OpenImageIO's png:filter), measured at 1080p 2x faster
than the adaptive choice, the same size within 3 %. A level given with --compression keeps OpenImageIO's filters
(level 6: the bytes of earlier versions)."""
MAX_IO_THREADS = 64
_DEVICE = re.compile(r"^(auto|cpu|mps|cuda(:\d{1,2})?)$")

__all__ = ["BIT_DEPTHS", "COMPRESSIONS", "DEFAULT_COMPRESSION", "DEFAULT_CUT_THRESHOLD", "DEFAULT_DEDUPE_THRESHOLD",
           "DEFAULT_PROTECT_FEATHER", "MAX_CHUNK", "MAX_DEDUPE_THRESHOLD", "MAX_PROTECT_FEATHER", "ProtectOptions",
           "check_feather",
           "ON_ERROR", "PRECISIONS", "SCALES", "OutputOptions", "RunOptions", "Settings", "SettingsError",
           "check_compression", "check_dedupe_threshold"]


def _flag(name: str) -> str:
    return name.replace("_", "-").replace(" ", "-")


@dataclass(frozen=True)
class RunOptions:
    """How in-between frames are computed: test-time augmentation, flow scale, cut sensitivity, batch size.

    cut_threshold: scene-cut sensitivity (see emavfi.cuts; 0 disables). chunk: frame pairs per device batch
    (0 = automatic: 1 on CPU, from free memory on a GPU). dedupe: drop held frames and retime the rest at their
    true times (see emavfi.dedupe; dedupe_threshold None = its default, 0 = exact repeats only).
    """

    tta: bool = False
    scale: float = 1.0
    cut_threshold: float | None = None  # None: the detector's default
    chunk: int = 0
    dedupe: bool = False
    dedupe_threshold: float | None = None  # None: emavfi.dedupe's default

    def __post_init__(self) -> None:
        if not isinstance(self.tta, bool):
            raise SettingsError(f"tta must be true or false; got {self.tta!r}")
        scale = _number(self.scale, "scale")
        if scale not in SCALES:
            raise SettingsError(f"scale must be one of {', '.join(f'{s:g}' for s in SCALES)} "
                                f"(1 up to ~1080p, 0.5 for 2K, 0.25 for 4K); got {self.scale!r}")
        object.__setattr__(self, "scale", scale)
        threshold = DEFAULT_CUT_THRESHOLD if self.cut_threshold is None else _number(self.cut_threshold,
                                                                                    "cut threshold")
        if threshold < 0:
            raise SettingsError(f"cut threshold must be >= 0 (0 = off); got {self.cut_threshold!r}")
        if 0 < threshold < 1:  # e.g. 0.06, the default of the earlier detector, saved in old workflows
            raise SettingsError(f"cut threshold {threshold:g} is below 1, which would call almost every pair a cut: "
                                f"it is how many times a pair's change stands out from its neighbours' (1.5 eager, "
                                f"{DEFAULT_CUT_THRESHOLD:g} default, 6 strict; 0 = off)")
        object.__setattr__(self, "cut_threshold", threshold)
        _whole(self.chunk, "chunk", 0, MAX_CHUNK, "0 = automatic")
        self._check_dedupe()

    def _check_dedupe(self) -> None:
        if not isinstance(self.dedupe, bool):
            raise SettingsError(f"dedupe must be true or false; got {self.dedupe!r}")
        try:
            object.__setattr__(self, "dedupe_threshold", check_dedupe_threshold(self.dedupe_threshold))
        except ValueError as exc:
            raise SettingsError(str(exc)) from None


@dataclass(frozen=True)
class OutputOptions:
    """Where and how output frames are written (CLI and distributed renders)."""

    start_number: int | None = None  # None: the input's first frame number (0 for a video or unnumbered files)
    frames: str | None = None  # output frame ranges "A-B,C-D" in output numbering; checked once the count is known
    resume: bool = False
    overwrite: bool = False
    format: str | None = None  # output file extension for frame folders, e.g. "exr"
    bit_depth: str | None = None
    codec: str | None = None
    colorspace: str | None = None
    ocio: str | None = None
    on_error: str = "stop"
    gaps: str = "error"  # missing frame numbers in the input: error, interpolate or ignore (emavfi.sequences)
    pattern: str | None = None  # which sequence of a folder holding several, e.g. "plate.####.exr"
    redo_changed: bool = False  # --resume/--overwrite re-render frames changed after we wrote them (else they stop)
    apply_rotation: bool = False  # rotate a video's pixels upright (else its display matrix is carried over)
    compression: str | None = None  # frame folders: COMPRESSIONS of the output format (None: DEFAULT_COMPRESSION)
    io_threads: int = 0  # threads encoding and writing output frames (0 = one per core this process may use)

    def __post_init__(self) -> None:
        if self.start_number is not None:
            _whole(self.start_number, "start number", 0, MAX_START_NUMBER, "the number of the first output frame")
        if self.gaps not in GAPS:
            raise SettingsError(f"gaps must be one of {', '.join(GAPS)}; got {self.gaps!r}")
        if self.redo_changed and not (self.resume or self.overwrite):
            raise SettingsError("--redo-changed goes with --resume or --overwrite (it re-renders the frames changed "
                                "since we wrote them)")
        if self.pattern is not None and (not self.pattern.strip() or "/" in self.pattern or "\\" in self.pattern):
            raise SettingsError(f"--pattern is a file name pattern such as 'plate.####.exr' (no folders); "
                                f"got {self.pattern!r}")
        if self.overwrite and self.frames:
            raise SettingsError("--overwrite replaces a whole run and cannot go with --frames (tasks of one job share "
                                "the folder): clear it with one run without --frames, or render into a new folder")
        if self.resume and self.overwrite:
            raise SettingsError("--resume and --overwrite exclude each other: resume keeps frames, overwrite replaces them")
        if self.on_error not in ON_ERROR:
            raise SettingsError(f"on-error must be one of {', '.join(ON_ERROR)}; got {self.on_error!r}")
        if self.bit_depth is not None and str(self.bit_depth).lower() not in BIT_DEPTHS:
            raise SettingsError(f"bit depth must be one of {', '.join(BIT_DEPTHS)}; got {self.bit_depth!r}")
        if self.format is not None:
            object.__setattr__(self, "format", "." + self.format.lower().lstrip("."))
        _whole(self.io_threads, "io threads", 0, MAX_IO_THREADS, "0 = one per core")
        if self.compression is not None:
            object.__setattr__(self, "compression", str(self.compression).lower())
            if self.format is not None:
                check_compression({".tiff": ".tif"}.get(self.format, self.format), self.compression)
            elif not any(self.compression in names for names in COMPRESSIONS.values()):
                raise SettingsError(f"unknown compression {self.compression!r}; {_compressions()}")


@dataclass(frozen=True)
class ProtectOptions:
    """Held regions (emavfi.protect): a mask file, folder or video (--protect), detected overlays, the feather."""

    mask: Path | None = None
    feather: int = DEFAULT_PROTECT_FEATHER
    overlays: bool = False
    overlays_out: Path | None = None  # a folder for the detected overlay masks

    def __post_init__(self) -> None:
        try:
            check_feather(self.feather)
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
        if not isinstance(self.overlays, bool):
            raise SettingsError(f"protect overlays must be true or false; got {self.overlays!r}")
        if self.mask is not None and not Path(self.mask).exists():
            raise SettingsError(f"--protect mask not found: {self.mask}")
        if self.overlays_out is not None and not self.overlays:
            raise SettingsError("--protect-overlays-out writes the detected overlays: add --protect-overlays")

    @property
    def active(self) -> bool:
        """Whether any region is held."""
        return self.mask is not None or self.overlays


@dataclass(frozen=True)
class Settings:
    """A complete, validated interpolation job description (without the input and output paths)."""

    request: Request = field(default_factory=Request)
    run: RunOptions = field(default_factory=RunOptions)
    output: OutputOptions = field(default_factory=OutputOptions)
    variant: str | None = None
    weights: Path | None = None
    offline: bool = False
    device: str = "auto"
    precision: str = "auto"
    backend: str = "torch"
    protect: ProtectOptions = field(default_factory=ProtectOptions)

    def __post_init__(self) -> None:
        if self.variant is not None and self.variant not in VARIANTS:
            raise SettingsError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.weights is not None:
            weights = Path(self.weights)
            if weights.suffix.lower() != ".safetensors":
                raise SettingsError(f"weights must be a .safetensors file; got {weights.name} (convert an official "
                                    "checkpoint first: python -m emavfi convert FILE.pkl)")
            if not weights.is_file():
                raise SettingsError(f"weights file not found: {weights}")
        if not _DEVICE.match(str(self.device)):
            raise SettingsError(f"unknown device {self.device!r}; use auto, cpu, cuda, cuda:N or mps")
        if self.precision != "auto" and self.precision not in PRECISIONS:
            raise SettingsError(f"precision must be auto, {', '.join(PRECISIONS)}; got {self.precision!r}")
        if self.run.dedupe and self.request.timesteps is not None:
            raise SettingsError("--dedupe retimes the drawings to a frame rate: use --multiplier or --fps, not "
                                "--timesteps")
        from .backends import problem

        reason = problem(self.backend, str(self.device).split(":")[0])
        if reason:
            raise SettingsError(reason)

    @functools.cached_property
    def model_variant(self) -> str:
        """The variant to load: the one asked for, the one the weights file records, or the default (the file's
        header is read once: prepare, the run record and the loader all ask)."""
        if self.variant is not None:
            return self.variant
        if self.weights is not None:
            from .weights import inspect_safetensors

            return inspect_safetensors(self.weights)
        return DEFAULT_VARIANT


def check_dedupe_threshold(threshold: float | None) -> float:
    """A held-frame threshold as a float (None = the default), or a one-line ValueError naming the bad value."""
    if threshold is None:
        return DEFAULT_DEDUPE_THRESHOLD
    if isinstance(threshold, bool) or not isinstance(threshold, (int, float)) or not math.isfinite(threshold) \
            or not 0 <= threshold <= MAX_DEDUPE_THRESHOLD:
        raise ValueError(f"dedupe threshold must be from 0 to {MAX_DEDUPE_THRESHOLD:g} (0 = exact repeats only, "
                         f"{DEFAULT_DEDUPE_THRESHOLD:g} default: times the difference noise alone makes); "
                         f"got {threshold!r}")
    return float(threshold)


def check_compression(extension: str, compression: str | None) -> str | None:
    """compression (lower case) when frames of `extension` (".png") take it; None stays None; else SettingsError."""
    if compression is None:
        return None
    compression = str(compression).lower()
    names = COMPRESSIONS.get(extension)
    if names is None:
        raise SettingsError(f"--compression applies to {', '.join(e.lstrip('.').upper() for e in COMPRESSIONS)} "
                            f"frames, not {extension.lstrip('.').upper()}; leave it out")
    if compression not in names:
        raise SettingsError(f"{extension.lstrip('.').upper()} compression must be one of {', '.join(names)}; "
                            f"got {compression!r}")
    return compression


def _compressions() -> str:
    return "; ".join(f"{e.lstrip('.').upper()}: {', '.join(names)}" for e, names in COMPRESSIONS.items())


def check_feather(px: object) -> int:
    """A feather width in px (0..MAX_PROTECT_FEATHER), or a one-line ValueError naming the bad value."""
    if isinstance(px, bool) or not isinstance(px, int) or not 0 <= px <= MAX_PROTECT_FEATHER:
        raise ValueError(f"protect feather must be a whole number of px from 0 to {MAX_PROTECT_FEATHER} "
                         f"(default {DEFAULT_PROTECT_FEATHER}); got {px!r}")
    return px


def _number(value: object, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SettingsError(f"{name} must be a finite number; got {value!r}")
    return float(value)


def _whole(value: object, name: str, low: int, high: int, hint: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise SettingsError(f"{_flag(name)} must be a whole number from {low} to {high} ({hint}); got {value!r}")
