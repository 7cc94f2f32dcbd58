"""Fine-tuning entry point: check everything (settings, weights, data, run folder) first, then train in this
process or on a Ray cluster. `finetune(options)` is what `python -m emavfi finetune` calls."""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from ..config import DEFAULT_VARIANT, ModelConfig, get_config
from .checkpoint import STOP_FILE, StopSwitch, check_run_folder, latest_checkpoint, open_run
from .data import DataError, Triplets, scan, scan_clip
from .loop import Job, Outcome, Worker, train
from .options import DEFAULT_STEPS, FinetuneOptions, FinetuneSettingsError

def resolve_model(options: FinetuneOptions, config: ModelConfig | None) -> tuple[ModelConfig, str | None]:
    """(architecture, variant name to record): from the config given (API), the weights file, or --variant."""
    if config is not None:
        return config, options.variant
    if options.weights:
        from ..weights import check_weights_file

        variant = check_weights_file(Path(options.weights), options.variant)
        return get_config(variant), variant
    variant = options.variant or DEFAULT_VARIANT
    return get_config(variant), variant


def _check_paths(options: FinetuneOptions, folder: Path) -> None:
    from ..outputs import check_not_overlapping

    for data in options.data:
        check_not_overlapping(Path(data), folder)
    if options.val:
        val = Path(options.val)
        if any(val.resolve() == Path(d).resolve() or Path(d).resolve() in val.resolve().parents
               for d in options.data):
            raise DataError(f"the validation clip {val} is part of the training data; hold it out (move it out of "
                            "the DATA folders)")
        scan_clip(val)


def total_steps(options: FinetuneOptions, windows: int) -> int:
    """--steps, or --epochs times the steps of one pass over every window (at least one), else the default."""
    if options.epochs is not None:
        return options.epochs * max(1, windows // options.batch)
    return options.steps if options.steps is not None else DEFAULT_STEPS


def plan_job(options: FinetuneOptions, *, resume: bool, workers: int = 1,
             config: ModelConfig | None = None) -> Job:
    """The job after every check that needs no training: model, data layout, steps, worker split."""
    cfg, variant = resolve_model(options, config)
    if options.batch % workers:
        raise FinetuneSettingsError(f"--batch {options.batch} does not split evenly over {workers} Ray workers; use "
                                    f"a multiple of {workers}")
    folder = Path(options.output)
    _check_paths(options, folder)
    clips = scan(list(options.data), options.crop, options.gap_for(cfg.arbitrary_t))
    windows = len(Triplets(clips, options.gap_for(cfg.arbitrary_t), cfg.arbitrary_t, options.seed))
    return Job(options, tuple(clips), cfg, variant, total_steps(options, windows), resume)


def run_record(job: Job) -> dict[str, object]:
    """What the run folder records (and --resume compares)."""
    return {**job.options.record(), "variant": job.variant, "architecture": list(map(str, job.config.architecture)),
            "arbitrary_t": job.config.arbitrary_t, "total_steps": job.total_steps,
            "clips": [[c.path, c.count, list(c.size)] for c in job.clips]}


def finetune(options: FinetuneOptions, *, resume: bool = False, ray: str | None = None,
             ray_workers: int | None = None, config: ModelConfig | None = None,
             stop: StopSwitch | None = None, note: Callable[[str], None] = lambda text: None) -> Outcome:
    """Fine-tune (or train from scratch) as `options` say; ray: None = this process, "local" or an address.

    Writes RUN/final.safetensors (+ best.safetensors with --val), checkpoints, log.csv; see checkpoint.py.
    stop: a StopSwitch whose request() (e.g. from a Ctrl-C handler) ends the run with a checkpoint.
    """
    workers = ray_workers or 1
    if ray_workers is not None and not 1 <= ray_workers <= 1024:
        raise FinetuneSettingsError(f"--ray-workers must be a whole number from 1 to 1024; got {ray_workers}")
    check_run_folder(Path(options.output), resume)
    device = _device(options.device) if ray is None else None
    if device is not None and device.type != "cuda" and options.precision != "fp32":
        raise FinetuneSettingsError(f"--precision {options.precision} (mixed precision) needs a GPU; use fp32 on "
                                    f"{device.type.upper()}")
    job = plan_job(options, resume=resume, workers=workers, config=config)
    if ray not in (None, "local"):
        from ..ray_cluster import probe

        probe(ray)  # an unreachable cluster fails in seconds, before the run folder is made
    folder = Path(options.output)
    note(describe(job))
    lock = open_run(folder, run_record(job), resume)
    stop = stop or StopSwitch(folder)
    stop.path = folder / STOP_FILE
    stop.clear()
    try:
        if resume and latest_checkpoint(folder) is None:
            note(f"{folder}: no checkpoint yet; starting from step 0")
        if ray is not None:
            from .ray_train import train_on_ray

            return train_on_ray(job, folder, None if ray == "local" else ray, ray_workers, stop, note)
        return train(job, Worker(device=device, stop_requested=stop.requested, note=note), folder)
    finally:
        stop.clear()
        lock.close()


def _device(name: str):
    from ..devices import run_device
    from ..settings import SettingsError

    try:
        return run_device(name)
    except SettingsError as exc:
        raise FinetuneSettingsError(str(exc)) from None


def describe(job: Job) -> str:
    """One line: what will be trained on what."""
    frames = sum(c.count for c in job.clips)
    start = f"from {os.path.basename(job.options.weights)}" if job.options.weights else "from scratch"
    return (f"fine-tuning {job.variant or 'custom model'} {start}: {len(job.clips)} clip(s), {frames} frames, "
            f"{job.total_steps} steps of batch {job.options.batch}, crop {job.options.crop}")
