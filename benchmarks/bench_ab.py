"""Did a change make the frame path slower? Alternating before/after timing of two revisions of this repository.

Run from the repository root:

    /work/venv/bin/python benchmarks/bench_ab.py --before main --after WORKTREE --rounds 4
    /work/venv/bin/python benchmarks/bench_ab.py --before 9dfcb6f --after HEAD --write   # appends to RESULTS.md

Each revision is exported with `git archive` into a temporary folder (WORKTREE = this checkout as it is).
Every round starts one fresh process per revision, in alternating order (A B, B A, A B ...), so slow phases
of a shared machine hit both sides alike. A process builds `--variant` with random weights (seeded, the
same in both), times the frame path (`emavfi.clips.interpolate_clip` over a `--frames`-frame clip: device
batches, HDR handling, copies, output tensor) for each multiplier after one warm-up, and reports the median
of `--repeats` runs in ms per interpolated frame. The table gives per side the median over rounds and its
range, and the after/before ratio of each round (median and range): a ratio range straddling 1.0 means
"no difference this run can see".
"""
from __future__ import annotations

import argparse
import datetime as _dt
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TAG = "ABJSON "
WORKTREE = "WORKTREE"


# ----------------------------------------------------------------------------------------------- worker

def worker(args: argparse.Namespace) -> None:
    """Time the frame path of the emavfi importable here; print one JSON line."""
    import torch

    import emavfi
    from emavfi import schedule
    try:
        from emavfi.clips import interpolate_clip
    except ImportError:  # a revision from before emavfi/clips.py
        from emavfi.runner import interpolate_clip

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    model = emavfi.build_model(emavfi.get_config(args.variant)).eval()
    h, w = (int(v) for v in args.size.split("x"))
    frames = torch.rand(args.frames, 3, h, w, generator=torch.Generator().manual_seed(1))
    options = {"backend": _blend} if args.backend == "blend" else {}
    result = {}
    for m in args.multipliers:
        plan = schedule.multiplier_plan(args.frames, m)
        made = (args.frames - 1) * (m - 1)
        interpolate_clip(model, frames, plan, **options)  # warm-up: allocator, geometry caches
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            interpolate_clip(model, frames, plan, **options)
            times.append((time.perf_counter() - start) * 1000 / made)
        result[str(m)] = statistics.median(times)
    print(TAG + json.dumps({"module": emavfi.__file__, "ms": result}), flush=True)


def _blend(frames, first, second, timesteps, aux):  # noqa: ANN001 - a runner.Backend without a network
    """Zero-flow blends: what is left to time is the engine's and the Runner's own work around the network."""
    rgb = [(1 - t) * frames[first] + t * frames[second] for t in timesteps]
    import torch

    return torch.stack(rgb), None


# ----------------------------------------------------------------------------------------------- driver

def export(ref: str, into: Path) -> Path:
    """The tree of `ref` (or this checkout for WORKTREE) as a folder holding an importable emavfi."""
    if ref == WORKTREE:
        return ROOT
    target = into / ref.replace("/", "_")
    target.mkdir()
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", ref, "emavfi"], check=True, capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(archive.stdout)) as tar:
        tar.extractall(target, filter="data")
    return target


def run_worker(script: str, tree: Path, argv: list[str], tag: str, threads: int, timeout: float) -> dict:
    """Run `script --worker ARGV` in a fresh process importing the emavfi of `tree`; its JSON report line (after
    `tag`), checked to come from that emavfi."""
    command = [sys.executable, str(Path(script).resolve()), "--worker", *argv, "--threads", str(threads)]
    env = {**os.environ, "PYTHONPATH": str(tree), "OMP_NUM_THREADS": str(threads)}
    done = subprocess.run(command, env=env, cwd=tree, capture_output=True, text=True, timeout=timeout)
    lines = [line for line in done.stdout.splitlines() if line.startswith(tag)]
    if done.returncode or not lines:
        raise SystemExit(f"worker for {tree} ({' '.join(argv)}) failed ({done.returncode}): "
                         f"{done.stderr.strip()[-2000:]}")
    report = json.loads(lines[-1][len(tag):])
    if not Path(report["module"]).resolve().is_relative_to(tree.resolve()):
        raise SystemExit(f"the worker imported {report['module']}, not the emavfi of {tree}")
    return report


def revision_arguments(parser: argparse.ArgumentParser) -> None:
    """--before / --after: the two revisions compared."""
    parser.add_argument("--before", default="main", help="git revision (default main), or WORKTREE")
    parser.add_argument("--after", default=WORKTREE, help="git revision, or WORKTREE (default: this checkout)")


def run_side(tree: Path, args: argparse.Namespace) -> dict[str, float]:
    """One fresh process timing the frame path of the emavfi in `tree`."""
    argv = ["--variant", args.variant, "--size", args.size, "--frames", str(args.frames), "--repeats",
            str(args.repeats), "--backend", args.backend, "--multipliers", *map(str, args.multipliers)]
    report = run_worker(__file__, tree, argv, TAG, args.threads, args.timeout)
    return {k: float(v) for k, v in report["ms"].items()}


def measure(args: argparse.Namespace) -> dict[str, list[dict[str, float]]]:
    """{"before": [per round], "after": [per round]}, the two sides alternating in order."""
    results: dict[str, list[dict[str, float]]] = {"before": [], "after": []}
    with tempfile.TemporaryDirectory(prefix="emavfi-ab-") as tmp:
        trees = {"before": export(args.before, Path(tmp)), "after": export(args.after, Path(tmp))}
        for r in range(args.rounds):
            order = ("before", "after") if r % 2 == 0 else ("after", "before")
            for side in order:
                results[side].append(run_side(trees[side], args))
                print(f"round {r + 1}/{args.rounds} {side}: "
                      + ", ".join(f"x{m} {v:.1f} ms" for m, v in results[side][-1].items()), file=sys.stderr)
    return results


def table(results: dict[str, list[dict[str, float]]], args: argparse.Namespace) -> str:
    """Markdown: per multiplier, before and after (median [min-max] over rounds) and the after/before ratios."""
    what = args.variant if args.backend == "network" else "no network (blend backend)"
    lines = [f"| {args.size}, {what} | before `{args.before}` ms/frame | after `{args.after}` ms/frame "
             "| after/before (median of rounds) | per-round ratio range |", "|---|---|---|---|---|"]
    for m in map(str, args.multipliers):
        before = [r[m] for r in results["before"]]
        after = [r[m] for r in results["after"]]
        ratios = [a / b for a, b in zip(after, before)]
        lines.append(f"| x{m} | {statistics.median(before):.1f} [{min(before):.1f}-{max(before):.1f}] "
                     f"| {statistics.median(after):.1f} [{min(after):.1f}-{max(after):.1f}] "
                     f"| {statistics.median(ratios):.3f} | {min(ratios):.3f}-{max(ratios):.3f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    revision_arguments(parser)
    parser.add_argument("--rounds", type=int, default=4, help="alternating rounds (one process per side each)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per process, after one warm-up")
    parser.add_argument("--size", default="256x256", help="frame size HxW")
    parser.add_argument("--frames", type=int, default=3, help="clip length (frames - 1 pairs)")
    parser.add_argument("--multipliers", type=int, nargs="+", default=[2, 8])
    parser.add_argument("--variant", default="ours_small_t")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--backend", choices=("network", "blend"), default="network",
                        help="blend: zero-flow blends instead of the network, to time the engine's own overhead")
    parser.add_argument("--timeout", type=float, default=900, help="seconds per worker process")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    started = time.monotonic()
    results = measure(args)
    text = table(results, args)
    model = f"random `{args.variant}` weights" if args.backend == "network" else "a zero-flow blend backend"
    note = (f"{args.rounds} alternating rounds, {args.repeats} timed runs per process, {args.frames} frames, "
            f"{args.threads} thread(s), {model}; {time.monotonic() - started:.0f} s")
    print(text + "\n\n" + note)
    if args.write:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with RESULTS.open("a") as f:
            f.write(f"\n## Before/after: the frame path ({stamp}, benchmarks/bench_ab.py)\n\n{text}\n\n{note}\n")


if __name__ == "__main__":
    main()
