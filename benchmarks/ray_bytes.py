"""Why do `--ray` frames differ from one process? Per-frame differences and the settings each side used.

Run from the repository root (needs the Ray extra):

    PYTHONPATH=. .venv/bin/python benchmarks/ray_bytes.py --threads 3                   # as on a 3-core machine
    PYTHONPATH=. .venv/bin/python benchmarks/ray_bytes.py --threads 3 --worker-threads 1  # workers as before the fix
    PYTHONPATH=. .venv/bin/python benchmarks/ray_bytes.py --threads 3 --backend auto --multiplier 2

The shot: 9 photographs' crops from skimage (the astronaut panning, a cut to the cat after frame 4), the
ours_small_t architecture with the parity weights of ../shared when present (else seeded ones). It renders
the shot in this process as `emavfi interpolate` would (with --threads torch threads: a machine with that
many cores), then on an embedded Ray (2 CPUs, 2 workers, 127.0.0.1; each worker with --worker-threads,
default: the driver's, as distributed.render does). It prints, for each output frame that differs, its
largest difference in 8-bit levels and how many values differ; then the settings each side resolved: torch
threads, backend, chunk, the batches of the first pairs, the model's dtype and weights layout. A worker's
settings are read by an actor built like the render's workers (same class and thread count).

Measured here (AMD EPYC, AVX-512; 144x192, x4, 33 frames): --threads 3 --worker-threads 1 (the workers
before the fix): 10 of 33 frames differ, each by one level in 1-2 values; --threads 3: 0 of 33. With
--backend openvino or auto (auto picks OpenVINO on both sides), 0 of 33 even with 1-thread workers.
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch

import emavfi
from emavfi import distributed, loading, ray_cluster, render
from emavfi.schedule import Request
from emavfi.settings import OutputOptions, Settings

PARITY_WEIGHTS = Path(__file__).resolve().parents[2] / "shared" / "parity" / "weights.safetensors"


def write_shot(folder: Path, frames: int, height: int, width: int) -> None:
    """A pan over the astronaut (4 px right, 2 px down per frame), then a cut to the cat panning on."""
    from PIL import Image
    from skimage import data

    folder.mkdir(parents=True)
    for i in range(frames):
        image = data.astronaut() if i < frames // 2 else data.chelsea()
        Image.fromarray(image[40 + 2 * i:40 + 2 * i + height, 60 + 4 * i:60 + 4 * i + width]).save(
            folder / f"shot.{1001 + i}.png")


def weights_file(root: Path) -> Path:
    """The parity weights of ../shared (ours_small_t layout), else seeded ones with PyTorch's default initialisation
    (weights scaled far below it make outputs too flat for float rounding to reach an 8-bit level)."""
    if PARITY_WEIGHTS.exists():
        return PARITY_WEIGHTS
    torch.manual_seed(0)
    path = root / "ours_small_t.safetensors"
    emavfi.weights.save_safetensors(emavfi.build_model("ours_small_t").state_dict(), path, "ours_small_t")
    return path


def settings_used(job: render.Job) -> dict[str, Any]:
    """What decides the arithmetic, as this process resolves it for `job`."""
    from emavfi.runner import Runner

    prepared = render.prepare(job)
    model = loading.load_model_for(job.settings)
    runner = Runner(model, tta=job.settings.run.tta, scale=job.settings.run.scale, chunk=job.settings.run.chunk)
    chunk = runner.resolve_chunk(*prepared.source.size, 3)
    params = list(getattr(model, "parameters", lambda: [])())
    return {"threads": torch.get_num_threads(), "interop_threads": torch.get_num_interop_threads(),
            "model": type(model).__name__, "backend": getattr(model, "backend", "torch"),
            "backend_call": type(runner.backend).__name__, "chunk": chunk,
            "batches": [list(runner.batch_of(p)) for p in range(3)],
            "dtype": str(params[0].dtype) if params else str(getattr(model, "dtype", "")),
            "weights_layouts": sorted({"channels_last" if p.dim() == 4 and p.is_contiguous(
                memory_format=torch.channels_last) and not p.is_contiguous() else
                "contiguous" if p.is_contiguous() else "strided" for p in params}),
            "denormals_flushed": _flush_state()}


def _flush_state() -> bool:
    """Whether denormals are flushed to zero here (torch has no getter: 1e-40 survives a multiply or not)."""
    return bool((torch.tensor([1e-39]) * torch.tensor([0.5])).item() == 0.0)


def compare(one: Path, other: Path) -> list[tuple[str, int, int]]:
    """(frame name, largest difference in 8-bit levels, differing values) for every frame that differs."""
    from PIL import Image

    found = []
    for path in sorted(one.glob("*.png")):
        twin = other / path.name
        if path.read_bytes() == twin.read_bytes():
            continue
        a, b = (np.asarray(Image.open(p), dtype=np.int16) for p in (path, twin))
        found.append((path.name, int(np.abs(a - b).max()), int((a != b).sum())))
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=9)
    parser.add_argument("--size", default="144x192", help="HxW")
    parser.add_argument("--multiplier", type=int, default=4)
    parser.add_argument("--backend", default="torch")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="this process's torch threads")
    parser.add_argument("--worker-threads", type=int, help="each Ray worker's (default: the driver's)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    worker_threads = args.worker_threads or args.threads
    height, width = (int(v) for v in args.size.split("x"))
    root = Path(tempfile.mkdtemp(prefix="ray-bytes-"))
    write_shot(root / "shot", args.frames, height, width)
    settings = Settings(request=Request(multiplier=args.multiplier), weights=weights_file(root), device="cpu",
                        backend=args.backend, output=OutputOptions(start_number=1001))

    one = render.Job(root / "shot", root / "one", settings)
    mine = settings_used(one)
    report = render.render(render.prepare(one), loading.load_model_for(one.settings))
    print(f"one process: {report.written} frames")

    ray_cluster.start_local(num_cpus=2)
    import ray

    probe = ray.remote(_Probe).options(num_cpus=1).remote(distributed._worker_job(one), worker_threads)
    theirs = ray.get(probe.settings.remote())
    ray.kill(probe)
    ray_report = distributed.render(render.Job(root / "shot", root / "ray", settings), workers=2,
                                    threads=worker_threads)
    ray.shutdown()
    print(f"Ray: {ray_report.written} frames on {ray_report.workers} workers, {ray_report.tasks} tasks")

    differing = compare(root / "one", root / "ray")
    print(f"{len(differing)} of {report.written} frames differ")
    for name, levels, count in differing:
        print(f"  {name}: max {levels} level(s), {count} values")
    print(f"{'setting':18} {'one process':>28} {'Ray worker':>28}")
    for key in mine:
        mark = "" if mine[key] == theirs[key] else "   <- differs"
        print(f"{key:18} {str(mine[key]):>28} {str(theirs[key]):>28}{mark}")


class _Probe(distributed.ShotWorker):
    """A render worker (same constructor, so the same threads) that reports its settings instead."""

    def settings(self) -> dict[str, Any]:
        return settings_used(self._job)


if __name__ == "__main__":
    main()
