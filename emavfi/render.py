"""Render a shot from files to files, streaming: the file front end of the engine (CLI, farm tasks, Ray workers).

A job is checked and prepared without the model (`prepare`: source, schedule, output naming, requested
frames); `render` then feeds emavfi.engine.run a sliding window over the source (source_window.FrameBuffer),
the job's cut policy and a sink that writes and logs each output file as it arrives. Output frames are named
by their global index, so any subset (`--frames`, Ray tasks) can be rendered by any process into the same
folder, and every way of splitting a shot gives the same files.
"""
from __future__ import annotations

import errno
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import preflight, provenance, ranges, sequences
from .config import get_config
from .media import VIDEO_EXTENSIONS
from .outputs import OutputFolder, check_not_overlapping
from .schedule import Request, Schedule, make_schedule
from .settings import Settings, SettingsError

if TYPE_CHECKING:  # PyTorch and the engine load with the model: prepare (and `emavfi plan`) runs without them
    import torch

    from .engine import CancelFn, ProgressFn, Report
    from .media import Sink, Source
    from .media.folder import FolderSink
    from .pipeline import SharedFrames, WriterPool
    from .runner import Model

@dataclass(frozen=True)
class Job:
    """One shot to render: input, output and validated settings. Picklable (sent to Ray workers)."""

    input: Path
    output: Path
    settings: Settings = field(default_factory=Settings)

    def __post_init__(self) -> None:
        object.__setattr__(self, "input", Path(self.input))
        object.__setattr__(self, "output", Path(self.output))

    @property
    def video_out(self) -> bool:
        """True when the output is a video file rather than a folder of frames."""
        return self.output.suffix.lower() in VIDEO_EXTENSIONS

    def check(self) -> None:
        """Checks that need no frames and no model: paths and option combinations (before weights load)."""
        if not self.input.exists():
            raise SettingsError(f"input not found: {self.input}")
        check_not_overlapping(self.input, self.output)
        preflight.check_output(self)
        out = self.settings.output
        if self.video_out and (out.resume or out.frames or out.start_number):
            raise SettingsError("--resume, --frames and --start-number work with an output folder of frames, "
                                "not a video file")
        if self.video_out and out.on_error == "skip":
            raise SettingsError("--on-error skip leaves out frames, and a video cannot have gaps: write a folder of "
                                "frames, or use --on-error stop")
        if self.video_out and out.compression is not None:
            raise SettingsError("--compression applies to folders of frames (PNG, EXR, TIFF); for a video choose "
                                "--codec")
        if self.video_out and out.codec is not None:
            from .media.codecs import check_codec

            check_codec(out.codec)


@dataclass
class Prepared:
    """What a job will make, known without the model: source, schedule, naming, requested outputs."""

    job: Job
    source: Source
    n_source: int
    schedule: Schedule
    requested: list[int]  # global output indices this process renders
    sink: FolderSink | None = None  # the folder of frames it writes (built once); None: a video output
    start_number: int = 0  # file number of output index 0 (--start-number, else the input's first frame number)
    masks: Any = None  # --protect: emavfi.mask_files.MaskFiles, checked before the model loads

    @property
    def total(self) -> int:
        """Output frames of the whole shot."""
        return len(self.schedule.plan)


def prepare(job: Job, frames: Sequence[int] | None = None) -> Prepared:
    """Open the input, build the schedule and the list of outputs to render (all, `--frames`, or `frames`)."""
    from . import media

    job.check()
    out = job.settings.output
    source = media.open_source(job.input, colorspace=out.colorspace, ocio=out.ocio, pattern=out.pattern,
                               apply_rotation=out.apply_rotation)
    files = source  # what sinks copy metadata and frames from (with --dedupe, `source` numbers the kept frames)
    preflight.check_frame_headers(source, out.on_error == "skip")  # every file, before any frame is decoded
    n = source.count()
    request = job.settings.request
    if request.source_fps is None and source.fps is not None:
        request = replace(request, source_fps=source.fps)
    arbitrary_t = get_config(job.settings.model_variant).arbitrary_t
    try:
        gapped = sequences.schedule_over_gaps(source, request, arbitrary_t, out.gaps)
        if job.settings.run.dedupe:  # held frames leave the timeline; the plan numbers the kept ones
            if gapped is not None:
                raise SettingsError("--dedupe and --gaps interpolate do not combine yet: use --gaps ignore")
            source, schedule = _without_held(source, request, arbitrary_t, job.settings)
            n = source.count()
        else:
            schedule = gapped or make_schedule(request, n, arbitrary_t, times=_variable_frame_times(source, request))
    except ValueError as exc:
        raise SettingsError(str(exc).replace("give the source fps", "add --source-fps")) from None
    total = len(schedule.plan)
    start_number = sequences.output_start(out.start_number, files)
    if frames is not None:
        requested = sorted(set(frames))
        if requested and not 0 <= requested[0] <= requested[-1] < total:
            raise SettingsError(f"output frames must be 0..{total - 1}; got {requested[0]}..{requested[-1]}")
    elif out.frames:
        try:
            requested = [k for r in ranges.parse_frames(out.frames, total, start_number) for k in r]
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    else:
        requested = list(range(total))
    if job.video_out and schedule.out_fps is None:
        raise SettingsError("a video output needs a frame rate: add --source-fps (image folder input)")
    sink = None if job.video_out else media.open_sink(job.output, files, total=total,
                                                       start_number=start_number, format=out.format,
                                                       bit_depth=out.bit_depth, out_fps=schedule.out_fps,
                                                       compression=out.compression)
    prepared = Prepared(job, source, n, schedule, requested, sink, start_number)  # type: ignore[arg-type]
    if job.settings.protect.mask is not None:
        from .mask_files import open_masks

        prepared.masks = open_masks(job.settings.protect.mask, files, files.count())
    preflight.check_prepared(prepared)
    return prepared


def _without_held(source: Source, request: Request, arbitrary_t: bool, settings: Settings) -> tuple[Any, Schedule]:
    """The source without its held frames (emavfi.dedupe.KeptFrames) and the schedule over the rest."""
    from . import dedupe  # PyTorch: reads every frame

    if settings.output.on_error == "skip":
        raise SettingsError("--dedupe reads every frame first and cannot skip damaged ones: use --on-error stop")
    times = _variable_frame_times(source, dedupe.retime_request(request))
    timeline = dedupe.held_timeline(source.frames(0), source.count(), request, arbitrary_t,
                                    threshold=settings.run.dedupe_threshold, cut_threshold=settings.run.cut_threshold,
                                    times=times)
    return dedupe.KeptFrames(source, timeline.held), timeline.schedule


def _variable_frame_times(source: Source, request: Request) -> list[Fraction] | None:
    """A video's real frame times when it is variable-frame-rate (VideoSource.variable_rate) and the request is a
    retime, else None."""
    variable_rate = getattr(source, "variable_rate", None)  # video sources only
    if not request.is_retime or variable_rate is None or not variable_rate():
        return None
    return source.timestamps()


# ----------------------------------------------------------------------------------------------- the run

def render(prepared: Prepared, model: Model, *, folder: OutputFolder | None = None, progress: ProgressFn | None = None,
           cancel: CancelFn | None = None, note: Callable[[str], None] | None = None) -> Report:
    """Render the prepared outputs with `model` (on its device, in its precision); only complete files are left.

    folder: the job's output folder already opened and entered (`open_output`), so that a caller can check
    it before loading the model; default: opened here for the duration of the render.
    """
    if prepared.sink is None:
        return _render_video(prepared, model, progress, cancel, note)
    if folder is not None:
        return _render_folder(prepared, model, folder, progress, cancel)
    with open_output(prepared) as opened:
        return _render_folder(prepared, model, opened, progress, cancel)


def _run(prepared: Prepared, model: Model, frames: SharedFrames, sink: Any, todo: Sequence[int],
         cancel: CancelFn | None) -> Report:
    """emavfi.engine.run over the job's shared frames, runner and cut policy (progress counts commits: the sink's)."""
    from . import dedupe
    from .engine import CutFinder, run
    from .mask_files import overlay_report, protection_for
    from .runner import Runner

    s = prepared.job.settings
    runner = Runner(model, tta=s.run.tta, scale=s.run.scale, chunk=s.run.chunk)
    protect, overlays = protection_for(prepared)
    report = run(prepared.schedule, frames, runner, dedupe.source_copies(sink, prepared.source),
                 CutFinder(prepared.n_source, s.run.cut_threshold), todo=todo, cancel=cancel, protect=protect)
    if overlays is not None:
        overlays.finish(frames)  # the frames of its share that no batch read
        report.overlays = overlay_report(prepared.source, overlays.decisions)
    return report


def _frames(prepared: Prepared) -> SharedFrames:
    """The job's source frames, decoded once each, ahead of the device (emavfi.pipeline)."""
    from .pipeline import SharedFrames

    s = prepared.job.settings
    return SharedFrames(prepared.source, prepared.n_source, skip_damaged=s.output.on_error == "skip",
                        thumbnails=bool(s.run.cut_threshold) and prepared.n_source > 1,
                        keep_raw=_copies_from_samples(prepared))


def _copies_from_samples(prepared: Prepared) -> bool:
    """The folder sink writes copies of source frames from their decoded samples (SharedFrames.raw), which
    number frames as the source does (not a dedupe view)."""
    from .media.folder import FolderSource

    return prepared.sink is not None and prepared.sink.copies_samples and isinstance(prepared.source, FolderSource)


def _pipelined(prepared: Prepared, model: Model, frames: SharedFrames, pool: WriterPool, todo: Sequence[int],
               cancel: CancelFn | None, in_order: bool = False) -> Report:
    """_run into the writer pool (in output order: a video), drained at the end (aborted on any error or Ctrl-C),
    the decode thread stopped."""
    from .clips import InOrder

    try:
        report = _run(prepared, model, frames, InOrder(pool, todo) if in_order else pool, todo, cancel)
        pool.close()
    except BaseException:
        pool.abort()
        raise
    finally:
        frames.close()
    return report


class _Logged:
    """The folder sink in the writer pool: each frame written in a writer thread, then logged in the output folder
    (what --resume and tasks trust) and counted, in order."""

    def __init__(self, sink: FolderSink, folder: OutputFolder, count: Callable[[int], None] | None):
        self.sink, self.folder, self.count, self.committed = sink, folder, count, 0

    def stage(self, index: int, image: torch.Tensor | None, copy_of: int | None, raw: Any) -> None:
        from .media import FramesIOError

        try:
            self.sink.write(index, image, copy_of=copy_of, raw=raw)
        except FramesIOError:
            raise
        except OSError as exc:  # e.g. a folder or a read-only file where the frame goes
            if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC)):
                raise  # the one disk-full message (files.no_space) says it all
            raise FramesIOError(f"cannot write {self.sink.path(index).name} ({exc.strerror or exc}); the frames "
                                "logged before it are complete: fix this and run again with --resume") from None

    def commit(self, index: int, _: None) -> None:
        self.folder.wrote(index)
        self.committed += 1
        if self.count is not None:
            self.count(self.committed)


def _render_folder(prepared: Prepared, model: Model, folder: OutputFolder, progress: ProgressFn | None,
                   cancel: CancelFn | None) -> Report:
    from .pipeline import WriterPool

    assert prepared.sink is not None
    done = folder.complete(prepared.requested)
    todo = [k for k in prepared.requested if k not in done]
    if progress is not None:
        progress(len(done), len(prepared.requested))

    def count(committed: int) -> None:
        assert progress is not None
        progress(len(done) + committed, len(prepared.requested))

    frames = _frames(prepared)
    logged = _Logged(prepared.sink, folder, progress and count)
    raws = frames.raw if _copies_from_samples(prepared) else None
    pool = WriterPool(logged.stage, logged.commit, threads=_io_threads(prepared), raws=raws)
    report = _pipelined(prepared, model, frames, pool, todo, cancel)
    report.skipped = len(done)
    return report


def _render_video(prepared: Prepared, model: Model, progress: ProgressFn | None, cancel: CancelFn | None,
                  note: Callable[[str], None] | None) -> Report:
    from . import dedupe, media
    from .pipeline import WriterPool

    s = prepared.job.settings
    depth = s.output.bit_depth
    sink = media.open_sink(prepared.job.output, dedupe.unwrap(prepared.source), fps=prepared.schedule.out_fps,
                           codec=s.output.codec, bit_depth=int(depth) if depth and depth.isdigit() else depth,
                           audio=_audio_choice(prepared, note))
    committed = []

    def append(index: int, frame: Any) -> None:  # encoded in order, in the pool's commit thread
        sink.append(index, frame)
        committed.append(index)
        if progress is not None:
            progress(len(committed), len(prepared.requested))

    pool = WriterPool(lambda index, image, *_: sink.convert(index, image), append, threads=_io_threads(prepared),
                      commit_thread=True)
    try:
        report = _pipelined(prepared, model, _frames(prepared), pool, prepared.requested, cancel, in_order=True)
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return report


def _io_threads(prepared: Prepared) -> int:
    """--io-threads, else one per core this process may use."""
    from .pipeline import default_io_threads

    return prepared.job.settings.output.io_threads or default_io_threads()


def _audio_choice(prepared: Prepared, note: Callable[[str], None] | None) -> bool:
    from .media.video import has_audio

    if prepared.job.input.is_dir() or not has_audio(prepared.job.input):
        return False
    if prepared.job.settings.request.keeps_duration:
        return True
    if note is not None:
        note("audio dropped: the output plays at a different speed than the input")
    return False


# ----------------------------------------------------------------------------------------------- the folder

def open_output(prepared: Prepared, *, shared: bool | None = None, resume: bool | None = None,
                overwrite: bool | None = None) -> OutputFolder:
    """The output folder (lock, run record, frame log) of a prepared folder job, not yet entered.

    shared: tasks of one job writing side by side (default: when only some output frames are rendered);
    resume / overwrite default to the job's options.
    """
    s, sink = prepared.job.settings, prepared.sink
    if sink is None:
        raise SettingsError(f"{prepared.job.output} is a video file, not an output folder")
    partial = bool(s.output.frames) or len(prepared.requested) != prepared.total
    return OutputFolder(prepared.job.output, provenance.record(prepared), sink.naming,
                        shared=partial if shared is None else shared,
                        resume=s.output.resume if resume is None else resume,
                        overwrite=s.output.overwrite if overwrite is None else overwrite, verify=sink.verify,
                        redo_changed=s.output.redo_changed)


def stderr_note(text: str) -> None:
    """Print one note line on stderr."""
    sys.stderr.write(f"note: {text}\n")
