"""Checks made before any work (no frames decoded, no weights loaded): the output can be written, an existing
video is ours to replace, every input frame's header matches the first, the run fits in memory.

Each failure is one line naming the file and the fix; `render.Job.check` and `render.prepare` call these, so
`interpolate`, `plan` and farm tasks all refuse the same jobs at the same point.
"""
from __future__ import annotations

import errno
import os
import tempfile
from pathlib import Path
from typing import Any

from .media.base import FramesIOError, MediaOptionError
from .media.quiet import quietly
from .outputs import OutputFolderError, check_new_file


def nearest_existing(path: Path) -> Path:
    """path, or its closest ancestor that exists."""
    path = Path(os.path.abspath(path))
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def check_writable(folder: Path, what: str) -> None:
    """Create and remove a hidden probe file where the output goes (its folder, or the closest existing one)."""
    target = nearest_existing(folder)
    if not target.is_dir():
        raise OutputFolderError(f"cannot write {what}: {target} is a file, not a folder")
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".emavfi-probe-"):
            pass
    except OSError as exc:
        reason = "no space left on the device" if exc.errno == errno.ENOSPC else (exc.strerror or str(exc))
        raise OutputFolderError(f"cannot write {what} in {target} ({reason}); choose another output") from None


def check_output(job: Any) -> None:
    """The output can be written: a video's folder (and an existing video is ours to replace), or the folder."""
    out = job.settings.output
    if job.video_out:
        check_new_file(job.output, out.overwrite)
        check_writable(job.output.parent, f"the video {job.output.name}")
    else:
        check_writable(job.output, f"frames to {job.output}")


# ----------------------------------------------------------------------------------------------- input frames

@quietly
def check_frame_headers(source: Any, skip_damaged: bool) -> None:
    """Every frame file's header (size, channels, bit depth) matches the first, read before the first pair.

    skip_damaged (`--on-error skip`): a file whose header cannot be read is left to the render to skip.
    """
    paths = getattr(source, "paths", None)
    if paths is None or len(paths) < 2:
        return
    from .media.base import import_oiio
    from .media.images import bit_depth_of

    oiio = import_oiio()
    first = (source.size[1], source.size[0], source.format.channels, source.format.bit_depth)
    for path in paths[1:]:
        image_input = oiio.ImageInput.open(str(path))
        if image_input is None:
            oiio.geterror()
            if skip_damaged:
                continue
            raise FramesIOError(f"cannot read frame {path} (damaged, or not an image); replace it, or add "
                                "--on-error skip to leave out the output frames that need it")
        try:
            spec = image_input.spec()
            found = (spec.width, spec.height, spec.nchannels, bit_depth_of(spec, path))
        finally:
            image_input.close()
        if found != first:
            raise FramesIOError(f"{path.name} is {_shape(found)}, but {paths[0].name} is {_shape(first)}; all frames "
                                f"of a sequence must match (checked before any work)")


def _shape(shape: tuple[int, int, int, str]) -> str:
    width, height, channels, depth = shape
    depth = depth if depth in ("half", "float") else f"{depth}-bit"
    return f"{width}x{height} {channels} channel{'s' if channels != 1 else ''} {depth}"


# ----------------------------------------------------------------------------------------------- resources

def check_ray_workers(workers: int | None, address: str | None) -> None:
    """A local Ray cluster gets one worker per CPU of this machine at most (asking more used to start them all)."""
    if workers is None or address is not None:
        return
    cpus = os.cpu_count() or 1
    if workers > cpus:
        from .settings import SettingsError

        raise SettingsError(f"--ray-workers {workers} is more than this machine's {cpus} CPUs (a local Ray cluster "
                            f"runs one worker per CPU); use --ray-workers {cpus} or fewer, or join a larger cluster "
                            "with --ray ADDRESS")


def check_memory(prepared: Any, free: int | None = None) -> None:
    """One frame batch must fit in the device's available memory (a CPU run past it is killed by the system).

    free: the bytes available (default: emavfi.memory.free_memory_bytes of the run's device).
    """
    from .config import get_config
    from .devices import run_device, run_dtype
    from .memory import free_memory_bytes

    s = prepared.job.settings
    device = run_device(s.device)
    height, width = prepared.source.size
    rows = prepared.schedule.rows_per_pair()
    line = memory_refusal(get_config(s.model_variant), height, width, rows, run_dtype(s.precision, device), s.run,
                          free_memory_bytes(device) if free is None else free, device.type)
    if line is not None:
        raise MemoryError(line)


def memory_refusal(config: Any, height: int, width: int, rows: int, dtype: Any, run: Any, free: int,
                   device_type: str) -> str | None:
    """None when a batch of `run` (tta, scale, chunk) fits in `free` bytes, else the one-line refusal naming the
    options that would fit, each with its estimate (--scale only where it lowers the estimate enough to fit)."""
    from .memory import pair_memory
    from .settings import SCALES

    def need(tta: bool = run.tta, scale: float = run.scale, chunk: int = run.chunk) -> int:
        return pair_memory(config, height, width, rows, dtype, tta=tta, scale=scale).batch(chunk)

    if need() <= free:
        return None
    options = [(f"--chunk 1 (now {run.chunk})", need(chunk=1))] if run.chunk > 1 else []
    options += [("no --tta", need(tta=False))] if run.tta else []
    scales = [(f"--scale {scale:g}", need(scale=scale)) for scale in sorted(SCALES, reverse=True) if scale < run.scale]
    options += [next((option for option in scales if option[1] <= free), ("", free + 1))]  # the largest that fits
    fitting = [f"{option} (~{_gib(bytes_)})" for option, bytes_ in options if bytes_ <= free]
    least = [name for name, applies in (("--chunk 1", run.chunk > 1), ("no --tta", run.tta),
                                          (f"--scale {min(SCALES):g}", run.scale > min(SCALES))) if applies]
    what = f"a {width}x{height} frame pair" + (f" batch of {run.chunk}" if run.chunk > 1 else "") + \
        (f", {rows} timesteps each" if rows > 1 else "") + (" with TTA" if run.tta else "")
    head = f"{what} needs ~{_gib(need())} on {device_type}, {_gib(free)} is available"
    if fitting:
        return f"{head}: try {' or '.join(fitting)}"
    if len(least) > 1 and need(False, min(SCALES), 1) <= free:
        return f"{head}: try {' and '.join(least)} (~{_gib(need(False, min(SCALES), 1))})"
    still = f"; even with {' and '.join(least)} it needs ~{_gib(need(False, min(SCALES), 1))}" if least else ""
    return f"{head}{still}: use a device with more memory, or a smaller input"


def _gib(count: int) -> str:
    """Bytes in GiB (in MiB below 1 GiB)."""
    return f"{count / (1 << 30):.1f} GiB" if count >= 1 << 30 else f"{count / (1 << 20):.0f} MiB"


# ----------------------------------------------------------------------------------------------- notes

def channels_note(source: Any, path: Path, codec: str | None) -> str | None:
    """What a video output leaves out of the source's channels, in one line (None: nothing); MediaOptionError where
    the named codec cannot hold the source's alpha."""
    from .media.channels import alpha_index

    alpha = alpha_index(source)
    channels = int(getattr(source, "channels", 3))
    names = getattr(source, "channel_names", None)
    order = getattr(source, "order", None)
    extra = [k for k in range(3, channels) if k != alpha]
    notes = []
    if extra:
        shown = [names[order[k]] if names and order and k < len(order) else f"channel {k}" for k in extra]
        notes.append(f"channels {', '.join(shown)} left out: a video holds RGB and alpha only")
    if alpha is not None:
        from .media.codecs import codec_keeps_alpha

        if not codec_keeps_alpha(codec, path):
            if codec is not None:
                raise MediaOptionError(f"the input has alpha and {codec} has none: use --codec prores_4444 (.mov) or "
                                       "ffv1 (.mkv), or write frames (EXR, PNG, TIFF) to keep it")
            notes.append(f"alpha left out: {path.suffix} videos (h264) have none; write .mov (ProRes 4444) or .mkv "
                         "(FFV1) to keep it")
    return "; ".join(notes) or None


def check_prepared(prepared: Any) -> None:
    """Checks on the prepared job, before any pair is computed (interpolate, plan and farm tasks alike); the frame
    headers were checked as the input was opened (`check_frame_headers`)."""
    out = prepared.job.settings.output
    if prepared.job.video_out:
        from .dedupe import unwrap
        from .media.codecs import check_frame_width

        channels_note(prepared.source, prepared.job.output, out.codec)  # refuses alpha to a codec without it
        depth = out.bit_depth
        check_frame_width(out.codec, prepared.job.output, unwrap(prepared.source),
                          int(depth) if depth and depth.isdigit() else None)


def notes(prepared: Any) -> list[str]:
    """The lines a user should read before a run starts (schedule, gaps, channels left out, rates, rotation)."""
    from .sequences import gaps_note

    job, request = prepared.job, prepared.job.settings.request
    lines = [prepared.schedule.warning, gaps_note(prepared.source, job.settings.output.gaps)]
    if job.video_out:
        lines.append(channels_note(prepared.source, job.output, job.settings.output.codec))
    variable = getattr(prepared.source, "variable_rate", None)
    if not request.is_retime and variable is not None and variable():
        lines.append(f"{prepared.source.path.name} has a variable frame rate: -m/--timesteps place frames between "
                     "neighbours whatever their time apart; use --fps to follow the real timestamps")
    rotation = getattr(prepared.source, "rotation_note", None)
    if rotation is not None:
        lines.append(rotation(job.settings.output.apply_rotation, job.video_out))
    return [line for line in lines if line]


def outcome(source: Any, settings: Any, video_out: bool) -> str:
    """What the run summary adds about the source: what became of a video's display rotation ("" when nothing)."""
    rotation = getattr(source, "rotation_outcome", None)
    said = rotation(settings.output.apply_rotation, video_out) if rotation is not None else None
    return f"; {said}" if said else ""
