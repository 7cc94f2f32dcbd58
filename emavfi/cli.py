"""`python -m emavfi`: interpolate image sequences and videos, plan farm tasks, convert official checkpoints.

Only argument parsing and printing live here: settings are validated by emavfi.settings, the work is done
by emavfi.render (one process), emavfi.distributed (Ray). Every error is one line on stderr; usage errors
exit with 2, other failures with 1, Ctrl-C with 130.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from . import provenance, ranges
from .backends import BACKENDS
from .config import DEFAULT_VARIANT, VARIANTS
from .errors import EmaVfiError, one_line
from .media.base import MediaOptionError
from .outputs import OutputFolderError, check_new_file, record_file
from .progress import ProgressLine, clock, download_progress
from .schedule import Request, parse_fps, parse_timesteps_exact
from .sequences import GAPS
from .settings import (COMPRESSIONS, DEFAULT_COMPRESSION, DEFAULT_PROTECT_FEATHER, ON_ERROR, PRECISIONS, OutputOptions,
                       ProtectOptions, RunOptions, Settings, SettingsError)

EXIT_ERROR, EXIT_USAGE, EXIT_INTERRUPTED = 1, 2, 130


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        raise SettingsError(f"{message} (see: python -m {self.prog} --help)")


# ----------------------------------------------------------------------------------------------- arguments

def _request_arguments(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument("--multiplier", "-m", type=int, help="frames per source frame, 2-16 (default 2)")
    mode.add_argument("--fps", help="target frame rate, e.g. 60, 59.94 or 60000/1001 (retime)")
    mode.add_argument("--timesteps", help="explicit in-between times, e.g. '0.25, 0.5, 0.75' or '1/3, 2/3'")
    parser.add_argument("--source-fps", help="frame rate of the input (needed for image folders with --fps)")
    parser.add_argument("--speed", help="playback speed for retiming, e.g. 0.5 = half-speed slow motion")
    parser.add_argument("--variant", choices=VARIANTS, help=f"model variant (default {DEFAULT_VARIANT}; "
                        "with --weights, read from the file)")
    parser.add_argument("--weights", type=Path, help="local .safetensors weights (default: download from the Hub)")
    parser.add_argument("--start-number", type=int,
                        help="number of the first output frame file; default: the input's first frame number "
                             "(1001 for a plate numbered from 1001), else 0")
    parser.add_argument("--gaps", choices=GAPS, default="error",
                        help="missing frame numbers in the input: error (default, before any work), interpolate "
                             "(make them at their true times) or ignore (treat the files as consecutive)")
    parser.add_argument("--pattern", help="which sequence of a folder holding several, e.g. 'plate.####.exr' "
                        "(# = digits, * and ? as usual)")


def _convert_parser(commands: Any) -> argparse.ArgumentParser:
    """The convert subcommand's arguments."""
    convert = commands.add_parser("convert", help="convert an official .pkl checkpoint to .safetensors",
                                  description="Convert an official EMA-VFI .pkl checkpoint without running "
                                              "pickled code.")
    convert.add_argument("source", type=Path, help="official checkpoint, e.g. ours_t.pkl")
    convert.add_argument("-o", "--output", type=Path, help="destination .safetensors (default: beside the source)")
    convert.add_argument("--variant", choices=VARIANTS, help="expected variant (default: detected from shapes)")
    convert.add_argument("--overwrite", action="store_true", help="replace an existing destination that an earlier "
                         "convert wrote (never another file)")
    return convert


def _interpolate_parser(commands: Any) -> argparse.ArgumentParser:
    """The interpolate subcommand's arguments."""
    run = commands.add_parser("interpolate", help="make in-between frames for an image folder or a video",
                              description="Interpolate a folder of frames (EXR/DPX/TIFF/PNG/JPG) or a video.")
    run.add_argument("input", type=Path, help="folder of frames (natural order) or a video file")
    run.add_argument("-o", "--output", type=Path, required=True,
                     help="new output folder (frames in the input's format) or a video file (.mp4, .mov ...)")
    _request_arguments(run)
    run.add_argument("--offline", action="store_true", help="never download; use local or cached weights only")
    run.add_argument("--tta", action="store_true", help="test-time augmentation: better, twice as slow")
    run.add_argument("--scale", type=float, default=1.0, help="flow resolution: 1 (default), 0.5 for 2K, 0.25 for 4K")
    run.add_argument("--cut-threshold", type=float, help="scene-cut sensitivity (default: the detector's; 0 = off)")
    run.add_argument("--dedupe", action="store_true", help="drop held frames (anime on twos, repeated frames) and "
                     "retime the drawings at their true times; -m N = N x the input rate, same duration")
    run.add_argument("--dedupe-threshold", type=float, help="how far a held frame may differ, in multiples of the "
                     "difference noise alone makes (default 2; 0 = exact repeats only)")
    run.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    run.add_argument("--precision", choices=("auto", *PRECISIONS), default="auto",
                     help="auto = fp16 on CUDA, fp32 elsewhere; bf16 on the CPU needs native bf16 (AMX or "
                     "AVX-512 BF16) and works with --backend openvino too")
    run.add_argument("--backend", choices=BACKENDS, default="torch", help="torch (default), openvino, onnxruntime "
                     "(CPU), tensorrt (NVIDIA GPU) or auto (openvino on CPU, tensorrt on CUDA, where installed); "
                     "needs -r requirements-runtimes.txt")
    run.add_argument("--chunk", type=int, default=0, help="frame pairs per device batch (default: 1 on CPU, 2 "
                     "with --backend openvino up to 480x640, from free memory on a GPU)")
    existing = run.add_mutually_exclusive_group()
    existing.add_argument("--resume", action="store_true", help="keep verified frames of an earlier run of this "
                          "command and make only the missing ones")
    run.add_argument("--redo-changed", action="store_true", help="with --resume or --overwrite: re-render the frames "
                     "that were changed after emavfi wrote them (without it, both stop and name them)")
    existing.add_argument("--overwrite", action="store_true", help="replace the frames an earlier emavfi run wrote "
                          "in the output folder, if unchanged since (never deletes other files)")
    run.add_argument("--frames", help="render only these output frames (output numbering, inclusive), "
                     "e.g. 1001-1100 or 1-50,101-150: one render-farm task")
    run.add_argument("--format", help="output file type for frame folders (exr, dpx, tif, png, jpg); default: the input's")
    run.add_argument("--bit-depth", help="output bit depth: 8, 10, 12, 16, half or float; default: the input's")
    run.add_argument("--compression", help="frame compression (pixels unchanged): PNG zlib level 0-9 (default "
                     f"{DEFAULT_COMPRESSION['.png']}); EXR {', '.join(COMPRESSIONS['.exr'])}; TIFF none, lzw, zip "
                     "(default for EXR/TIFF: the input's, or zip from another format)")
    run.add_argument("--io-threads", type=int, default=0, help="threads encoding and writing output frames "
                     "(default 0: one per core this process may use)")
    run.add_argument("--codec", help="video codec: h264, h264_10bit, hevc_10bit, prores_422hq, prores_4444 (alpha), "
                     "ffv1 (alpha)")
    run.add_argument("--colorspace", help="colour space of the input (OpenColorIO name); default from the file")
    run.add_argument("--ocio", help="OpenColorIO config (default: $OCIO, else the built-in ACES studio config)")
    run.add_argument("--apply-rotation", action="store_true", help="turn a phone video's pixels upright by its "
                     "display rotation (default: keep them as stored and carry the rotation to the output)")
    run.add_argument("--on-error", choices=ON_ERROR, default="stop", help="a damaged input frame stops the run "
                     "(default) or skips the output frames that need it")
    _protect_arguments(run)
    run.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="spread the shot over a Ray cluster: "
                     "no ADDRESS = a local one on this machine, 'auto' or ray://host:port = join that cluster")
    run.add_argument("--ray-workers", type=int, help="Ray workers (default: one per GPU, else one per T "
                     "CPUs, T = the threads one process uses here; each computes with T threads)")
    return run


def _protect_arguments(run: argparse.ArgumentParser) -> None:
    run.add_argument("--protect", type=Path, metavar="MASK", help="hold where this mask is white: in-between frames "
                     "show the nearest source frame there; one image for the shot, or a folder or video with one "
                     "mask per input frame (matched by frame number)")
    run.add_argument("--protect-feather", type=int, default=DEFAULT_PROTECT_FEATHER, metavar="PX",
                     help=f"px over which a held region's edge blends in (default {DEFAULT_PROTECT_FEATHER})")
    run.add_argument("--protect-overlays", action="store_true", help="find burned-in overlays (timecode, "
                     "subtitles, logos, HUDs: pixels that stay put while the picture moves) and hold them")
    run.add_argument("--protect-overlays-out", type=Path, metavar="DIR", help="write the detected overlay masks "
                     "there to check them: overlays.<frame>.png, one per input frame of the outputs rendered (an "
                     "input frame goes with the first output at or after it; a --dedupe held frame: its drawing's)")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `python -m emavfi` (subcommands interpolate, plan and convert)."""
    from . import __version__

    parser = _Parser(prog="emavfi", description="EMA-VFI video frame interpolation.")
    parser.add_argument("--version", action="version", version=f"emavfi {__version__}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True, parser_class=_Parser)

    run = _interpolate_parser(commands)
    plan = commands.add_parser("plan", help="print the output frame count and farm task ranges of a shot",
                               description="Plan a render-farm job: output frames and --frames ranges per task.")
    plan.add_argument("input", type=Path, help="folder of frames or a video file")
    _request_arguments(plan)
    tasks = plan.add_mutually_exclusive_group()
    tasks.add_argument("--tasks", type=int, help="number of tasks")
    tasks.add_argument("--frames-per-task", type=int, help="output frames per task")
    plan.add_argument("--json", action="store_true", help="machine-readable output")

    convert = _convert_parser(commands)
    for command in (run, plan, convert):
        command.add_argument("--verbose", action="store_true", help="also show what OpenImageIO, libpng and the "
                             "video encoders print (hidden by default)")
    from .evaluate.cli import add_parsers as add_evaluate_parsers  # evaluate, compare (their own module, no torch)
    add_evaluate_parsers(commands)
    from .train.cli import add_parser as add_finetune_parser  # finetune (its own module, no torch)
    add_finetune_parser(commands)
    from .export.cli import add_parser as add_export_parser  # export (its own module, no torch)
    add_export_parser(commands)
    return parser


def settings_from(args: argparse.Namespace) -> Settings:
    """The validated Settings of parsed arguments (SettingsError on any bad value)."""
    try:
        request = Request(multiplier=args.multiplier,
                          timesteps=None if args.timesteps is None else tuple(parse_timesteps_exact(args.timesteps)),
                          target_fps=None if args.fps is None else parse_fps(args.fps),
                          source_fps=None if args.source_fps is None else parse_fps(args.source_fps),
                          speed=1 if args.speed is None else parse_fps(args.speed))
    except (TypeError, ValueError) as exc:
        raise SettingsError(str(exc)) from None
    interpolate = args.command == "interpolate"
    run = RunOptions(tta=args.tta, scale=args.scale, cut_threshold=args.cut_threshold, chunk=args.chunk,
                     dedupe=args.dedupe, dedupe_threshold=args.dedupe_threshold) if interpolate else RunOptions()
    output = OutputOptions(start_number=args.start_number, frames=getattr(args, "frames", None),
                           resume=getattr(args, "resume", False), overwrite=getattr(args, "overwrite", False),
                           format=getattr(args, "format", None), bit_depth=getattr(args, "bit_depth", None),
                           gaps=args.gaps, pattern=args.pattern, redo_changed=getattr(args, "redo_changed", False),
                           apply_rotation=getattr(args, "apply_rotation", False),
                           codec=getattr(args, "codec", None), colorspace=getattr(args, "colorspace", None),
                           ocio=getattr(args, "ocio", None), on_error=getattr(args, "on_error", "stop"),
                           compression=getattr(args, "compression", None), io_threads=getattr(args, "io_threads", 0))
    protect = ProtectOptions(mask=args.protect, feather=args.protect_feather, overlays=args.protect_overlays,
                             overlays_out=args.protect_overlays_out) if interpolate else ProtectOptions()
    return Settings(request=request, run=run, output=output, variant=args.variant, weights=args.weights,
                    offline=getattr(args, "offline", False), device=getattr(args, "device", "auto"),
                    precision=getattr(args, "precision", "auto"), backend=getattr(args, "backend", "torch"),
                    protect=protect)


# ----------------------------------------------------------------------------------------------- commands

class _Status:
    """What the running command has written, for the message after Ctrl-C."""

    output: Path | None = None
    written = 0
    video = False


def run_interpolate(args: argparse.Namespace, status: _Status) -> int:
    """The interpolate subcommand: settings and paths checked first, then weights, then frames."""
    from . import loading, preflight, render

    job = render.Job(args.input, args.output, settings_from(args))
    if args.ray is not None:
        preflight.check_ray_workers(args.ray_workers, None if args.ray == "local" else args.ray)
        job.check()  # on the driver too: a bad path or codec fails here, before any worker starts
        return _run_ray(job, args, status)
    prepared = render.prepare(job)  # checks the job first
    status.output, status.video = job.output, job.video_out
    # The output folder is checked and locked before any weights are resolved, downloaded or loaded.
    with contextlib.nullcontext() if job.video_out else render.open_output(prepared) as folder:
        part = '' if len(prepared.requested) == prepared.total else f' ({len(prepared.requested)} in this task)'
        sys.stderr.write(f"{prepared.source.describe()} -> {prepared.total} frames{part}\n")
        for note in preflight.notes(prepared) + ([prepared.masks.note] if prepared.masks and prepared.masks.note
                                                 else []):
            render.stderr_note(note)
        preflight.check_memory(prepared)
        model = loading.load_model_for(job.settings, progress=download_progress())
        if folder is not None:  # the weights are here now: the record names them before the first frame
            folder.confirm(provenance.WEIGHTS_KEY, provenance.weights_sha256(job.settings))
        progress, count = _counting_progress(status)
        try:
            report = render.render(prepared, model, folder=folder, progress=count, note=render.stderr_note)
        finally:
            progress.close()
    kept = f", {report.skipped} already complete" if report.skipped else ""
    if report.damaged:
        first = next(iter(report.damaged.values()))
        sys.stderr.write(f"warning: {report.missing} output frames were not made: they need {len(report.damaged)} "
                         f"source frame(s) that cannot be read (--on-error skip), e.g. {first}\n")
    rotation = preflight.outcome(prepared.source, job.settings, job.video_out)
    sys.stderr.write(f"wrote {report.written} frames to {job.output} in {clock(time.monotonic() - progress.started)}"
                     f"{kept}{_cuts_suffix(report.cuts)}{rotation}\n")
    if report.protected:
        sys.stderr.write(f"{report.protected}\n")
    return 0


def _run_ray(job: Any, args: argparse.Namespace, status: _Status) -> int:
    from . import distributed, media, preflight

    status.output = job.output
    progress, count = _counting_progress(status)
    try:
        report = distributed.render(job, address=None if args.ray == "local" else args.ray, workers=args.ray_workers,
                                    progress=count)
    finally:
        progress.close()
    rotation = "" if job.input.is_dir() else preflight.outcome(  # a video's display rotation (header, first frame)
        media.open_source(job.input, apply_rotation=job.settings.output.apply_rotation), job.settings, job.video_out)
    sys.stderr.write(f"wrote {report.written} frames to {job.output} in {clock(report.seconds)} on {report.workers} "
                     f"Ray worker(s) ({report.tasks} tasks){_cuts_suffix(report.cuts)}{rotation}\n")
    if report.protected:
        sys.stderr.write(f"{report.protected}\n")
    return 0


def _counting_progress(status: _Status) -> tuple[ProgressLine, Callable[[int, int], None]]:
    """A status line and the progress callback that feeds it and records the count for the Ctrl-C message."""
    progress = ProgressLine()

    def count(done: int, total: int) -> None:
        status.written = done
        progress.update(done, total)

    return progress, count


def _cuts_suffix(found: Sequence[int]) -> str:
    from .cuts import describe_cuts

    return f"; scene cuts (not blended) between source frames {describe_cuts(list(found))}" if found else ""


def run_plan(args: argparse.Namespace) -> int:
    """The plan subcommand: output frame count and task ranges, without loading the model."""
    from . import loading, preflight, render

    if args.tasks is not None and args.frames_per_task is not None:
        raise SettingsError("give --tasks or --frames-per-task, not both")
    settings = settings_from(args)
    naming_only = Path(tempfile.gettempdir()) / f"{args.input.name}_plan"  # never written: plan writes nothing
    prepared = render.prepare(render.Job(args.input, naming_only, settings))
    try:
        tasks = ranges.split_tasks(prepared.total, tasks=args.tasks, per_task=args.frames_per_task)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    for note in preflight.notes(prepared):
        render.stderr_note(note)
    naming = prepared.sink.naming if prepared.sink is not None else None  # names only: nothing is created
    print(ranges.plan_report(prepared.total, tasks, prepared.start_number, as_json=args.json,
                             name_pattern=naming.pattern if naming else None))
    return 0


def run_convert(args: argparse.Namespace) -> int:
    """The convert subcommand: official .pkl -> .safetensors via emavfi.weights.convert_pkl."""
    from .weights import convert_pkl

    destination = args.output or args.source.with_suffix(".safetensors")
    check_new_file(destination, args.overwrite)
    variant = convert_pkl(args.source, destination, args.variant)
    record_file(destination, {"converted_from": args.source.name, "variant": variant})
    sys.stderr.write(f"converted {args.source} -> {destination} (variant {variant})\n")
    return 0


@contextlib.contextmanager
def _verbose(on: bool) -> Iterator[None]:
    """--verbose for this command only: EMAVFI_VERBOSE (read by emavfi.media.quiet, here and in child processes)."""
    before = os.environ.get("EMAVFI_VERBOSE")
    if on:
        os.environ["EMAVFI_VERBOSE"] = "1"
    try:
        yield
    finally:
        if on and before is None:
            os.environ.pop("EMAVFI_VERBOSE", None)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line; returns the exit code (errors: one line on stderr, never a traceback)."""
    status = _Status()
    try:
        args = build_parser().parse_args(argv)
        if hasattr(args, "handler"):  # subcommands that register their own (evaluate, compare)
            return args.handler(args)
        commands = {"convert": run_convert, "plan": run_plan}
        with _verbose(getattr(args, "verbose", False)):
            return commands[args.command](args) if args.command in commands else run_interpolate(args, status)
    except SystemExit as exc:  # --help
        return exc.code if isinstance(exc.code, int) else 0
    except KeyboardInterrupt:
        where = f" to {status.output}" if status.output else ""
        if status.video:
            sys.stderr.write(f"\ninterrupted: no video written{where} (the partial file was removed)\n")
        else:
            hint = "; run the same command with --resume to continue" if status.written else ""
            sys.stderr.write(f"\ninterrupted: {status.written} complete frames{where}{hint}\n")
        return EXIT_INTERRUPTED
    except (SettingsError, OutputFolderError, MediaOptionError) as exc:
        sys.stderr.write(f"emavfi: error: {one_line(exc)}\n")
        return EXIT_USAGE
    except Exception as exc:  # noqa: BLE001 - the CLI promises one line, not a traceback
        if os.environ.get("EMAVFI_DEBUG"):
            raise
        known = isinstance(exc, (EmaVfiError, ValueError, OSError, MemoryError))
        detail = one_line(exc) if known else (f"unexpected {type(exc).__name__}: {one_line(exc)} "
                                               "(set EMAVFI_DEBUG=1 for the traceback)")
        sys.stderr.write(f"emavfi: error: {detail}\n")
        return EXIT_ERROR
