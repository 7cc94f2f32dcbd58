"""`python -m emavfi evaluate` and `python -m emavfi compare`: parsers and commands (no torch at import).

evaluate SET ROOT      a benchmark set in its published layout (datasets.SETS), scored as its official script
evaluate --frames PATH --hold-out K   any clip or folder: keep every K-th frame, score the in-betweens
compare A.json B.json  differences of two results, per set and per sample
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ..config import VARIANTS
from .datasets import SETS
from .results import METRICS, EvalResult, format_metric, from_json, partial_path

BACKENDS = ("torch",)


def add_parsers(commands: Any) -> None:
    """Add the evaluate and compare subcommands to the CLI's subparsers."""
    ev = commands.add_parser("evaluate", help="score a model on a benchmark set or by dropping frames of a clip",
                             description="Score a model on a benchmark set (as its official script does) or on "
                                         "any clip (--frames PATH --hold-out K). See docs/evaluation.md.")
    ev.add_argument("set", nargs="?", choices=SETS, help="benchmark set")
    ev.add_argument("root", nargs="?", type=Path, help="the set's folder, in its published layout")
    ev.add_argument("--subset", help="SNU-FILM levels (easy,medium,hard,extreme), Xiph categories (resized,cropped) "
                    "or XTest resolutions (2k,4k); default: all")
    ev.add_argument("--frames", type=Path, help="any clip or folder of frames: score by holding frames out")
    ev.add_argument("--hold-out", type=int, help="with --frames: keep every K-th frame (2-16) and score the rest")
    ev.add_argument("--limit", type=int, help="score only the first N samples of each set (kept pairs with --frames)")
    ev.add_argument("--variant", choices=VARIANTS, help="model variant (default ours_small_t; with --weights, "
                    "read from the file)")
    ev.add_argument("--weights", type=Path, help="local .safetensors weights (default: download from the Hub)")
    ev.add_argument("--offline", action="store_true", help="never download; use local or cached weights only")
    ev.add_argument("--tta", action=argparse.BooleanOptionalAction, help="test-time augmentation (default: as the "
                    "official script: on for ours/ours_t, off for the small models)")
    ev.add_argument("--scale", type=float, help="flow resolution 1, 0.5 or 0.25 (default: the set's protocol)")
    ev.add_argument("--channel-order", choices=("bgr", "rgb"), help="order the network sees (default bgr, as the "
                    "official scripts read frames with OpenCV; rgb with --frames)")
    ev.add_argument("--backend", choices=BACKENDS, default="torch", help="inference backend (default torch)")
    ev.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    ev.add_argument("--precision", choices=("fp32", "fp16", "bf16"), default="fp32",
                    help="default fp32, as the published figures")
    ev.add_argument("--chunk", type=int, default=0, help="frame pairs per device batch (default automatic)")
    ev.add_argument("--lpips", action="store_true", help="also LPIPS (needs the lpips package and its AlexNet "
                    "weights already on this machine; never downloads)")
    ev.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="share a set's samples out to Ray "
                    "workers: no ADDRESS = a local cluster on this machine, 'auto' or ray://host:port = join one "
                    "(the data set must be at the same path on every worker)")
    ev.add_argument("--ray-workers", type=int, help="Ray workers (default: one per GPU, else one per T CPUs, T = this "
                    "process's torch threads)")
    ev.add_argument("--json", type=Path, help="write the results (means and every sample) as JSON; a partial file "
                    "beside it lets a rerun continue")
    ev.add_argument("--csv", type=Path, help="write one row per sample as CSV")
    ev.add_argument("--overwrite", action="store_true", help="replace existing --json/--csv files")
    ev.set_defaults(handler=run_evaluate)

    cmp = commands.add_parser("compare", help="differences between two evaluate results (JSON)",
                              description="Compare two `evaluate --json` results: B - A per set and per sample.")
    cmp.add_argument("a", type=Path, help="baseline result (JSON)")
    cmp.add_argument("b", type=Path, help="result to compare (JSON)")
    cmp.add_argument("--samples", type=int, default=20, help="per-sample rows: the N largest PSNR changes "
                     "(default 20; 0 = every common sample)")
    cmp.set_defaults(handler=run_compare)


def _usage(message: str) -> Exception:
    from ..settings import SettingsError

    return SettingsError(message)


def _check_arguments(args: argparse.Namespace) -> None:
    """Usage errors, before anything is read or loaded."""
    if args.frames is not None:
        if args.set is not None or args.subset:
            raise _usage("give a benchmark SET and ROOT, or --frames PATH --hold-out K, not both")
        if args.hold_out is None:
            raise _usage("--frames needs --hold-out K (keep every K-th frame, e.g. --hold-out 2)")
    elif args.set is None or args.root is None:
        raise _usage(f"give a benchmark set and its folder (one of {', '.join(SETS)}), "
                     "or --frames PATH --hold-out K")
    elif args.hold_out is not None:
        raise _usage("--hold-out goes with --frames PATH")
    if args.ray is not None and (args.frames is not None or args.lpips):
        raise _usage("--ray shares out benchmark sets; run --frames and --lpips in one process")
    if args.ray_workers is not None and (args.ray is None or args.ray_workers < 1):
        raise _usage("--ray-workers goes with --ray and must be at least 1")
    if args.limit is not None and args.limit < 1:
        raise _usage(f"--limit must be at least 1; got {args.limit}")
    for flag, path in (("--json", args.json), ("--csv", args.csv)):
        if path is not None and path.exists() and not args.overwrite:
            raise _usage(f"{flag} file {path} exists; choose another name or add --overwrite")
        if path is not None and not path.parent.is_dir():
            raise _usage(f"{flag}: folder {path.parent} does not exist")


def run_evaluate(args: argparse.Namespace) -> int:
    """The evaluate command: checks, model, the sets (or the hold-out clip), then table and files."""
    from .session import Session

    _check_arguments(args)
    session = Session.from_args(args)
    try:
        results = session.run()
    except KeyboardInterrupt:
        kept = f"; scores so far are in {partial_path(args.json)}: run the same command to continue" \
            if args.json else ""
        sys.stderr.write(f"\ninterrupted{kept}\n")
        return 130
    sys.stdout.write(session.report(results) + "\n")
    return 0


def _delta_rows(a: EvalResult, b: EvalResult, limit: int) -> list[str]:
    theirs = {s.name: s for s in b.samples}
    common = [(s, theirs[s.name]) for s in a.samples if s.name in theirs]
    metrics = [m for m in METRICS if m in a.metrics and m in b.metrics]
    if "psnr" in metrics:
        common.sort(key=lambda pair: -abs(pair[1].scores["psnr"] - pair[0].scores["psnr"]))
    rows = []
    for old, new in common[:limit or None]:
        cells = "".join(f"  {m.upper()} {_signed(m, new.scores[m] - old.scores[m])}" for m in metrics)
        rows.append(f"  {a.name} {old.name}:{cells}")
    return rows


def _signed(metric: str, value: float) -> str:
    text = format_metric(metric, value)
    return text if text.startswith("-") else "+" + text


def _read_result(path: Path) -> list[EvalResult]:
    try:
        return from_json(path.read_text(encoding="utf-8"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise _usage(f"cannot read {path} as an evaluate result: {' '.join(str(exc).split())}") from None


def run_compare(args: argparse.Namespace) -> int:
    """The compare command: a table of B - A per set, then the per-sample changes."""
    first, second = _read_result(args.a), _read_result(args.b)
    theirs = {r.name: r for r in second}
    pairs = [(r, theirs[r.name]) for r in first if r.name in theirs]
    if not pairs:
        raise _usage(f"{args.a} and {args.b} have no set in common ({', '.join(r.name for r in first)} vs "
                     f"{', '.join(r.name for r in second)})")
    lines = [f"{'set':<16} {'samples':>7}  metric        A         B         B-A"]
    for a, b in pairs:
        common = len({s.name for s in a.samples} & {s.name for s in b.samples})
        for metric in (m for m in METRICS if m in a.metrics and m in b.metrics):
            va, vb = a.mean(metric), b.mean(metric)
            lines.append(f"{a.name:<16} {common:>7}  {metric.upper():<6} {format_metric(metric, va):>9} "
                         f"{format_metric(metric, vb):>9} {_signed(metric, vb - va):>11}")
    rows = [row for a, b in pairs for row in _delta_rows(a, b, args.samples)]
    if rows:
        lines += ["", "per sample (B - A), largest PSNR changes first:" if args.samples else "per sample (B - A):"]
        lines += rows
    sys.stdout.write("\n".join(lines) + "\n")
    return 0
