"""Scene-cut detectors compared on the seeded photograph set of benchmarks/cut_dataset.py.

Run from the repository root (see benchmarks/CUTS.md):

    PYTHONPATH=. .venv/bin/python benchmarks/cut_eval.py                      # print the tables
    PYTHONPATH=. .venv/bin/python benchmarks/cut_eval.py --write              # and update benchmarks/CUTS.md
    PYTHONPATH=. .venv/bin/python benchmarks/cut_eval.py --sd-python /tmp/sdvenv/bin/python

Detectors: the old colour-distribution detector (`emavfi.schedule.detect_cuts`, threshold 0.06, while it
exists), the new one (`emavfi.cuts.detect_cuts`, default threshold) and PySceneDetect's ContentDetector with
its default settings (and, for reference, with min_scene_len=1). PySceneDetect is not a dependency: it runs
in this interpreter if it can import `scenedetect`, else in the interpreter given by --sd-python (a separate
venv, because its wheel pulls opencv-python, which clashes with opencv-python-headless), which needs only
numpy and scenedetect: this file is its worker too (`--sd-worker`), and that path imports neither torch nor
emavfi.
"""
from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPORT = HERE / "CUTS.md"
START, END = "<!-- cut-eval:start -->", "<!-- cut-eval:end -->"
SD_VARIANTS = {"PySceneDetect ContentDetector (defaults)": {},
               "PySceneDetect ContentDetector (min_scene_len=1)": {"min_scene_len": 1}}


def sd_worker(npz_path: str) -> None:
    """Print JSON {version, variants: {label: [[cut pair, ...] per clip]}} for the clips saved in npz_path."""
    import numpy
    import scenedetect
    from scenedetect import ContentDetector, FrameTimecode

    clips = numpy.load(npz_path)
    result = {"version": scenedetect.__version__, "variants": {}, "seconds": {}}
    for label, options in SD_VARIANTS.items():
        started, per_clip = time.perf_counter(), []
        for key in sorted(clips.files, key=int):
            detector, cuts = ContentDetector(**options), []
            for index, frame in enumerate(clips[key]):
                cuts += detector.process_frame(FrameTimecode(index, fps=24.0), frame)
            cuts += detector.post_process(FrameTimecode(len(clips[key]) - 1, fps=24.0))
            per_clip.append(sorted(int(cut.frame_num) - 1 for cut in cuts))  # a new shot at frame k: pair k-1
        result["variants"][label] = per_clip
        result["seconds"][label] = time.perf_counter() - started
    print(json.dumps(result))


def run_pyscenedetect(clips, sd_python: str | None) -> tuple[str, dict, dict]:
    """(version, {label: per-clip cuts}, {label: seconds}) from a scenedetect worker, or raise RuntimeError."""
    import numpy

    python = sd_python or sys.executable
    with tempfile.TemporaryDirectory() as folder:
        npz = Path(folder) / "clips.npz"
        # uint8 BGR [N,H,W,3], what PySceneDetect gets from OpenCV
        arrays = {str(k): (clip.frames.flip(1).permute(0, 2, 3, 1) * 255).round().byte().numpy()
                  for k, clip in enumerate(clips)}
        numpy.savez(npz, **arrays)
        done = subprocess.run([python, __file__, "--sd-worker", str(npz)], capture_output=True, text=True)
    if done.returncode != 0:
        raise RuntimeError(done.stderr.strip().splitlines()[-1] if done.stderr.strip() else "worker failed")
    result = json.loads(done.stdout)
    return result["version"], result["variants"], result["seconds"]


def score(clips, predictions: list[list[int]]) -> dict:
    """Per-category and overall counts of one detector's predictions (dissolve pairs counted apart)."""
    rows: dict[str, dict[str, int]] = {}
    for clip, predicted in zip(clips, predictions):
        row = rows.setdefault(clip.category, {"clips": 0, "cuts": 0, "found": 0, "false": 0, "pairs": 0,
                                              "dissolve flagged": 0, "dissolve pairs": 0})
        row["clips"] += 1
        found = set(predicted)
        row["cuts"] += len(clip.cuts)
        row["found"] += len(found & set(clip.cuts))
        row["false"] += len(found - set(clip.cuts) - set(clip.ignore))
        row["pairs"] += clip.frames.shape[0] - 1 - len(clip.cuts) - len(clip.ignore)
        row["dissolve flagged"] += len(found & set(clip.ignore))
        row["dissolve pairs"] += len(clip.ignore)
    total = {key: sum(row[key] for row in rows.values()) for key in next(iter(rows.values()))}
    precision = total["found"] / max(1, total["found"] + total["false"])
    recall = total["found"] / max(1, total["cuts"])
    f1 = 2 * precision * recall / max(1e-9, precision + recall)
    return {"rows": rows, "total": total, "precision": precision, "recall": recall, "f1": f1}


def tables(results: dict[str, dict], clips) -> str:
    """Markdown: an overall table and a per-category table (found/cuts for cuts, false cuts/pairs otherwise)."""
    lines = ["| detector | precision | recall | F1 | false cuts | missed cuts | ms/frame |",
             "|---|---|---|---|---|---|---|"]
    for name, r in results.items():
        t = r["total"]
        lines.append(f"| {name} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {t['false']} | "
                     f"{t['cuts'] - t['found']} | {r['ms']:.2f} |")
    categories = list(dict.fromkeys(clip.category for clip in clips))
    names = list(results)
    lines += ["", "| category | clips | " + " | ".join(names) + " |", "|---|---|" + "---|" * len(names)]
    for category in categories:
        cells = []
        for name in names:
            row = results[name]["rows"][category]
            if row["cuts"]:
                cell = f"{row['found']}/{row['cuts']} found"
                cell += f", {row['false']} false" if row["false"] else ""
            else:
                cell = f"{row['false']} false / {row['pairs']} pairs"
            if row["dissolve pairs"]:
                cell += f" ({row['dissolve flagged']}/{row['dissolve pairs']} inner dissolve pairs flagged)"
            cells.append(cell)
        clip_count = results[names[0]]["rows"][category]["clips"]
        lines.append(f"| {category} | {clip_count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def local_detectors() -> dict:
    """{label: detect(frames) -> list[int]} for the detectors importable here."""
    import emavfi.cuts as cuts

    detectors = {}
    try:
        from emavfi.schedule import detect_cuts as old_detect_cuts
        detectors["old: emavfi.schedule.detect_cuts (0.06)"] = lambda frames: old_detect_cuts(frames, 0.06)
    except ImportError:
        print("note: emavfi.schedule.detect_cuts is gone; the old detector row is skipped", file=sys.stderr)
    detectors[f"new: emavfi.cuts.detect_cuts ({cuts.DEFAULT_CUT_THRESHOLD:g})"] = cuts.detect_cuts
    return detectors


def threshold_sweep(clips) -> tuple[str, str]:
    """Markdown: the new detector's precision/recall at other thresholds, and its evidence-ratio margin."""
    import emavfi.cuts as cuts

    scores = [cuts.cut_scores(clip.frames) for clip in clips]
    lines = ["| new detector threshold | precision | recall | false cuts | missed cuts |", "|---|---|---|---|---|"]
    for threshold in (1.5, 2.0, cuts.DEFAULT_CUT_THRESHOLD, 3.0, 4.0, 6.0):
        r = score(clips, [cuts.decide_cuts(s, threshold) for s in scores])
        t = r["total"]
        lines.append(f"| {threshold:g} | {r['precision']:.3f} | {r['recall']:.3f} | {t['false']} | "
                     f"{t['cuts'] - t['found']} |")
    lowest_cut, highest_other = (float("inf"), ""), (0.0, "")
    for clip, s in zip(clips, scores):
        ratio = s.double() / cuts.local_baseline(s).clamp(min=cuts.EVIDENCE_FLOOR)
        for i, value in enumerate(ratio.tolist()):
            if i in clip.cuts:
                lowest_cut = min(lowest_cut, (value, clip.name))
            elif i not in clip.ignore:
                highest_other = max(highest_other, (value, clip.name))
    margin = (f"Evidence / max(local typical evidence, floor) of the new detector: lowest true cut "
              f"{lowest_cut[0]:.2f} ({lowest_cut[1]}), highest other pair {highest_other[0]:.2f} ({highest_other[1]}).")
    return "\n".join(lines), margin


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--write", action="store_true", help=f"replace the results block of {REPORT.name}")
    parser.add_argument("--sd-python", help="interpreter with scenedetect (default: this one)")
    parser.add_argument("--no-pyscenedetect", action="store_true")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--sd-worker", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sd_worker:
        sd_worker(args.sd_worker)
        return
    import torch

    from cut_dataset import make_clips  # the script's own folder is first on sys.path

    torch.set_num_threads(args.threads)
    clips = make_clips(args.seed)
    n_frames = sum(clip.frames.shape[0] for clip in clips)
    results, notes = {}, []
    for name, detect in local_detectors().items():
        started = time.perf_counter()
        predictions = [detect(clip.frames) for clip in clips]
        results[name] = score(clips, predictions) | {"ms": 1000 * (time.perf_counter() - started) / n_frames}
    sweep, margin = threshold_sweep(clips)
    if not args.no_pyscenedetect:
        try:
            version, variants, seconds = run_pyscenedetect(clips, args.sd_python)
            for label, predictions in variants.items():
                results[f"{label} {version}"] = score(clips, predictions) | {"ms": 1000 * seconds[label] / n_frames}
        except (RuntimeError, OSError) as error:
            notes.append(f"PySceneDetect skipped: {error}")
    header = (f"{len(clips)} clips, {n_frames} frames of {clips[0].frames.shape[2]}x{clips[0].frames.shape[3]}, "
              f"seed {args.seed}, torch {torch.__version__}, {args.threads} thread(s)")
    text = "\n\n".join([header, tables(results, clips), sweep, margin] + notes)
    print(text)
    if args.write:
        report = REPORT.read_text()
        block = f"{START}\n{text}\n{END}"
        REPORT.write_text(re.sub(re.escape(START) + ".*?" + re.escape(END), lambda _: block, report, flags=re.S))
        print(f"wrote {REPORT}")


if __name__ == "__main__":
    main()
