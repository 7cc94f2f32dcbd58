"""`evaluate SET ROOT --ray [ADDRESS]`: a benchmark set's samples shared out to Ray workers.

The driver reads the weights once and puts them in Ray's object store; each worker (an actor: one per GPU, else
one per T CPUs, T = the driver's torch threads, as for render workers: emavfi.ray_cluster.worker_slots) builds the
model once and scores shards of SHARD_ITEMS samples with the same loop and the same torch thread count as a
one-process run (run.evaluate_items), so every figure is bit for bit the one a single process computes. The data
set folder must be visible at the same path on every worker. The cluster comes from emavfi.ray_cluster (an
embedded one listens on 127.0.0.1 only); `import ray` happens only here, inside the functions.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from ..ray_cluster import compute_with, connection, import_ray, worker_slots, worker_threads
from .datasets import Item
from .protocols import Protocol
from .results import EvalResult, Sample

SHARD_ITEMS = 8  # samples per Ray call: small enough to balance workers and to save progress often


class ScoreWorker:
    """The body of one Ray actor: a model (built on its first call) that scores shards of samples."""

    def __init__(self, model_spec: Any, device: str, precision: str, threads: int) -> None:
        compute_with(threads)
        self._spec, self._device, self._precision = model_spec, device, precision
        self._model: Any = None

    def score(self, index: int, weights: Sequence[Any], items: list[Item], chosen: Protocol, variant: str,
              chunk: int) -> tuple[int, list[Sample], int]:
        """(shard index, its samples in order, frames made); weights: [ObjectRef of the state dict]."""
        import ray

        from ..devices import run_device, run_dtype
        from ..loading import load_model
        from .run import evaluate_items

        if self._model is None:
            device = run_device(self._device)
            self._model = load_model(dict(ray.get(weights[0])), variant=self._spec, device=device,
                                     dtype=run_dtype(self._precision, device))
        result = evaluate_items(self._model, items, chosen, variant, chunk=chunk)
        return index, result.samples, result.frames


def _start(ray: Any, model_spec: Any, device: str, precision: str, workers: int | None, threads: int) -> list[Any]:
    slots = worker_slots(ray, device, workers, None, threads)
    actor = ray.remote(ScoreWorker).options(num_cpus=slots.cpus, num_gpus=1 if slots.gpu else 0, max_restarts=2,
                                            max_task_retries=2)
    return [actor.remote(model_spec, device, precision, threads) for _ in range(slots.workers)]


def evaluate_on_ray(state: dict[str, Any], model_spec: Any, items: Sequence[Item], chosen: Protocol, variant: str, *,
                    address: str | None, workers: int | None, device: str = "auto", precision: str = "fp32",
                    chunk: int = 0, done: Sequence[Sample] = (), on_sample: Callable[[EvalResult], None] | None = None,
                    progress: Callable[[int, int], None] | None = None, threads: int | None = None) -> EvalResult:
    """Scores of `items` under `chosen`, computed by Ray workers (samples in `done` are kept, not recomputed).

    state / model_spec: the state dict and the variant name or ModelConfig to build on every worker.
    threads: torch threads each worker computes with; default: this process's, so the scores are the ones a
    one-process run here computes, to the last bit (emavfi.ray_cluster.worker_threads).
    """
    ray = import_ray()
    threads = worker_threads(threads)
    known = {s.name: s for s in done}
    todo = [item for item in items if not all(n in known for n in item.sample_names())]
    shards = [todo[k:k + SHARD_ITEMS] for k in range(0, len(todo), SHARD_ITEMS)]
    total = sum(len(item.targets) for item in items)
    result = EvalResult(chosen.name, settings={"variant": variant, **chosen.describe(variant)})
    with connection(ray, address, workers, 1):
        pool = _start(ray, model_spec, device, precision, workers, threads)
        weights = [ray.put(state)]
        pending = {pool[k % len(pool)].score.remote(k, weights, shard, chosen, variant, chunk)
                   for k, shard in enumerate(shards)}
        try:
            while pending:
                ready, rest = ray.wait(list(pending), num_returns=1)
                pending = set(rest)
                _, samples, frames = ray.get(ready[0])
                known.update((s.name, s) for s in samples)
                result.frames += frames
                result.samples = [known[n] for item in items for n in item.sample_names() if n in known]
                if on_sample is not None:
                    on_sample(result)
                if progress is not None:
                    progress(len(result.samples), total)
        finally:
            for actor in pool:
                ray.kill(actor, no_restart=True)
    return result
