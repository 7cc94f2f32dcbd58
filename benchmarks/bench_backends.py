"""Runtime backends against the torch path: ms per output frame, compile and cached-load time, peak RSS, parity.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_backends.py --quick    # 64x96, seconds
    PYTHONPATH=. .venv/bin/python benchmarks/bench_backends.py --write    # 256x448 and 480x640, into RESULTS.md
    # on an NVIDIA GPU with tensorrt installed: torch fp16 vs TensorRT fp16 at 1080p
    PYTHONPATH=. .venv/bin/python benchmarks/bench_backends.py --device cuda --backends torch,tensorrt --sizes 1080x1920

Every (backend, size) runs in a fresh worker process (this file with `--worker`), so peak RSS is its own:
the torch path is `emavfi.interpolate` (one backbone pass per pair, then heads + refine per timestep, as the
official `multi_inference`); the runtimes are `emavfi.load_model(..., backend=...)` through the same call.
compile = first use with an empty cache (export + conversion + load); cached = a new model loading the cached
graphs. x2 = t 0.5 per call; x8 = the 7 timesteps 1/8..7/8 in one call (one backbone pass); clip x2 = a
5-frame clip through the clip runner with its automatic chunk. Outputs are compared with the torch worker's
(max abs difference). Weights: the variant's shapes, official-style init.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
RESULTS = HERE / "RESULTS.md"
BEGIN, END = "<!-- bench_backends: begin -->", "<!-- bench_backends: end -->"
TIMESTEPS = {"x2": [0.5], "x4": [0.25, 0.5, 0.75], "x8": [k / 8 for k in range(1, 8)]}  # one call each
MODES = (*TIMESTEPS, "clip")


def photo_pair(h: int, w: int):
    """Two frames of a pan over scikit-image's astronaut, h x w, float32 [1,3,H,W]."""
    import torch
    import torch.nn.functional as F
    from skimage import data

    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)[None]
    crops = [photo[:, :, 30:480, 20:500], photo[:, :, 42:492, 8:488]]
    return [F.interpolate(c, size=(h, w), mode="bilinear", align_corners=False).clamp(0, 1) for c in crops]


def worker(args: argparse.Namespace) -> dict:
    import numpy as np
    import torch

    import emavfi

    torch.set_num_threads(args.threads)
    h, w = map(int, args.size.split("x"))
    torch.manual_seed(0)
    network = emavfi.build_model(args.variant).eval()
    state = network.state_dict()
    place = {"device": args.device, "dtype": "fp16" if args.device == "cuda" else "fp32"}
    img0, img1 = (x.to(args.device) for x in photo_pair(h, w))
    row: dict = {"backend": args.backend, "size": args.size}
    if args.backend == "torch":
        row.update(_timed(emavfi.load_model(state, args.variant, **place), img0, img1, args, np, emavfi))
    else:
        with tempfile.TemporaryDirectory() as cache:
            started = time.perf_counter()
            first = emavfi.load_model(state, args.variant, backend=args.backend, cache_dir=cache, **place)
            emavfi.interpolate(first, img0, img1, 0.5)
            row["compile_s"] = time.perf_counter() - started
            del first
            started = time.perf_counter()
            model = emavfi.load_model(state, args.variant, backend=args.backend, cache_dir=cache, **place)
            model.sessions(*model_padded(h, w), 1.0)
            row["cached_s"] = time.perf_counter() - started
            row.update(_timed(model, img0, img1, args, np, emavfi))
    row["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return row


def model_padded(h: int, w: int) -> tuple[int, int]:
    from emavfi.inference import pad_amounts

    left, right, top, bottom = pad_amounts(h, w, 32)
    return h + top + bottom, w + left + right


def _timed(model, img0, img1, args: argparse.Namespace, np, emavfi) -> dict:
    out = {}
    for mode in args.modes.split(","):
        if mode == "clip":
            out.update(_timed_clip(model, img0, img1, args.repeats, np))
            continue
        ts = TIMESTEPS[mode]
        emavfi.interpolate(model, img0, img1, ts)  # warm-up
        times = []
        for _ in range(args.repeats):
            started = time.perf_counter()
            result = emavfi.interpolate(model, img0, img1, ts).float().cpu()  # the copy waits for the GPU
            times.append(time.perf_counter() - started)
        out[f"{mode}_ms"] = 1000 * statistics.median(times) / len(ts)
        np.save(os.environ["BENCH_OUT"] + f".{mode}.npy", result.numpy())
    return out


def _timed_clip(model, img0, img1, repeats: int, np) -> dict:
    """x2 over a 5-frame pan (4 pairs) through the clip runner, as the CLI and the nodes run it: its
    automatic chunk (one pair per call on the CPU for torch; a runtime's lanes take several at once)."""
    from fractions import Fraction

    import torch

    from emavfi.runner import Runner

    clip = torch.cat([img0, img1, img0.roll(8, -1), img1.roll(8, -1), img0.roll(16, -1)]).float().cpu()
    work = {i: (Fraction(1, 2),) for i in range(4)}
    times, made, chunk = [], {}, 0
    for k in range(repeats + 1):  # the first run warms up
        runner = Runner(model)
        started = time.perf_counter()
        runner.run(clip, work, bisection_depth=None, emit=lambda i, t, f: made.__setitem__(i, f))
        if k:
            times.append(time.perf_counter() - started)
        chunk = runner.chunk
    np.save(os.environ["BENCH_OUT"] + ".clip.npy", torch.stack([made[i] for i in range(4)]).numpy())
    return {"clip_ms": 1000 * statistics.median(times) / 4, "clip_chunk": chunk}


def run_worker(backend: str, size: str, args: argparse.Namespace, outdir: Path) -> dict:
    env = {**os.environ, "BENCH_OUT": str(outdir / f"{backend}-{size}")}
    cmd = [sys.executable, __file__, "--worker", "--backend", backend, "--size", size, "--variant", args.variant,
           "--modes", args.modes,
           "--repeats", str(args.repeats), "--threads", str(args.threads), "--device", args.device]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"backend": backend, "size": size, "error": proc.stderr.strip().splitlines()[-1]}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def table(rows: list[dict], outdir: Path, modes: list[str]) -> list[str]:
    import numpy as np

    torch_ms = {(r["size"], m): r.get(f"{m}_ms") for r in rows if r["backend"] == "torch" for m in modes}
    names = {"x2": "x2 ms/frame", "x4": "x4 (3 t per call) ms/frame", "x8": "x8 ms/frame",
             "clip": "clip x2 ms/frame (pairs per call)"}
    head = "".join(f" {names[m]} | vs torch |" for m in modes)
    lines = [f"| size | backend |{head} compile s | cached load s | peak RSS MiB | max abs diff to torch |",
             "|---|---|" + "---|---|" * len(modes) + "---|---|---|---|"]
    for r in rows:
        if "error" in r:
            lines.append(f"| {r['size']} | {r['backend']} | error: {r['error'][:80]} |" + "|" * (2 * len(modes) + 3))
            continue
        diff = max(float(np.abs(np.load(outdir / f"{r['backend']}-{r['size']}.{m}.npy")
                                - np.load(outdir / f"torch-{r['size']}.{m}.npy")).max()) for m in modes)
        cells = ""
        for m in modes:
            chunk = f" ({r['clip_chunk']})" if m == "clip" else ""
            cells += f" {r[f'{m}_ms']:,.0f}{chunk} | {torch_ms[(r['size'], m)] / r[f'{m}_ms']:.2f}x |"
        lines.append(f"| {r['size']} | {r['backend']} |{cells} {r.get('compile_s', 0):.1f} | "
                     f"{r.get('cached_s', 0):.2f} | {r['peak_rss_mib']:,.0f} | {diff:.1e} |")
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--worker", action="store_true")
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--size", default="256x448")
    parser.add_argument("--sizes", default="256x448,480x640")
    parser.add_argument("--backends", default="torch,openvino,onnxruntime")
    parser.add_argument("--variant", default="ours_small_t")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--device", default="cpu", help="cpu (fp32) or cuda (fp16: torch vs tensorrt)")
    parser.add_argument("--modes", default="x2,x8,clip", help=f"columns, from {','.join(MODES)}")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--write", action="store_true")
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args)))
        return
    if args.quick:
        args.sizes, args.repeats = "64x96", 1
    modes = args.modes.split(",")
    if not modes or any(m not in MODES for m in modes):
        parser.error(f"--modes takes a comma-separated list of {', '.join(MODES)}")
    load_before = os.getloadavg()
    started = time.time()
    with tempfile.TemporaryDirectory() as tmp:
        rows = []
        for size in args.sizes.split(","):
            for backend in args.backends.split(","):
                rows.append(run_worker(backend, size, args, Path(tmp)))
                print(json.dumps({k: v for k, v in rows[-1].items()}), file=sys.stderr, flush=True)
        lines = table(rows, Path(tmp), modes)
    import importlib.metadata

    import torch

    versions = ", ".join(f"{name} {importlib.metadata.version(name)}"
                         for name in ("openvino", "onnxruntime", "tensorrt") if name in args.backends)
    header = [f"Generated by `benchmarks/bench_backends.py --sizes {args.sizes} --modes {args.modes} "
              f"--repeats {args.repeats} --threads {args.threads}` on "
              f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: {args.variant} (random weights, official "
              f"init), {'fp16 on ' + torch.cuda.get_device_name() if args.device == 'cuda' else 'fp32'}, "
              f"{args.threads} threads, torch {torch.__version__}, {versions}; "
              f"load average before {load_before[0]:.1f}, after "
              f"{os.getloadavg()[0]:.1f}; {time.time() - started:.0f} s in all. Medians of the timed repeats.", ""]
    print("\n".join(header + lines))
    if args.write:
        text = RESULTS.read_text() if RESULTS.exists() else "# EMA-VFI benchmark results\n"
        block = "\n".join([BEGIN, "## Runtime backends (benchmarks/bench_backends.py)", "", *header, *lines, END])
        if BEGIN in text:
            text = text[:text.index(BEGIN)] + block + text[text.index(END) + len(END):]
        else:
            text = text.rstrip("\n") + "\n\n" + block + "\n"
        RESULTS.write_text(text)


if __name__ == "__main__":
    main()
