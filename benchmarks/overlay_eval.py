"""Burned-in overlay detection (emavfi.overlays) scored on the seeded set of benchmarks/overlay_dataset.py.

Run from the repository root:

    PYTHONPATH=. .venv/bin/python benchmarks/overlay_eval.py            # print the table
    PYTHONPATH=. .venv/bin/python benchmarks/overlay_eval.py --write    # and update benchmarks/RESULTS.md
    PYTHONPATH=. .venv/bin/python benchmarks/overlay_eval.py --held-out # the held-out set (two clips at 1080p)
    PYTHONPATH=. .venv/bin/python benchmarks/overlay_eval.py --speed    # ms a frame, three overlays, 256x144 + 1080p

Per clip with an overlay: pixel precision and recall of the detected masks against the composited ones, over
all frames. Per hard negative: frames with any detected pixel and detected pixels in all (both must be 0).
Targets (issue 26): recall >= 0.95 and precision >= 0.9 on opaque overlays, >= 0.8 on the semi-transparent
logo; no detected pixel on any negative.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE / "RESULTS.md"
MARKS = {False: ("<!-- overlay-eval:start -->", "<!-- overlay-eval:end -->"),
         True: ("<!-- overlay-eval-held-out:start -->", "<!-- overlay-eval-held-out:end -->")}


def score(clip, detected) -> dict:
    """Pixel counts of one clip's detected masks [N,H,W] against its truth."""
    truth = clip.truth
    tp = int((detected & truth).sum())
    return {"tp": tp, "fp": int((detected & ~truth).sum()), "fn": int((~detected & truth).sum()),
            "false frames": int(detected.flatten(1).any(1).sum()), "frames": truth.shape[0]}


def _ratio(a: int, b: int) -> str:
    return f"{a / b:.3f}" if b else "-"


def table(clips, rows: list[dict], seconds: dict[int, float]) -> str:
    """The markdown report: overlays, then negatives."""
    from benchmarks.overlay_dataset import NEGATIVE, OPAQUE

    lines = ["| overlay | picture | precision | recall | target |", "|---|---|---:|---:|---|"]
    for clip, row in zip(clips, rows):
        if clip.kind == NEGATIVE:
            continue
        target = "P >= 0.9, R >= 0.95" if clip.kind in OPAQUE else "P, R >= 0.8"
        lines.append(f"| {clip.kind} | {clip.category} ({clip.name.split(' over ', 1)[1]}) | "
                     f"{_ratio(row['tp'], row['tp'] + row['fp'])} | {_ratio(row['tp'], row['tp'] + row['fn'])} | "
                     f"{target} |")
    lines += ["", "| hard negative (no overlay) | frames with held pixels | held pixels |", "|---|---:|---:|"]
    for clip, row in zip(clips, rows):
        if clip.kind == NEGATIVE:
            lines.append(f"| {clip.name} | {row['false frames']} of {row['frames']} | {row['fp']} |")
    lines.append("")
    for size in sorted({tuple(clip.frames.shape[-2:]) for clip in clips}):
        chosen = [(clip, row) for clip, row in zip(clips, rows) if tuple(clip.frames.shape[-2:]) == size]
        frames = sum(row["frames"] for _, row in chosen)
        spent = sum(seconds[id(clip)] for clip, _ in chosen)
        lines.append(f"{len(chosen)} clips, {frames} frames of {size[1]}x{size[0]}: {spent:.1f} s of detection "
                     f"({1000 * spent / frames:.0f} ms a frame on this CPU).")
    return "\n".join(lines)


def speed(frames: int = 40, repeats: int = 3) -> str:
    """Wall and CPU ms a frame of detect_overlays over the first frames of timecode + subtitle + HUD over the
    astronaut pan, at 256x144 and scaled to 1920x1080 (the best of a few runs: the machine may be shared)."""
    import torch

    from benchmarks.overlay_dataset import HD, _upscaled, make_clips
    from emavfi.overlays import detect_overlays

    clip = make_clips(names=["several over pan astronaut"])[0]
    lines = []
    for label, chosen in (("256x144", clip.frames[:frames]), ("1920x1080", _upscaled(clip, HD, frames).frames)):
        times = []
        for _ in range(repeats):
            wall, cpu = time.perf_counter(), time.process_time()
            detect_overlays(chosen)
            times.append((time.perf_counter() - wall, time.process_time() - cpu))
        wall, cpu = min(times)
        lines.append(f"{label}: {1000 * wall / frames:.0f} ms a frame ({1000 * cpu / frames:.0f} ms of CPU), "
                     f"{frames} frames, best of {repeats}, {torch.get_num_threads()} thread")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="update the table in benchmarks/RESULTS.md")
    parser.add_argument("--only", nargs="*", help="clip names")
    parser.add_argument("--held-out", action="store_true", help="the held-out set (benchmarks/overlay_dataset.py)")
    parser.add_argument("--speed", action="store_true", help="time three overlays at 256x144 and 1920x1080")
    args = parser.parse_args(argv)
    import torch

    from benchmarks.overlay_dataset import make_clips, make_held_out
    from emavfi.overlays import detect_overlays

    torch.set_num_threads(1)  # the machine is shared; one thread times the detector itself
    if args.speed:
        print(speed())
        return 0
    clips = (make_held_out if args.held_out else make_clips)(names=args.only)
    rows, seconds = [], {}
    for clip in clips:
        started = time.perf_counter()
        detected = detect_overlays(clip.frames)
        seconds[id(clip)] = time.perf_counter() - started
        rows.append(score(clip, detected))
        row = rows[-1]
        print(f"{clip.name:55s} P {_ratio(row['tp'], row['tp'] + row['fp'])} R "
              f"{_ratio(row['tp'], row['tp'] + row['fn'])} false frames {row['false frames']} fp {row['fp']}",
              file=sys.stderr)
    text = table(clips, rows, seconds)
    print(text)
    if args.write:
        start, end = MARKS[args.held_out]
        report = REPORT.read_text()
        block = f"{start}\n{text}\n{end}"
        if start in report:
            head, rest = report.split(start, 1)
            report = head + block + rest.split(end, 1)[1]
        else:
            report = report.rstrip("\n") + "\n\n" + block + "\n"
        REPORT.write_text(report)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
