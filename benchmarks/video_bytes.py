"""H.264 settings by measurement: are the bytes the same on every run and machine, and what do they cost?

    PYTHONPATH=. python benchmarks/video_bytes.py

(1) Same frames, same bytes: a pan over a real photograph (320x240, 24 frames) is encoded in fresh processes
    whose heap glibc fills differently (MALLOC_PERTURB_), and with one CPU against all, for x264's defaults
    (macroblock-tree on, one slice per core) and for our settings (media.codecs: macroblock-tree off, fixed
    frame threads). An encoder that reads memory it never wrote gives other bytes for another fill.
(2) What it costs: kB per frame, PSNR (Y, against the frames given) and encode CPU at crf 16..22, macroblock-tree
    on and off, on 960x540 footage (bench_pipeline's pan) clean and with grain.
"""
from __future__ import annotations

import io
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ENCODE = """
import hashlib, io, os, sys
import av, numpy as np
from skimage import data
if os.environ.get("ONE_CPU"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
params, threads, kind = sys.argv[1], int(sys.argv[2]), sys.argv[3]
photo = data.coffee()
buf = io.BytesIO()
with av.open(buf, "w", format="mp4") as c:
    s = c.add_stream("libx264", rate=24); s.width, s.height, s.pix_fmt = 320, 240, "yuv420p"
    s.options = {"crf": "16", **({"x264-params": params} if params else {})}
    s.codec_context.thread_type, s.codec_context.thread_count = kind, threads
    for i in range(24):
        f = av.VideoFrame.from_ndarray(np.ascontiguousarray(photo[40 + i:280 + i, 60 + 2 * i:380 + 2 * i]),
                                       format="rgb24").reformat(format="yuv420p", threads=1)
        f.pts = i
        for p in s.encode(f): c.mux(p)
    for p in s.encode(): c.mux(p)
print(hashlib.sha256(buf.getvalue()).hexdigest()[:12])
"""
SETTINGS = {"x264 defaults (macroblock-tree on, slice threads, one per core)": ("", 0, "SLICE"),
            "ours (macroblock-tree off, 4 frame threads)": ("mbtree=0", 4, "FRAME")}


def sums(params: str, threads: int, kind: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", ENCODE, params, str(threads), kind], capture_output=True,
                          text=True, env={**os.environ, **env}, timeout=300, check=True)
    return done.stdout.split()[-1]


def same_bytes_table() -> list[str]:
    rows = ["| settings | distinct files over MALLOC_PERTURB_ 1, 90, 165, 240 | one CPU = all CPUs |", "|---|---|---|"]
    for name, (params, threads, kind) in SETTINGS.items():
        fills = {sums(params, threads, kind, MALLOC_PERTURB_=v) for v in ("1", "90", "165", "240")}
        one = sums(params, threads, kind, MALLOC_PERTURB_="1", ONE_CPU="1")
        rows.append(f"| {name} | {len(fills)} | {'yes' if one in fills and len(fills) == 1 else 'no'} |")
    return rows


def cost_table() -> list[str]:
    import av

    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_pipeline import _footage

    rows = ["| footage | crf | macroblock-tree | kB/frame | PSNR Y dB | encode CPU ms/frame |", "|---|---|---|---|---|---|"]
    clean = (_footage(24, 540, 960).clamp(0, 1).permute(0, 2, 3, 1).numpy() * 255).round().astype(np.uint8)
    grain = np.random.default_rng(0).normal(0, 3, clean.shape)
    for name, frames in (("pan", clean), ("pan + grain", np.clip(clean + grain, 0, 255).astype(np.uint8))):
        yuv = [av.VideoFrame.from_ndarray(np.ascontiguousarray(f), format="rgb24").reformat(format="yuv420p")
               for f in frames]
        given = [y.to_ndarray() for y in yuv]
        for crf, tree in ((16, 1), (16, 0), (18, 0), (20, 0), (22, 0)):
            buf, cpu = io.BytesIO(), time.process_time()
            with av.open(buf, "w", format="mp4") as c:
                s = c.add_stream("libx264", rate=24)
                s.width, s.height, s.pix_fmt = 960, 540, "yuv420p"
                s.options = {"crf": str(crf), "x264-params": f"mbtree={tree}"}
                s.codec_context.thread_type, s.codec_context.thread_count = "FRAME", 4
                for i, y in enumerate(yuv):
                    y.pts = i
                    for p in s.encode(y):
                        c.mux(p)
                for p in s.encode():
                    c.mux(p)
            cpu = (time.process_time() - cpu) / len(yuv) * 1000
            buf.seek(0)
            with av.open(buf) as c:
                back = [f.to_ndarray() for f in c.decode(video=0)]
            mse = np.mean([np.mean((a[:540].astype(float) - b[:540].astype(float)) ** 2) for a, b in zip(given, back)])
            rows.append(f"| {name} | {crf} | {'on' if tree else 'off'} | {len(buf.getvalue()) / len(yuv) / 1e3:.1f} | "
                        f"{10 * np.log10(255 ** 2 / mse):.2f} | {cpu:.0f} |")
    return rows


def main() -> int:
    from bench_pipeline import cpu_line

    print(f"CPU: {cpu_line()}; PyAV {__import__('av').__version__}")
    print("\n".join(same_bytes_table()))
    print()
    print("\n".join(cost_table()))
    return 0


if __name__ == "__main__":
    sys.path.insert(0, str(ROOT / "benchmarks"))
    sys.exit(main())
