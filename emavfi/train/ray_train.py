"""Fine-tuning on a Ray cluster with Ray Train: `TorchTrainer`, one worker per GPU (nccl) or CPU slot (gloo).

Every worker runs emavfi.train.loop.train with its rank: it reads only its share of each global batch
(slots rank*b/n .. (rank+1)*b/n-1, the same samples a one-process run puts there), DistributedDataParallel
averages the gradients, and rank 0 writes the run folder. The run folder and the data must therefore be
on storage every worker can reach (one machine, or a shared file system on a farm). A Ctrl-C on the driver
writes RUN/.stop-request; the workers see it at the next step and stop together after a checkpoint.
`import ray` happens only here (Ray Train is an optional extra: requirements-ray.txt).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..ray_cluster import DistributedError, connection, import_ray
from .loop import Job, Outcome, Worker, train
from .run import StopSwitch

RAY_TRAIN_MISSING = "fine-tuning on Ray needs Ray Train: pip install -r requirements-ray.txt"


def _worker(config: dict[str, Any]) -> None:
    """Body of one Ray Train worker."""
    import ray.train
    import torch
    from ray.train.torch import get_device

    context = ray.train.get_context()
    folder = Path(config["folder"])
    torch.set_num_threads(config["threads"])
    stop = StopSwitch(folder)
    worker = Worker(rank=context.get_world_rank(), world=context.get_world_size(), device=get_device(),
                    stop_requested=lambda: stop.path.exists())
    outcome = train(config["job"], worker, folder)
    ray.train.report({"step": outcome.step, "interrupted": outcome.interrupted,
                      "loss": outcome.last_loss if outcome.last_loss is not None else float("nan")})


def train_on_ray(job: Job, folder: Path, address: str | None, workers: int | None, stop: StopSwitch,
                 note: Callable[[str], None]) -> Outcome:
    """Run the job on `workers` Ray Train workers (default: one per GPU of the cluster, else one)."""
    ray = import_ray()
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchConfig, TorchTrainer
    except ImportError:
        raise DistributedError(RAY_TRAIN_MISSING) from None
    with connection(ray, address, workers, cpus_per_worker=1):
        gpus = int(ray.cluster_resources().get("GPU", 0))
        count = workers or max(1, gpus)
        if job.options.batch % count:
            raise DistributedError(f"--batch {job.options.batch} does not split over {count} Ray workers; give "
                                   f"--ray-workers or a --batch that is a multiple of {count}")
        note(f"training on {count} Ray Train worker(s) ({'nccl, GPU' if gpus else 'gloo, CPU'})")
        trainer = TorchTrainer(
            _worker, train_loop_config={"job": job, "folder": str(folder.resolve()), "threads": 1},
            scaling_config=ScalingConfig(num_workers=count, use_gpu=gpus > 0),
            torch_config=TorchConfig(backend="nccl" if gpus else "gloo"),
            run_config=RunConfig(name="emavfi-finetune", storage_path=str((folder / ".ray-train").resolve())))
        try:
            result = trainer.fit()
        except Exception as exc:  # noqa: BLE001 - Ray wraps the workers' errors; show the first one, on one line
            raise DistributedError(_worker_error(exc)) from None
    metrics = result.metrics or {}
    loss = metrics.get("loss")
    return Outcome(int(metrics.get("step", 0)), bool(metrics.get("interrupted", False)),
                   None if loss is None or loss != loss else float(loss))


def _worker_error(exc: BaseException) -> str:
    from ..distributed import explain

    errors = getattr(exc, "worker_failures", None) or {}
    first = next(iter(errors.values()), None) if isinstance(errors, dict) else None
    return explain(first if isinstance(first, BaseException) else exc, "a Ray Train worker")
