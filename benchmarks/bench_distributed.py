"""Wall time of one shot rendered in one process vs. on 1 and 2 local Ray workers (CPU), and Ray's overhead.

Run from the repository root (needs the Ray extra: pip install -r requirements-ray.txt):

    PYTHONPATH=. .venv/bin/python benchmarks/bench_distributed.py                 # 200 frames 256x256 x4
    PYTHONPATH=. .venv/bin/python benchmarks/bench_distributed.py --frames 24     # a quick look

The shot: `--frames` source frames of 256x256 PNG (a crop of skimage's astronaut moving 1 px per frame), x4,
rendered with the ours_small_t architecture and RANDOM weights (timing only: the arithmetic is that of the
real weights). Each worker and the one-process baseline run one torch thread, so 2 workers on 2 cores is the
ideal 2x. Measured in one run, in this order: the embedded cluster's start, the baseline, Ray with 1 worker,
Ray with 2 workers (each into a fresh folder; the files are compared with the baseline's), then the cost of
an empty actor call and of an empty render task (Ray call + the engine's per-task set-up: output folder lock,
record check, frame log).
"""
from __future__ import annotations

import argparse
import os
import shutil
import tempfile
import time
from pathlib import Path

import torch

import emavfi
from emavfi import distributed, loading, ray_cluster, render
from emavfi.schedule import Request
from emavfi.settings import OutputOptions, Settings


def _write_shot(folder: Path, frames: int, size: int) -> None:
    from PIL import Image
    from skimage import data
    from skimage.transform import resize

    folder.mkdir(parents=True)
    image = (resize(data.astronaut(), (size + frames, size + frames), anti_aliasing=True) * 255).astype("uint8")
    for i in range(frames):
        Image.fromarray(image[i:i + size, i:i + size]).save(folder / f"shot.{1001 + i}.png")


def _job(source: Path, weights: Path, output: Path, resume: bool = False) -> render.Job:
    return render.Job(source, output, Settings(request=Request(multiplier=4), weights=weights, device="cpu",
                                               output=OutputOptions(start_number=1001, resume=resume)))


def _steady(ticks: list[tuple[float, int]], started: float) -> tuple[float, float]:
    """(seconds from `started` until the first frames were done, output frames per second from then to the end)."""
    done = [(t, n) for t, n in ticks if n > 0]
    (t0, n0), (t1, n1) = done[0], done[-1]
    return t0 - started, (n1 - n0) / (t1 - t0) if t1 > t0 else float("nan")


def _worker_cpu(seconds_by_pid: dict[int, float]) -> None:
    """Record the CPU seconds used so far by each Ray worker process of this run (they are gone at the end)."""
    import psutil

    for process in psutil.Process().children(recursive=True):
        try:
            if process.name().startswith(("ray::ShotWorker", "ray::emavfi-")):
                times = process.cpu_times()
                seconds_by_pid[process.pid] = times.user + times.system
        except psutil.Error:
            continue


def _same_files(a: Path, b: Path) -> bool:
    names = sorted(p.name for p in a.iterdir() if p.suffix == ".png")
    return names == sorted(p.name for p in b.iterdir() if p.suffix == ".png") and all(
        (a / n).read_bytes() == (b / n).read_bytes() for n in names)


class _Empty:
    def ping(self) -> None:
        """Nothing."""


def _call_overhead(ray, calls: int) -> tuple[float, float]:
    """(seconds per empty actor call awaited one by one, per call with 2 actors and all calls in flight)."""
    actors = [ray.remote(num_cpus=1)(_Empty).remote() for _ in range(2)]
    ray.get([a.ping.remote() for a in actors])
    started = time.perf_counter()
    for _ in range(calls):
        ray.get(actors[0].ping.remote())
    one_by_one = (time.perf_counter() - started) / calls
    started = time.perf_counter()
    ray.get([actors[k % 2].ping.remote() for k in range(calls)])
    in_flight = (time.perf_counter() - started) / calls
    for actor in actors:
        ray.kill(actor, no_restart=True)
    return one_by_one, in_flight


def _empty_task_overhead(ray, job: render.Job, weights: Path, calls: int) -> float:
    """Seconds per render call that has no frames to make (the fixed cost of a task beyond its compute)."""
    from emavfi.weights import read_weights

    state, _ = read_weights(weights)
    worker = ray.remote(num_cpus=1)(distributed.ShotWorker).remote(job, 1)
    weights_box = [ray.put(state)]
    ray.get(worker.plan.remote())
    ray.get(worker.render.remote([], weights_box))  # loads the model
    started = time.perf_counter()
    for _ in range(calls):
        ray.get(worker.render.remote([], weights_box))
    seconds = (time.perf_counter() - started) / calls
    ray.kill(worker, no_restart=True)
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--frames", type=int, default=200, help="source frames (default 200)")
    parser.add_argument("--size", type=int, default=256, help="frame side in pixels (default 256)")
    parser.add_argument("--task-frames", type=int, default=distributed.DEFAULT_TASK_FRAMES,
                        help=f"output frames per Ray task (default {distributed.DEFAULT_TASK_FRAMES})")
    parser.add_argument("--calls", type=int, default=200, help="empty calls timed for the overhead (default 200)")
    args = parser.parse_args()

    import ray

    torch.set_num_threads(1)
    load_before = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="emavfi-bench-ray-"))
    try:
        source, weights = root / "shot", root / "ours_small_t.safetensors"
        _write_shot(source, args.frames, args.size)
        torch.manual_seed(0)
        state = {k: torch.randn(v.shape) * 0.02 for k, v in emavfi.build_model("ours_small_t").state_dict().items()}
        emavfi.weights.save_safetensors(state, weights, "ours_small_t")

        started = time.perf_counter()
        ray_cluster.start_local(num_cpus=2)
        cluster_start = time.perf_counter() - started

        rows = []
        job = _job(source, weights, root / "single")
        ticks: list[tuple[float, int]] = []
        cpu_before, started = time.process_time(), time.perf_counter()
        model = loading.load_model_for(job.settings)
        report = render.render(render.prepare(job), model,
                               progress=lambda done, n: ticks.append((time.perf_counter(), done)))
        wall = time.perf_counter() - started
        rows.append(("one process, no Ray", 1, wall, _steady(ticks, started), (time.process_time() - cpu_before) / wall,
                     True))
        total = report.written
        for workers in (1, 2):
            ticks = []
            cpu: dict[int, float] = {}

            def tick(done: int, requested: int) -> None:
                ticks.append((time.perf_counter(), done))
                _worker_cpu(cpu)

            job = _job(source, weights, root / f"ray{workers}")
            started = time.perf_counter()
            result = distributed.render(job, workers=workers, task_frames=args.task_frames, progress=tick)
            wall = time.perf_counter() - started
            rows.append((f"Ray, {result.tasks} tasks", workers, wall, _steady(ticks, started), sum(cpu.values()) / wall,
                         _same_files(job.output, root / "single")))
        call_one, call_in_flight = _call_overhead(ray, args.calls)
        empty_task = _empty_task_overhead(ray, _job(source, weights, root / "ray2", resume=True), weights,
                                          max(args.calls // 10, 5))
        ray.shutdown()
    finally:
        shutil.rmtree(root, ignore_errors=True)

    tasks = result.tasks
    single = rows[0][2]
    single_rate = rows[0][3][1]
    heading = (f"{args.frames} frames {args.size}x{args.size} x4 -> {total} output frames, ours_small_t architecture "
               f"with random weights, CPU, 1 torch thread per worker, {os.cpu_count()} cores, task = "
               f"{args.task_frames} output frames, rounded up to whole source pairs")
    print(f"\n### Ray: {heading}\n")
    print("| run | workers | wall s | vs one process | until first frames s | frames/s after that | vs one process "
          "| CPU/wall | files identical |")
    print("|---|---|---|---|---|---|---|---|---|")
    for name, workers, wall, (first_done, rate), cpu_per_wall, same in rows:
        print(f"| {name} | {workers} | {wall:.1f} | {single / wall:.2f}x | {first_done:.1f} | {rate:.2f} | "
              f"{rate / single_rate:.2f}x | {cpu_per_wall:.2f} | {'yes' if same else 'NO'} |")
    per_task = single / tasks
    print(f"\n| overhead | ms | share of a task's compute ({single / tasks * 1000:.0f} ms one-process time per task) |")
    print("|---|---|---|")
    print(f"| embedded cluster start (once) | {cluster_start * 1000:.0f} | - |")
    print(f"| empty actor call, awaited one by one | {call_one * 1000:.2f} | {call_one / per_task:.2%} |")
    print(f"| empty actor call, 2 actors, all in flight | {call_in_flight * 1000:.2f} | "
          f"{call_in_flight / per_task:.2%} |")
    print(f"| empty render task (Ray call + folder lock, record, log) | {empty_task * 1000:.1f} | "
          f"{empty_task / per_task:.2%} |")
    print("\nWall time includes starting the workers (torch import, model load: see 'until first frames'); the "
          "steady rate counts from the first completed task (Ray) or frame (one process) to the end. CPU/wall = CPU "
          "seconds of the rendering processes (the Ray workers, or the one process) per wall second: with N workers "
          "it reaches N only when N cores are free for them.")
    loads = " / ".join(" ".join(f"{x:.2f}" for x in load) for load in (load_before, os.getloadavg()))
    print(f"One run, no repeats; load average (1/5/15 min) before / after: {loads} (other processes share the cores).")


if __name__ == "__main__":
    main()
