"""The work around the network of a file render, old code beside new: decodes, encodes, wall time, peak memory.

A stand-in network of fixed cost D (it sleeps D ms per output frame, releasing the GIL as a device call does,
and blends the two frames) is plugged in through the runner's backend seam (a model object with
`as_backend`), so what is measured is everything else: reading, scene cuts, colour, encoding, writing.
Footage: scikit-image photographs scaled up to 1920x1080 and panned, with a cut in the middle, as PNG, EXR
(half) and DPX folders and an FFV1 video; outputs PNG, EXR and DPX folders, MP4 (H.264) and ProRes; x2, cuts
on. Each (case, D, code) runs in its own process (cwd = that code's tree), the two codes alternating; the process
renders the job once before the timed render (imports, the allocator's first growth: a start's costs, not a
frame's), unless --cold.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_pipeline.py                 # all cases, D = 0, 30, 100
    PYTHONPATH=. .venv/bin/python benchmarks/bench_pipeline.py --cases png --delays 0 --repeats 2
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CASES = {  # name -> (input kind, output name)
    "png": ("png", "out_png"),
    "exr": ("exr", "out_exr"),
    "dpx": ("dpx", "out_dpx"),
    "mp4": ("mkv", "out.mp4"),
    "prores": ("mkv", "out.mov"),
}


# ----------------------------------------------------------------------------------------------- footage

def _footage(n: int, h: int, w: int):
    """[n,3,h,w] float 0..1: a pan over one photograph, a cut, a pan over another."""
    import numpy as np
    import torch
    import torch.nn.functional as F
    from skimage import data

    def photo(name: str) -> torch.Tensor:
        image = getattr(data, name)()[..., :3].astype(np.float32) / 255
        return torch.from_numpy(image).permute(2, 0, 1)[None]

    frames = []
    cut = n // 2
    for i in range(n):
        image = photo("astronaut" if i < cut else "coffee")
        ih, iw = image.shape[-2:]
        scale = max(h / ih, w / iw) * 1.25  # room to pan
        big = F.interpolate(image, scale_factor=scale, mode="bilinear", align_corners=False)
        x0, y0 = 12 * (i % cut) + 4, 6 * (i % cut) + 2
        frames.append(big[0, :, y0:y0 + h, x0:x0 + w])
    return torch.stack(frames).clamp(0, 1)


def make_footage(root: Path, n: int, h: int, w: int) -> dict[str, Path]:
    """PNG (8-bit), EXR (half) and DPX (10-bit) folders and an FFV1 video of the same frames."""
    import av
    import numpy as np
    import OpenImageIO as oiio

    frames = _footage(n, h, w).permute(0, 2, 3, 1).numpy()
    paths = {}
    for kind, fmt in (("png", "uint8"), ("exr", "half"), ("dpx", "uint16")):
        folder = root / kind
        folder.mkdir(parents=True, exist_ok=True)
        for i, frame in enumerate(frames):
            spec = oiio.ImageSpec(w, h, 3, fmt)
            if kind == "dpx":
                spec.attribute("oiio:BitsPerSample", 10)
            if kind == "exr":
                spec.attribute("compression", "zip")
            out = oiio.ImageOutput.create(str(folder / f"f.{1001 + i}.{kind}"))
            out.open(str(folder / f"f.{1001 + i}.{kind}"), spec)
            pixels = frame if kind == "exr" else (frame * (255 if fmt == "uint8" else 65535)).round()
            out.write_image(np.ascontiguousarray(pixels.astype({"uint8": np.uint8, "uint16": np.uint16,
                                                                "half": np.float16}[fmt])))
            out.close()
        paths[kind] = folder
    video = root / "in.mkv"
    with av.open(str(video), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.width, stream.height, stream.pix_fmt = w, h, "yuv444p"
        for frame in frames:
            image = av.VideoFrame.from_ndarray((frame * 255).round().astype(np.uint8), format="rgb24")
            for packet in stream.encode(image.reformat(format="yuv444p")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    paths["mkv"] = video
    return paths


# ----------------------------------------------------------------------------------------------- the worker

class _Counts:
    """Thread-safe counters of library calls that decode or encode pixels."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.values: dict[str, int] = {}

    def add(self, key: str, amount: int = 1) -> None:
        with self.lock:
            self.values[key] = self.values.get(key, 0) + amount


def _wrap(owner: object, name: str, before) -> None:
    """Replace owner.name (if it exists) by a function that calls before(*args) first."""
    original = getattr(owner, name, None)
    if original is None:
        return

    def wrapped(*args, **kwargs):
        before(*args, **kwargs)
        return original(*args, **kwargs)

    setattr(owner, name, wrapped)


def _instrument(counts: _Counts, input_path: Path) -> None:
    """Count decodes of input frames and encodes of output frames, however many threads do them."""
    import emavfi.media.folder as folder
    import emavfi.media.images as images
    import emavfi.media.video as video
    import emavfi.media.video_out as video_out

    inside = str(input_path.resolve())

    def is_input(path) -> bool:
        return str(Path(path).resolve()).startswith(inside)

    def read(path, *_, **__):
        if is_input(path):
            counts.add("decodes")

    def copy(source, *_, **__):  # OpenImageIO's copy_image: EXR blocks are copied as they are, others decoded
        if Path(source).suffix.lower() == ".exr":
            counts.add("block_copies")
        else:
            counts.add("decodes" if is_input(source) else "other_decodes")
            counts.add("encodes")

    for module in (folder, images):
        _wrap(module, "read_raw", read)
        _wrap(module, "write_raw", lambda *a, **k: counts.add("encodes"))
        _wrap(module, "copy_frame", copy)
        _wrap(module, "copy_file", lambda *a, **k: counts.add("byte_copies"))
    original_decoded = video.VideoSource._decoded

    def decoded(self, container):
        for frame in original_decoded(self, container):
            counts.add("decodes")
            yield frame

    video.VideoSource._decoded = decoded
    if hasattr(video.VideoSource, "_decode_from"):  # the newest code decodes every frame there, the first one too
        original_from = video.VideoSource._decode_from

        def decode_from(self, container, start):
            for frame in original_from(self, container, start):
                counts.add("decodes")
                yield frame

        video.VideoSource._decode_from = decode_from
        return _wrap(video_out.VideoSink, "_to_frame", lambda *a, **k: counts.add("encodes"))
    original_raw = getattr(video.VideoSource, "raw_frames", None)
    if original_raw is not None:  # later code decodes here (and in _decoded only for streams without timestamps)
        def raw_frames(self, start=0):
            for frame in original_raw(self, start):
                counts.add("decodes")
                yield frame

        video.VideoSource.raw_frames = raw_frames
    _wrap(video, "_display_matrix", lambda *a, **k: counts.add("decodes"))
    _wrap(video_out.VideoSink, "_to_frame", lambda *a, **k: counts.add("encodes"))


class _Backend:
    """The stand-in network: sleeps delay s per output frame (the GIL released), then blends the pair."""

    def __init__(self, delay: float, spent: list[float]):
        self.delay, self.spent = delay, spent

    def __call__(self, frames, first, second, timesteps, aux):
        import torch

        start = time.perf_counter()
        rows = len(timesteps) * len(first)
        if self.delay:
            time.sleep(self.delay * rows)
        t = torch.tensor(timesteps, dtype=frames.dtype).view(-1, 1, 1, 1, 1)
        a, b = frames[first][None], frames[second][None]
        rgb = a * (1 - t) + b * t
        fused = None if aux is None else aux[first][None] * (1 - t) + aux[second][None] * t
        self.spent.append(time.perf_counter() - start)
        return rgb, fused


class _StandIn:
    """A model through the backend seam: config for memory estimates, CPU float32, its own backend."""

    def __init__(self, delay: float, spent: list[float]):
        import torch

        from emavfi.config import DEFAULT_VARIANT, get_config

        self.config = get_config(DEFAULT_VARIANT)
        self.device, self.dtype = torch.device("cpu"), torch.float32
        self.delay, self.spent = delay, spent

    def as_backend(self, tta: bool = False, scale: float = 1.0) -> _Backend:
        return _Backend(self.delay, self.spent)


class _TimedBackend:
    """A real network's backend, each call bracketed by CUDA events (no synchronisation while the run goes)."""

    def __init__(self, backend, spent_events: list):
        self.backend, self.events = backend, spent_events

    def __call__(self, *args):
        import torch

        if not torch.cuda.is_available():  # a CPU check of this script: wall time is the network's time
            start = time.perf_counter()
            result = self.backend(*args)
            self.events.append(time.perf_counter() - start)
            return result
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        result = self.backend(*args)
        end.record()
        self.events.append((start, end))
        return result


class _Real:
    """The real network (random weights unless a file is given) through the same seam, its calls timed."""

    def __init__(self, variant: str, weights: str | None, device: str, precision: str, events: list):
        import torch

        from emavfi.config import get_config
        from emavfi.weights import build_model, load_model

        dtype = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}[precision]
        torch.manual_seed(0)
        state = weights or build_model(get_config(variant)).state_dict()
        self.model = load_model(state, variant=variant, device=device, dtype=dtype)
        self.config, self.device, self.dtype, self.events = self.model.config, torch.device(device), dtype, events

    def as_backend(self, tta: bool = False, scale: float = 1.0):
        from emavfi.runner import backend_for

        return _TimedBackend(backend_for(self.model, tta, scale), self.events)

    def warm_up(self, h: int, w: int) -> None:
        """One call at the footage's size first (kernel choice, memory pools), not counted."""
        import torch

        frames = torch.rand(2, 3, h, w, device=self.device, dtype=self.dtype)
        index = torch.tensor([0], device=self.device)
        with torch.no_grad():
            backend_for_model = self.as_backend()
            backend_for_model(frames, index, index + 1, [0.5], None)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        self.events.clear()


def _peak_mb() -> float:
    """This process's peak resident memory, MB: VmHWM (ru_maxrss would carry the driver's over fork and exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _size_of(source: Path) -> tuple[int, int]:
    from emavfi import media

    return media.open_source(source).size


def worker(spec: dict) -> dict:
    """One render in this process (cwd: the code measured): its times, counts and peak memory."""
    import torch

    torch.set_num_threads(spec.get("threads", 2))
    from emavfi import render
    from emavfi.schedule import Request
    from emavfi.settings import OutputOptions, RunOptions, Settings

    if spec.get("buffers") == "map":  # the former policy: every buffer over 4 MiB mapped afresh (and unmapped)
        import ctypes

        from emavfi import pipeline

        def mapped():
            ctypes.CDLL("libc.so.6").mallopt(-3, 4 << 20)
            return lambda: None

        pipeline.keep_frame_buffers = mapped
    elif spec.get("buffers", "").startswith("kept:"):  # the code's policy with another KEPT_FREE, MiB
        from emavfi import buffers

        buffers.KEPT_FREE = int(spec["buffers"].split(":")[1]) << 20
    counts = _Counts()
    source = Path(spec["input"])
    output = Path(spec["output"])
    codec = {"out.mp4": "h264", "out.mov": "prores_422hq"}.get(output.name)
    settings = Settings(request=Request(multiplier=2, source_fps=24), run=RunOptions(),
                        output=OutputOptions(codec=codec))
    spent: list = []
    if spec.get("model", "standin") == "standin":
        model = _StandIn(spec["delay"], spent)
    else:
        model = _Real(spec["model"], spec.get("weights"), spec.get("device", "cuda"), spec.get("precision", "fp16"),
                      spent)
        model.warm_up(*_size_of(source))
    if spec.get("warm", True):  # the same job once first: imports and the allocator are the start's, not a frame's
        render.render(render.prepare(render.Job(source, output.parent / "warm-up" / output.name, settings)), model)
        spent.clear()
    _instrument(counts, source)  # after the warm-ups (the real network's opens the input once more)
    cpu = time.process_time()  # every thread's; on a machine others share, steadier than the wall time
    start = time.perf_counter()
    prepared = render.prepare(render.Job(source, output, settings))
    report = render.render(prepared, model)
    if isinstance(model, _Real) and torch.cuda.is_available():
        torch.cuda.synchronize()
        spent = [start_event.elapsed_time(end_event) / 1000 for start_event, end_event in spent]
    wall = time.perf_counter() - start
    cpu = time.process_time() - cpu
    outputs = prepared.total
    peak = _peak_mb()
    return {"wall": wall, "cpu": cpu, "network": sum(spent), "outputs": outputs, "inputs": prepared.n_source,
            "written": report.written, "cuts": report.cuts, "counts": counts.values, "peak_mb": peak}


# ----------------------------------------------------------------------------------------------- compression

def compression_table(h: int, w: int, repeats: int = 3) -> list[str]:
    """Size and encode time of one frame of the footage for each --compression (the fastest of `repeats`)."""
    import numpy as np
    import OpenImageIO as oiio

    sys.path.insert(0, str(ROOT))
    from emavfi.settings import COMPRESSIONS

    frame = np.ascontiguousarray(_footage(2, h, w)[1].permute(1, 2, 0).numpy())
    kinds = {".png": ("uint8", (frame * 255).round().astype(np.uint8)),
             ".exr": ("half", frame.astype(np.float16)),
             ".tif": ("uint16", (frame * 65535).round().astype(np.uint16))}
    rows = ["| format | compression | MB per frame | encode CPU ms | decode CPU ms |", "|---|---|---|---|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for extension, names in COMPRESSIONS.items():
            fmt, pixels = kinds[extension]
            for name in (*names, "default") if extension == ".png" else names:
                path = Path(tmp) / f"x{extension}"
                spec = oiio.ImageSpec(w, h, 3, fmt)
                if name == "default":  # what FolderSink writes without --compression
                    from emavfi.settings import DEFAULT_COMPRESSION, PNG_DEFAULT_FILTER

                    spec.attribute("png:compressionLevel", int(DEFAULT_COMPRESSION[".png"]))
                    spec.attribute("png:filter", PNG_DEFAULT_FILTER)
                elif extension == ".png":
                    spec.attribute("png:compressionLevel", int(name))
                else:
                    spec.attribute("compression", name)
                best = read = float("inf")
                for _ in range(repeats):  # CPU time: others share this machine
                    start = time.process_time()
                    out = oiio.ImageOutput.create(str(path))
                    out.open(str(path), spec)
                    out.write_image(pixels)
                    out.close()
                    best = min(best, time.process_time() - start)
                    start = time.process_time()
                    image = oiio.ImageInput.open(str(path))
                    image.read_image(oiio.UNKNOWN)
                    image.close()
                    read = min(read, time.process_time() - start)
                rows.append(f"| {extension.lstrip('.').upper()} {fmt} | {name} | {path.stat().st_size / 1e6:.2f} | "
                            f"{best * 1000:.0f} | {read * 1000:.0f} |")
    return rows


# ----------------------------------------------------------------------------------------------- the driver

def base_tree(revision: str) -> Path:
    """A worktree of the old code at revision (made once, under the temporary folder)."""
    tree = Path(tempfile.gettempdir()) / f"emavfi-base-{revision}"
    if not (tree / "emavfi").is_dir():
        subprocess.run(["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision], check=True,
                       capture_output=True)
    return tree


def tunables_environment(huge_pages: bool) -> dict[str, str]:
    """This environment without GLIBC_TUNABLES, with glibc's huge pages added as `python -m emavfi` adds them where
    huge_pages (and glibc and the kernel can)."""
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    from emavfi.buffers import huge_pages_environment

    env = {key: value for key, value in os.environ.items() if key != "GLIBC_TUNABLES"}
    return (huge_pages_environment(env) or env) if huge_pages else env


def run_one(tree: Path, spec: dict, timeout: float) -> dict:
    """worker(spec) in a fresh process whose emavfi is tree's."""
    env = tunables_environment(huge_pages=spec.get("buffers") == "cli")
    env.update(PYTHONPATH=str(tree), OMP_NUM_THREADS=str(spec.get("threads", 2)))
    done = subprocess.run([sys.executable, str(Path(__file__).resolve()), "--worker", json.dumps(spec)], cwd=tree,
                          env=env, capture_output=True, text=True, timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"worker failed in {tree}: {done.stderr.strip()[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def cpu_line() -> str:
    """The CPU model and its vector/matrix flags."""
    model, flags = platform.processor() or "unknown", []
    try:
        text = Path("/proc/cpuinfo").read_text()
        model = next(line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name"))
        have = next(line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags"))
        wanted = ("avx", "avx2", "fma", "f16c", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")
        flags = [f for f in wanted if f in have]
    except (OSError, StopIteration):
        pass
    return f"{model}; {len(os.sched_getaffinity(0))} cores usable; flags {' '.join(flags) or 'unknown'}"


def _row(case: str, delay: int, label: str, result: dict, peaks: list[float]) -> str:
    per = 1000 / result["outputs"]
    counts = result["counts"]
    around = (result["wall"] - result["network"]) * per
    return (f"| {case} | {delay} | {label} | {result['wall'] * per:.0f} | {around:.0f} | {result['cpu'] * per:.0f} | "
            f"{counts.get('decodes', 0) / result['inputs']:.2f} | {counts.get('encodes', 0) / result['outputs']:.2f} | "
            f"{counts.get('block_copies', 0) + counts.get('byte_copies', 0)} | {_median(peaks):.0f} | "
            f"{peaks[0]:.0f}-{peaks[-1]:.0f} |")


def _median(values: list[float]) -> float:
    middle = len(values) // 2
    return values[middle] if len(values) % 2 else (values[middle - 1] + values[middle]) / 2


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--cases", default=",".join(CASES), help=f"of {', '.join(CASES)}")
    parser.add_argument("--delays", default="0,30,100", help="stand-in network cost per output frame, ms")
    parser.add_argument("--frames", type=int, default=9, help="input frames")
    parser.add_argument("--size", default="1080x1920", help="HxW")
    parser.add_argument("--base", default="745808a", help="the old code's git revision ('' to skip it)")
    parser.add_argument("--repeats", type=int, default=1, help="runs of each (case, D, code); the fastest counts")
    parser.add_argument("--timeout", type=float, default=900)
    parser.add_argument("--model", default="standin", help="'standin' (the fixed-cost stand-in) or a variant: the "
                        "real network (random weights unless --weights)")
    parser.add_argument("--weights", help="a .safetensors file for --model")
    parser.add_argument("--device", default="cuda", help="for --model: where the network runs")
    parser.add_argument("--precision", default="fp16", help="for --model: fp16, bf16 or fp32")
    parser.add_argument("--compression-table", action="store_true", help="only the size/time of each --compression")
    parser.add_argument("--cold", action="store_true", help="time the job's first render in the process (imports "
                        "and the allocator's first growth included), not its second")
    parser.add_argument("--buffers", default="cli", help="new code's memory policy: cli (as `python -m emavfi` "
                        "runs it: buffers mapped in huge pages where glibc and the kernel can), reuse (as a process "
                        "without glibc's huge pages: buffers reused, free ones given back past KEPT_FREE), map (every "
                        "buffer over 4 MiB mapped afresh in 4 KiB pages, as before), kept:N (reuse, with N MiB of "
                        "free buffers kept), or several, e.g. cli,reuse")
    args = parser.parse_args()
    if args.compression_table:
        h, w = (int(v) for v in args.size.lower().split("x"))
        print(f"CPU: {cpu_line()}")
        print("\n".join(compression_table(h, w)))
        return 0
    if args.worker:
        print(json.dumps(worker(json.loads(args.worker))))
        return 0
    h, w = (int(v) for v in args.size.lower().split("x"))
    policies = args.buffers.split(",")
    codes = [("new" if policy == "cli" else f"new, {policy}", ROOT, policy) for policy in policies]
    codes += [(args.base, base_tree(args.base), "")] if args.base else []
    print(f"CPU: {cpu_line()}")
    print(f"{args.frames} input frames {w}x{h}, x2, cuts on; per output frame: wall ms, around the network ms, "
          "CPU ms (all threads, network included), decodes per input frame, encodes per output frame, copies "
          "without decoding (EXR blocks, file bytes), peak RSS MB: the median of the repeats, and their range "
          "(times: the fastest repeat's)")
    print("| case | D ms | code | wall ms | around ms | CPU ms | decodes/in | encodes/out | copies | peak MB | "
          "peak range |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory(prefix="emavfi-bench-") as tmp:
        root = Path(tmp)
        footage = make_footage(root / "in", args.frames, h, w)
        turn = 0
        for case in args.cases.split(","):
            kind, out_name = CASES[case]
            for delay in (int(d) for d in args.delays.split(",")):
                best: dict[str, dict] = {}
                peaks: dict[str, list[float]] = {}
                for repeat in range(args.repeats):
                    order = codes if turn % 2 == 0 else codes[::-1]  # alternate which code goes first
                    turn += 1
                    for label, tree, policy in order:
                        out = root / f"{label}-{case}-{delay}-{repeat}" / out_name
                        spec = {"input": str(footage[kind]), "output": str(out), "delay": delay / 1000,
                                "model": args.model, "weights": args.weights, "device": args.device,
                                "precision": args.precision, "buffers": policy, "warm": not args.cold}
                        result = run_one(tree, spec, args.timeout)
                        peaks.setdefault(label, []).append(result["peak_mb"])
                        if label not in best or result["wall"] < best[label]["wall"]:
                            best[label] = result
                for label, *_ in codes:
                    print(_row(case, delay, label, best[label], sorted(peaks[label])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
