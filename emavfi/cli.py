"""`python -m emavfi`: interpolate image sequences and videos, convert official checkpoints.

Interpolation streams: source frames are read, interpolated and written one window of pairs at a time, so
memory stays flat however long the clip. Every error is one line on stderr and a non-zero exit code.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any, TextIO

import torch

from . import frames_io, schedule
from .clip import ClipInterpolator, auto_chunk_size, estimate_pair_bytes, free_memory_bytes
from .config import VARIANTS, ModelConfig
from .errors import EmaVfiError
from .frames_io import FolderReader, ImageFormat, VideoReader, VideoWriter
from .schedule import OutputFrame

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130
DEFAULT_VARIANT = "ours_small_t"
MANIFEST = ".emavfi-run.json"
RETIME_DYADIC_DEPTH = 3  # t = 0.5-only models retime to the nearest 1/8 of a frame (three bisections)
MAX_AUTO_WINDOW = 8
_PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16, "bf16": torch.bfloat16}


class UsageError(Exception):
    """Bad command-line arguments (exit code 2)."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{message} (see: python -m {self.prog} --help)")


# ----------------------------------------------------------------------------------------------- arguments

def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m emavfi` (subcommands interpolate and convert)."""
    parser = _Parser(prog="emavfi", description="EMA-VFI video frame interpolation.")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    run = commands.add_parser("interpolate", help="make in-between frames for an image folder or a video",
                              description="Interpolate a folder of frames (PNG/JPG/TIFF/EXR) or a video.")
    run.add_argument("input", type=Path, help="folder of frames (natural order) or a video file")
    run.add_argument("-o", "--output", type=Path, required=True,
                     help="output folder (frames in the input's format and bit depth) or a video file (.mp4 ...)")
    mode = run.add_mutually_exclusive_group()
    mode.add_argument("--multiplier", "-m", type=int, help="frames per source frame, 2-16 (default 2)")
    mode.add_argument("--fps", help="target frame rate, e.g. 60, 59.94 or 60000/1001 (retime)")
    mode.add_argument("--timesteps", help="explicit in-between times, e.g. '0.25, 0.5, 0.75' or '1/3, 2/3'")
    run.add_argument("--source-fps", help="frame rate of the input (needed for image folders with --fps)")
    run.add_argument("--speed", help="playback speed for --fps retiming, e.g. 0.5 = half-speed slow motion")
    run.add_argument("--variant", choices=VARIANTS, help=f"model variant (default {DEFAULT_VARIANT}; "
                     "with --weights, detected from the file)")
    run.add_argument("--weights", type=Path, help="local .safetensors weights (default: download from the Hub)")
    run.add_argument("--offline", action="store_true", help="never download; use local or cached weights only")
    run.add_argument("--tta", action="store_true", help="test-time augmentation: better, twice as slow")
    run.add_argument("--scale", type=float, default=1.0,
                     help="flow resolution: 1 (default), 0.5 for 2K, 0.25 for 4K input")
    run.add_argument("--cut-threshold", type=float, default=schedule.DEFAULT_CUT_THRESHOLD,
                     help=f"scene-cut sensitivity (default {schedule.DEFAULT_CUT_THRESHOLD}; 0 = off); cut pairs "
                          "repeat the nearer frame instead of blending two shots")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    run.add_argument("--precision", choices=("auto", *_PRECISIONS), default="auto",
                     help="auto = fp16 on CUDA, fp32 elsewhere")
    run.add_argument("--chunk", type=int, default=0, help="frame pairs per batch (default: from free memory)")
    existing = run.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true",
                          help="keep complete frames already in the output folder and make only the missing ones")
    existing.add_argument("--overwrite", action="store_true", help="delete frames already in the output folder")

    convert = commands.add_parser("convert", help="convert an official .pkl checkpoint to .safetensors",
                                  description="Convert an official EMA-VFI .pkl checkpoint without running "
                                              "pickled code.")
    convert.add_argument("source", type=Path, help="official checkpoint, e.g. ours_t.pkl")
    convert.add_argument("-o", "--output", type=Path, help="destination .safetensors (default: beside the source)")
    convert.add_argument("--variant", choices=VARIANTS, help="expected variant (default: detected from shapes)")
    return parser


# ----------------------------------------------------------------------------------------------- progress

class ProgressLine:
    """One status line on stderr: frames done, frames per second and time left."""

    def __init__(self, total: int, stream: TextIO | None = None, min_interval: float | None = None):
        self.total = total
        self.stream = stream or sys.stderr
        self.tty = bool(getattr(self.stream, "isatty", lambda: False)())
        self.min_interval = min_interval if min_interval is not None else (0.25 if self.tty else 5.0)
        self.started = time.monotonic()
        self._last_print = float("-inf")
        self._skipped = 0
        self.done = 0

    def skip(self, count: int) -> None:
        """Count frames that were already there (resume): done, but not part of the speed."""
        self._skipped += count
        self.done += count

    def update(self, done: int, force: bool = False) -> None:
        """Record progress; print at most every min_interval seconds."""
        self.done = done
        now = time.monotonic()
        if not force and now - self._last_print < self.min_interval:
            return
        self._last_print = now
        elapsed = max(now - self.started, 1e-9)
        rate = (done - self._skipped) / elapsed
        left = (self.total - done) / rate if rate > 0 else float("nan")
        eta = "--:--" if left != left else _clock(left)
        line = f"{done}/{self.total} frames  {rate:.2f} frames/s  ETA {eta}"
        self.stream.write(f"\r{line}   " if self.tty else f"{line}\n")
        self.stream.flush()

    def close(self) -> None:
        """End the status line."""
        if self.tty and self._last_print != float("-inf"):
            self.stream.write("\n")
            self.stream.flush()


def _clock(seconds: float) -> str:
    seconds = int(round(seconds))
    hours, rest = divmod(seconds, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


# ----------------------------------------------------------------------------------------------- model

def _pick_device(name: str) -> torch.device:
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device {name!r}; use auto, cpu, cuda, cuda:N or mps") from None
    if device.type == "cuda" and not torch.cuda.is_available():
        raise EmaVfiError(f"--device {name}: CUDA is not available here (PyTorch {torch.__version__}); "
                          "use --device cpu")
    if device.type == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise EmaVfiError(f"--device {name}: MPS is not available here; use --device cpu")
    return device


def _pick_dtype(precision: str, device: torch.device) -> torch.dtype:
    if precision == "auto":
        return torch.float16 if device.type == "cuda" else torch.float32
    return _PRECISIONS[precision]


def _load_model(args: argparse.Namespace, device: torch.device, dtype: torch.dtype) -> Any:
    """The model for --weights (variant detected from the file) or for --variant from the Hub/cache."""
    from . import load_model

    if args.weights is not None:
        if not args.weights.is_file():
            raise EmaVfiError(f"weights file not found: {args.weights}")
        return load_model(args.weights, variant=args.variant, device=device, dtype=dtype)
    from .hub import default_models_dir, resolve_weights

    variant = args.variant or DEFAULT_VARIANT
    # a <variant>.safetensors the user put into the default folder (e.g. a converted official file) comes first
    path = resolve_weights(variant, models_dirs=[default_models_dir()], offline=args.offline,
                           progress=_download_progress())
    return load_model(path, variant=variant, device=device, dtype=dtype)


def _download_progress() -> Callable[[int, int], None]:
    last = [0.0]

    def report(done: int, total: int) -> None:
        now = time.monotonic()
        if now - last[0] >= 1.0 or done >= total:
            last[0] = now
            sys.stderr.write(f"downloading weights: {done / 1e6:.1f} of {total / 1e6:.1f} MB\n")
    return report


# ----------------------------------------------------------------------------------------------- plan

def _exact_fps(text: str | None, what: str) -> Fraction | None:
    if text is None:
        return None
    try:
        return schedule.parse_fps(text)
    except ValueError as exc:
        raise UsageError(f"{what}: {exc}") from None


@dataclass(frozen=True)
class _Mode:
    """What to make, checked before the model loads: in-between times per pair, or an fps retime."""

    timesteps: tuple[Fraction, ...] = ()
    multiplier: int | None = None
    retime: tuple[Fraction, Fraction, Fraction] | None = None  # (source fps, target fps, speed)
    out_fps: Fraction | None = None


def _mode(args: argparse.Namespace, source_fps: Fraction | None) -> _Mode:
    if args.fps is not None or args.speed is not None:
        if source_fps is None:
            raise UsageError("--fps/--speed needs the input frame rate: add --source-fps (e.g. 24 or 24000/1001)")
        target = _exact_fps(args.fps, "--fps") if args.fps is not None else source_fps
        speed = _exact_fps(args.speed, "--speed") if args.speed is not None else Fraction(1)
        return _Mode(retime=(source_fps, target, speed), out_fps=target)
    if args.timesteps is not None:
        ts = tuple(schedule.parse_timesteps_exact(args.timesteps))
        return _Mode(timesteps=ts, out_fps=None if source_fps is None else source_fps * (len(ts) + 1))
    multiplier = 2 if args.multiplier is None else args.multiplier
    ts = tuple(schedule.multiplier_timesteps(multiplier))  # validates 2..16
    return _Mode(timesteps=ts, multiplier=multiplier, out_fps=None if source_fps is None else source_fps * multiplier)


def _plan(mode: _Mode, n: int, config: ModelConfig) -> list[OutputFrame]:
    """The output plan, checked against what the model was trained for."""
    t_model = getattr(config, "arbitrary_t", True)
    if mode.retime is not None:
        source_fps, target, speed = mode.retime
        depth = None if t_model else RETIME_DYADIC_DEPTH
        if depth is not None:
            print(f"note: this model was trained for t = 0.5 only; retime times snap to the nearest k/2^{depth} "
                  "and are made by bisection (use a `_t` variant for exact times)", file=sys.stderr)
        return schedule.retime_plan(n, source_fps, target, speed=speed, dyadic_depth=depth)
    if not t_model and mode.multiplier is not None:
        schedule.recursive_levels(mode.multiplier)
    elif not t_model and any(schedule.dyadic_depth(t) is None for t in mode.timesteps):
        raise UsageError("this model was trained for t = 0.5 only, so it makes only t = k/2^d by bisection "
                         "(0.25, 0.5, 0.75 ...); use a `_t` variant for other timesteps")
    return schedule.timesteps_plan(n, mode.timesteps)


def _windows(plan: Sequence[OutputFrame], n: int, pairs_per_window: int) -> list[tuple[int, int, int, int]]:
    """(first source, last source, first output, end output) per window; plan positions must not decrease."""
    positions = [frame.position for frame in plan]
    if any(b < a for a, b in zip(positions, positions[1:])):
        raise EmaVfiError("internal error: output plan is not in time order")
    windows = []
    k = 0
    for a in range(0, max(n - 1, 1), pairs_per_window):
        b = min(a + pairs_per_window, n - 1)
        last = b >= n - 1
        start = k
        while k < len(plan) and (positions[k] < b or (last and positions[k] <= b)):
            k += 1
        windows.append((a, b, start, k))
    return windows


class _WindowFrames:
    """Source frames a..b for consecutive windows, read once each (the shared boundary frame is kept)."""

    def __init__(self, reader: FolderReader | VideoReader):
        self.reader = reader
        self._iterator: Any = None
        self._next = 0  # index of the frame the iterator yields next
        self._kept: tuple[int, torch.Tensor] | None = None

    def get(self, a: int, b: int) -> torch.Tensor:
        """[b - a + 1, C, H, W] float32."""
        frames: list[torch.Tensor] = []
        if self._kept is not None and self._kept[0] == a:
            frames.append(self._kept[1])
        needed = a + len(frames)
        # Folders seek by index; a video is decoded on from where it is (frames before `a` are dropped).
        seek = isinstance(self.reader, FolderReader) and needed > self._next
        if self._iterator is None or needed < self._next or seek:
            self._iterator, self._next = self.reader.frames(needed), needed
        while self._next <= b:
            try:
                frame = next(self._iterator)
            except StopIteration:
                raise frames_io.FramesIOError(f"the input ended after {self._next} frames; expected "
                                              f"{len(self.reader)} (a damaged or variable-length video?)") from None
            if self._next >= a:
                frames.append(frame)
            self._next += 1
        self._kept = (b, frames[-1])
        return torch.stack(frames)


# ----------------------------------------------------------------------------------------------- outputs

class _FolderOutput:
    def __init__(self, folder: Path, total: int, fmt: ImageFormat, source: FolderReader | VideoReader):
        self.folder, self.total, self.format = folder, total, fmt
        # Copies of source frames are the source files themselves when the format is the same (no re-encode).
        self._copy_files = isinstance(source, FolderReader) and source.format == fmt
        self._source = source

    def path(self, index: int) -> Path:
        return self.folder / frames_io.frame_name(index, self.total, self.format.extension)

    def write(self, index: int, image: torch.Tensor, frame: OutputFrame) -> None:
        if self._copy_files and frame.is_copy:
            frames_io.atomic_write_bytes(self.path(index), self._source.paths[frame.source].read_bytes())
        else:
            frames_io.write_image(self.path(index), image, self.format)

    def existing(self) -> list[Path]:
        pattern = re.compile(r"frame_\d+" + re.escape(self.format.extension) + "$")
        return [p for p in self.folder.iterdir() if pattern.fullmatch(p.name)] if self.folder.is_dir() else []


def _manifest(args: argparse.Namespace, n: int, total: int, model: Any, fmt: ImageFormat) -> dict[str, Any]:
    return {
        "input": str(args.input.resolve()), "input_frames": n, "output_frames": total,
        "mode": {"multiplier": args.multiplier, "fps": args.fps, "timesteps": args.timesteps,
                 "source_fps": args.source_fps, "speed": args.speed},
        "variant": getattr(model, "variant", None), "tta": args.tta, "scale": args.scale,
        "cut_threshold": args.cut_threshold, "format": [fmt.extension, fmt.depth, fmt.channels],
    }


def _prepare_folder(output: _FolderOutput, args: argparse.Namespace, manifest: dict[str, Any]) -> set[int]:
    """Create the folder; return output indices already complete (with --resume) after checking the run matches."""
    folder = output.folder
    if folder.exists() and not folder.is_dir():
        raise EmaVfiError(f"output {folder} exists and is not a folder")
    folder.mkdir(parents=True, exist_ok=True)
    existing = output.existing()
    manifest_path = folder / MANIFEST
    if existing and not (args.resume or args.overwrite):
        raise UsageError(f"{folder} already holds {len(existing)} frames; add --resume to finish that run "
                         "or --overwrite to replace them")
    if args.overwrite:
        for path in existing:
            path.unlink()
        existing = []
    if args.resume and manifest_path.is_file():
        try:
            before = json.loads(manifest_path.read_text())
        except (OSError, ValueError):
            before = None
        if isinstance(before, dict):
            changed = [key for key in manifest if before.get(key) != json.loads(json.dumps(manifest[key]))]
            if changed:
                raise UsageError(f"--resume: {folder} was written with different settings ({', '.join(changed)}); "
                                 "use the same command, or --overwrite")
    frames_io.atomic_write_bytes(manifest_path, json.dumps(manifest, indent=1).encode())
    names = {p.name for p in existing}
    return {k for k in range(output.total)
            if output.path(k).name in names and frames_io.is_complete_image(output.path(k))}


# ----------------------------------------------------------------------------------------------- run

class _Run:
    """What a run has written so far, for the message after Ctrl-C."""

    def __init__(self) -> None:
        self.output: Path | None = None
        self.written = 0
        self.total = 0
        self.video = False


def _auto_window(model: Any, size: tuple[int, int], device: torch.device, dtype: torch.dtype, tta: bool) -> int:
    config = getattr(model, "config", None)
    config = config if isinstance(config, ModelConfig) else ModelConfig(width=32)
    pair_bytes = estimate_pair_bytes(config, size[0], size[1], 1, dtype, tta=tta)
    max_window = MAX_AUTO_WINDOW if device.type != "cpu" else 2
    return auto_chunk_size(free_memory_bytes(device), pair_bytes, max_chunk=max_window)


def run_interpolate(args: argparse.Namespace, state: _Run) -> int:
    """The interpolate subcommand: stream windows of source pairs through the model into files."""
    if args.chunk < 0:
        raise UsageError(f"--chunk must be >= 0 (0 = automatic); got {args.chunk}")
    if args.cut_threshold < 0:
        raise UsageError(f"--cut-threshold must be >= 0 (0 = off); got {args.cut_threshold}")
    video_out = args.output.suffix.lower() in frames_io.VIDEO_EXTENSIONS
    if video_out and args.resume:
        raise UsageError("--resume works with an output folder of frames, not a video file")
    reader = frames_io.open_frames(args.input)
    n = len(reader)
    source_fps = _exact_fps(args.source_fps, "--source-fps") or reader.fps
    mode = _mode(args, source_fps)
    if video_out and mode.out_fps is None:
        raise UsageError("a video output needs a frame rate: add --source-fps (image folder input)")
    device = _pick_device(args.device)
    dtype = _pick_dtype(args.precision, device)
    model = _load_model(args, device, dtype)
    plan = _plan(mode, n, getattr(model, "config", ModelConfig()))
    total = len(plan)
    state.output, state.total, state.video = args.output, total, video_out

    window = args.chunk or _auto_window(model, reader.size, device, dtype, args.tta)
    interpolator = ClipInterpolator(model, tta=args.tta, scale=args.scale, chunk_size=window, device=device,
                                    dtype=dtype, hdr="auto")
    windows = _windows(plan, n, window)
    if video_out:
        sink: VideoWriter | _FolderOutput = VideoWriter(args.output, mode.out_fps)
        done: set[int] = set()
    else:
        sink = _FolderOutput(args.output, total, reader.format, reader)
        done = _prepare_folder(sink, args, _manifest(args, n, total, model, reader.format))

    frames = _WindowFrames(reader)
    progress = ProgressLine(total)
    cuts_found = 0
    try:
        for a, b, first, end in windows:
            if all(k in done for k in range(first, end)):
                progress.skip(end - first)
                continue
            clip_frames = frames.get(a, b)
            cuts = schedule.detect_cuts(clip_frames, args.cut_threshold) if args.cut_threshold > 0 and b > a else []
            cuts_found += len(cuts)
            local = [OutputFrame(f.source - a, f.t) for f in plan[first:end]]
            result = interpolator(clip_frames, local, cuts=cuts)
            for offset, k in enumerate(range(first, end)):
                if k in done:
                    progress.skip(1)
                    continue
                if isinstance(sink, VideoWriter):
                    sink.write(result[offset])
                else:
                    sink.write(k, result[offset], plan[k])
                state.written += 1
                progress.update(progress.done + 1)
        if isinstance(sink, VideoWriter):
            sink.close()
        progress.update(total, force=True)
    except BaseException:
        if isinstance(sink, VideoWriter):
            sink.abort()
        raise
    finally:
        progress.close()
    elapsed = time.monotonic() - progress.started
    note = f", {cuts_found} scene cut(s) kept sharp" if cuts_found else ""
    sys.stderr.write(f"wrote {state.written} frames to {args.output} in {_clock(elapsed)}{note}\n")
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """The convert subcommand: official .pkl -> .safetensors via emavfi.weights.convert_pkl."""
    from .weights import convert_pkl

    destination = args.output or args.source.with_suffix(".safetensors")
    variant = convert_pkl(args.source, destination, args.variant)
    sys.stderr.write(f"converted {args.source} -> {destination} (variant {variant})\n")
    return 0


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (errors: one line on stderr, never a traceback)."""
    state = _Run()
    try:
        args = build_parser().parse_args(argv)
        if args.command == "convert":
            return run_convert(args)
        return run_interpolate(args, state)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        where = f" to {state.output}" if state.output else ""
        if state.video:
            sys.stderr.write(f"\ninterrupted: no video written{where} (the partial file was removed)\n")
        else:
            hint = "; run the same command with --resume to continue" if state.written else ""
            sys.stderr.write(f"\ninterrupted: {state.written} complete frames written{where}{hint}\n")
        return EXIT_INTERRUPTED
    except UsageError as exc:
        sys.stderr.write(f"emavfi: error: {_one_line(exc)}\n")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if os.environ.get("EMAVFI_DEBUG"):
            raise
        known = isinstance(exc, (EmaVfiError, ValueError, OSError, MemoryError))
        detail = _one_line(exc) if known else f"unexpected {type(exc).__name__}: {_one_line(exc)} " \
                                              "(set EMAVFI_DEBUG=1 for the traceback)"
        sys.stderr.write(f"emavfi: error: {detail}\n")
        return EXIT_ERROR
