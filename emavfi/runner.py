"""Runner: frame pairs -> device batches ("chunk" = pairs per device batch), one out-of-memory loop, HDR, alpha.

Frames stay on the CPU; one batch of pairs is on the device at a time and every output frame is handed to
`emit` as soon as it is made. Batches follow the global pair grid (`Runner.batch_of`), so a frame's arithmetic
does not depend on how a clip was split into windows, `--frames` tasks or workers. Which frames to make, and
where they go, is the engine's (emavfi.engine, which drives this module and is never imported by it);
emavfi.clips runs the engine on a clip held in memory.

The backend seam: a device call goes to an `inference.Backend`. `inference.backend_for` is the one place that
picks it (for the Runner and the library functions alike): a model with `as_backend(tta, scale)` (an exported
runtime: OpenVINO, ONNX Runtime, TensorRT) supplies its own; a PyTorch network runs through
`inference.ModelBackend`.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from typing import Literal, Protocol

import torch

from .config import ModelConfig
from .errors import one_line
from .hdr import hdr_decode, hdr_encode
from .host_copies import HostCopies
from .inference import Backend, backend_for
from .memory import (ClipMemoryError, auto_chunk_size, estimate_pair_bytes, free_memory_bytes, is_out_of_memory,
                     release_cached)
from .schedule import MAX_BISECTION_DEPTH, dyadic_depth, needed_nodes, rows_per_pair

HdrMode = bool | Literal["auto"]
Emit = Callable[[int, Fraction, torch.Tensor], None]  # (local pair, t, frame [C,H,W]): one made output frame


# ----------------------------------------------------------------------------------------------- the model

class Model(Protocol):
    """What the Runner needs from a model: its architecture. A PyTorch `EMAVFI` also has parameters (device and
    dtype come from them); a runtime model has `device`, `dtype` and `as_backend(tta, scale) -> Backend`."""

    config: ModelConfig


def _placement(model: Model) -> tuple[torch.device, torch.dtype]:
    """Where a model runs and in what precision: its `device`/`dtype`, else its first parameter's, else CPU fp32."""
    device, dtype = getattr(model, "device", None), getattr(model, "dtype", None)
    if isinstance(device, (torch.device, str)) and isinstance(dtype, torch.dtype):
        return torch.device(device), dtype
    parameters = getattr(model, "parameters", None)
    param = next(iter(parameters()), None) if callable(parameters) else None
    if param is not None:
        return param.device, param.dtype
    return torch.device("cpu"), torch.float32


# ----------------------------------------------------------------------------------------------- helpers

def check_frames(frames: torch.Tensor) -> tuple[int, int, int, int]:
    """(N, C, H, W) of frames [N,C,H,W] float with C >= 3 (RGB, then alpha/mattes); a clear error otherwise."""
    # More than 16 "channels" with 1-4 last: almost surely ComfyUI's [N,H,W,C] passed as is.
    channels_last = isinstance(frames, torch.Tensor) and frames.dim() == 4 and frames.shape[1] > 16 \
        and frames.shape[-1] <= 4
    if not isinstance(frames, torch.Tensor) or frames.dim() != 4 or frames.shape[1] < 3 or channels_last:
        shape = list(frames.shape) if isinstance(frames, torch.Tensor) else type(frames).__name__
        raise ValueError(f"frames must be a tensor [N,C,H,W] with C >= 3 (RGB, then alpha/mattes); got {shape}"
                         " (ComfyUI images are [N,H,W,C]: use images.movedim(-1, 1))")
    if not frames.is_floating_point():
        raise TypeError(f"frames must be float (0..1, or above 1 for HDR); got {frames.dtype}")
    if frames.shape[0] < 1:
        raise ValueError("frames is empty: need at least one frame")
    return tuple(frames.shape)


def _check_work(work: Mapping[int, Sequence[Fraction]], n: int, depth: int | None) -> dict[int, tuple]:
    if depth is not None and (isinstance(depth, bool) or not isinstance(depth, int)
                              or not 1 <= depth <= MAX_BISECTION_DEPTH):
        raise ValueError(f"bisection_depth must be None (direct t) or 1..{MAX_BISECTION_DEPTH}; got {depth!r}")
    checked = {}
    for pair, ts in work.items():
        if isinstance(pair, bool) or not isinstance(pair, int) or not 0 <= pair < n - 1:
            raise ValueError(f"work keys must be pair indices 0..{n - 2} of the {n} frames given; got {pair!r}")
        ts = tuple(Fraction(t) for t in ts)
        if any(not 0 < t < 1 for t in ts) or list(ts) != sorted(set(ts)):
            raise ValueError(f"pair {pair}: timesteps must be sorted, distinct and in (0, 1); got {ts}")
        bad = [t for t in ts if depth is not None and (dyadic_depth(t) or MAX_BISECTION_DEPTH + 1) > depth]
        if bad:
            raise ValueError(f"bisection to depth {depth} makes t = k / 2^{depth} only; got t = {bad[0]} "
                             f"(pair {pair}). Use a power-of-two multiplier, or a `_t` model in direct mode")
        if ts:
            checked[pair] = ts
    return checked


@dataclass
class _Batch:
    """Frames of one device batch, in the network's domain: x [F, 3 (+3 negative part) (+K aux), H, W]."""

    x: torch.Tensor
    first: dict[int, int]  # pair -> row of x holding its first frame
    second: dict[int, int]
    peak: dict[int, torch.Tensor] | None  # pair -> [1] peak its RGB was compressed with; None: not compressed
    negatives: bool  # x[:, 3:6] holds the negative part of RGB, warped like alpha and added back


# ----------------------------------------------------------------------------------------------- runner

class Runner:
    """Runs frame pairs through a network in device batches of `chunk` pairs, with fixed settings.

    model: an EMAVFI (weights already on `device`), or a runtime model (see `Model`, `backend_for`), or
        anything with `.config: ModelConfig` when a backend is given. device / dtype: where and in what
        precision frames go; default: the model's (`device`/`dtype`, else its parameters', else CPU float32).
    tta / scale: test-time augmentation and HR mode (scale 0.5 for 2K, 0.25 for 4K) of the model backend.
    chunk: pairs per device batch; 0 = automatic: 1 on CPU (batching pairs there measured slower and
        doubles the peak memory) unless the backend runs several pairs at once (`pairs_in_flight`: OpenVINO's
        lanes), else from free device memory. After an out-of-memory error it is halved.
    hdr: "auto" or True: pairs whose RGB exceeds 1 are compressed into [0, 1] (hdr_encode) for the network
        and expanded back; negative values are split off, warped and fused like alpha, and added back
        (pairs within [0, 1] get exactly the plain result). False: RGB is clamped to [0, 1].
    backend: what runs a device call (see Backend); default: `backend_for(model, tta, scale)`.
    """

    def __init__(self, model: Model, *, device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 tta: bool = False, scale: float = 1.0, chunk: int = 0, hdr: HdrMode = "auto",
                 backend: Backend | None = None):
        if isinstance(chunk, bool) or not isinstance(chunk, int) or chunk < 0:
            raise ValueError(f"chunk must be a whole number >= 0 (pairs per device batch, 0 = automatic); "
                             f"got {chunk!r}")
        if hdr not in (True, False, "auto"):
            raise ValueError(f"hdr must be 'auto', True or False; got {hdr!r}")
        own_device, own_dtype = _placement(model)
        self.model, self.tta, self.scale, self.hdr = model, tta, scale, hdr
        self.device = torch.device(device) if device is not None else own_device
        self.dtype = dtype if dtype is not None else own_dtype
        self.backend: Backend = backend if backend is not None else backend_for(model, tta, scale)
        self._in_flight = getattr(self.backend, "pairs_in_flight", None)  # a runtime with lanes: pairs at once
        self._chunk = chunk or (1 if self.device.type == "cpu" and not callable(self._in_flight) else 0)
        self._rows_per_call: int | None = None  # set after one pair's timesteps did not fit in one call
        self._copies = HostCopies()
        self._rows_tried = 0

    @property
    def chunk(self) -> int:
        """Pairs per device batch now; less after out-of-memory. 0: automatic, not picked yet (see resolve_chunk)."""
        return self._chunk

    def resolve_chunk(self, height: int, width: int, rows_per_pair: int = 1) -> int:
        """The chunk, picked from free device memory first if automatic (rows: timesteps or bisection nodes)."""
        if not self._chunk:
            config = getattr(self.model, "config", None)
            config = config if isinstance(config, ModelConfig) else ModelConfig(width=32)
            pair_bytes = estimate_pair_bytes(config, height, width, rows_per_pair, self.dtype, tta=self.tta,
                                            scale=self.scale)
            self._chunk = auto_chunk_size(free_memory_bytes(self.device), pair_bytes)
            if self.device.type == "cpu" and callable(self._in_flight):
                self._chunk = min(self._chunk, self._in_flight(height, width))
        return self._chunk

    def run(self, frames: torch.Tensor, work: Mapping[int, Sequence[Fraction]], *, bisection_depth: int | None,
            emit: Emit, pair_offset: int = 0, cancel: Callable[[], None] | None = None) -> None:
        """Make every (pair, t) of `work` from frames [N,C,H,W] (float, CPU; C = 3 RGB, more = alpha/mattes).

        work: local pair index i (frames i, i+1) -> sorted distinct t in (0, 1). bisection_depth: None = all
        t of a pair from one feature pass; d = bisection at t = 0.5 up to depth d (t = k / 2^d only).
        pair_offset: global index of local pair 0; batches hold the pairs with equal (pair_offset + i) // chunk.
        emit(i, t, frame [C,H,W] float32 CPU, in the input's range) as soon as each frame is made; cancel()
        before every device call and at least once per pair (it cancels by raising).
        """
        n, _, height, width = check_frames(frames)
        work = _check_work(work, n, bisection_depth)
        if isinstance(pair_offset, bool) or not isinstance(pair_offset, int) or pair_offset < 0:
            raise ValueError(f"pair_offset must be a whole number >= 0; got {pair_offset!r}")
        if not work:
            return
        self.resolve_chunk(height, width, rows_per_pair(work, bisection_depth))
        cancel = cancel or (lambda: None)
        done: set[tuple[int, Fraction]] = set()  # a retried batch skips what it already emitted
        pairs = sorted(work)
        position = 0
        with torch.no_grad():
            while position < len(pairs):
                batch = self._next_batch(pairs, position, pair_offset)
                try:
                    todo = {p: ts for p in batch if (ts := tuple(t for t in work[p] if (p, t) not in done))}
                    self._run_batch(frames, todo, bisection_depth, _Emitter(emit, done, cancel))
                except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                    if not is_out_of_memory(exc):
                        self._copies.clear()
                        raise
                    message = one_line(exc, first=True)
                else:
                    position += len(batch)
                    continue
                # Out of memory: the exception (and the tensors its traceback held) is gone here.
                self._copies.flush()  # made before the call that ran out
                release_cached(self.device)
                self._back_off(len(batch), f"{height}x{width}", message)

    def flush(self) -> None:
        """Emit the frames whose device-to-host copies still run (CUDA: the last call's, copied while the next
        batch starts); engine.run calls it when it has no batch left."""
        self._copies.flush()

    # -- batching -------------------------------------------------------------------------------------

    def batch_of(self, pair: int) -> range:
        """The global pairs of the device batch holding global pair `pair`: the grid every split follows."""
        if not self._chunk:
            raise RuntimeError("the automatic chunk is not picked yet: call resolve_chunk first")
        start = pair - pair % self._chunk
        return range(start, start + self._chunk)

    def _next_batch(self, pairs: list[int], position: int, offset: int) -> list[int]:
        cell = self.batch_of(offset + pairs[position])
        end = position
        while end < len(pairs) and offset + pairs[end] in cell:
            end += 1
        return pairs[position:end]

    def _back_off(self, batch_pairs: int, size: str, message: str) -> None:
        """Halve the batch; at one pair, halve the timesteps (or bisection nodes) per call; then give up."""
        if batch_pairs > 1:
            self._chunk = max(1, batch_pairs // 2)
        elif self._rows_tried > 1:
            self._rows_per_call = max(1, self._rows_tried // 2)
        else:
            raise ClipMemoryError(
                f"out of memory interpolating one {size} frame pair on {self.device} ({message}); "
                f"use HR mode (scale=0.5, or 0.25 for 4K), a smaller resolution, fp16, or fewer timesteps")

    # -- one batch ------------------------------------------------------------------------------------

    def _run_batch(self, frames: torch.Tensor, todo: dict[int, tuple[Fraction, ...]], depth: int | None,
                   out: _Emitter) -> None:
        if not todo:
            return
        self._rows_tried = 0
        out.cancel()
        batch = self._send(frames, list(todo))
        if depth is None:
            self._direct(batch, todo, out)
        else:
            self._bisect(batch, todo, out)

    def _send(self, frames: torch.Tensor, pairs: list[int]) -> _Batch:
        """The batch's frames on the device in the network's domain (see Runner: hdr)."""
        index = sorted(set(pairs) | {p + 1 for p in pairs})
        raw = (frames if index == list(range(frames.shape[0])) else frames[index]).to(self.device, torch.float32)
        row = {frame: k for k, frame in enumerate(index)}
        rgb = raw[:, :3]
        if self.hdr is False:
            x = _channels([rgb.clamp(0, 1), raw[:, 3:]]).to(self.dtype)
            return _Batch(x, {p: row[p] for p in pairs}, {p: row[p + 1] for p in pairs}, None, False)
        # Both extremes in one pass a frame (a reduction over all of a frame is far faster than along a dimension).
        lowest, frame_peak = torch.stack([torch.stack(torch.aminmax(frame)) for frame in rgb]).unbind(1)
        negatives = bool((lowest < 0).any())
        if not negatives and bool(lowest.isnan().any()):  # a NaN hides a frame's minimum: look at every pixel
            negatives = bool((rgb < 0).any())
        if negatives:
            frame_peak = frame_peak.clamp(min=0)
        peak = torch.maximum(frame_peak[[row[p] for p in pairs]], frame_peak[[row[p + 1] for p in pairs]])
        if not bool((peak > 1).any()):
            x = _assemble(raw, range(raw.shape[0]), negatives, None) if negatives else raw
            return _Batch(x.to(self.dtype), {p: row[p] for p in pairs}, {p: row[p + 1] for p in pairs}, None,
                          negatives)
        # Each pair compresses its frames with its own peak, so pairs cannot share a frame's row here.
        both = [row[p] for p in pairs] + [row[p + 1] for p in pairs]  # every first frame, then every second
        x = _assemble(raw, both, negatives, torch.cat([peak, peak]))
        count = len(pairs)
        return _Batch(x.to(self.dtype), {p: k for k, p in enumerate(pairs)},
                      {p: count + k for k, p in enumerate(pairs)}, dict(zip(pairs, peak.split(1))), negatives)

    def _call(self, x: torch.Tensor, first: list[int], second: list[int], ts: Sequence[Fraction],
              out: _Emitter) -> torch.Tensor:
        """One device call on the rows of x that the pairs use -> [T,P,C',H,W] in the network's domain."""
        out.cancel()
        used = sorted(set(first) | set(second))
        if len(used) < x.shape[0]:
            at = {r: k for k, r in enumerate(used)}
            x, first, second = x[used], [at[r] for r in first], [at[r] for r in second]
        self._rows_tried = len(first) * len(ts)
        index = [torch.tensor(rows, dtype=torch.long, device=x.device) for rows in (first, second)]
        aux = x[:, 3:] if x.shape[1] > 3 else None
        rgb, fused = self.backend(x[:, :3].contiguous(), *index, [float(t) for t in ts], aux)
        self._copies.flush()  # frames of the calls before, copied while this one was queued
        expected = (len(ts), len(first), 3, *x.shape[-2:])
        if tuple(rgb.shape) != expected:
            raise RuntimeError(f"the backend returned shape {list(rgb.shape)}; expected {list(expected)}")
        return rgb if fused is None else torch.cat([rgb, fused.to(rgb.dtype)], 2)

    def _direct(self, batch: _Batch, todo: dict[int, tuple[Fraction, ...]], out: _Emitter) -> None:
        """Pairs with the same t-list share a call; all their t come from one feature pass."""
        groups: dict[tuple[Fraction, ...], list[int]] = {}
        for pair, ts in todo.items():
            groups.setdefault(ts, []).append(pair)
        for ts, pairs in groups.items():
            step = self._rows_per_call or len(ts)
            for start in range(0, len(ts), step):
                part = ts[start:start + step]
                result = self._call(batch.x, [batch.first[p] for p in pairs], [batch.second[p] for p in pairs],
                                    part, out)
                self._emit(batch, [(p, t) for t in part for p in pairs], result.flatten(0, 1), out)

    def _bisect(self, batch: _Batch, todo: dict[int, tuple[Fraction, ...]], out: _Emitter) -> None:
        """Every call at t = 0.5 between two known frames, shallowest level first."""
        store = list(batch.x.unbind(0))  # frames in the network's domain; `at` says which is which
        at = {key: row for p in todo for key, row in (((p, Fraction(0)), batch.first[p]),
                                                      ((p, Fraction(1)), batch.second[p]))}
        nodes = [(p, t) for p, ts in todo.items() for t in needed_nodes(ts)]
        for depth in range(1, 1 + max(dyadic_depth(t) for _, t in nodes)):
            level = [(p, t) for p, t in nodes if dyadic_depth(t) == depth]
            step = min(self._rows_per_call or len(level), self._chunk)  # rows per call, like pairs per batch
            for start in range(0, len(level), step):
                part = level[start:start + step]
                ends = [[at[(p, t + side * Fraction(1, t.denominator))] for p, t in part] for side in (-1, 1)]
                rows = sorted(set(ends[0]) | set(ends[1]))  # each known frame once, however many rows use it
                position = {row: k for k, row in enumerate(rows)}
                ends = [[position[row] for row in side] for side in ends]
                result = self._call(torch.stack([store[row] for row in rows]), *ends, [Fraction(1, 2)], out)[0]
                for k, key in enumerate(part):
                    at[key] = len(store)
                    store.append(result[k])
                wanted = [k for k, (p, t) in enumerate(part) if t in todo[p]]
                self._emit(batch, [part[k] for k in wanted], result[wanted], out)

    def _emit(self, batch: _Batch, keys: list[tuple[int, Fraction]], result: torch.Tensor, out: _Emitter) -> None:
        """Network outputs [R,C',H,W] of (pair, t) keys -> the input's range, float32 on the CPU -> emit."""
        if not keys:
            return
        rgb, extra = result[:, :3].float(), result[:, 3:].float()
        if batch.peak is not None:
            rgb = hdr_decode(rgb, torch.cat([batch.peak[p] for p, _ in keys]))
        if batch.negatives:
            rgb, extra = rgb + extra[:, :3], extra[:, 3:]
        def deliver(frames: torch.Tensor) -> None:
            for k in sorted(range(len(keys)), key=keys.__getitem__):
                out(*keys[k], frames[k])

        self._copies.add(_channels([rgb, extra]), deliver)  # CUDA: copied while the next call computes


def _assemble(raw: torch.Tensor, rows: Sequence[int], negatives: bool, peak: torch.Tensor | None) -> torch.Tensor:
    """[len(rows), C', H, W] in the network's domain, made a frame at a time into one buffer (a frame's worth of
    temporaries, not a batch's): each row's RGB, clamped at 0 where negatives are split off and compressed by its
    peak (hdr_encode) where one is given, then its negative part, then its other channels, as they were."""
    height, width = raw.shape[-2:]
    split = 3 if negatives else 0
    x = torch.empty(len(rows), 3 + split + raw.shape[1] - 3, height, width, device=raw.device, dtype=raw.dtype)
    for k, r in enumerate(rows):
        rgb = raw[r, :3]
        if negatives:
            torch.clamp(rgb, max=0, out=x[k, 3:6])
            rgb = rgb.clamp(min=0)
        x[k, :3] = rgb if peak is None else hdr_encode(rgb[None], peak[k:k + 1])[0]
        x[k, 3 + split:] = raw[r, 3:]
    return x


def _channels(parts: list[torch.Tensor]) -> torch.Tensor:
    """parts joined along channels ([B,C,H,W] each); the first itself, not a copy, when the others have none."""
    parts = [parts[0]] + [p for p in parts[1:] if p.shape[1]]
    return parts[0] if len(parts) == 1 else torch.cat(parts, 1)


class _Emitter:
    """emit + cancel for one run: cancels at least once per pair and records what was emitted."""

    def __init__(self, emit: Emit, done: set[tuple[int, Fraction]], cancel: Callable[[], None]):
        self.emit, self.done, self.cancel = emit, done, cancel
        self._pair: int | None = None

    def __call__(self, pair: int, t: Fraction, frame: torch.Tensor) -> None:
        if pair != self._pair:
            self.cancel()
            self._pair = pair
        self.emit(pair, t, frame)
        self.done.add((pair, t))
