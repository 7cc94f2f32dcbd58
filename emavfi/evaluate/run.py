"""The evaluation loop of a benchmark set: read each sample, interpolate with the engine, score, resume.

`evaluate_items` scores a list of datasets.Item under a protocols.Protocol; samples already in `done`
(from a partial results file) are skipped, and `on_sample` is told of each new one so the caller can save
progress. Frames are read as stored (8-bit PNG codes / 255, no colour conversion): the official scripts
score the files' code values.
"""
from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..schedule import Request
from .datasets import Item, LayoutError
from .engine import predict
from .protocols import PREPARE, Protocol, Scorer
from .results import EvalResult, Sample, from_json, partial_path, to_json, write_text


def read_frame(path: Path) -> np.ndarray:
    """An 8-bit image file as uint8 [H,W,3] (gray expanded, alpha dropped); LayoutError otherwise."""
    from ..media.images import read_raw

    raw = read_raw(path)
    if raw.format.bit_depth != "8":
        raise LayoutError(f"{path} is {raw.format.describe()}; the benchmark sets are 8-bit images")
    pixels = raw.pixels
    if pixels.shape[2] < 3:
        pixels = np.repeat(pixels[:, :, :1], 3, axis=2)
    return np.ascontiguousarray(pixels[:, :, :3])


def load_item(item: Item, prepare: str) -> tuple[torch.Tensor, list[torch.Tensor]]:
    """(inputs [2,3,H,W], truths [3,H,W] per target), float32 in 0..1, after the protocol's preparation."""
    paths = [*item.inputs, *(p for _, p in item.targets)]
    frames = [read_frame(p) for p in paths]
    sizes = {f.shape[:2] for f in frames}
    if len(sizes) > 1:
        odd = next(k for k, f in enumerate(frames) if f.shape[:2] != frames[0].shape[:2])
        raise LayoutError(f"sample {item.name} mixes sizes: {paths[0].name} is {frames[0].shape[1]}x"
                          f"{frames[0].shape[0]} but {paths[odd]} is {frames[odd].shape[1]}x{frames[odd].shape[0]}")
    tensors = [torch.from_numpy(PREPARE[prepare](f).copy()).permute(2, 0, 1).float() / 255 for f in frames]
    return torch.stack(tensors[:2]), tensors[2:]


def evaluate_items(model: Any, items: Sequence[Item], protocol: Protocol, variant: str, *, chunk: int = 0,
                   done: Iterable[Sample] = (), on_sample: Callable[[EvalResult], None] | None = None,
                   progress: Callable[[int, int], None] | None = None, extra: Scorer | None = None,
                   **options: Any) -> EvalResult:
    """Scores of every item under `protocol` (samples in `done` are kept, not recomputed).

    extra(truth, pred): further figures per sample (e.g. LPIPS); options: Runner settings (device, backend)."""
    known = {s.name: s for s in done}
    result = EvalResult(protocol.name, settings={"variant": variant, **protocol.describe(variant)})
    total = sum(len(item.targets) for item in items)
    count = 0
    started = time.monotonic()
    for item in items:
        names = item.sample_names()
        if all(name in known for name in names):
            result.samples.extend(known[name] for name in names)
            count += len(names)
            continue
        inputs, truths = load_item(item, protocol.prepare)
        times = [t for t, _ in item.targets]
        plan, out = predict(model, inputs, Request(timesteps=tuple(sorted(times))), tta=protocol.tta_for(variant),
                            scale=protocol.scale, chunk=chunk, bgr=protocol.bgr, **options)
        made = {frame.t: out[k] for k, frame in enumerate(plan) if frame.source == 0 and not frame.is_copy}
        for name, t, truth in zip(names, times, truths):
            scores = protocol.scorer(truth, made[t])
            if extra is not None:
                scores.update(extra(truth, made[t]))
            result.samples.append(Sample(name, scores))
        result.frames += len(truths)
        count += len(names)
        if on_sample is not None:
            on_sample(result)
        if progress is not None:
            progress(count, total)
    result.seconds = time.monotonic() - started
    return result


class PartialResults:
    """`NAME.partial.json` beside the --json file: what a run has scored so far, for a rerun to continue.

    Written atomically at most every `interval` seconds and on close; holds the run's settings, and a rerun
    with other settings is refused (one line) instead of mixing scores.
    """

    def __init__(self, json_path: Path, settings: dict[str, Any], interval: float = 5.0):
        self.path = partial_path(json_path)
        self.settings, self.interval = settings, interval
        self.results: dict[str, EvalResult] = {}
        self._saved = time.monotonic()

    def load(self) -> dict[str, list[Sample]]:
        """Samples per set of an earlier run with the same settings ({} when there is none)."""
        if not self.path.exists():
            return {}
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
            earlier = from_json(json.dumps(data.get("results", data)))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise LayoutError(f"cannot read the partial results {self.path} ({exc}); move it away to start over") \
                from None
        if data.get("run") != self.settings:
            raise LayoutError(f"{self.path} holds results of a run with other settings; use the same options to "
                              "continue it, or move it away to start over")
        return {r.name: r.samples for r in earlier}

    def update(self, result: EvalResult, force: bool = False) -> None:
        """Record a set's progress; saved when `interval` seconds have passed (or force)."""
        self.results[result.name] = result
        if force or time.monotonic() - self._saved >= self.interval:
            self.save()

    def save(self) -> None:
        """Write what is known now (atomically)."""
        if self.results:
            body = json.loads(to_json(list(self.results.values())))
            write_text(self.path, json.dumps({"run": self.settings, "results": body}, indent=1))
            self._saved = time.monotonic()

    def finish(self) -> None:
        """The run is complete: the partial file (ours) is removed."""
        self.path.unlink(missing_ok=True)
