"""Peak host memory of one frame pair, before and after a change, per frame size, flow scale and TTA.

Run from the repository root:

    /work/venv/bin/python benchmarks/bench_memory.py --before main --sizes 1080x1920,2160x3840
    /work/venv/bin/python benchmarks/bench_memory.py --before 726be78 --write   # appends to RESULTS.md

Each case runs in a fresh process per revision (exported with `git archive` like bench_ab.py; WORKTREE = this
checkout): build `--variant` with random weights, make two frames of the size, then interpolate them once at
t = 0.5 through `emavfi.clips.interpolate_clip` (device batch, padding, HR mode, TTA, output tensor: what a CPU
render does per pair). Reported: the process's peak RSS (ru_maxrss) minus its RSS just before the pair
("pair peak", what the pair itself needs), the whole process's peak, and the estimate of emavfi.memory in the
revision measured (what the memory check compares with free memory). Memory figures do not depend on load,
so one round per case is enough; run niced on a shared machine.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import re
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_ab import export, revision_arguments, run_worker  # noqa: E402 - the same revisions, the same workers

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
TAG = "MEMJSON "
MIB = 1 << 20


def _rss_mib(field: str = "VmRSS") -> float:
    text = Path("/proc/self/status").read_text()
    return int(re.search(rf"^{field}:\s+(\d+) kB", text, re.M).group(1)) / 1024


def worker(args: argparse.Namespace) -> None:
    """One pair of the case in this process; print one JSON line."""
    import resource

    import torch

    import emavfi
    from emavfi import memory, schedule
    from emavfi.clips import interpolate_clip

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    config = emavfi.get_config(args.variant)
    model = emavfi.build_model(config).eval()
    h, w = (int(v) for v in args.size.split("x"))
    frames = torch.rand(2, 3, h, w, generator=torch.Generator().manual_seed(1))
    estimate = memory.estimate_pair_bytes(config, h, w, 1, tta=args.tta, **_scale_argument(memory, args.scale))
    before = _rss_mib()
    started = time.monotonic()
    interpolate_clip(model, frames, schedule.multiplier_plan(2, 2), tta=args.tta, scale=args.scale)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(TAG + json.dumps({"module": emavfi.__file__, "pair_peak": peak - before, "peak": peak,
                            "estimate": estimate / MIB, "seconds": time.monotonic() - started}), flush=True)


def _scale_argument(memory, scale: float) -> dict[str, float]:  # noqa: ANN001 - the revision's emavfi.memory
    """{"scale": scale} where the revision's estimate models the flow scale (older ones have no such argument)."""
    import inspect

    return {"scale": scale} if "scale" in inspect.signature(memory.estimate_pair_bytes).parameters else {}


def run_case(tree: Path, args: argparse.Namespace, size: str, scale: float, tta: bool) -> dict[str, float]:
    """One fresh process measuring one case with the emavfi in `tree`."""
    argv = ["--variant", args.variant, "--size", size, "--scale", str(scale)] + (["--tta"] if tta else [])
    return run_worker(__file__, tree, argv, TAG, args.threads, args.timeout)


def cases(args: argparse.Namespace) -> list[tuple[str, float, bool]]:
    """(size, scale, tta) of every case: each size at each scale, then TTA at the first size and scale 1."""
    sizes = args.sizes.split(",")
    found = [(size, scale, False) for size in sizes for scale in args.scales]
    return found + ([(sizes[0], 1.0, True)] if args.tta_case else [])


def measure(args: argparse.Namespace) -> list[tuple[tuple[str, float, bool], dict, dict]]:
    """Per case, the before and after reports (before first; memory does not depend on the order)."""
    rows = []
    with tempfile.TemporaryDirectory(prefix="emavfi-mem-") as tmp:
        trees = {"before": export(args.before, Path(tmp)), "after": export(args.after, Path(tmp))}
        for case in cases(args):
            reports = {side: run_case(trees[side], args, *case) for side in ("before", "after")}
            rows.append((case, reports["before"], reports["after"]))
            print(f"{case}: before {reports['before']['pair_peak']:.0f} MiB, after {reports['after']['pair_peak']:.0f} "
                  "MiB", file=sys.stderr)
    return rows


def table(rows: list, args: argparse.Namespace) -> str:
    """Markdown: per case, the pair's peak before and after, their ratio, whole-process peaks and the estimates."""
    lines = [f"| size | scale | TTA | pair peak before `{args.before}` MiB | pair peak after MiB | after/before "
             "| process peak before / after MiB | estimate before / after MiB | s per pair after |",
             "|---|---|---|---|---|---|---|---|---|"]
    for (size, scale, tta), before, after in rows:
        lines.append(f"| {size} | {scale:g} | {'yes' if tta else 'no'} | {before['pair_peak']:,.0f} "
                     f"| {after['pair_peak']:,.0f} | {after['pair_peak'] / before['pair_peak']:.2f} "
                     f"| {before['peak']:,.0f} / {after['peak']:,.0f} | {before['estimate']:,.0f} / "
                     f"{after['estimate']:,.0f} | {after['seconds']:.1f} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    revision_arguments(parser)
    parser.add_argument("--sizes", default="1080x1920,2160x3840", help="frame sizes HxW, comma-separated")
    parser.add_argument("--scales", type=float, nargs="+", default=[1.0, 0.5, 0.25])
    parser.add_argument("--no-tta-case", dest="tta_case", action="store_false",
                        help="leave out the TTA case (first size, scale 1)")
    parser.add_argument("--variant", default="ours_small_t")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--timeout", type=float, default=1800, help="seconds per worker process")
    parser.add_argument("--write", action="store_true", help="append the table to benchmarks/RESULTS.md")
    parser.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--size", help=argparse.SUPPRESS)
    parser.add_argument("--scale", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--tta", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args)
        return
    started = time.monotonic()
    text = table(measure(args), args)
    note = (f"random `{args.variant}` weights, float32 on CPU, {args.threads} thread(s), one pair at t = 0.5 per "
            f"fresh process; {time.monotonic() - started:.0f} s")
    print(text + "\n\n" + note)
    if args.write:
        stamp = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
        with RESULTS.open("a") as f:
            f.write(f"\n## Peak memory of one frame pair, before/after ({stamp}, benchmarks/bench_memory.py)\n\n"
                    f"{text}\n\n{note}\n")


if __name__ == "__main__":
    main()
