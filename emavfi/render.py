"""Render a shot from files to files, streaming: the engine behind the CLI, farm tasks and Ray workers.

A render reads source frames one at a time into a small sliding buffer, decides scene cuts from a fixed
window around each pair (emavfi.cuts), runs one device batch of pairs through the Runner, and writes each
output frame as it arrives. Output frames are named by their global index, so any subset (`frames=`) can
be rendered by any process into the same folder, and every way of splitting a shot gives the same files.
"""
from __future__ import annotations

import re
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from fractions import Fraction
from pathlib import Path
from typing import Any

import torch

from . import ranges
from .config import get_config
from .media import VIDEO_EXTENSIONS
from .outputs import Naming, OutputFolder, check_not_overlapping
from .source_window import CutFinder, FrameBuffer
from .schedule import OutputFrame, Schedule, apply_cuts, make_schedule, pair_timesteps
from .settings import Settings, SettingsError, resolve_device, resolve_dtype

ProgressFn = Callable[[int, int], None]


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
        out = self.settings.output
        if self.video_out and (out.resume or out.frames or out.start_number):
            raise SettingsError("--resume, --frames and --start-number work with an output folder of frames, "
                                "not a video file")
        if self.video_out and out.on_error == "skip":
            raise SettingsError("--on-error skip leaves out frames, and a video cannot have gaps: write a folder of "
                                "frames, or use --on-error stop")
        if self.video_out and out.codec is not None:
            from .media.video_out import check_codec

            check_codec(out.codec)


@dataclass
class Prepared:
    """What a job will make, known without the model: source, schedule, naming, requested outputs."""

    job: Job
    source: Any  # emavfi.media Source
    n_source: int
    schedule: Schedule
    requested: list[int]  # global output indices this process renders

    @property
    def total(self) -> int:
        """Output frames of the whole shot."""
        return len(self.schedule.plan)


@dataclass
class RenderReport:
    """What a render did: frames written and skipped (already complete), and the scene cuts it found."""

    written: int = 0
    skipped: int = 0
    cuts: list[int] = field(default_factory=list)  # pair indices i: a cut between source frames i and i+1
    damaged: dict[int, str] = field(default_factory=dict)  # unreadable source frames (--on-error skip)
    missing: int = 0  # requested outputs not written because they need a damaged source frame


def prepare(job: Job, frames: Sequence[int] | None = None) -> Prepared:
    """Open the input, build the schedule and the list of outputs to render (all, `--frames`, or `frames`)."""
    from . import media

    job.check()
    out = job.settings.output
    source = media.open_source(job.input, colorspace=out.colorspace, ocio=out.ocio)
    n = source.count()
    request = job.settings.request
    if request.source_fps is None and source.fps is not None:
        request = replace(request, source_fps=source.fps)
    arbitrary_t = get_config(job.settings.model_variant).arbitrary_t
    times = _variable_frame_times(source, request)
    try:
        schedule = make_schedule(request, n, arbitrary_t, times=times)
    except ValueError as exc:
        raise SettingsError(str(exc).replace("give the source fps", "add --source-fps")) from None
    total = len(schedule.plan)
    if frames is not None:
        requested = sorted(set(frames))
        if requested and not 0 <= requested[0] <= requested[-1] < total:
            raise SettingsError(f"output frames must be 0..{total - 1}; got {requested[0]}..{requested[-1]}")
    elif out.frames:
        try:
            requested = [k for r in ranges.parse_frames(out.frames, total, out.start_number) for k in r]
        except ValueError as exc:
            raise SettingsError(str(exc)) from None
    else:
        requested = list(range(total))
    if job.video_out and schedule.out_fps is None:
        raise SettingsError("a video output needs a frame rate: add --source-fps (image folder input)")
    return Prepared(job, source, n, schedule, requested)


def _variable_frame_times(source: Any, request: Any) -> list[Fraction] | None:
    """A video's real frame times when it is variable-frame-rate and the request is a retime, else None.

    Constant-rate files whose timestamps are rounded to their time base (e.g. milliseconds) count as
    constant: only a frame more than a tenth of a frame away from the regular grid makes a source VFR.
    """
    if not request.is_retime or not hasattr(source, "timestamps") or source.fps is None:
        return None
    times = source.timestamps()
    start, step = times[0], 1 / Fraction(source.fps)
    if all(abs(t - start - i * step) <= step / 10 for i, t in enumerate(times)):
        return None
    return times


def load_model_for(job: Job, state: dict[str, torch.Tensor] | None = None,
                   progress: Callable[[int, int], None] | None = None) -> Any:
    """The job's model on its device: from `state` (a state dict, e.g. from Ray's object store) or its weights."""
    from .weights import load_model

    s = job.settings
    device = resolve_device(s.device)
    dtype = resolve_dtype(s.precision, device)
    weights = state if state is not None else weights_path(s, progress)
    return load_model(weights, variant=s.model_variant, device=device, dtype=dtype, backend=s.backend)


def weights_path(settings: Settings, progress: Callable[[int, int], None] | None = None) -> Path:
    """The weights file for the settings: --weights, else `<variant>.safetensors` locally, else the Hub."""
    if settings.weights is not None:
        return Path(settings.weights)
    from .local_weights import default_models_dir, resolve_weights

    return Path(resolve_weights(settings.model_variant, models_dirs=[default_models_dir()],
                                offline=settings.offline, progress=progress))


# ----------------------------------------------------------------------------------------------- the loop

def render(prepared: Prepared, model: Any, *, folder: OutputFolder | None = None, progress: ProgressFn | None = None,
           cancel: Callable[[], None] | None = None, note: Callable[[str], None] | None = None) -> RenderReport:
    """Render the prepared outputs with `model`; only complete files are ever left behind.

    folder: the job's output folder already opened and entered (`open_output`), so that a caller can check
    it before loading the model; default: opened here for the duration of the render.
    """
    from . import media
    from .runner import Runner

    job, s = prepared.job, prepared.job.settings
    device = resolve_device(s.device)
    runner = Runner(model, device=device, dtype=resolve_dtype(s.precision, device), tta=s.run.tta,
                    scale=s.run.scale, chunk=s.run.chunk)
    if job.video_out:
        audio = _audio_choice(prepared, note)
        depth = s.output.bit_depth
        sink = media.open_sink(job.output, prepared.source, fps=prepared.schedule.out_fps, codec=s.output.codec,
                               bit_depth=int(depth) if depth and depth.isdigit() else depth, audio=audio)
        return _render_video(prepared, runner, sink, progress, cancel)
    sink = _folder_sink(prepared)
    if folder is not None:
        return _render_folder(prepared, runner, sink, folder, progress, cancel)
    with open_output(prepared, sink) as opened:
        return _render_folder(prepared, runner, sink, opened, progress, cancel)


def _audio_choice(prepared: Prepared, note: Callable[[str], None] | None) -> bool:
    from .media.video import has_audio

    if prepared.job.input.is_dir() or not has_audio(prepared.job.input):
        return False
    if prepared.job.settings.request.keeps_duration:
        return True
    if note is not None:
        note("audio dropped: the output plays at a different speed than the input")
    return False


def _record(prepared: Prepared) -> dict[str, Any]:
    s = prepared.job.settings
    return {"tool": "emavfi", "input": str(prepared.job.input.resolve()), "input_frames": prepared.n_source,
            "output_frames": prepared.total, "request": repr(s.request), "variant": s.model_variant,
            "tta": s.run.tta, "scale": s.run.scale, "cut_threshold": s.run.cut_threshold,
            "format": [s.output.format, s.output.bit_depth, s.output.colorspace]}


def open_output(prepared: Prepared, sink: Any | None = None, *, shared: bool | None = None,
                resume: bool | None = None, overwrite: bool | None = None) -> OutputFolder:
    """The output folder (lock, run record, frame log) of a prepared folder job, not yet entered.

    shared: tasks of one job writing side by side (default: when only some output frames are rendered);
    resume / overwrite default to the job's options.
    """
    s = prepared.job.settings
    sink = sink if sink is not None else _folder_sink(prepared)
    partial = bool(s.output.frames) or len(prepared.requested) != prepared.total
    return OutputFolder(prepared.job.output, _record(prepared), _naming_of(sink, prepared.total, s.output.start_number),
                        shared=partial if shared is None else shared,
                        resume=s.output.resume if resume is None else resume,
                        overwrite=s.output.overwrite if overwrite is None else overwrite, verify=sink.verify)


def _folder_sink(prepared: Prepared) -> Any:
    from . import media

    out = prepared.job.settings.output
    return media.open_sink(prepared.job.output, prepared.source, total=prepared.total, start_number=out.start_number,
                           format=out.format, bit_depth=out.bit_depth, out_fps=prepared.schedule.out_fps)


def _render_folder(prepared: Prepared, runner: Any, sink: Any, folder: OutputFolder, progress: ProgressFn | None,
                   cancel: Callable[[], None] | None) -> RenderReport:
    report = RenderReport()
    done = folder.complete(prepared.requested)
    todo = [k for k in prepared.requested if k not in done]
    report.skipped = len(done)
    if progress is not None:
        progress(report.skipped, len(prepared.requested))

    def write(index: int, image: torch.Tensor | None, copy_of: int | None) -> None:
        sink.write(index, image, copy_of=copy_of)
        folder.wrote(index)
        report.written += 1
        if progress is not None:
            progress(report.skipped + report.written, len(prepared.requested))

    report.cuts.extend(_run(prepared, runner, todo, write, cancel, report))
    report.missing = len(todo) - report.written
    return report


def _naming_of(sink: Any, total: int, start: int) -> Naming:
    first = sink.path(0)
    match = re.fullmatch(r"(.*?)(\d+)", first.stem)
    if match is None:
        raise RuntimeError(f"output frame names must end in a number; got {first.name}")
    return Naming(match.group(1), len(match.group(2)), first.suffix, start, total)


def _render_video(prepared: Prepared, runner: Any, sink: Any, progress: ProgressFn | None,
                  cancel: Callable[[], None] | None) -> RenderReport:
    report = RenderReport()
    pending: dict[int, tuple[torch.Tensor | None, int | None]] = {}
    expected = iter(prepared.requested)
    state = {"next": next(expected, None)}

    def write(index: int, image: torch.Tensor | None, copy_of: int | None) -> None:
        pending[index] = (image, copy_of)  # a video takes frames in order; bisection makes them out of order
        while state["next"] is not None and state["next"] in pending:
            k = state["next"]
            frame, source = pending.pop(k)
            sink.write(k, frame, copy_of=source)
            report.written += 1
            if progress is not None:
                progress(report.written, len(prepared.requested))
            state["next"] = next(expected, None)

    try:
        report.cuts.extend(_run(prepared, runner, prepared.requested, write, cancel, report))
        sink.close()
    except BaseException:
        sink.abort()
        raise
    return report


# ----------------------------------------------------------------------------------------------- windows

def pair_of(frame: OutputFrame, n: int) -> int:
    """The pair an output frame belongs to (a copy of the last source frame belongs to the last pair)."""
    return min(frame.source, max(n - 2, 0))


def _needs_damaged(frame: OutputFrame, damaged: dict[int, str], report: RenderReport) -> bool:
    """True (and noted in the report) when an output needs a source frame that could not be read."""
    needs = [frame.source] if frame.is_copy else [frame.source, frame.source + 1]
    bad = [i for i in needs if i in damaged]
    for i in bad:
        report.damaged.setdefault(i, damaged[i])
    return bool(bad)


def _run(prepared: Prepared, runner: Any, todo: Sequence[int], write: Callable[..., None],
         cancel: Callable[[], None] | None, report: RenderReport) -> Iterator[int]:
    """Make the outputs `todo` batch by batch; yields the scene cuts (global pair indices) it finds."""
    plan, n = prepared.schedule.plan, prepared.n_source
    threshold = prepared.job.settings.run.cut_threshold
    depth = prepared.schedule.bisection_depth
    rows = (1 << depth) - 1 if depth else max((len(ts) for ts in pair_timesteps(plan).values()), default=1)
    chunk = runner.resolve_chunk(*prepared.source.size, rows)
    wanted = set(todo)
    # Batches of `chunk` pairs on the global pair grid, so a frame's arithmetic is the same however the shot
    # is split; a batch is computed whole (all its pairs, all their t) even where only some outputs are wanted.
    needed = {pair_of(plan[k], n) // chunk for k in todo}
    members: dict[int, list[int]] = {}
    for k, frame in enumerate(plan):
        batch = pair_of(frame, n) // chunk
        if batch in needed:
            members.setdefault(batch, []).append(k)
    frames = FrameBuffer(prepared.source, skip_damaged=prepared.job.settings.output.on_error == "skip")
    finder = CutFinder(n, threshold)
    for batch, ks in sorted(members.items()):
        first_pair, end_pair = batch * chunk, min((batch + 1) * chunk, max(n - 1, 1))
        window = frames.get(first_pair, min(end_pair, n - 1))
        found = finder.cuts(frames, first_pair, end_pair)
        yield from found
        outputs = [(k, frame) for k, frame in zip(ks, apply_cuts([plan[k] for k in ks], found))
                   if not _needs_damaged(frame, frames.damaged, report)]
        _make_batch(prepared, runner, window, first_pair, outputs, wanted, write, cancel)


def _make_batch(prepared: Prepared, runner: Any, window: torch.Tensor, lo: int,
                outputs: list[tuple[int, OutputFrame]], wanted: set[int], write: Callable[..., None],
                cancel: Callable[[], None] | None) -> None:
    """Copies are written from the window; the rest go through the runner as one batch of pairs."""
    index_of: dict[tuple[int, Fraction], list[int]] = {}
    work: dict[int, set[Fraction]] = {}
    for k, frame in outputs:
        if frame.is_copy:
            if k in wanted:
                if cancel is not None:
                    cancel()
                write(k, window[frame.source - lo], frame.source)
            continue
        index_of.setdefault((frame.source - lo, frame.t), []).append(k)
        work.setdefault(frame.source - lo, set()).add(frame.t)

    def emit(pair: int, t: Fraction, image: torch.Tensor) -> None:
        for k in index_of.get((pair, t), []):
            if k in wanted:
                write(k, image, None)

    if work:
        runner.run(window, {p: tuple(sorted(ts)) for p, ts in sorted(work.items())},
                   bisection_depth=prepared.schedule.bisection_depth, pair_offset=lo, emit=emit, cancel=cancel)


def stderr_note(text: str) -> None:
    """Print one note line on stderr."""
    sys.stderr.write(f"note: {text}\n")
