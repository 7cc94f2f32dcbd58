"""Interpolate a whole clip by a plan: chunked on the device, out-of-memory back-off, HDR, alpha, cuts.

Shared by the ComfyUI nodes and the CLI. Frames stay on the CPU; only one chunk of frame pairs is on the
device at a time, and outputs are written into one preallocated tensor (never a cat of the clip).
"""
from __future__ import annotations

import math
import operator
import os
from collections.abc import Callable, Iterable, Sequence
from fractions import Fraction
from typing import Any, Literal

import torch

from .config import ModelConfig
from .errors import EmaVfiError
from .schedule import OutputFrame, apply_cuts, check_plan, dyadic_depth, pair_timesteps

InterpolateFn = Callable[..., Any]
ProgressFn = Callable[[int, int], None]
HdrMode = bool | Literal["auto"]

# Values up to the knee are fed to the network unchanged; only highlights above it are compressed.
HDR_KNEE = 0.5
# Rough activation memory of one frame pair, in elements per padded pixel per unit of base width F,
# measured on CPU (float32, torch 2.13): peak 115-135 bytes per pixel per F for ours and ours_small.
_FEATURE_ELEMENTS_PER_PX_F = 32
_ELEMENTS_PER_PX_PER_T = 8


class ClipMemoryError(EmaVfiError, MemoryError):
    """Even one frame pair at one timestep does not fit in the device's memory."""


def is_out_of_memory(exc: BaseException) -> bool:
    """True for CUDA/MPS/CPU out-of-memory errors, whichever exception type the backend raised."""
    types = tuple(t for t in (getattr(torch, "OutOfMemoryError", None),
                              getattr(getattr(torch, "cuda", None), "OutOfMemoryError", None)) if t is not None)
    if types and isinstance(exc, types):
        return True
    return isinstance(exc, (RuntimeError, MemoryError)) and "out of memory" in str(exc).lower()


# ----------------------------------------------------------------------------------------------- HDR

def hdr_encode(x: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Map [0, peak] into [0, 1]: identity up to HDR_KNEE, then a Reinhard-style shoulder reaching 1 at peak.

    x: [B,C,H,W] float >= 0; peak: [B] float, each row's maximum (rows with peak <= 1 are left unchanged).
    The shoulder u / (1 + u / c) has slope 1 at the knee, so the curve is smooth, and is exactly invertible.
    """
    span = 1 - HDR_KNEE
    reach = ((peak.clamp(min=1) - HDR_KNEE) / span).view(-1, 1, 1, 1)  # shoulder input at the peak
    stiffness = reach / (reach - 1).clamp(min=1e-12)  # c with reach / (1 + reach / c) == 1
    u = ((x - HDR_KNEE) / span).clamp(min=0)
    shoulder = HDR_KNEE + span * u / (1 + u / stiffness)
    mapped = torch.where(x > HDR_KNEE, shoulder, x)
    return torch.where((peak > 1).view(-1, 1, 1, 1), mapped.clamp(max=1), x)


def hdr_decode(y: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
    """Inverse of hdr_encode: [0, 1] back to [0, peak] (rows with peak <= 1 are left unchanged)."""
    span = 1 - HDR_KNEE
    reach = ((peak.clamp(min=1) - HDR_KNEE) / span).view(-1, 1, 1, 1)
    stiffness = reach / (reach - 1).clamp(min=1e-12)
    g = ((y - HDR_KNEE) / span).clamp(0, 1)
    expanded = HDR_KNEE + span * g / (1 - g / stiffness)
    mapped = torch.where(y > HDR_KNEE, expanded, y)
    return torch.where((peak > 1).view(-1, 1, 1, 1), mapped, y)


# ----------------------------------------------------------------------------------------------- memory

def estimate_pair_bytes(config: ModelConfig, height: int, width: int, n_timesteps: int = 1,
                        dtype: torch.dtype = torch.float32, *, tta: bool = False) -> int:
    """Rough peak device memory for one frame pair: backbone + refinement activations and T outputs.

    About 32 * F values per (32-padded) pixel for the features (measured peak on CPU: 115-135 bytes per
    pixel per F in float32), doubled with TTA, plus 8 values per pixel per timestep. HR mode (scale < 1)
    measured the same. Weights are not included. Treat it as an order of magnitude, not a promise.
    """
    elem = torch.empty((), dtype=dtype).element_size()
    pixels = (math.ceil(height / 32) * 32) * (math.ceil(width / 32) * 32)
    features = _FEATURE_ELEMENTS_PER_PX_F * config.width * (2 if tta else 1)
    return int(pixels * elem * (features + _ELEMENTS_PER_PX_PER_T * max(1, n_timesteps)))


def auto_chunk_size(free_bytes: int, pair_bytes: int, *, max_chunk: int = 16, headroom: float = 0.7) -> int:
    """Frame pairs per batch that fit in `headroom` of free_bytes, between 1 and max_chunk."""
    if pair_bytes <= 0:
        return max_chunk
    return max(1, min(max_chunk, int(free_bytes * headroom) // pair_bytes))


def free_memory_bytes(device: torch.device) -> int:
    """Memory the next batch can use on device: CUDA free + cached-but-unused, MPS budget, or CPU available RAM."""
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return int(free + torch.cuda.memory_reserved(device) - torch.cuda.memory_allocated(device))
    if device.type == "mps" and hasattr(torch, "mps"):
        return int(torch.mps.recommended_max_memory() - torch.mps.driver_allocated_memory())
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return 4 << 30


def _release(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.empty_cache()
    elif device.type == "mps" and hasattr(torch, "mps"):
        torch.mps.empty_cache()


# ----------------------------------------------------------------------------------------------- the clip

def _needed_nodes(ts: Iterable[Fraction]) -> list[Fraction]:
    """All bisection points needed to reach every t (t and its ancestors), shallowest first."""
    needed: set[Fraction] = set()
    stack = list(ts)
    while stack:
        t = stack.pop()
        if t in needed or t in (0, 1):
            continue
        needed.add(t)
        step = Fraction(1, t.denominator)
        stack += [t - step, t + step]
    return sorted(needed, key=lambda t: (t.denominator, t))


def _stack(items: list[tuple[torch.Tensor, torch.Tensor | None]], k: int) -> torch.Tensor | None:
    """Stack element k (0 = rgb, 1 = aux) of (rgb, aux) pairs into a batch; None when there is no aux."""
    return None if items[0][k] is None else torch.stack([item[k] for item in items])


class _Sink:
    """Where results go: the output tensor, the output indices of each (pair, t), and a progress count."""

    def __init__(self, out: torch.Tensor, plan: Sequence[OutputFrame]):
        self.out = out
        self.targets: dict[tuple[int, Fraction], list[int]] = {}
        for index, frame in enumerate(plan):
            if not frame.is_copy:
                self.targets.setdefault((frame.source, frame.t), []).append(index)
        self.written: set[int] = set()  # a set, so a chunk retried after out-of-memory is not counted twice

    def put(self, pair: int, t: Fraction, rgb: torch.Tensor, aux: torch.Tensor | None) -> None:
        for index in self.targets.get((pair, t), ()):
            self.out[index, :3].copy_(rgb)
            if aux is not None:
                self.out[index, 3:].copy_(aux)
            self.written.add(index)


class ClipInterpolator:
    """Interpolates clips with fixed settings; remembers a chunk size reduced after out-of-memory errors.

    model: an EMAVFI (or anything `interpolate_fn` accepts) with `.config: ModelConfig`.
    tta / scale: passed to `emavfi.interpolate` (scale 0.5 = HR mode for 2K, 0.25 for 4K).
    chunk_size: frame pairs per device batch; 0 = from free device memory (estimate_pair_bytes).
    device / dtype: where and in what precision frames are sent; default: the model's.
    interpolate_fn: replaces `emavfi.interpolate` (same signature), e.g. for tests.
    sequence_fn: replaces `emavfi.interpolate_sequence`, used for runs of consecutive pairs (each frame's
        per-frame features computed once); default: only when interpolate_fn is not replaced either.
    hdr: "auto" or True: pairs whose RGB exceeds 1 are compressed into [0, 1] (hdr_encode) for the network
        and expanded back, so values above 1 survive; pairs within [0, 1] are untouched (exactly the plain
        result). False: values are clamped to [0, 1]. Negative values are always clamped to 0.
    recursive: bisection (every call at t = 0.5, then between results) instead of direct t; None = auto:
        when the model was trained for t = 0.5 only (`config.arbitrary_t` False) and every t is k / 2^d.
    """

    def __init__(self, model: Any, *, tta: bool = False, scale: float = 1.0, chunk_size: int = 0,
                 device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                 interpolate_fn: InterpolateFn | None = None, hdr: HdrMode = "auto",
                 recursive: bool | None = None, sequence_fn: InterpolateFn | None = None):
        if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 0:
            raise ValueError(f"chunk_size must be a whole number >= 0 (0 = automatic); got {chunk_size!r}")
        if hdr not in (True, False, "auto"):
            raise ValueError(f"hdr must be 'auto', True or False; got {hdr!r}")
        param = next(iter(model.parameters()), None) if hasattr(model, "parameters") else None
        self.model = model
        self.tta, self.scale, self.hdr, self.recursive = tta, scale, hdr, recursive
        self.device = torch.device(device) if device is not None else (
            param.device if param is not None else torch.device("cpu"))
        self.dtype = dtype if dtype is not None else (param.dtype if param is not None else torch.float32)
        self.chunk_size = chunk_size  # current pairs per batch; 0 until the first clip picks one
        self._fn = interpolate_fn
        self._sequence_fn = sequence_fn
        self._default_sequence = interpolate_fn is None and sequence_fn is None

    # -- public ---------------------------------------------------------------------------------------

    def __call__(self, frames: torch.Tensor, plan: Sequence[OutputFrame], *, cuts: Iterable[int] = (),
                 out: torch.Tensor | None = None, progress: ProgressFn | None = None,
                 check_cancel: Callable[[], None] | None = None) -> torch.Tensor:
        """Frames [N,C,H,W] (C >= 3: RGB then alpha/mattes) -> [len(plan),C,H,W]; see interpolate_clip."""
        n, channels, height, width = self._check_frames(frames)
        plan = list(plan)
        check_plan(plan, n)
        cut_list = self._check_cuts(cuts, n)
        plan = apply_cuts(plan, cut_list)
        total = len(plan)
        out = self._check_out(out, (total, channels, height, width), frames)
        work = pair_timesteps(plan)
        recursive = self._use_recursive(work)
        if not self.chunk_size:
            self.chunk_size = self._auto_chunk(work, recursive, height, width)
        sink = _Sink(out, plan)
        copies = sorted((frame.source, index) for index, frame in enumerate(plan) if frame.is_copy)
        copied = 0

        def copy_until(last_source: int) -> None:
            nonlocal copied
            while copied < len(copies) and copies[copied][0] <= last_source:
                source, index = copies[copied]
                out[index].copy_(frames[source])
                copied += 1

        pairs = list(work)
        position = 0
        reported = -1
        with torch.no_grad():
            while position < len(pairs):
                if check_cancel is not None:
                    check_cancel()
                chunk = pairs[position:position + self.chunk_size]
                self._run_chunk(frames, chunk, work, sink, recursive)
                position += len(chunk)
                copy_until(chunk[-1] + 1)
                if progress is not None:
                    reported = len(sink.written) + copied
                    progress(reported, total)
            copy_until(n)
        if progress is not None and reported != total:
            progress(total, total)
        return out

    # -- checks -----------------------------------------------------------------------------------------

    @staticmethod
    def _check_frames(frames: torch.Tensor) -> tuple[int, int, int, int]:
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
        n, c, h, w = frames.shape
        return n, c, h, w

    @staticmethod
    def _check_cuts(cuts: Iterable[int], n: int) -> list[int]:
        cut_list = []
        for cut in cuts:
            try:
                index = operator.index(cut)  # numpy and 0-d torch integers too
            except TypeError:
                index = None
            if isinstance(cut, bool) or index is None or not 0 <= index < n - 1:
                raise ValueError(f"cut indices must be pair indices 0..{n - 2}; got {cut!r}")
            cut_list.append(index)
        return cut_list

    @staticmethod
    def _check_out(out: torch.Tensor | None, shape: tuple[int, ...], frames: torch.Tensor) -> torch.Tensor:
        if out is None:
            return torch.empty(shape, dtype=frames.dtype, device=frames.device)
        if not isinstance(out, torch.Tensor) or tuple(out.shape) != shape or not out.is_floating_point():
            got = list(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
            raise ValueError(f"out must be a float tensor of shape {list(shape)}; got {got}")
        return out

    def _use_recursive(self, work: dict[int, tuple[Fraction, ...]]) -> bool:
        all_ts = {t for ts in work.values() for t in ts}
        dyadic = all(dyadic_depth(t) is not None for t in all_ts)
        if self.recursive is None:
            config = getattr(self.model, "config", None)
            return dyadic and config is not None and not getattr(config, "arbitrary_t", True)
        if self.recursive and not dyadic:
            bad = next(t for t in sorted(all_ts) if dyadic_depth(t) is None)
            raise ValueError(f"recursive (bisection) mode can only make t = k / 2^d (0.5, 0.25, ...); got t = {bad}. "
                             "Use a power-of-two multiplier, or a `_t` model without recursive mode")
        return bool(self.recursive)

    def _auto_chunk(self, work: dict[int, tuple[Fraction, ...]], recursive: bool, height: int, width: int) -> int:
        config = getattr(self.model, "config", None)
        if not isinstance(config, ModelConfig):
            config = ModelConfig(width=32)
        per_pair = max((len(_needed_nodes(ts)) if recursive else len(ts) for ts in work.values()), default=1)
        pair_bytes = estimate_pair_bytes(config, height, width, per_pair, self.dtype, tta=self.tta)
        # On a CPU big batches do not run faster; they only raise the peak memory.
        max_chunk = 16 if self.device.type != "cpu" else 4
        return auto_chunk_size(free_memory_bytes(self.device), pair_bytes, max_chunk=max_chunk)

    # -- device work ------------------------------------------------------------------------------------

    def _interpolate(self) -> InterpolateFn:
        if self._fn is None:
            from . import interpolate  # lazy: the model code is only needed once a clip runs
            self._fn = interpolate
        return self._fn

    def _sequence(self) -> InterpolateFn | None:
        if self._sequence_fn is None and self._default_sequence:
            from . import inference
            self._sequence_fn = getattr(inference, "interpolate_sequence", None)
            self._default_sequence = False
        return self._sequence_fn

    def _send(self, frames: torch.Tensor, pairs: list[int]) -> tuple[torch.Tensor, ...]:
        """(rgb0, rgb1, aux0, aux1, peak) of pairs on the device; rgb mapped into [0, 1]."""
        index = torch.tensor(pairs, dtype=torch.long, device=frames.device)
        first = frames.index_select(0, index).to(self.device, torch.float32)
        second = frames.index_select(0, index + 1).to(self.device, torch.float32)
        rgb0, rgb1 = first[:, :3].clamp(min=0), second[:, :3].clamp(min=0)
        peak = torch.maximum(rgb0.amax(dim=(1, 2, 3)), rgb1.amax(dim=(1, 2, 3)))
        if self.hdr is False:
            rgb0, rgb1, peak = rgb0.clamp(max=1), rgb1.clamp(max=1), peak.clamp(max=1)
        elif bool((peak > 1).any()):
            rgb0, rgb1 = hdr_encode(rgb0, peak), hdr_encode(rgb1, peak)
        aux0 = first[:, 3:].to(self.dtype) if first.shape[1] > 3 else None
        aux1 = second[:, 3:].to(self.dtype) if second.shape[1] > 3 else None
        return rgb0.to(self.dtype), rgb1.to(self.dtype), aux0, aux1, peak

    def _sequence_call(self, frames: torch.Tensor, pairs: list[int], ts: Sequence[Fraction]
                       ) -> tuple[torch.Tensor, torch.Tensor | None, torch.Tensor] | None:
        """Consecutive pairs through sequence_fn -> (rgb, aux, peak); None where HDR mapping is needed."""
        run = frames[pairs[0]:pairs[-1] + 2].to(self.device, torch.float32)
        rgb = run[:, :3].clamp(min=0)
        frame_peak = rgb.amax(dim=(1, 2, 3))
        peak = torch.maximum(frame_peak[:-1], frame_peak[1:])
        if self.hdr is False:
            rgb, peak = rgb.clamp(max=1), peak.clamp(max=1)
        elif bool((peak > 1).any()):
            return None  # per-pair peaks would map a shared frame two ways: use the pairwise path
        aux = run[:, 3:].to(self.dtype) if run.shape[1] > 3 else None
        kwargs: dict[str, Any] = {"tta": self.tta, "scale": self.scale}
        if aux is not None:
            kwargs["aux"] = aux
        result = self._sequence()(self.model, rgb.to(self.dtype), timesteps=[float(t) for t in ts], **kwargs)
        out_rgb, out_aux = result if aux is not None else (result, None)
        expected = (len(ts), len(pairs), 3, *rgb.shape[-2:])
        if tuple(out_rgb.shape) != expected:
            raise RuntimeError(f"interpolate_sequence returned shape {list(out_rgb.shape)}; expected {list(expected)}")
        return out_rgb, out_aux, peak

    def _call(self, rgb0: torch.Tensor, rgb1: torch.Tensor, aux0: torch.Tensor | None, aux1: torch.Tensor | None,
              ts: Sequence[Fraction]) -> tuple[torch.Tensor, torch.Tensor | None]:
        """One interpolate call -> rgb [T,B,3,H,W] and aux [T,B,K,H,W] (or None)."""
        kwargs: dict[str, Any] = {"tta": self.tta, "scale": self.scale}
        if aux0 is not None:
            kwargs.update(aux0=aux0, aux1=aux1)
        result = self._interpolate()(self.model, rgb0, rgb1, timesteps=[float(t) for t in ts], **kwargs)
        rgb, aux = result if aux0 is not None else (result, None)
        expected = (len(ts), *rgb0.shape)
        if tuple(rgb.shape) != expected:
            raise RuntimeError(f"interpolate returned shape {list(rgb.shape)}; expected {list(expected)}")
        return rgb, aux

    def _batched(self, items: list, run: Callable[[list], None], height: int, width: int) -> None:
        """run(batch) over items in batches of chunk_size, halving the batch after out-of-memory errors."""
        position = 0
        while position < len(items):
            batch = items[position:position + self.chunk_size]
            try:
                run(batch)
            except Exception as exc:  # noqa: BLE001 - only out-of-memory is handled, the rest re-raised
                if not is_out_of_memory(exc):
                    raise
                message = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            else:
                position += len(batch)
                continue
            # Out of memory: the exception (and the tensors its traceback held) is gone here.
            _release(self.device)
            if len(batch) == 1:
                raise ClipMemoryError(
                    f"out of memory interpolating one {height}x{width} frame pair on {self.device} ({message}); "
                    f"use HR mode (scale=0.5, or 0.25 for 4K), a smaller resolution, fp16, or fewer timesteps"
                ) from None
            self.chunk_size = max(1, len(batch) // 2)

    def _run_chunk(self, frames: torch.Tensor, chunk: list[int], work: dict[int, tuple[Fraction, ...]],
                   sink: _Sink, recursive: bool) -> None:
        """One chunk; out-of-memory outside the batched calls (sending a recursive chunk) halves it too."""
        while True:
            try:
                if recursive:
                    self._run_recursive(frames, chunk, work, sink)
                else:
                    self._run_direct(frames, chunk, work, sink)
                return
            except ClipMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001
                if len(chunk) == 1 or not is_out_of_memory(exc):
                    raise
            _release(self.device)
            self.chunk_size = max(1, len(chunk) // 2)
            for start in range(0, len(chunk), self.chunk_size):
                self._run_chunk(frames, chunk[start:start + self.chunk_size], work, sink, recursive)
            return

    def _run_direct(self, frames: torch.Tensor, chunk: list[int], work: dict[int, tuple[Fraction, ...]],
                    sink: _Sink) -> None:
        height, width = frames.shape[-2:]
        groups: dict[tuple[Fraction, ...], list[int]] = {}
        for pair in chunk:
            groups.setdefault(work[pair], []).append(pair)

        for ts, pairs in groups.items():
            def run(batch: list[int], ts: tuple[Fraction, ...] = ts) -> None:
                self._direct_call(frames, batch, ts, sink)
            self._batched(pairs, run, height, width)

    def _direct_call(self, frames: torch.Tensor, pairs: list[int], ts: Sequence[Fraction], sink: _Sink) -> None:
        consecutive = len(pairs) > 1 and pairs[-1] - pairs[0] == len(pairs) - 1
        try:
            done = self._sequence_call(frames, pairs, ts) if consecutive and self._sequence() else None
            if done is None:
                rgb0, rgb1, aux0, aux1, peak = self._send(frames, pairs)
                rgb, aux = self._call(rgb0, rgb1, aux0, aux1, ts)
            else:
                rgb, aux, peak = done
        except Exception as exc:  # noqa: BLE001
            # One pair with many t: give each half of the t-list its own feature pass before giving up.
            if len(pairs) > 1 or len(ts) < 2 or not is_out_of_memory(exc):
                raise
            split = True
        else:
            split = False
        if split:
            _release(self.device)
            half = len(ts) // 2
            self._direct_call(frames, pairs, ts[:half], sink)
            self._direct_call(frames, pairs, ts[half:], sink)
            return
        for ti, t in enumerate(ts):
            decoded = self._finish(rgb[ti], peak)
            aux_cpu = None if aux is None else aux[ti].to(sink.out.device, sink.out.dtype)
            for bi, pair in enumerate(pairs):
                sink.put(pair, t, decoded[bi], None if aux_cpu is None else aux_cpu[bi])

    def _finish(self, rgb: torch.Tensor, peak: torch.Tensor) -> torch.Tensor:
        """Network output [B,3,H,W] on the device -> values in the input's range, float32 on the CPU."""
        rgb = rgb.float()
        if self.hdr is not False and bool((peak > 1).any()):
            rgb = hdr_decode(rgb, peak)
        return rgb.cpu()

    def _run_recursive(self, frames: torch.Tensor, chunk: list[int], work: dict[int, tuple[Fraction, ...]],
                       sink: _Sink) -> None:
        height, width = frames.shape[-2:]
        rgb0, rgb1, aux0, aux1, peak = self._send(frames, chunk)
        # values[(row, t)] = (rgb [3,H,W], aux [K,H,W] | None) on the device, in the network's [0, 1] domain
        values: dict[tuple[int, Fraction], tuple[torch.Tensor, torch.Tensor | None]] = {}
        for row in range(len(chunk)):
            values[(row, Fraction(0))] = (rgb0[row], None if aux0 is None else aux0[row])
            values[(row, Fraction(1))] = (rgb1[row], None if aux1 is None else aux1[row])
        nodes = {row: _needed_nodes(work[pair]) for row, pair in enumerate(chunk)}
        for depth in range(1, 1 + max((dyadic_depth(t) or 0 for ts in nodes.values() for t in ts), default=0)):
            level = [(row, t) for row, ts in nodes.items() for t in ts if dyadic_depth(t) == depth]

            def run(batch: list[tuple[int, Fraction]]) -> None:
                left = [values[(row, t - Fraction(1, t.denominator))] for row, t in batch]
                right = [values[(row, t + Fraction(1, t.denominator))] for row, t in batch]
                rgb, aux = self._call(_stack(left, 0), _stack(right, 0), _stack(left, 1), _stack(right, 1),
                                      [Fraction(1, 2)])
                for bi, key in enumerate(batch):
                    values[key] = (rgb[0, bi], None if aux is None else aux[0, bi])

            self._batched(level, run, height, width)
        for row, pair in enumerate(chunk):
            for t in work[pair]:
                rgb, aux = values[(row, t)]
                decoded = self._finish(rgb.unsqueeze(0), peak[row:row + 1])[0]
                sink.put(pair, t, decoded, None if aux is None else aux.to(sink.out.device, sink.out.dtype))


def interpolate_clip(model: Any, frames: torch.Tensor, plan: Sequence[OutputFrame], *, cuts: Iterable[int] = (),
                     tta: bool = False, scale: float = 1.0, chunk_size: int = 0,
                     device: torch.device | str | None = None, dtype: torch.dtype | None = None,
                     out: torch.Tensor | None = None, progress: ProgressFn | None = None,
                     check_cancel: Callable[[], None] | None = None, interpolate_fn: InterpolateFn | None = None,
                     hdr: HdrMode = "auto", recursive: bool | None = None,
                     sequence_fn: InterpolateFn | None = None) -> torch.Tensor:
    """Make every frame of `plan` from frames [N,C,H,W] (float, CPU; C = 3 RGB, more = alpha/mattes).

    Returns [len(plan),C,H,W] in frames' dtype (written into `out` when given). Copies (t = 0) are
    bit-exact; pairs in `cuts` (from schedule.detect_cuts) are not interpolated: their frames repeat the
    nearer source frame. Pairs are sent to the device chunk_size at a time (0 = fit free memory); pairs of
    a chunk with the same t-list share one interpolate call, all their t from one feature pass (consecutive
    pairs go through interpolate_sequence, which computes each frame's own features once). After an
    out-of-memory error the chunk is halved and retried, down to one pair, then ClipMemoryError.
    progress(done, total) counts output frames after each chunk; check_cancel() runs before each chunk
    and cancels by raising. Other settings: see ClipInterpolator.
    """
    runner = ClipInterpolator(model, tta=tta, scale=scale, chunk_size=chunk_size, device=device, dtype=dtype,
                              interpolate_fn=interpolate_fn, hdr=hdr, recursive=recursive, sequence_fn=sequence_fn)
    return runner(frames, plan, cuts=cuts, out=out, progress=progress, check_cancel=check_cancel)
