"""bench_pipeline on a GPU: the real network (ours_small_t, random weights unless --weights) in fp16 on CUDA
instead of the stand-in, the same footage, cases and counts, the old code (745808a) beside the new.

The network's own time is taken from CUDA events around each device call (no synchronisation during the run),
so "around ms" is what the files cost on top of the GPU; one command on a machine with a GPU:

    PYTHONPATH=. .venv/bin/python benchmarks/bench_pipeline_gpu.py            # png, exr, mp4, prores at 1080p
    PYTHONPATH=. .venv/bin/python benchmarks/bench_pipeline_gpu.py --model ours_t --size 2160x3840
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_pipeline  # noqa: E402

DEFAULTS = ["--model", "ours_small_t", "--device", "cuda", "--precision", "fp16", "--delays", "0",
            "--cases", "png,exr,mp4,prores", "--frames", "17"]

if __name__ == "__main__":
    sys.argv[1:1] = DEFAULTS  # later (given) options win
    sys.exit(bench_pipeline.main())
