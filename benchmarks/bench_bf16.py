"""bf16 against fp32 on the CPU, torch and OpenVINO: CPU seconds per x2 frame on one thread, and the difference.

    PYTHONPATH=. .venv/bin/python benchmarks/bench_bf16.py torch,openvino 256x448,480x640
    ONEDNN_MAX_CPU_ISA=AVX2 PYTHONPATH=. .venv/bin/python benchmarks/bench_bf16.py torch 256x448   # emulated bf16

One thread and CPU time (time.process_time), so a shared machine does not move the figures much. ours_small_t
with random weights (official init, seed 0) on a pan over scikit-image's astronaut; one warm-up call, then one
timed `emavfi.interpolate` at t = 0.5 per backend and precision. Differences: bf16 frame minus the same
backend's fp32 frame (values in 0..1). Prints one JSON line per case (benchmarks/RESULTS.md, "bf16 on the CPU").
"""
from __future__ import annotations

import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import torch

    import emavfi
    from bench_backends import photo_pair

    torch.set_num_threads(1)
    backends, sizes = sys.argv[1].split(","), sys.argv[2].split(",")
    torch.manual_seed(0)
    state = emavfi.build_model("ours_small_t").eval().state_dict()
    for size in sizes:
        img0, img1 = photo_pair(*map(int, size.split("x")))
        for backend in backends:
            reference = None
            for precision in ("fp32", "bf16"):
                with tempfile.TemporaryDirectory() as cache:
                    runtime = {} if backend == "torch" else {"backend": backend, "cache_dir": cache}
                    model = emavfi.load_model(state, "ours_small_t", dtype=precision, **runtime)
                    emavfi.interpolate(model, img0, img1, 0.5)
                    started = time.process_time()
                    frame = emavfi.interpolate(model, img0, img1, 0.5).float()
                    cpu = time.process_time() - started
                reference = frame if reference is None else reference
                diff = (frame - reference).abs()
                print(json.dumps({"size": size, "backend": backend, "precision": precision, "cpu_s": round(cpu, 2),
                                  "max_diff": float(diff.max()), "mean_diff": float(diff.mean())}), flush=True)


if __name__ == "__main__":
    main()
