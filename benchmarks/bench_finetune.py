"""Fine-tuning: training speed and memory, and a short learning curve on real footage. A script, not a test.

Run from the repository root (PYTHONPATH needs the repository and tests/ for the footage builder):

    PYTHONPATH=.:tests /work/venv/bin/python benchmarks/bench_finetune.py              # both parts
    PYTHONPATH=.:tests /work/venv/bin/python benchmarks/bench_finetune.py --skip-speed --curve-steps 480

Part 1, speed: `ours_small_t`, 128x128 crops, batch 4, fp32, in one process each (so peak RSS is that run's):
steps/s over `--steps` optimiser steps after 2 warm-up steps, and peak RSS, with and without
--grad-checkpoint. Part 2, curve: the same architecture from random weights, trained on four clips of pans,
zooms and occluders over scikit-image photographs (tests/finetune_footage.py); every `--val-every` steps the
held-out clip (another photograph, other motions, never trained on) is scored by drop-frame PSNR (hold-out 2:
every second frame is interpolated from its neighbours), next to plain frame blending on the same frames.
The machine load average is printed: on a shared machine the speed figures vary with the other tenants.

Measured 2026-12-06 on the shared 2-CPU development machine, load average 9-17 (other helpers' jobs), so
the speed figures are several times slower than on an idle machine: 0.153 steps/s (6.5 s/step), peak RSS
1205 MiB; --grad-checkpoint 0.101 steps/s, 970 MiB (x1.52 time, x0.81 RSS). Curve (240 steps, 7.5 min):
held-out PSNR 12.80 dB at random init -> 23.19 (40) -> 23.44 (80) -> 23.66 (120) -> 23.69 (160) -> 23.92
(200) -> 24.13 dB (240); frame blending 23.20 dB; SSIM 0.317 -> 0.813.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def _speed(steps: int, grad_checkpoint: bool) -> dict[str, float]:
    """One process: ours_small_t, crop 128, batch 4; steps/s after two warm-up steps, peak RSS."""
    import torch

    from emavfi.train.options import FinetuneOptions
    from emavfi.train.run import finetune
    from finetune_footage import dataset

    with tempfile.TemporaryDirectory() as tmp:
        data = dataset(Path(tmp) / "clips", 12, 160, 160, shots=2)
        stamps: list[float] = []

        def note(text: str) -> None:
            pass

        class Clock:  # the loop asks once per step whether to stop: a timestamp per step
            path = Path(tmp) / "never"
            flag = False

            def requested(self) -> bool:
                stamps.append(time.perf_counter())
                return False

            def clear(self) -> None:
                pass

        options = FinetuneOptions(data=(str(data),), output=str(Path(tmp) / "run"), variant="ours_small_t",
                                  steps=steps + 2, batch=4, crop=128, device="cpu", checkpoint_every=10**6,
                                  grad_checkpoint=grad_checkpoint)
        finetune(options, stop=Clock(), note=note)  # type: ignore[arg-type]
    timed = stamps[2:]
    rate = (len(timed) - 1) / (timed[-1] - timed[0])
    return {"steps_per_s": rate, "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            "threads": torch.get_num_threads()}


def _blend_psnr(frames, hold_out: int) -> float:
    """Mean PSNR of linear blending of the kept frames at the held-out positions."""
    from emavfi.evaluate.holdout import kept_indices, score_frame

    kept = kept_indices(frames.shape[0], hold_out)
    scores = []
    for a, b in zip(kept, kept[1:]):
        for k in range(1, hold_out):
            t = k / hold_out
            scores.append(score_frame(frames[a + k], (1 - t) * frames[a] + t * frames[b])["psnr"])
    return sum(scores) / len(scores)


def _curve(steps: int, val_every: int, crop: int, batch: int, lr: float) -> None:
    from emavfi.train.checkpoint import read_log
    from emavfi.train.loop import build_start_model
    from emavfi.train.options import FinetuneOptions
    from emavfi.train.run import finetune, plan_job
    from emavfi.train.validate import load_clip, validate
    from finetune_footage import SHOTS, dataset, shot, write_clip

    with tempfile.TemporaryDirectory() as tmp:
        data = dataset(Path(tmp) / "clips", 24, 192, 192, shots=len(SHOTS))
        val = write_clip(Path(tmp) / "held_out", shot(9, 128, 128, background="immunohistochemistry",
                                                       occluder="rocket", pan=(2.0, -1.5), zoom=0.005,
                                                       move=(2.0, 2.0)))
        options = FinetuneOptions(data=(str(data),), output=str(Path(tmp) / "run"), variant="ours_small_t",
                                  steps=steps, batch=batch, crop=crop, lr=lr, device="cpu", val=str(val),
                                  val_every=val_every, val_frames=9, val_crop=128, checkpoint_every=10**6)
        frames = load_clip(str(val), 9, 128, 2)
        start = validate(build_start_model(plan_job(options, resume=False)), frames, 2)
        blend = _blend_psnr(frames, 2)
        began = time.monotonic()
        finetune(options)
        seconds = time.monotonic() - began
        rows = read_log(Path(tmp) / "run")
    print(f"\nlearning curve: ours_small_t from random weights, {steps} steps, batch {batch}, crop {crop}, "
          f"lr {lr:g} (warm-up {options.warmup_for(steps)}), {seconds / 60:.1f} min; held-out clip 9 frames "
          f"128x128, hold-out 2 (4 frames scored)")
    print(f"frame blending on the same frames: {blend:.2f} dB\n")
    print("| step | train loss (mean of the last steps) | held-out PSNR dB | SSIM | vs blending dB |")
    print("|---|---|---|---|---|")
    print(f"| 0 | - | {start[0]:.2f} | {start[1]:.4f} | {start[0] - blend:+.2f} |")
    for row in rows:
        if row["val_psnr"] is not None:
            step = row["step"] + 1
            recent = [r["loss"] for r in rows if step - val_every <= r["step"] < step]
            print(f"| {step} | {sum(recent) / len(recent):.4f} | {row['val_psnr']:.2f} | {row['val_ssim']:.4f} | "
                  f"{row['val_psnr'] - blend:+.2f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8, help="timed steps per speed run (default 8)")
    parser.add_argument("--curve-steps", type=int, default=240, help="learning-curve steps (default 240)")
    parser.add_argument("--val-every", type=int, default=40)
    parser.add_argument("--crop", type=int, default=64, help="learning-curve crop (default 64)")
    parser.add_argument("--batch", type=int, default=4)
    parser.add_argument("--lr", type=float, default=1.5e-3, help="learning-curve peak lr (default 1.5e-3)")
    parser.add_argument("--skip-speed", action="store_true")
    parser.add_argument("--skip-curve", action="store_true")
    parser.add_argument("--_speed", choices=("plain", "checkpointed"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args._speed:
        print(json.dumps(_speed(args.steps, args._speed == "checkpointed")))
        return
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} CPUs "
          "(a shared machine: other tenants' work slows these figures)")
    if not args.skip_speed:
        print("\n| ours_small_t, crop 128, batch 4, fp32, CPU | steps/s | s/step | peak RSS MiB | torch threads |")
        print("|---|---|---|---|---|")
        results = {}
        for mode in ("plain", "checkpointed"):
            out = subprocess.run([sys.executable, __file__, "--_speed", mode, "--steps", str(args.steps)],
                                 capture_output=True, text=True, cwd=REPO, env=os.environ, check=True)
            results[mode] = json.loads(out.stdout.strip().splitlines()[-1])
            r = results[mode]
            label = "plain" if mode == "plain" else "--grad-checkpoint"
            print(f"| {label} | {r['steps_per_s']:.3f} | {1 / r['steps_per_s']:.2f} | {r['peak_rss_mib']:.0f} | "
                  f"{r['threads']} |")
        p, c = results["plain"], results["checkpointed"]
        print(f"\n--grad-checkpoint: time x{p['steps_per_s'] / c['steps_per_s']:.2f}, "
              f"peak RSS x{c['peak_rss_mib'] / p['peak_rss_mib']:.2f}")
    if not args.skip_curve:
        _curve(args.curve_steps, args.val_every, args.crop, args.batch, args.lr)
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
