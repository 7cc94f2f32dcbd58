"""The training steps, the same in one process and in each Ray Train worker.

Each step: the worker's share of the global batch -> `EMAVFI.forward` -> the paper's loss
(emavfi.loss.training_loss) -> one all-reduce of (loss, stop request) -> backward (DistributedDataParallel
averages the gradients of all workers, so the update is that of the global batch) -> AdamW step. Rank 0
writes the log, checkpoints, validation scores and the final weights. A non-finite loss stops the run
before the bad update, keeping the weights of the step before as a checkpoint; a stop request (Ctrl-C,
or the driver's stop file under Ray) is honoured at the next step boundary by every worker at once.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..config import ModelConfig
from ..errors import EmaVfiError
from ..loss import training_loss
from ..model import EMAVFI
from .batches import Batch, BatchStream
from .checkpoint import LossLog, TrainState, checkpoint_before, latest_checkpoint, load_checkpoint, save_checkpoint, save_weights
from .data import Clip, FrameReader, Triplets
from .optim import build_optimizer, learning_rate, set_learning_rate
from .options import FinetuneOptions


class NonFiniteLoss(EmaVfiError):
    """The loss became NaN or infinite; the message names the step and the checkpoint kept."""


@dataclass(frozen=True)
class Job:
    """Everything a worker needs to train (picklable: sent to Ray workers)."""

    options: FinetuneOptions
    clips: tuple[Clip, ...]
    config: ModelConfig
    variant: str | None  # official variant name recorded in the outputs (None: a custom config)
    total_steps: int
    resume: bool = False


@dataclass
class Worker:
    """Where this copy of the loop runs: its rank among `world` workers, its device, and how it hears of a stop."""

    rank: int = 0
    world: int = 1
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    stop_requested: Callable[[], bool] = lambda: False
    note: Callable[[str], None] = lambda text: None


@dataclass
class Outcome:
    """How the loop ended: the step reached and whether it was stopped early (Ctrl-C)."""

    step: int
    interrupted: bool
    last_loss: float | None


def build_start_model(job: Job) -> EMAVFI:
    """The network the run starts from: `--weights`, else seeded random initialisation (the reference's init)."""
    torch.manual_seed(job.options.seed)
    model = EMAVFI(job.config, job.variant)
    if job.options.weights:
        from ..weights import read_weights

        state, _ = read_weights(job.options.weights, job.variant or job.config)
        model.load_state_dict(state, strict=True)
    return model


def _checkpointed(module: torch.nn.Module) -> None:
    """Recompute `module`'s activations in the backward pass instead of keeping them (gradient checkpointing)."""
    from torch.utils.checkpoint import checkpoint

    inner = module.forward
    module.forward = lambda *args, **kwargs: checkpoint(inner, *args, use_reentrant=False, **kwargs)  # type: ignore


def prepare_model(job: Job, worker: Worker) -> EMAVFI:
    """The start model on the worker's device, in training mode, with gradient checkpointing when asked."""
    model = build_start_model(job).to(worker.device).train()
    if job.options.grad_checkpoint:
        _checkpointed(model.feature_bone)
        _checkpointed(model.unet)
    return model


def _loss(net: torch.nn.Module, batch: Batch, device: torch.device, precision: str) -> torch.Tensor:
    img0, gt, img1 = (x.to(device, non_blocking=True) for x in (batch.img0, batch.gt, batch.img1))
    t = batch.t.to(device) if isinstance(batch.t, torch.Tensor) else batch.t
    autocast = torch.autocast(device.type, dtype=torch.bfloat16) if precision == "bf16" else contextlib.nullcontext()
    with autocast:
        out = net(img0, img1, t)
    out = {"pred": out["pred"].float(), "merged": [m.float() for m in out["merged"]]}
    return training_loss(out, gt)[0]


def train(job: Job, worker: Worker, folder: Path) -> Outcome:
    """Run (or resume) the job's steps on this worker; rank 0 writes into `folder`."""
    opts = job.options
    model = prepare_model(job, worker)
    optimizer = build_optimizer(model, opts.lr, opts.weight_decay)
    state = TrainState()
    where = latest_checkpoint(folder) if job.resume else None
    if where is not None:
        state = load_checkpoint(where, model, optimizer)
    net: torch.nn.Module = model
    if worker.world > 1:
        # cor_embed's bias cancels out of this implementation's motion features (A·E - E): it gets no gradient
        net = torch.nn.parallel.DistributedDataParallel(model, device_ids=[worker.device.index] if worker.device.type
                                                        == "cuda" else None, find_unused_parameters=True)
    triplets = Triplets(list(job.clips), opts.gap_for(job.config.arbitrary_t), job.config.arbitrary_t, opts.seed)
    stream = BatchStream(triplets, FrameReader(list(job.clips)), opts.batch, worker.rank, worker.world, opts.crop)
    lead = worker.rank == 0
    log = LossLog(folder, state.step) if lead else None
    val_frames = _validation_frames(opts) if lead and opts.val else None
    warmup, floor = opts.warmup_for(job.total_steps), opts.floor_lr()
    last_loss = None

    def checkpoint() -> None:
        if lead:
            save_checkpoint(folder, model.state_dict(), optimizer, state, job.variant, opts.keep_checkpoints)

    try:
        while state.step < job.total_steps:
            step = state.step
            lr = learning_rate(step, job.total_steps, opts.lr, floor, warmup)
            set_learning_rate(optimizer, lr)
            loss = _loss(net, stream.get(step, step + 1 < job.total_steps), worker.device, opts.precision)
            shared = torch.stack([loss.detach().float().cpu(), torch.tensor(float(worker.stop_requested()))])
            if worker.world > 1:
                torch.distributed.all_reduce(shared)
                shared[0] /= worker.world
            last_loss = float(shared[0])
            if not torch.isfinite(shared[0]):  # before backward: grid_sample's backward may crash on NaN flows
                _stop_on_bad_loss(folder, state, last_loss)
            loss.backward()
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            state.step = step + 1
            val = _maybe_validate(job, state, model, val_frames, folder, worker)
            if log is not None:
                log.write(step, lr, last_loss, val)
            if float(shared[1]) > 0:
                checkpoint()
                return Outcome(state.step, True, last_loss)
            if state.step % opts.checkpoint_every == 0 and state.step < job.total_steps:
                checkpoint()
        checkpoint()
        if lead:
            save_weights(model.state_dict(), folder / "final.safetensors", job.variant)
        return Outcome(state.step, False, last_loss)
    finally:
        stream.close()
        if log is not None:
            log.close()


def _stop_on_bad_loss(folder: Path, state: TrainState, value: float) -> None:
    """Stop with one line naming the newest checkpoint from before the weights went bad (step-N holds the weights
    step N+1 runs with, so a checkpoint of this very step is not a good one)."""
    where = checkpoint_before(folder, state.step)
    kept = (f"the last good checkpoint is {where / 'model.safetensors'}: start a new run from it with --weights and "
            "a lower --lr (or a longer --warmup)" if where is not None else
            "no checkpoint was written before it: start again with a lower --lr (or a longer --warmup)")
    raise NonFiniteLoss(f"the loss became {value} at step {state.step + 1}; training stopped. {kept}")


def _validation_frames(opts: FinetuneOptions) -> torch.Tensor:
    from .validate import load_clip

    return load_clip(str(opts.val), opts.val_frames, opts.val_crop, opts.hold_out)


def _maybe_validate(job: Job, state: TrainState, model: EMAVFI, frames: torch.Tensor | None, folder: Path,
                    worker: Worker) -> tuple[float, float] | None:
    """Score the held-out clip every val_every steps and at the end; keep best.safetensors (rank 0 only)."""
    due = state.step % job.options.val_every == 0 or state.step == job.total_steps
    if frames is None or not due:
        return None
    from .validate import validate

    psnr, ssim = validate(model, frames, job.options.hold_out)
    model.train()
    worker.note(f"step {state.step}: held-out PSNR {psnr:.2f} dB, SSIM {ssim:.4f}")
    if not state.best or psnr > state.best["psnr"]:
        state.best = {"step": state.step, "psnr": psnr, "ssim": ssim}
        save_weights(model.state_dict(), folder / "best.safetensors", job.variant)
    return psnr, ssim
