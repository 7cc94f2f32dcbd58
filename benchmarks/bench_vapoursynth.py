"""The VapourSynth filter against the CLI on the same frames and machine, and vspipe's peak memory.

Run from the repository root with a Python that has VapourSynth (>= 3.12; see .ci/vapoursynth.sh):

    PYTHONPATH=. /path/to/venv312/bin/python benchmarks/bench_vapoursynth.py              # 24 frames 256x384 x2
    PYTHONPATH=. /path/to/venv312/bin/python benchmarks/bench_vapoursynth.py --frames 8 --size 128x192

Throughput: `--frames` frames of skimage's astronaut panning 2 px a frame (float EXR in the network's own
encoding for the CLI, an RGBS clip for VapourSynth), x2 with the ours_small_t architecture and RANDOM weights
(timing only), one torch thread each, the same device. Both are timed from the first frame read to the last
frame made, model loading excluded: the CLI through render.prepare + render.render (EXR read and written),
VapourSynth through get_frame of every output frame (frames handed over in memory), in that order. Peak RSS:
`vspipe -c y4m` of examples/interpolate.vpy (x2 of its test pattern, written to /dev/null) for several lengths,
so that growth with the length shows. Figures depend on the machine's load: rerun on an idle one.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parents[1]


def _frames(n: int, height: int, width: int) -> torch.Tensor:
    from skimage import data
    from skimage.transform import resize

    photo = resize(data.astronaut(), (height + 8, width + 2 * n), anti_aliasing=True).astype(np.float32)
    return torch.from_numpy(np.stack([photo[:height, 2 * i:2 * i + width] for i in range(n)])).permute(0, 3, 1, 2)


def _weights(folder: Path) -> str:
    from safetensors.torch import save_file

    sys.path.insert(0, str(REPO / "tests"))
    from helpers import random_state

    path = folder / "ours_small_t.safetensors"
    save_file(random_state("ours_small_t"), str(path))
    return str(path)


def time_cli(frames: torch.Tensor, weights: str, folder: Path, device: str) -> float:
    """Seconds for render.prepare + render.render of the frames as float EXR, x2 (the model is loaded before)."""
    import OpenImageIO as oiio

    from emavfi import loading, render
    from emavfi.media.colour import load_config, working_space
    from emavfi.schedule import Request
    from emavfi.settings import OutputOptions, Settings

    inp = folder / "in"
    inp.mkdir()
    for i, frame in enumerate(frames):
        assert oiio.ImageBuf(np.ascontiguousarray(frame.permute(1, 2, 0).numpy())).write(str(inp / f"f.{i:04d}.exr"))
    settings = Settings(request=Request(multiplier=2, source_fps=24), weights=Path(weights), device=device,
                        output=OutputOptions(colorspace=working_space(load_config())))
    job = render.Job(inp, folder / "out", settings)
    model = loading.load_model_for(job.settings)
    started = time.perf_counter()
    render.render(render.prepare(job), model)
    return time.perf_counter() - started


def time_vapoursynth(frames: torch.Tensor, weights: str, device: str) -> float:
    """Seconds to get every output frame of interpolate(clip, 2) (the filter, with its model, made before)."""
    import vapoursynth as vs

    from emavfi.vapoursynth import interpolate

    n, _, height, width = frames.shape
    blank = vs.core.std.BlankClip(format=vs.RGBS, width=width, height=height, length=n, fpsnum=24, fpsden=1)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n, p].numpy())
        return out

    out = interpolate(vs.core.std.ModifyFrame(blank, blank, fill), 2, weights=weights, device=device)
    started = time.perf_counter()
    for k in range(out.num_frames):
        out.get_frame(k)
    return time.perf_counter() - started


def peak_rss_vspipe(weights: str, frames: int, width: int) -> tuple[float, float]:
    """(seconds, peak RSS in MiB) of one vspipe process: x2 of the example's test pattern to /dev/null."""
    vspipe = shutil.which("vspipe", path=str(Path(sys.executable).parent)) or "vspipe"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}
    command = [vspipe, "-c", "y4m", "-a", "input=test", "-a", f"weights={weights}", "-a", f"frames={frames}",
               "-a", f"width={width}", str(REPO / "examples" / "interpolate.vpy"), "/dev/null"]
    started = time.perf_counter()
    process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(process.pid, 0)  # this process's own peak, not the largest child's so far
    seconds = time.perf_counter() - started
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"vspipe failed: {process.stderr.read().decode(errors='replace')[-500:]}")
    return seconds, usage.ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=24)
    parser.add_argument("--size", default="256x384", help="HxW of the throughput frames")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--rss-lengths", default="25,100,400", help="test-pattern lengths for vspipe's peak RSS")
    args = parser.parse_args()
    torch.set_num_threads(1)
    height, width = map(int, args.size.split("x"))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        weights = _weights(folder)
        frames = _frames(args.frames, height, width)
        cli_s = time_cli(frames, weights, folder, args.device)
        vs_s = time_vapoursynth(frames, weights, args.device)
        out = 2 * args.frames - 1
        print(f"\nx2 of {args.frames} frames {height}x{width}, ours_small_t (random weights), {args.device}, "
              "1 thread\n")
        print("| path | seconds | output frames/s | vs. CLI |\n|---|---|---|---|")
        print(f"| CLI (render.render, EXR in/out) | {cli_s:.2f} | {out / cli_s:.2f} | 1.00 |")
        print(f"| VapourSynth (get_frame of all) | {vs_s:.2f} | {out / vs_s:.2f} | {cli_s / vs_s:.2f}x |")
        print("\nvspipe -c y4m of examples/interpolate.vpy (x2 of its test pattern, 128x72) to /dev/null\n")
        print("| source frames | output frames | seconds | peak RSS (MiB) |\n|---|---|---|---|")
        for length in sorted(int(x) for x in args.rss_lengths.split(",")):
            seconds, rss = peak_rss_vspipe(weights, length, 128)
            print(f"| {length} | {2 * length - 1} | {seconds:.1f} | {rss:.0f} |")


if __name__ == "__main__":
    main()
