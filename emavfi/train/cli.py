"""`python -m emavfi finetune DATA -o RUN`: argument parsing and messages only (imports no torch until run)."""
from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from ..config import VARIANTS
from .options import FinetuneOptions, FinetuneSettingsError

EXIT_INTERRUPTED = 130


def add_parser(commands: Any) -> argparse.ArgumentParser:
    """Register the finetune subcommand on the CLI's subparsers."""
    p = commands.add_parser("finetune", help="fine-tune a model on your own footage (or train from scratch)",
                            description="Fine-tune EMA-VFI on folders of frames and videos with the paper's loss, "
                                        "augmentations, optimiser and schedule; writes RUN/final.safetensors.")
    p.add_argument("data", nargs="+", type=Path, metavar="DATA",
                   help="a clip (folder of numbered frames, or a video) or a folder of clips; several allowed")
    p.add_argument("-o", "--output", type=Path, required=True, metavar="RUN", help="new run folder")
    p.add_argument("--variant", choices=VARIANTS, help="architecture (default: the --weights file's, else ours_small_t)")
    p.add_argument("--weights", help="start from these .safetensors weights (default: random initialisation)")
    length = p.add_mutually_exclusive_group()
    length.add_argument("--steps", type=int, help="optimiser steps (default 1000)")
    length.add_argument("--epochs", type=int, help="passes over every training window of the data")
    p.add_argument("--batch", type=int, default=8, help="global batch size, split over Ray workers (default 8)")
    p.add_argument("--crop", type=int, default=256, help="training crop in pixels, a multiple of 32 (default 256)")
    p.add_argument("--lr", type=float, default=2e-4, help="peak learning rate (default 2e-4, the official)")
    p.add_argument("--min-lr", type=float, help="learning rate at the end of the cosine (default lr/10)")
    p.add_argument("--warmup", type=int, help="linear warm-up steps (default min(2000, steps/10))")
    p.add_argument("--weight-decay", type=float, default=1e-4, help="AdamW weight decay (default 1e-4)")
    p.add_argument("--seed", type=int, default=1234, help="random seed (default 1234): same seed, same weights")
    p.add_argument("--max-gap", type=int, help="farthest ground-truth frame from an input, in frames (default 1, "
                   "or 3 for _t variants: 7-frame windows)")
    p.add_argument("--val", help="held-out clip scored during training (drop-frame PSNR/SSIM); keeps best.safetensors")
    p.add_argument("--val-every", type=int, default=500, help="validate every N steps (default 500, and at the end)")
    p.add_argument("--hold-out", type=int, default=2, help="validation keeps every K-th frame (default 2)")
    p.add_argument("--val-frames", type=int, default=9, help="frames of the validation clip used (default 9)")
    p.add_argument("--val-crop", type=int, default=512, help="centre crop of validation frames (default 512; 0 = all)")
    p.add_argument("--checkpoint-every", type=int, default=500, help="steps between checkpoints (default 500)")
    p.add_argument("--keep-checkpoints", type=int, default=2, help="checkpoints kept (default 2)")
    p.add_argument("--device", default="auto", help="auto (default), cpu, cuda, cuda:1, mps")
    p.add_argument("--precision", default="fp32", choices=("fp32", "bf16"),
                   help="fp32 (default) or bf16: mixed precision on a GPU")
    p.add_argument("--grad-checkpoint", action="store_true", help="recompute activations in the backward pass: "
                   "less memory, about 1.5x the time")
    p.add_argument("--resume", action="store_true", help="continue the run in RUN from its last checkpoint")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS", help="train on a Ray cluster (Ray Train): "
                   "no ADDRESS = a local one, 'auto' or ray://host:port = join that cluster")
    p.add_argument("--ray-workers", type=int, help="Ray Train workers (default: one per GPU, else 1)")
    p.set_defaults(handler=run)
    return p


def options_from(args: argparse.Namespace) -> FinetuneOptions:
    """Validated FinetuneOptions of parsed arguments."""
    return FinetuneOptions(
        data=tuple(str(d) for d in args.data), output=str(args.output), variant=args.variant, weights=args.weights,
        steps=args.steps, epochs=args.epochs, batch=args.batch, crop=args.crop, lr=args.lr, min_lr=args.min_lr,
        warmup=args.warmup, weight_decay=args.weight_decay, seed=args.seed, max_gap=args.max_gap, val=args.val,
        val_every=args.val_every, hold_out=args.hold_out, val_frames=args.val_frames, val_crop=args.val_crop,
        checkpoint_every=args.checkpoint_every, keep_checkpoints=args.keep_checkpoints, device=args.device,
        precision=args.precision, grad_checkpoint=args.grad_checkpoint)


def _note(text: str) -> None:
    sys.stderr.write(text + "\n")
    sys.stderr.flush()


def run(args: argparse.Namespace) -> int:
    """The finetune subcommand; the first Ctrl-C stops after the current step with a checkpoint."""
    from ..settings import SettingsError
    from .checkpoint import RunFolderError
    from .checkpoint import StopSwitch
    from .run import finetune

    try:
        options = options_from(args)
    except FinetuneSettingsError as exc:
        raise SettingsError(str(exc)) from None
    stop = StopSwitch(Path(options.output))

    def interrupted(signum: int, frame: object) -> None:
        if stop.flag:
            raise KeyboardInterrupt
        _note("\nstopping after this step with a checkpoint (Ctrl-C again to quit at once)")
        stop.request()

    previous = signal.signal(signal.SIGINT, interrupted)
    try:
        outcome = finetune(options, resume=args.resume, ray=args.ray, ray_workers=args.ray_workers, stop=stop,
                           note=_note)
    except (FinetuneSettingsError, RunFolderError) as exc:
        raise SettingsError(str(exc)) from None
    finally:
        signal.signal(signal.SIGINT, previous)
    if outcome.interrupted:
        _note(f"interrupted: checkpoint at step {outcome.step} in {options.output}; run the same command with "
              "--resume to continue")
        return EXIT_INTERRUPTED
    loss = f", last loss {outcome.last_loss:.4f}" if outcome.last_loss is not None else ""
    _note(f"wrote {Path(options.output) / 'final.safetensors'} after {outcome.step} steps{loss}")
    return 0
