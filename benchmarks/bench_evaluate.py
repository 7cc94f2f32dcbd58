"""Evaluation speed: frames/s of `evaluate` on Vimeo90K-sized triplets and of a hold-out run, and the share
of that time spent scoring (reading + metrics) rather than interpolating.

Run from the repository root:

    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_evaluate.py            # 6 triplets, ours_small
    PYTHONPATH=. /work/venv/bin/python benchmarks/bench_evaluate.py --triplets 20 --variants ours_small,ours

The frames are real photographs (scikit-image) panning 4 px per frame, written as 8-bit PNG in the
vimeo_triplet layout (448x256) in a temporary folder. The network has random weights with the variant's real
architecture (speed does not depend on the weight values). Figures depend on the machine and its load.
"""
from __future__ import annotations

import argparse
import tempfile
import time
from fractions import Fraction
from pathlib import Path

import numpy as np
import torch

import emavfi
from emavfi.evaluate.datasets import vimeo90k
from emavfi.evaluate.engine import predict
from emavfi.evaluate.holdout import score_holdout
from emavfi.evaluate.protocols import protocol
from emavfi.evaluate.run import evaluate_items, load_item
from emavfi.schedule import Request


def _photo_pan(n: int, h: int, w: int, seed: int) -> list[np.ndarray]:
    from skimage import data, transform

    name = ("astronaut", "coffee", "chelsea", "rocket")[seed % 4]
    image = getattr(data, name)()[..., :3]
    image = (transform.resize(image, (h + 40, w + 4 * n + 40), anti_aliasing=True) * 255).astype(np.uint8)
    return [image[20:20 + h, 20 + 4 * i:20 + 4 * i + w] for i in range(n)]


def write_vimeo(root: Path, triplets: int) -> None:
    """A vimeo_triplet-layout folder of 448x256 real-photo pans."""
    from PIL import Image

    names = [f"00001/{k + 1:04d}" for k in range(triplets)]
    (root / "tri_testlist.txt").write_text("\n".join(names) + "\n")
    for k, name in enumerate(names):
        folder = root / "sequences" / name
        folder.mkdir(parents=True)
        for i, frame in enumerate(_photo_pan(3, 256, 448, k)):
            Image.fromarray(frame).save(folder / f"im{i + 1}.png")


def bench_set(model: torch.nn.Module, variant: str, root: Path) -> dict[str, float]:
    """Seconds for the whole evaluation and for the engine alone on the same items."""
    items = vimeo90k(root)
    chosen = protocol("vimeo90k")
    started = time.perf_counter()
    result = evaluate_items(model, items, chosen, variant)
    whole = time.perf_counter() - started
    inputs = [load_item(item, "none")[0] for item in items]
    started = time.perf_counter()
    for frames in inputs:
        predict(model, frames, Request(timesteps=(Fraction(1, 2),)), tta=chosen.tta_for(variant), bgr=True)
    engine = time.perf_counter() - started
    return {"frames": result.frames, "whole": whole, "engine": engine, "psnr": result.psnr}


def bench_holdout(model: torch.nn.Module, frames: int) -> dict[str, float]:
    """Seconds of score_holdout (K = 2) on a 256x448 real-photo pan."""
    clip = torch.from_numpy(np.stack(_photo_pan(frames, 256, 448, 1))).permute(0, 3, 1, 2).float() / 255
    started = time.perf_counter()
    result = score_holdout(model, clip, 2)
    return {"frames": result.frames, "whole": time.perf_counter() - started, "psnr": result.psnr}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--triplets", type=int, default=6)
    parser.add_argument("--variants", default="ours_small")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {args.threads} threads, CPU; Vimeo90K-size triplets 448x256\n")
    print("| variant | run | frames | s | frames/s | engine only, frames/s | scoring share |")
    print("|---|---|---|---|---|---|---|")
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_vimeo(root, args.triplets)
        for variant in args.variants.split(","):
            torch.manual_seed(0)
            model = emavfi.build_model(variant).eval()
            predict(model, torch.rand(2, 3, 256, 448), Request(timesteps=(Fraction(1, 2),)))  # warm-up
            s = bench_set(model, variant, root)
            print(f"| {variant} | vimeo90k (TTA {'on' if protocol('vimeo90k').tta_for(variant) else 'off'}) | "
                  f"{s['frames']} | {s['whole']:.1f} | {s['frames'] / s['whole']:.2f} | "
                  f"{s['frames'] / s['engine']:.2f} | {1 - s['engine'] / s['whole']:.0%} |")
            h = bench_holdout(model, 2 * args.triplets + 1)
            print(f"| {variant} | hold-out K=2 | {h['frames']} | {h['whole']:.1f} | {h['frames'] / h['whole']:.2f} "
                  f"| | |")


if __name__ == "__main__":
    main()
