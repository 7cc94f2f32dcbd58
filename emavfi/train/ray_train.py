"""Fine-tuning on a Ray cluster with Ray Train: `TorchTrainer`, one worker per GPU (nccl) or CPU slot (gloo).

Every worker runs emavfi.train.loop.train with its rank: it reads only its share of each global batch
(slots rank*b/n .. (rank+1)*b/n-1, the same samples a one-process run puts there), DistributedDataParallel
averages the gradients, and rank 0 writes the run folder. The run folder and the data must therefore be
on storage every worker can reach (one machine, or a shared file system on a farm). RUN/.stop-request (made
by a Ctrl-C the driver receives, or by `touch`) stops every worker at the next step, after a checkpoint; a
terminal's Ctrl-C also reaches an embedded cluster's own processes, which end the run at once (the newest
periodic checkpoint stays).
`import ray` happens only here (Ray Train is an optional extra: requirements-ray.txt).
"""
from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ..ray_cluster import DistributedError, compute_with, connection, explain, import_ray
from ..ray_private import loopback_torch_config
from .checkpoint import StopSwitch, latest_checkpoint, read_log
from .loop import Job, Outcome, Worker, train

RAY_TRAIN_MISSING = "fine-tuning on Ray needs Ray Train: pip install -r requirements-ray.txt"
LOOPBACK = "127.0.0.1"


class LoopbackStore:
    """A torch TCPStore server listening on 127.0.0.1 only (torch's own binds every interface), open until close().

    Hosted by Ray Train's process-group set-up for an embedded cluster and owned by it (ray_private's backend),
    so it lives exactly as long as the training run; every worker joins it as a client."""

    def __init__(self, world: int) -> None:
        import socket
        from datetime import timedelta

        import torch.distributed as dist

        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            listener.bind((LOOPBACK, 0))
            listener.listen(world * 4)
            self.port: int = listener.getsockname()[1]
            self._store: Any = dist.TCPStore(LOOPBACK, self.port, world, is_master=True, wait_for_workers=False,
                                             timeout=timedelta(minutes=30), master_listen_fd=listener.fileno(),
                                             use_libuv=False)
        except BaseException:
            listener.close()
            raise
        listener.detach()  # the store owns the listening socket now, and closes it when it goes

    def close(self) -> None:
        """Stop serving (the store closes its socket)."""
        self._store = None


def _use_loopback_store(port: int) -> None:
    """On every worker: rendezvous through the LoopbackStore on 127.0.0.1 (clients only, no new server)."""
    import os

    os.environ.update({"MASTER_ADDR": LOOPBACK, "MASTER_PORT": str(port), "TORCHELASTIC_USE_AGENT_STORE": "True"})


def _worker(config: dict[str, Any]) -> None:
    """Body of one Ray Train worker."""
    import ray.train
    from ray.train.torch import get_device

    context = ray.train.get_context()
    folder = Path(config["folder"])
    compute_with(config["threads"])
    stop = StopSwitch(folder)
    worker = Worker(rank=context.get_world_rank(), world=context.get_world_size(), device=get_device(),
                    stop_requested=lambda: stop.path.exists())
    outcome = train(config["job"], worker, folder)
    ray.train.report({"step": outcome.step, "interrupted": outcome.interrupted})


def train_on_ray(job: Job, folder: Path, address: str | None, workers: int | None, stop: StopSwitch,
                 note: Callable[[str], None]) -> Outcome:
    """Run the job on `workers` Ray Train workers (default: one per GPU of the cluster, else one)."""
    ray = import_ray()
    try:
        from ray.train import RunConfig, ScalingConfig
        from ray.train.torch import TorchTrainer
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
            torch_config=_torch_config(ray, address, "nccl" if gpus else "gloo"),
            run_config=RunConfig(name="emavfi-finetune", storage_path=str((folder / ".ray-train").resolve())))
        try:
            with _stop_on_ctrl_c(stop):
                trainer.fit()
        except Exception as exc:  # noqa: BLE001 - Ray wraps the workers' errors; show the first one, on one line
            if not stop.flag:
                raise DistributedError(_worker_error(exc)) from None
    return outcome_in(folder, job.total_steps)


@contextmanager
def _stop_on_ctrl_c(stop: StopSwitch) -> Iterator[None]:
    """While Ray Train runs: Ctrl-C asks the workers to stop (ray.init replaces the CLI's handler with its own)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def request(signum: int, frame: object) -> None:
        if stop.flag:
            raise KeyboardInterrupt
        stop.request()

    previous = signal.signal(signal.SIGINT, request)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def outcome_in(folder: Path, total: int) -> Outcome:
    """How a run ended, read from what rank 0 wrote: the newest checkpoint and the last row of the log."""
    where = latest_checkpoint(folder)
    step = int(where.name.split("-")[1]) if where is not None else 0
    rows = read_log(folder) if (folder / "log.csv").is_file() else []
    return Outcome(step, step < total, rows[-1]["loss"] if rows else None)


def _torch_config(ray: Any, address: str | None, backend: str) -> Any:
    """Ray Train's process-group set-up: its own on a cluster; on an embedded one, every socket on 127.0.0.1."""
    from ray.train.torch import TorchConfig

    if address is not None:
        return TorchConfig(backend=backend)
    return loopback_torch_config(ray, backend, LoopbackStore, _use_loopback_store)


def _worker_error(exc: BaseException) -> str:
    errors = getattr(exc, "worker_failures", None) or {}
    first = next(iter(errors.values()), None) if isinstance(errors, dict) else None
    return explain(first if isinstance(first, BaseException) else exc, "a Ray Train worker")
