"""The file pipeline (emavfi.pipeline): each input frame decoded once, writes in parallel committed in order, the
same bytes as one frame at a time; writer failures, a full disk, kill -9 and a damaged video handled."""
from __future__ import annotations

import errno
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from emavfi import cli, files, render
from emavfi.outputs import LOG_NAME
from emavfi.schedule import Request
from emavfi.settings import OutputOptions, Settings, SettingsError

OpenImageIO = pytest.importorskip("OpenImageIO")
av = pytest.importorskip("av")

H, W = 64, 96


def footage(n: int = 7, cut: int = 4) -> np.ndarray:
    """[n,H,W,3] float 0..1: a pan over a photograph, a cut at frame `cut`, a pan over another."""
    from skimage import data

    frames = []
    for i in range(n):
        photo = torch.from_numpy((data.astronaut() if i < cut else data.coffee())[..., :3].astype(np.float32) / 255)
        small = F.interpolate(photo.permute(2, 0, 1)[None], size=(H + 16, W + 32), mode="area")[0]
        x = 3 * (i % cut)
        frames.append(np.ascontiguousarray(small[:, 4:4 + H, x:x + W].permute(1, 2, 0).numpy()))
    return np.stack(frames)


def write_folder(folder: Path, kind: str, n: int = 7) -> Path:
    """The footage as numbered frames: png 8-bit, exr half, dpx 10-bit, tif 16-bit."""
    folder.mkdir(parents=True)
    fmt = {"png": "uint8", "exr": "half", "dpx": "uint16", "tif": "uint16"}[kind]
    for i, frame in enumerate(footage(n)):
        spec = OpenImageIO.ImageSpec(W, H, 3, fmt)
        if kind == "dpx":
            spec.attribute("oiio:BitsPerSample", 10)
        pixels = {"uint8": (frame * 255).round().astype(np.uint8), "half": frame.astype(np.float16),
                  "uint16": (frame * 65535).round().astype(np.uint16)}[fmt]
        out = OpenImageIO.ImageOutput.create(str(folder / f"f.{i + 1:04d}.{kind}"))
        path = str(folder / f"f.{i + 1:04d}.{kind}")
        assert out.open(path, spec) and out.write_image(np.ascontiguousarray(pixels)) and out.close()
    return folder


def write_video(path: Path, n: int = 7) -> Path:
    with av.open(str(path), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv444p"
        for frame in footage(n):
            image = av.VideoFrame.from_ndarray((frame * 255).round().astype(np.uint8), format="rgb24")
            for packet in stream.encode(image.reformat(format="yuv444p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


def count_calls(monkeypatch, owner: object, name: str, inside: Path | None = None) -> list[int]:
    """Count calls of owner.name (those whose first argument lies inside `inside`, when given)."""
    calls: list[int] = []
    original = getattr(owner, name)

    def counted(*args, **kwargs):
        if inside is None or str(Path(args[0]).resolve()).startswith(str(inside.resolve())):
            calls.append(1)
        return original(*args, **kwargs)
    monkeypatch.setattr(owner, name, counted)
    return calls


def job(source: Path, output: Path, **output_options) -> render.Job:
    return render.Job(source, output, Settings(request=Request(multiplier=2, source_fps=24),
                                               output=OutputOptions(**output_options)))


class _Ordered:
    """A sink that notes the order frames arrive in."""

    def __init__(self, sink):
        self.sink, self.order = sink, []

    def write(self, index, image, *, copy_of=None):
        self.sink.write(index, image, copy_of=copy_of)
        self.order.append(self.sink.path(index).name)


def sequential(prepared: render.Prepared, model) -> tuple[list[str], list[int]]:
    """What the render did before the pipeline: one frame at a time, read through a sliding window, each file
    written before the next frame is made (the reference for bytes)."""
    from emavfi.engine import CutFinder, run
    from emavfi.runner import Runner
    from emavfi.source_window import FrameBuffer

    s = prepared.job.settings
    sink = _Ordered(prepared.sink)
    report = run(prepared.schedule, FrameBuffer(prepared.source, prepared.n_source), Runner(model), sink,
                 CutFinder(prepared.n_source, s.run.cut_threshold))
    return sink.order, report.cuts


def logged(folder: Path) -> list[str]:
    return [line.split(" ")[0] for line in (folder / LOG_NAME).read_text().splitlines()]


@pytest.mark.parametrize("kind", ["png", "exr", "dpx", "tif"])
def test_each_frame_is_decoded_once_and_the_bytes_match_one_frame_at_a_time(tmp_path, kind, monkeypatch):
    from helpers import tiny_model

    import emavfi.media.folder as folder_module

    model = tiny_model()
    source = write_folder(tmp_path / "in", kind)
    reference = render.prepare(job(source, tmp_path / "one"))
    order, cuts = sequential(reference, model)
    reads = count_calls(monkeypatch, folder_module, "read_raw", inside=source)
    prepared = render.prepare(job(source, tmp_path / "pool", io_threads=3))
    report = render.render(prepared, model)
    assert report.cuts == cuts and report.written == prepared.total == 13  # cuts from thumbnails made once
    assert kind != "png" or cuts == [3]
    assert len(reads) == 7  # every input frame decoded once: windows, scene cuts and copies share it
    names = sorted(p.name for p in (tmp_path / "one").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "pool").iterdir() if not p.name.startswith("."))
    for name in names:
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name
    assert logged(tmp_path / "pool") == order  # committed in the order the engine made them


def test_a_video_is_decoded_once_and_counted_without_decoding(tmp_path, monkeypatch):
    from helpers import tiny_model

    from emavfi.media.video import VideoSource

    video = write_video(tmp_path / "in.mkv")
    scans = count_calls(monkeypatch, VideoSource, "_decoded")
    original = VideoSource._decode_from  # where every frame of a video is decoded (the first one too)
    decoded: list[int] = []

    def decode_from(self, container, start):
        for frame in original(self, container, start):
            decoded.append(1)
            yield frame
    monkeypatch.setattr(VideoSource, "_decode_from", decode_from)
    prepared = render.prepare(job(video, tmp_path / "out"))
    assert prepared.n_source == 7 and scans == []  # the count comes from the packets
    assert len(decoded) == 1  # opening the file decodes frame 0 (its display matrix)...
    render.render(prepared, tiny_model())
    assert len(decoded) == 7 and len(logged(tmp_path / "out")) == 13  # ...and the render goes on from it


def test_a_decoder_failure_mid_video_names_the_frame(tmp_path):
    from emavfi.media.video import VideoSource

    path = tmp_path / "damaged.mov"
    with av.open(str(path), "w") as container:  # PNG frames: a damaged one fails to decode
        stream = container.add_stream("png", rate=24)
        stream.width, stream.height, stream.pix_fmt = W, H, "rgb24"
        for frame in footage(7):
            image = av.VideoFrame.from_ndarray((frame * 255).round().astype(np.uint8), format="rgb24")
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    with av.open(str(path)) as container:
        packets = [(p.pos, p.size) for p in container.demux(video=0) if p.size]
    data = bytearray(path.read_bytes())
    position, size = packets[4]
    data[position + size // 3:position + size // 3 + 64] = bytes(b ^ 0x5A for b in data[position + size // 3:
                                                                                   position + size // 3 + 64])
    path.write_bytes(bytes(data))
    source = VideoSource(path)
    assert source.count() == 7
    with pytest.raises(Exception, match="cannot decode frame 4 of damaged.mov"):
        list(source.frames())
    assert len(list(source.frames(5))) == 2  # the frames after it still decode


# ----------------------------------------------------------------------------------------------- failures

def run_cli(*args: str) -> int:
    return cli.main(["interpolate", *map(str, args)])


def test_a_writer_that_fails_stops_the_run_with_one_line(tmp_path, tiny_cli, capsys):
    source = write_folder(tmp_path / "in", "png")
    out = tmp_path / "out"
    (out / "frame_000006.png").mkdir(parents=True)  # where frame 5 goes, something that cannot be replaced
    assert run_cli(source, "-o", out, "-m", "2", "--io-threads", "3") == 1
    err = capsys.readouterr().err.strip().splitlines()
    errors = [line for line in err if line.startswith("emavfi: error")]
    assert len(errors) == 1 and "frame_000006.png" in errors[0]
    assert logged(out) == [f"frame_{k:06d}.png" for k in range(1, 6)]  # in order, nothing after the failure
    assert not [p for p in out.iterdir() if files.is_partial(p.name)]


def test_a_full_disk_with_writers_in_flight_is_one_line_and_nothing_partial(tmp_path, tiny_cli, capsys,
                                                                               monkeypatch):
    source = write_folder(tmp_path / "in", "png")
    out = tmp_path / "out"
    real = os.statvfs
    asked: list[int] = []

    def statvfs(path):  # the file system fills up after a few frames
        found = real(path)
        if Path(path) != out:
            return found
        asked.append(1)
        free = 0 if len(asked) > 4 else found.f_bavail
        return os.statvfs_result((found.f_bsize, found.f_frsize, found.f_blocks, found.f_bfree, free,
                                  found.f_files, found.f_ffree, found.f_favail, found.f_flag, found.f_namemax))
    monkeypatch.setattr(os, "statvfs", statvfs)
    assert run_cli(source, "-o", out, "-m", "2", "--io-threads", "4") == 1
    errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("emavfi: error")]
    assert len(errors) == 1 and "no space left" in errors[0]
    names = logged(out)
    assert names == [f"frame_{k:06d}.png" for k in range(1, len(names) + 1)] and len(names) < 13
    images = sorted(p for p in out.iterdir() if not p.name.startswith("."))
    assert not [p for p in out.iterdir() if files.is_partial(p.name)]
    for path in images:  # whatever is there is whole
        assert OpenImageIO.ImageBuf(str(path)).get_pixels().shape == (H, W, 3)


CHILD = """
import sys, time
sys.path[:0] = [{root!r}, {tests!r}]
from helpers import tiny_model
from emavfi import cli, render
import emavfi.media.folder as folder
model = tiny_model()
import emavfi.loading as loading
loading.load_model_for = lambda job, state=None, progress=None: model
write = folder.FolderSink.write
def slow(self, *args, **kwargs):
    time.sleep(0.3)  # writes overlap the kill
    return write(self, *args, **kwargs)
folder.FolderSink.write = slow
sys.exit(cli.main(["interpolate", {source!r}, "-o", {out!r}, "-m", "2", "--io-threads", "3"]))
"""


def test_resume_after_kill_9_during_parallel_writes(tmp_path, tiny_cli):
    source = write_folder(tmp_path / "in", "png")
    out = tmp_path / "out"
    root = Path(__file__).resolve().parent.parent
    code = CHILD.format(root=str(root), tests=str(root / "tests"), source=str(source), out=str(out))
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and child.poll() is None:
        if (out / LOG_NAME).is_file() and len(logged(out)) >= 3:
            break
        time.sleep(0.02)
    child.send_signal(signal.SIGKILL)
    child.wait()
    before = logged(out)
    assert 3 <= len(before) < 13 and before == [f"frame_{k:06d}.png" for k in range(1, len(before) + 1)]
    assert run_cli(source, "-o", out, "-m", "2", "--resume", "--io-threads", "3") == 0
    assert run_cli(source, "-o", tmp_path / "whole", "-m", "2") == 0
    names = sorted(p.name for p in (tmp_path / "whole").iterdir() if not p.name.startswith("."))
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == names
    for name in names:
        assert (out / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


# ----------------------------------------------------------------------------------------------- options

def test_compression_changes_bytes_not_pixels_and_resumes_folders_written_before(tmp_path, tiny_cli):
    source = write_folder(tmp_path / "in", "png")
    assert run_cli(source, "-o", tmp_path / "fast", "-m", "2", "--compression", "0") == 0
    assert run_cli(source, "-o", tmp_path / "small", "-m", "2", "--compression", "9", "--io-threads", "1") == 0
    names = sorted(p.name for p in (tmp_path / "fast").iterdir() if not p.name.startswith("."))
    fast_bytes = sum((tmp_path / "fast" / n).stat().st_size for n in names)
    assert fast_bytes > sum((tmp_path / "small" / n).stat().st_size for n in names)
    for name in names:
        a = OpenImageIO.ImageBuf(str(tmp_path / "fast" / name)).get_pixels(OpenImageIO.UINT8)
        b = OpenImageIO.ImageBuf(str(tmp_path / "small" / name)).get_pixels(OpenImageIO.UINT8)
        assert np.array_equal(a, b), name
    # the run record holds no compression: a folder written with one level resumes with another
    (tmp_path / "fast" / names[-1]).unlink()
    assert run_cli(source, "-o", tmp_path / "fast", "-m", "2", "--resume", "--compression", "6") == 0


@pytest.mark.parametrize("options, message", [
    ({"compression": "dwaa", "format": "png"}, "PNG compression must be one of 0, 1"),
    ({"compression": "12"}, "unknown compression '12'"),
    ({"compression": "lzw", "format": "dpx"}, "--compression applies to PNG, EXR, TIF frames, not DPX"),
    ({"io_threads": -1}, "io-threads must be a whole number from 0 to 64"),
])
def test_bad_io_options_are_one_line(options, message):
    with pytest.raises(SettingsError, match=message):
        OutputOptions(**options)


def test_compression_of_another_format_is_refused_before_work(tmp_path):
    source = write_folder(tmp_path / "in", "exr")
    with pytest.raises(SettingsError, match="EXR compression must be one of"):
        render.prepare(job(source, tmp_path / "out", compression="9"))
    with pytest.raises(SettingsError, match="--compression applies to folders of frames"):
        render.prepare(job(source, tmp_path / "out.mp4", compression="zip"))


def test_a_task_of_the_shot_reads_each_frame_it_needs_once_and_makes_the_same_bytes(tmp_path, monkeypatch):
    from collections import Counter

    from helpers import tiny_model

    import emavfi.media.folder as folder_module

    model = tiny_model()
    source = write_folder(tmp_path / "in", "png", n=7)
    whole = render.prepare(job(source, tmp_path / "whole"))
    render.render(whole, model)
    reads: Counter[str] = Counter()
    original = folder_module.read_raw

    def counted(path, *args, **kwargs):
        reads[Path(path).name] += 1
        return original(path, *args, **kwargs)
    monkeypatch.setattr(folder_module, "read_raw", counted)
    task = render.prepare(job(source, tmp_path / "task"), frames=range(8, 13))  # the last pairs only
    render.render(task, model)
    assert reads and max(reads.values()) == 1  # the cut finder's context and the windows share each frame
    for index in range(8, 13):
        name = whole.sink.naming.name(index)
        assert (tmp_path / "task" / name).read_bytes() == (tmp_path / "whole" / name).read_bytes(), name


@pytest.mark.parametrize("fails", ["commit", "stage"])
def test_a_commit_thread_commits_in_order_and_nothing_after_a_failure(fails):
    import threading

    from emavfi.pipeline import WriterPool

    committed: list[tuple[int, str]] = []

    def stage(index, image, copy_of, raw):
        time.sleep(0.01 * (index % 3))  # writers finish out of order
        if fails == "stage" and index == 5:
            raise OSError("read-only")
        return index

    def commit(index, staged):
        assert staged == index
        if fails == "commit" and index == 5:
            raise RuntimeError("encoder failed")
        committed.append((index, threading.current_thread().name))

    pool = WriterPool(stage, commit, threads=3, commit_thread=True)
    with pytest.raises((OSError, RuntimeError)):
        try:
            for index in range(12):
                pool.write(index, None)
            pool.close()
        except BaseException:
            pool.abort()
            raise
    assert [index for index, _ in committed] == [0, 1, 2, 3, 4]
    assert committed[0][1] == threading.current_thread().name  # the first opens the encoder here
    assert {name for _, name in committed[1:]} == {"emavfi-commit_0"}


def _reusing() -> dict[str, str]:
    """This environment without glibc's tunables: a process where frame buffers are reused (no huge pages)."""
    return {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}


def _huge_pages_usable() -> bool:
    from emavfi.buffers import huge_pages_environment

    return huge_pages_environment(_reusing()) is not None


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's allocator")
def test_frame_sized_buffers_are_reused_not_mapped_afresh():
    # each fresh mapping of a 1080p float frame faults in ~6,000 pages; a reused buffer faults in none, here
    probe = """
import resource, sys, torch
from emavfi.buffers import keep_frame_buffers
if sys.argv[1] == "reuse":
    keep_frame_buffers()
frame = torch.rand(3, 1080, 1920)
frame.mul(2.0)
counts = []
for _ in range(21):
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    frame.mul(2.0)
    counts.append(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
print(sorted(counts)[10])  # the median operation's faults
"""
    root = Path(__file__).resolve().parents[1]
    faults = {}
    for policy in ("reuse", "default"):
        done = subprocess.run([sys.executable, "-c", probe, policy], capture_output=True, text=True, cwd=root,
                              env={**_reusing(), "PYTHONPATH": str(root), "MALLOC_MMAP_THRESHOLD_": str(4 << 20)},
                              timeout=300, check=True)
        faults[policy] = float(done.stdout.split()[-1])
    # the median: a kernel reclaiming idle pages under memory pressure faulted some reused ones in again (full suite)
    assert faults["reuse"] < 100 < 3000 < faults["default"], faults


def test_overlay_protection_reads_ahead_without_decoding_a_frame_twice(tmp_path, monkeypatch):
    """The overlay finder reads 30 frames past the engine's windows; those reads must not make the shared frames
    let go of the windows' frames (each was decoded again, about 13 times a frame, before)."""
    from skimage import data

    from helpers import tiny_model

    import emavfi.media.folder as folder_module
    from emavfi.engine import CutFinder, run
    from emavfi.mask_files import protection_for
    from emavfi.runner import Runner
    from emavfi.settings import ProtectOptions
    from emavfi.source_window import FrameBuffer

    n = 40
    photo = torch.from_numpy(data.astronaut().astype(np.float32) / 255).permute(2, 0, 1)[None]
    wide = F.interpolate(photo, size=(H + 8, W + n + 8), mode="area")[0].permute(1, 2, 0).numpy()
    source = tmp_path / "in"
    source.mkdir()
    for i in range(n):  # a pan of 1 px a frame under a burned-in white box
        frame = np.ascontiguousarray(wide[4:4 + H, i:i + W])
        frame[48:58, 8:44] = 1.0
        out = OpenImageIO.ImageOutput.create(str(source / f"f.{i + 1:04d}.png"))
        assert out.open(str(source / f"f.{i + 1:04d}.png"), OpenImageIO.ImageSpec(W, H, 3, "uint8"))
        assert out.write_image((frame * 255).round().astype(np.uint8)) and out.close()
    settings = Settings(request=Request(multiplier=2, source_fps=24), protect=ProtectOptions(overlays=True))
    model = tiny_model()
    reference = render.prepare(render.Job(source, tmp_path / "one", settings))
    protect, _ = protection_for(reference)
    run(reference.schedule, FrameBuffer(reference.source, n), Runner(model), reference.sink,
        CutFinder(n, settings.run.cut_threshold), protect=protect)
    reads = count_calls(monkeypatch, folder_module, "read_raw", inside=source)
    prepared = render.prepare(render.Job(source, tmp_path / "pool", settings))
    report = render.render(prepared, model)
    assert len(reads) == n  # every frame decoded once, the finder's reads ahead included
    assert report.overlays and any(box is not None for box in report.overlays.values())  # the box was found
    names = sorted(p.name for p in (tmp_path / "one").iterdir() if not p.name.startswith("."))
    assert len(names) == 2 * n - 1
    for name in names:
        assert (tmp_path / "pool" / name).read_bytes() == (tmp_path / "one" / name).read_bytes(), name


@pytest.mark.parametrize("kind, output, kept", [("exr", "exr", False), ("dpx", "dpx", True), ("dpx", "png", False),
                                                ("png", "png", True), ("png", "exr", False)])
def test_float_frames_keep_their_file_samples_only_where_copies_are_written_from_them(tmp_path, kind, output, kept):
    """A frame made float lets go of its decoded file samples (half the memory of a 1080p EXR or DPX frame again)
    unless the sink writes the copies of source frames from them (a DPX or PNG output of the same format)."""
    source = write_folder(tmp_path / "in", kind)
    prepared = render.prepare(job(source, tmp_path / "out", format=output))
    assert prepared.sink is not None and prepared.sink.extension == f".{output}"
    frames = render._frames(prepared)
    try:
        frames.get(0, 2)
        held = [frames.raw(i) for i in range(3)]
    finally:
        frames.close()
    assert all((raw is not None) == kept for raw in held), held
    if kept:
        assert all(raw.pixels.shape == (H, W, 3) for raw in held)


def test_free_frame_buffers_go_back_to_the_system_only_past_what_is_kept_for_reuse():
    """The writer pool's release after each commit: free heap buffers (frame-sized, reused rather than mapped
    afresh) stay resident up to KEPT_FREE and are given back past it."""
    script = """
import numpy as np
from emavfi.buffers import KEPT_FREE, keep_frame_buffers

def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096

release = keep_frame_buffers()
release()  # the first call measures what lies outside the heap's buffers
frame = 25 << 20  # a 1080p float frame
held = [np.ones(frame // 8) for _ in range(2 * (KEPT_FREE // frame) + 4)]
few = KEPT_FREE // frame // 2  # free buffers under KEPT_FREE: kept for the next frames
for k in range(1, 2 * few, 2):
    held[k] = None
before = resident()
release()
kept = before - resident()
for k in range(1, len(held), 2):  # now more than KEPT_FREE of them
    held[k] = None
before = resident()
release()
print(kept >> 20, (before - resident()) >> 20, (len(held) // 2 * frame) >> 20)
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120, check=True,
                          env=_reusing())
    given_back_under, given_back_over, free = (int(v) for v in done.stdout.split())
    assert given_back_under < 10, done.stdout  # kept resident: the next frames reuse them without faults
    assert given_back_over > 0.8 * free, done.stdout


def _starts(tmp_path: Path, tunables: str, dropped: bool = False) -> list[str]:
    """`python -m emavfi --help` with these GLIBC_TUNABLES: pid, tunables and arguments at each interpreter start
    (a sitecustomize notes them; where dropped, it then removes the tunables, as glibc does in set-user-ID
    processes)."""
    log = tmp_path / "starts.txt"
    log.unlink(missing_ok=True)
    (tmp_path / "sitecustomize.py").write_text(
        "import os, sys\n"
        f"with open({str(log)!r}, 'a') as log:\n"
        "    log.write(f\"{os.getpid()} {os.environ.get('GLIBC_TUNABLES', '-')} {sys.argv[1:]}\\n\")\n"
        + ("os.environ.pop('GLIBC_TUNABLES', None)\n" if dropped else ""))
    root = Path(__file__).resolve().parents[1]
    env = {**_reusing(), "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}
    if tunables:
        env["GLIBC_TUNABLES"] = tunables
    done = subprocess.run([sys.executable, "-m", "emavfi", "--help"], capture_output=True, text=True, env=env,
                          cwd=root, timeout=120)
    assert done.returncode == 0 and "usage" in done.stdout, done.stderr
    return log.read_text().splitlines()


@pytest.mark.skipif(not _huge_pages_usable(), reason="needs Linux, glibc 2.35+ and transparent huge pages not 'never'")
def test_python_m_emavfi_starts_again_in_place_with_glibc_huge_pages(tmp_path):
    """`python -m emavfi` starts itself again, same process and arguments, with glibc's huge pages tunable added to
    the user's tunables; a user's own hugetlb setting is kept as it is."""
    first, again = _starts(tmp_path, "")
    assert first.split()[1] == "-" and again.split()[1] == "glibc.malloc.hugetlb=1", (first, again)
    assert first.split()[0] == again.split()[0] and again.endswith("['--help']"), (first, again)  # same process
    assert [line.split()[1] for line in _starts(tmp_path, "glibc.malloc.arena_max=4")] == \
        ["glibc.malloc.arena_max=4", "glibc.malloc.arena_max=4:glibc.malloc.hugetlb=1"]
    assert [line.split()[1] for line in _starts(tmp_path, "glibc.malloc.hugetlb=0")] == ["glibc.malloc.hugetlb=0"]


@pytest.mark.skipif(not _huge_pages_usable(), reason="needs Linux, glibc 2.35+ and transparent huge pages not 'never'")
def test_python_m_emavfi_starts_again_once_where_the_tunable_is_dropped(tmp_path):
    """Where the tunable never reaches the new start, the command runs after one restart instead of restarting
    for ever (the test's timeout would end that)."""
    starts = _starts(tmp_path, "", dropped=True)
    assert len(starts) == 2 and len({line.split()[0] for line in starts}) == 1, starts


@pytest.mark.skipif(not _huge_pages_usable(), reason="needs Linux, glibc 2.35+ and transparent huge pages not 'never'")
def test_with_huge_pages_frame_buffers_are_mapped_and_given_back_when_freed():
    """Under glibc's huge pages the writer pool's policy maps each frame-sized buffer afresh: it is outside the
    heap while alive, and resident memory falls back as soon as it is freed, with no trim to call."""
    script = """
import ctypes, torch
from emavfi.buffers import huge_pages_advised, keep_frame_buffers

class Info(ctypes.Structure):
    _fields_ = [(n, ctypes.c_size_t) for n in "arena ordblks smblks hblks hblkhd usmblks fsmblks uordblks fordblks keepcost".split()]
libc = ctypes.CDLL("libc.so.6")
libc.mallinfo2.restype = Info
def resident():
    return int(open("/proc/self/statm").read().split()[1]) * 4096
release = keep_frame_buffers()
mapped = libc.mallinfo2().hblkhd
before = resident()
frames = [torch.rand(3, 1080, 1920) for _ in range(8)]
mapped = libc.mallinfo2().hblkhd - mapped
grown = resident() - before
del frames
print(int(huge_pages_advised()), mapped >> 20, grown >> 20, (resident() - before) >> 20)
"""
    root = Path(__file__).resolve().parents[1]
    results = {}
    for name, env in (("huge", {**_reusing(), "GLIBC_TUNABLES": "glibc.malloc.hugetlb=1"}), ("reuse", _reusing())):
        done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                              check=True, env={**env, "PYTHONPATH": str(root)})
        results[name] = [int(v) for v in done.stdout.split()]
    advised, mapped, grown, left = results["huge"]
    assert advised == 1 and mapped >= 8 * 23 and grown >= 8 * 23, results  # 8 frames of 23.7 MiB, each mapped
    assert left < 8, results  # all given back when freed
    advised, mapped, grown, left = results["reuse"]
    assert advised == 0 and mapped == 0 and left >= 8 * 23, results  # reused from the heap: kept for the next
