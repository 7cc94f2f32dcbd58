"""The official optimiser and learning-rate schedule (EMA-VFI `train.py`; ../shared/spec §9).

AdamW (betas 0.9/0.999, eps 1e-8: PyTorch's defaults, which the official code keeps) with weight decay on
every parameter; lr(step) = peak * step / warmup during the warm-up, then a half cosine from peak down to
floor, reaching floor at the last step. The schedule is a pure function of the step, so the scheduler's
whole state is the step number (stored in the checkpoint's JSON).
"""
from __future__ import annotations

import math

import torch


def learning_rate(step: int, total: int, peak: float, floor: float, warmup: int) -> float:
    """Learning rate of 0-based `step` of a `total`-step run."""
    if step < warmup:
        return peak * step / warmup
    span = max(1, total - 1 - warmup)
    progress = min(1.0, (step - warmup) / span)
    return floor + (peak - floor) * (0.5 + 0.5 * math.cos(math.pi * progress))


def build_optimizer(model: torch.nn.Module, lr: float, weight_decay: float) -> torch.optim.AdamW:
    """AdamW over every parameter of model, foreach off so that CPU results do not depend on tensor grouping."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, foreach=False)


def set_learning_rate(optimizer: torch.optim.Optimizer, lr: float) -> None:
    """Use lr for the next step."""
    for group in optimizer.param_groups:
        group["lr"] = lr
