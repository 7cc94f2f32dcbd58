"""Render one shot on a Ray cluster: one model per worker, small frame ranges handed out as workers free up.

The driver first has a worker adopt the output folder (checked, locked, --overwrite applied: before any
weights are read, as in the one-process CLI), then reads the weights once and puts them in Ray's object
store; each worker (a Ray actor: one per GPU, or per `cpus_per_worker` CPUs) loads the model from there once,
on its first task, and renders the output frames it is given with the same engine as the CLI (emavfi.engine,
through emavfi.render), into the shared output folder. Output files are named by their global index and
written atomically, device batches follow the global pair grid, and every worker computes with the torch
thread count of the driver (the one setting here that changes CPU arithmetic: see `render`), so the files are
byte for byte those of a one-process run, whichever worker made them and however often a worker was
restarted. The driver itself never touches the input or the output (with `ray://` it may be a laptop).

Ray does the fault tolerance: actors restart (`max_restarts`) and re-run the calls they were given
(`max_task_retries`). `import ray` happens only inside the functions here: Ray is an optional extra.
"""
from __future__ import annotations

import os
import socket
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

from .errors import EmaVfiError
from .ray_cluster import (DistributedError, compute_with, connection, explain, import_ray, one_line, worker_slots,
                          worker_threads)

if TYPE_CHECKING:
    import torch

    from .protect import Box
    from .render import Job, Prepared
    from .runner import Model

DEFAULT_TASK_FRAMES = 16  # output frames per task: small enough to balance workers, large enough to amortise
MAX_RESTARTS = 3  # per worker: Ray restarts a dead actor and re-runs its calls this many times
QUEUED_PER_WORKER = 2  # calls queued at each actor: it never waits for the driver between two tasks
START_TIMEOUT_S = 300.0  # workers load torch and the model; a cluster may also have to find room for them
CANCEL_GRACE_S = 30.0  # running calls stop at their next cancellation check (before each device batch)
POLL_S = 0.5


class WorkCancelled(EmaVfiError):
    """Ray cancelled a worker's call (Ctrl-C or `cancel` on the driver); its complete frames stay."""


@dataclass(frozen=True)
class DistributedReport:
    """What a distributed render did, counted over all workers."""

    output_frames: int  # frames of the whole shot
    requested: int  # frames this run was asked to make (all, or the --frames selection)
    written: int
    skipped: int  # already complete and verified (--resume, or written by an earlier attempt)
    tasks: int
    workers: int
    seconds: float
    cuts: tuple[int, ...] = ()  # pair indices i with a scene cut between source frames i and i+1
    frames_by_worker: Mapping[str, int] = field(default_factory=dict)  # "host:pid" -> frames written
    overlays: Mapping[int, Box | None] | None = None  # as engine.Report.overlays, joined over the tasks

    @property
    def protected(self) -> str:
        """What detected overlays did, for a run summary: the line one process prints for the same job."""
        from .protect import describe_overlays

        return "" if self.overlays is None else describe_overlays(self.overlays)


# ----------------------------------------------------------------------------------------------- worker

class ShotWorker:
    """The body of one Ray actor: the job's model (loaded once, from the object store) and its prepared shot."""

    def __init__(self, job: Job, threads: int) -> None:
        compute_with(threads)
        self._job = job
        self._model: Model | None = None
        self._prepared: Prepared | None = None

    def describe(self) -> str:
        """Where this worker runs: "host:pid"."""
        return f"{socket.gethostname()}:{os.getpid()}"

    def _shot(self) -> Prepared:
        from . import render

        if self._prepared is None:
            self._prepared = render.prepare(self._job)
        return self._prepared

    def plan(self) -> tuple[int, list[int], list[int]]:
        """(output frames of the shot, global indices this job asks for (all or its --frames selection), the
        source pair each of those is made from)."""
        from .engine import pair_of

        shot = self._shot()
        pairs = [pair_of(shot.schedule.plan[k], shot.n_source) for k in shot.requested]
        return shot.total, list(shot.requested), pairs

    def adopt_output(self, resume: bool, overwrite: bool) -> None:
        """Take the output folder for this job alone, briefly: check it, apply --overwrite, write the record."""
        from . import render

        with render.open_output(self._shot(), shared=False, resume=resume, overwrite=overwrite):
            pass

    def render(self, indices: Sequence[int], weights: Sequence[Any]) -> tuple[str, int, int, list[int], Any]:
        """Render these global output indices (skipping complete ones): (worker, written, skipped, cuts, the
        overlays decided in the source frames the task owns: engine.Report.overlays).

        weights: a 1-item list holding the ObjectRef of the state dict; fetched on this worker's first call only.
        """
        import ray

        from . import loading, render

        if self._model is None:
            # Fetched here rather than passed to __init__: Ray warns about restartable actors whose constructor
            # arguments live in the object store, and a restarted worker gets the ref again with its next call.
            self._model = loading.load_model_for(self._job.settings, dict(ray.get(weights[0])))
        context = ray.get_runtime_context()
        is_canceled = getattr(context, "is_canceled", None)  # older Ray lacks it: the worker is then killed instead

        def check_cancelled() -> None:
            if is_canceled is not None and is_canceled():
                raise WorkCancelled("cancelled by the Ray driver")

        report = render.render(replace(self._shot(), requested=list(indices)), self._model, cancel=check_cancelled)
        return self.describe(), report.written, report.skipped, list(report.cuts), report.overlays


def _worker_job(job: Job) -> Job:
    """The job as tasks run it: the folder was adopted once (--overwrite applied), so tasks keep what is complete."""
    output = replace(job.settings.output, overwrite=False, resume=True)
    return replace(job, settings=replace(job.settings, output=output))


# ----------------------------------------------------------------------------------------------- driver

def render(job: Job, *, address: str | None = None, workers: int | None = None, cpus_per_worker: int | None = None,
           threads: int | None = None, progress: Callable[[int, int], None] | None = None,
           task_frames: int = DEFAULT_TASK_FRAMES, cancel: Callable[[], None] | None = None,
           runtime_env: Mapping[str, Any] | None = None) -> DistributedReport:
    """Render `job` (an `emavfi.render.Job` with a folder output) on Ray workers; returns the counts.

    address: None = an embedded local cluster on 127.0.0.1 (shut down at the end); "auto" or "host:port" = join
    a running cluster; "ray://host:port" = Ray Client. A process already connected to Ray (ray.init) keeps
    that connection (an address given is only checked to be reachable).
    workers: how many (default: one per GPU, else one per `cpus_per_worker` CPUs of the cluster).
    threads: torch threads each worker computes with; default: this process's (what `emavfi interpolate` uses
    here). CPU arithmetic depends on it (oneDNN picks its blocking by thread count, and element-wise kernels
    round a thread's last few values differently), so equal threads are what make the bytes equal.
    cpus_per_worker: Ray CPUs each worker reserves; default: `threads`, fewer where the cluster has less room per
    asked-for worker (those workers then share cores), 1 for GPU workers.
    progress(done, requested): output frames complete so far, called on this process as tasks finish.
    task_frames: output frames per task, rounded up to whole source pairs (the unit of hand-out, and what is
    re-run after a worker died).
    cancel(): called while waiting; raise (e.g. KeyboardInterrupt) to stop: outstanding work is cancelled
    and only complete files stay in the output folder.
    runtime_env: Ray runtime environment for the workers (e.g. {"pip": [...]} on a cluster without emavfi).
    """
    ray = import_ray()
    _check_arguments(job, workers, cpus_per_worker, threads, task_frames)
    started = time.monotonic()
    threads = worker_threads(threads)

    with connection(ray, address, workers, cpus_per_worker or 1):
        pool = _start_workers(ray, _worker_job(job), workers, cpus_per_worker, threads, runtime_env)
        try:
            total, requested, pairs = _call(ray, pool[0].actor.plan.remote(), pool[0].name)
            out = job.settings.output
            # The output folder is checked, locked and adopted before any weights are resolved or read.
            _call(ray, pool[0].actor.adopt_output.remote(out.resume, out.overwrite), pool[0].name)
            state_ref = ray.put(_state_for(job))
            tasks = _tasks(requested, pairs, task_frames)
            done = _hand_out(ray, pool, tasks, [state_ref], len(requested), progress, cancel)
            # Leave the folder as a one-process run would: partial files of killed workers removed.
            _call(ray, pool[0].actor.adopt_output.remote(True, False), pool[0].name)
        finally:
            for member in pool:
                ray.kill(member.actor, no_restart=True)
    return DistributedReport(output_frames=total, requested=len(requested), written=done.written,
                             skipped=done.skipped, tasks=len(tasks), workers=len(pool),
                             seconds=time.monotonic() - started, cuts=tuple(sorted(set(done.cuts))),
                             frames_by_worker=done.by_worker, overlays=done.overlays)


def _check_arguments(job: Job, workers: int | None, cpus_per_worker: int | None, threads: int | None,
                     task_frames: int) -> None:
    if job.video_out:
        raise DistributedError(f"Ray workers write a folder of frames; {job.output} is a video file: render to a "
                               "folder (then encode it), or drop --ray")
    for name, value, low in (("workers", workers, 1), ("cpus per worker", cpus_per_worker, 1),
                             ("threads", threads, 1), ("task frames", task_frames, 1)):
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < low):
            raise DistributedError(f"{name} must be a whole number >= {low}; got {value!r}")


def _state_for(job: Job) -> dict[str, torch.Tensor]:
    """The job's weights as a state dict, read here once (workers need neither the file nor the Hub)."""
    from .loading import weights_path
    from .weights import read_weights

    state, _ = read_weights(weights_path(job.settings), job.settings.model_variant)
    return state


# ----------------------------------------------------------------------------------------------- workers

@dataclass
class _Member:
    actor: Any
    name: str  # "worker 2 (host:pid)" for messages
    queued: int = 0


def _start_workers(ray: Any, job: Job, workers: int | None, cpus_per_worker: int | None, threads: int,
                   runtime_env: Mapping[str, Any] | None) -> list[_Member]:
    slots = worker_slots(ray, job.settings.device, workers, cpus_per_worker, threads)
    count = slots.workers
    options: dict[str, Any] = {"num_cpus": slots.cpus, "num_gpus": 1 if slots.gpu else 0,
                               "max_restarts": MAX_RESTARTS, "max_task_retries": MAX_RESTARTS}
    if runtime_env is not None:
        options["runtime_env"] = dict(runtime_env)
    actor_class = ray.remote(ShotWorker)
    run_id = uuid.uuid4().hex[:8]
    pool = [_Member(actor_class.options(name=f"emavfi-{run_id}-{k}", **options).remote(job, threads),
                    f"worker {k}") for k in range(count)]
    names = {pool[k].actor.describe.remote(): k for k in range(count)}
    try:
        ready, pending = ray.wait(list(names), num_returns=count, timeout=START_TIMEOUT_S)
        if pending:
            raise DistributedError(f"{len(pending)} of {count} Ray workers did not start within {START_TIMEOUT_S:.0f} "
                                   "s; is the cluster busy?")
        for ref in ready:
            member = pool[names[ref]]
            member.name = f"{member.name} ({_call(ray, ref, member.name)})"
    except BaseException:
        for member in pool:
            ray.kill(member.actor, no_restart=True)
        raise
    return pool


def _tasks(requested: Sequence[int], pairs: Sequence[int], task_frames: int) -> list[list[int]]:
    """The requested indices in runs of at least `task_frames` (the last may be shorter), cut only where the
    source pair changes: a pair split between two tasks would be computed by both."""
    tasks: list[list[int]] = []
    current: list[int] = []
    for k, (index, pair) in enumerate(zip(requested, pairs)):
        if len(current) >= task_frames and pair != pairs[k - 1]:
            tasks.append(current)
            current = []
        current.append(index)
    return tasks + [current] if current else tasks


@dataclass
class _Done:
    """What the finished tasks did, joined."""

    written: int = 0
    skipped: int = 0
    cuts: list[int] = field(default_factory=list)
    by_worker: dict[str, int] = field(default_factory=dict)
    overlays: dict[int, Box | None] | None = None  # each task reports the source frames it owns: no overlaps

    def add(self, where: str, written: int, skipped: int, cuts: Sequence[int],
            overlays: Mapping[int, Box | None] | None) -> None:
        """Count one finished task (ShotWorker.render's answer)."""
        self.written, self.skipped = self.written + written, self.skipped + skipped
        self.cuts.extend(cuts)
        self.by_worker[where] = self.by_worker.get(where, 0) + written
        if overlays is not None:
            self.overlays = {} if self.overlays is None else self.overlays
            self.overlays.update(overlays)


def _hand_out(ray: Any, pool: list[_Member], tasks: list[list[int]], weights: list[Any], requested: int,
              progress: Callable[[int, int], None] | None, cancel: Callable[[], None] | None) -> _Done:
    """Keep every worker busy until all tasks are done; whoever finishes first gets the next task."""
    waiting = deque(tasks)
    running: dict[Any, tuple[_Member, list[int]]] = {}
    done = _Done()
    if progress is not None:
        progress(0, requested)
    try:
        while waiting or running:
            for depth in range(QUEUED_PER_WORKER):  # round-robin: every worker gets one before any gets two
                for member in pool:
                    if waiting and member.queued <= depth:
                        task = waiting.popleft()
                        running[member.actor.render.remote(task, weights)] = (member, task)
                        member.queued += 1
            if cancel is not None:
                cancel()
            ready, _ = ray.wait(list(running), num_returns=1, timeout=POLL_S)
            for ref in ready:
                member, task = running.pop(ref)
                member.queued -= 1
                done.add(*_call(ray, ref, member.name))
                if progress is not None:
                    progress(done.written + done.skipped, requested)
    except BaseException:
        _stop(ray, list(running))
        raise
    return done


def _stop(ray: Any, refs: list[Any]) -> None:
    """Cancel outstanding calls and give running ones time to stop between frames (no partial files)."""
    for ref in refs:
        try:
            ray.cancel(ref)
        except Exception:  # noqa: BLE001 - already finished, or its worker is gone: nothing left to cancel
            pass
    if refs:
        ray.wait(refs, num_returns=len(refs), timeout=CANCEL_GRACE_S)


def _call(ray: Any, ref: Any, who: str) -> Any:
    """ray.get with worker failures turned into one line naming the worker."""
    try:
        return ray.get(ref)
    except ray.exceptions.TaskCancelledError:
        raise WorkCancelled(f"{who}: cancelled") from None
    except ray.exceptions.RayError as exc:
        raise DistributedError(explain(exc, who)) from None


