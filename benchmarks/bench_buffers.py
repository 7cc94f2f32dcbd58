"""What glibc's handling of big buffers costs: the network on one frame pair, and one operation on a frame,
under four policies, each in a fresh process.

    PYTHONPATH=. python benchmarks/bench_buffers.py [--size 544x960] [--repeats 3]

glibc: its own default (the mapping threshold moves up to 32 MiB as buffers are freed); map 4 MiB: every buffer
over 4 MiB mapped afresh and unmapped when freed (the file pipeline's former policy); reuse: the pipeline's
policy without glibc's huge pages (`emavfi.buffers.keep_frame_buffers`: one arena, buffers up to 32 MiB
reused); huge pages: `python -m emavfi`'s (glibc.malloc.hugetlb=1, every buffer over 4 MiB mapped afresh in
transparent huge pages; where glibc or the kernel cannot, the row says so). A freshly mapped page costs a fault
on first touch: kernel time.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
POLICIES = ("glibc", "map 4 MiB", "reuse", "huge pages")


def worker(policy: str, size: str, repeats: int) -> dict:
    import ctypes
    import resource
    import time

    import torch

    torch.set_num_threads(2)
    if policy == "map 4 MiB":
        ctypes.CDLL("libc.so.6").mallopt(-3, 4 << 20)
    elif policy in ("reuse", "huge pages"):  # the same call: under the tunable it maps in huge pages
        from emavfi.buffers import huge_pages_advised, keep_frame_buffers

        keep_frame_buffers()
        if policy == "huge pages" and not huge_pages_advised():
            raise SystemExit("glibc or the kernel here cannot map in huge pages")
    import emavfi

    def usage() -> tuple[float, float, float, int]:
        r = resource.getrusage(resource.RUSAGE_SELF)
        return time.perf_counter(), r.ru_utime, r.ru_stime, r.ru_minflt

    torch.manual_seed(0)
    model = emavfi.build_model("ours_small_t").eval()
    h, w = (int(v) for v in size.split("x"))
    a, b = torch.rand(1, 3, h, w), torch.rand(1, 3, h, w)
    frame = torch.rand(3, 1080, 1920)
    with torch.inference_mode():
        emavfi.interpolate(model, a, b)
        start = usage()
        for _ in range(repeats):
            emavfi.interpolate(model, a, b)
        end = usage()
        op_start = usage()
        for _ in range(50):
            frame.mul(2.0)  # a new frame-sized buffer, freed at once
        op_end = usage()
    per = [(e - s) / repeats for s, e in zip(start, end)]
    return {"pair_s": per[0], "user_s": per[1], "sys_s": per[2], "faults": per[3],
            "op_ms": (op_end[0] - op_start[0]) / 50 * 1000,
            "op_faults": (op_end[3] - op_start[3]) / 50,
            "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="544x960", help="HxW of the frame pair")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        print(json.dumps(worker(args.worker, args.size, args.repeats)))
        return 0
    sys.path.insert(0, str(ROOT / "benchmarks"))
    from bench_pipeline import cpu_line, tunables_environment

    print(f"CPU: {cpu_line()}; ours_small_t (random weights) x2 at {args.size}, 2 threads; a 1080p float frame "
          "times 2 (a new 25 MB buffer each time)")
    print("| policy | s per pair | user s | kernel s | page faults per pair | x*2 on a 1080p frame ms | faults "
          "| peak RSS MB |")
    print("|---|---|---|---|---|---|---|---|")
    for policy in POLICIES:
        env = tunables_environment(huge_pages=policy == "huge pages")
        done = subprocess.run([sys.executable, __file__, "--worker", policy, "--size", args.size, "--repeats",
                               str(args.repeats)], capture_output=True, text=True, cwd=ROOT, env=env)
        if done.returncode != 0:
            print(f"| {policy} | {(done.stderr.strip().splitlines() or ['failed'])[-1]} |||||||", flush=True)
            continue
        r = json.loads(done.stdout.splitlines()[-1])
        print(f"| {policy} | {r['pair_s']:.2f} | {r['user_s']:.2f} | {r['sys_s']:.2f} | {r['faults']:.0f} | "
              f"{r['op_ms']:.1f} | {r['op_faults']:.0f} | {r['rss_mb']:.0f} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
