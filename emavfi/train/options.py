"""Fine-tuning settings, validated once before any frame is read; the defaults and where they come from.

Official recipe (MCG-NJU/EMA-VFI `train.py`, `Trainer.py`, `dataset.py`, commit 75b6f6a; ../shared/spec §9):
AdamW, lr 2e-4, weight decay 1e-4; the learning rate rises linearly from 0 over the first 2000 steps, then
follows a half cosine from 2e-4 down to 2e-5; 256x256 random crops; batch 8 per GPU on 4 GPUs (32 in all);
seed 1234. A fine-tuning run is much shorter than the paper's 300 epochs, so the warm-up defaults to
min(2000, a tenth of the steps) and the cosine ends at the last step; the global batch defaults to 8 (one
GPU's share), which fits a workstation.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

from ..config import VARIANTS

OFFICIAL_LR, OFFICIAL_MIN_LR, OFFICIAL_WEIGHT_DECAY, OFFICIAL_WARMUP, OFFICIAL_SEED = 2e-4, 2e-5, 1e-4, 2000, 1234
DEFAULT_STEPS = 1000
MAX_STEPS = 10**8
MAX_BATCH = 1024
MAX_CROP = 4096
MAX_GAP = 64
MAX_VAL_FRAMES = 200


class FinetuneSettingsError(ValueError):
    """A fine-tuning setting cannot work; the message names it and the fix (the CLI exits with 2)."""


@dataclass(frozen=True)
class FinetuneOptions:
    """Everything a fine-tuning run depends on (the data and run folder are paths as given).

    steps / epochs: length of the run (give at most one; default 1000 steps); an epoch is every training
    window of the data once. batch: GLOBAL batch size (split over Ray workers). crop: square training crop in
    pixels, a multiple of 32 and at least 64 (the loss's 5-level pyramid). max_gap: the farthest the ground-truth frame may lie from
    an input frame; default 1 for t = 0.5 variants (consecutive triplets, as Vimeo90K) and 3 for `_t` ones
    (three frames from a 7-frame window, as Vimeo90K septuplets). val: a held-out clip scored every val_every
    steps (drop every hold_out-th frame, interpolate it back); val_frames and val_crop bound its size.
    """

    data: tuple[str, ...]
    output: str
    variant: str | None = None
    weights: str | None = None
    steps: int | None = None
    epochs: int | None = None
    batch: int = 8
    crop: int = 256
    lr: float = OFFICIAL_LR
    min_lr: float | None = None  # default lr / 10, as 2e-4 -> 2e-5 officially
    warmup: int | None = None
    weight_decay: float = OFFICIAL_WEIGHT_DECAY
    seed: int = OFFICIAL_SEED
    max_gap: int | None = None
    val: str | None = None
    val_every: int = 500
    hold_out: int = 2
    val_frames: int = 9
    val_crop: int = 512
    checkpoint_every: int = 500
    keep_checkpoints: int = 2
    device: str = "auto"
    precision: str = "fp32"
    grad_checkpoint: bool = False

    def __post_init__(self) -> None:
        if not self.data:
            raise FinetuneSettingsError("give at least one DATA folder or video")
        if self.variant is not None and self.variant not in VARIANTS:
            raise FinetuneSettingsError(f"unknown variant {self.variant!r}; choose one of {', '.join(VARIANTS)}")
        if self.steps is not None and self.epochs is not None:
            raise FinetuneSettingsError("give --steps or --epochs, not both")
        _whole(self.steps, "--steps", 1, MAX_STEPS, optional=True)
        _whole(self.epochs, "--epochs", 1, 10**6, optional=True)
        _whole(self.batch, "--batch", 1, MAX_BATCH)
        _whole(self.crop, "--crop", 64, MAX_CROP)
        if self.crop % 32:
            raise FinetuneSettingsError(f"--crop must be a multiple of 32 (the loss's 5-level pyramid); got "
                                        f"{self.crop}, e.g. use {max(64, self.crop // 32 * 32)}")
        for name, value in (("--lr", self.lr), ("--min-lr", self.min_lr), ("--weight-decay", self.weight_decay)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))
                                      or not math.isfinite(value) or value < 0 or value > 1e6):
                raise FinetuneSettingsError(f"{name} must be a number from 0 to 1e6; got {value!r}")
        if self.lr <= 0:
            raise FinetuneSettingsError(f"--lr must be above 0; got {self.lr!r} (the official value is {OFFICIAL_LR})")
        _whole(self.warmup, "--warmup", 0, MAX_STEPS, optional=True)
        _whole(self.seed, "--seed", 0, 2**63 - 1)
        _whole(self.max_gap, "--max-gap", 1, MAX_GAP, optional=True)
        _whole(self.val_every, "--val-every", 1, MAX_STEPS)
        _whole(self.hold_out, "--hold-out", 2, 64)
        _whole(self.val_frames, "--val-frames", 3, MAX_VAL_FRAMES)
        _whole(self.val_crop, "--val-crop", 0, MAX_CROP)
        if self.val_crop % 32:
            raise FinetuneSettingsError(f"--val-crop must be a multiple of 32 (0 = whole frames); got {self.val_crop}")
        _whole(self.checkpoint_every, "--checkpoint-every", 1, MAX_STEPS)
        _whole(self.keep_checkpoints, "--keep-checkpoints", 1, 1000)
        if self.precision not in ("fp32", "bf16"):
            raise FinetuneSettingsError(f"--precision must be fp32 or bf16 (mixed precision on a GPU); got "
                                        f"{self.precision!r}")

    def gap_for(self, arbitrary_t: bool) -> int:
        """The max_gap in effect: as given, else 3 for `_t` variants and 1 for t = 0.5 ones."""
        return self.max_gap if self.max_gap is not None else (3 if arbitrary_t else 1)

    def floor_lr(self) -> float:
        """The learning rate the cosine ends at (default lr / 10)."""
        return self.lr / 10 if self.min_lr is None else self.min_lr

    def warmup_for(self, total: int) -> int:
        """Warm-up steps in effect: as given, else min(2000, total // 10)."""
        return self.warmup if self.warmup is not None else min(OFFICIAL_WARMUP, total // 10)

    def record(self) -> dict[str, Any]:
        """What must match for `--resume` (run-folder record); leaves out what may change between sessions."""
        skip = {"output", "device", "checkpoint_every", "keep_checkpoints"}
        return {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(self).items() if k not in skip}


def _whole(value: object, name: str, low: int, high: int, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise FinetuneSettingsError(f"{name} must be a whole number from {low} to {high}; got {value!r}")
