"""Stress the OpenVINO path: the real command line, many times, each with a timeout; no run may hang.

    PYTHONPATH=. nice .venv/bin/python benchmarks/stress_openvino.py --runs 50            # openvino and auto
    PYTHONPATH=. nice .venv/bin/python benchmarks/stress_openvino.py --runs 14 --source /tmp/old-checkout

Each run is `python -m emavfi interpolate FRAMES -o OUT --backend B` in a fresh process on real frames (a pan
over scikit-image's astronaut, 6 frames at 192x144 -> 11 at x2), with ours_small_t weights (official-style
random init, seeded) and one compiled-model cache shared by all runs (the first run of the first backend
compiles). A run that uses no CPU (< 0.5 s) for --idle seconds is killed and counted as a hang (a deadlock
sits at 0 % CPU; a run starved by a busy machine still moves); one past --timeout is killed and counted as
timed out. Every finished run's frames must equal the first run's, byte for byte. --source runs another
checkout's emavfi (as the working folder) for a before/after. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
CPU_FLAGS_SHOWN = ("avx2", "avx512f", "avx512_bf16", "amx_bf16", "amx_tile")


def cpu_line() -> str:
    """The CPU's model name and which of the flags that decide OpenVINO's kernels and precision it has."""
    text = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")),
                 platform.processor() or "unknown CPU")
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    return f"{model}, {os.cpu_count()} CPUs, flags: {' '.join(f for f in CPU_FLAGS_SHOWN if f in flags) or 'none'}"


def make_inputs(folder: Path, width: int, height: int, count: int) -> Path:
    """`count` frames of a pan over the astronaut photograph as PNG, and ours_small_t weights: the weights path."""
    import numpy as np
    import torch
    from PIL import Image
    from skimage import data

    import emavfi
    from emavfi.weights import save_safetensors

    photo = Image.fromarray(data.astronaut())
    (folder / "frames").mkdir()
    for k in range(count):
        crop = photo.crop((20 + 9 * k, 30 + 4 * k, 440 + 9 * k, 345 + 4 * k)).resize((width, height), Image.BILINEAR)
        crop.save(folder / "frames" / f"f.{k + 1:04d}.png")
    torch.manual_seed(0)
    weights = folder / "ours_small_t.safetensors"
    save_safetensors(emavfi.build_model("ours_small_t").state_dict(), weights, "ours_small_t")
    assert np.asarray(Image.open(folder / "frames" / "f.0001.png")).shape == (height, width, 3)
    return weights


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds of a running process (Linux /proc), 0 where it cannot be read."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return 0.0


def one_run(cmd: list[str], env: dict, cwd: Path, args: argparse.Namespace) -> tuple[str, float]:
    """(outcome "ok" / "hang" (no CPU for args.idle s) / "timed out" / "failed: <last line>", seconds)."""
    started = time.monotonic()
    proc = subprocess.Popen(cmd, env=env, cwd=cwd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    moved_at, cpu = started, 0.0
    while proc.poll() is None:
        now, used = time.monotonic(), cpu_seconds(proc.pid)
        if used - cpu >= 0.5:
            moved_at, cpu = now, used
        outcome = "hang" if now - moved_at >= args.idle else "timed out" if now - started >= args.timeout else ""
        if outcome:
            proc.kill()
            proc.communicate()
            return outcome, now - started
        time.sleep(0.5)
    err = proc.communicate()[1].strip().splitlines()
    return "ok" if proc.returncode == 0 else f"failed: {err[-1] if err else proc.returncode}", time.monotonic() - started


def stress(backend: str, runs: int, work: Path, weights: Path, args: argparse.Namespace, reference: dict) -> dict:
    """`runs` runs of the CLI with --backend `backend`: outcomes, times, and how many runs' frames differ from the
    first finished run's of any backend (`reference`: file name -> bytes, filled by that run)."""
    env = {**os.environ, "EMAVFI_HOME": str(work / "home"), "PYTHONPATH": str(args.source)}
    seconds, hangs, slow, failures, differ = [], 0, 0, [], 0
    for k in range(runs):
        out = work / f"out-{backend}-{k}"
        cmd = [sys.executable, "-m", "emavfi", "interpolate", str(work / "frames"), "-o", str(out), "--backend", backend,
               "--weights", str(weights), *args.extra]
        outcome, took = one_run(cmd, env, args.source, args)
        seconds.append(took)
        if outcome in ("hang", "timed out"):
            hangs += outcome == "hang"
            slow += outcome == "timed out"
        elif outcome != "ok":
            failures.append(outcome)
        else:
            made = {p.name: p.read_bytes() for p in sorted(out.iterdir()) if not p.name.startswith(".")}
            reference.update({} if reference else made)
            differ += made != reference
        print(f"{backend} run {k + 1}/{runs}: {outcome} in {took:.1f} s (load {os.getloadavg()[0]:.1f})",
              file=sys.stderr, flush=True)
    return {"backend": backend, "runs": runs, "hangs": hangs, "slow": slow, "failures": failures,
            "slowest": max(seconds), "median": statistics.median(seconds), "differ": differ,
            "frames": len(reference)}


def table(rows: list[dict], args: argparse.Namespace, load: tuple) -> list[str]:
    lines = [f"CPU: {cpu_line()}; load average {load[0]:.1f} before, {os.getloadavg()[0]:.1f} after; a hang = no "
             f"CPU for {args.idle:g} s, timeout {args.timeout:g} s per run; emavfi from {args.source}",
             "",
             "| backend | runs | hangs | timed out | failed | slowest run s | median run s | runs whose frames differ "
             "from run 1's |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        done = r["runs"] - r["hangs"] - r["slow"] - len(r["failures"])
        lines.append(f"| {r['backend']} | {r['runs']} | {r['hangs']} | {r['slow']} | {len(r['failures'])} | "
                     f"{r['slowest']:.1f} | {r['median']:.1f} | {r['differ']} of {done} ({r['frames']} frames each) |")
    lines += [f"failed: {f}" for r in rows for f in dict.fromkeys(r["failures"])]
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=50, help="runs per backend (default 50)")
    parser.add_argument("--backends", default="openvino,auto")
    parser.add_argument("--idle", type=float, default=120.0, help="seconds without CPU use that make a run a hang")
    parser.add_argument("--timeout", type=float, default=900.0, help="seconds per run before it is stopped")
    parser.add_argument("--size", default="192x144", help="WxH of the frames (default 192x144)")
    parser.add_argument("--frames", type=int, default=6)
    parser.add_argument("--source", type=Path, default=HERE.parent, help="checkout whose emavfi runs (default: this)")
    parser.add_argument("extra", nargs="*", help="more CLI arguments after --, e.g. -- --multiplier 4")
    args = parser.parse_args()
    width, height = map(int, args.size.split("x"))
    load = os.getloadavg()
    with tempfile.TemporaryDirectory(prefix="emavfi-stress-") as tmp:
        weights = make_inputs(Path(tmp), width, height, args.frames)
        reference: dict[str, bytes] = {}
        rows = [stress(name, args.runs, Path(tmp), weights, args, reference) for name in args.backends.split(",")]
    print("\n".join(table(rows, args, load)))
    sys.exit(1 if any(r["hangs"] or r["slow"] or r["failures"] or r["differ"] for r in rows) else 0)


if __name__ == "__main__":
    main()
