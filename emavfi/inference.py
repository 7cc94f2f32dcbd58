"""`interpolate`: padding, validation, HR mode, TTA and multiple timesteps around the network; the backend seam.

Every device call of the library goes through one seam, `backend_for`: a runtime model (OpenVINO, ONNX Runtime,
TensorRT) supplies its own `Backend`, a PyTorch network runs through `ModelBackend`. `interpolate` and
`interpolate_pairs` call it directly; the Runner (emavfi.runner) calls it for the engine.
"""
from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Protocol, Sequence

import torch
import torch.nn.functional as F

from .inference_checks import (Timesteps, check_aux, check_frames, check_image, check_indices, check_model,
                               check_timesteps)
from .model import EMAVFI, Features
from .model.network import blend
from .model.flow import resize
from .schedule import untrained_t_warning


def padding_divisor(scale: float) -> int:
    """Frame sides are padded to a multiple of this: 32 at full resolution, more in HR mode."""
    if not (isinstance(scale, (int, float)) and 0 < scale <= 1):
        raise ValueError(f"scale must be in (0, 1] (e.g. 1, 0.5, 0.25); got {scale!r}")
    steps = 16 / scale
    if abs(steps - round(steps)) > 1e-6:
        raise ValueError(f"scale must divide 16 into a whole number (1, 0.5, 0.25, 0.125 ...); got {scale}")
    return math.lcm(32, round(steps))


def pad_amounts(height: int, width: int, divisor: int) -> tuple[int, int, int, int]:
    """Centred padding (left, right, top, bottom) up to the next multiple of `divisor`."""
    ph = -height % divisor
    pw = -width % divisor
    return pw // 2, pw - pw // 2, ph // 2, ph - ph // 2


@dataclass(frozen=True)
class PassOptions:
    """How the feature passes run (tta, fast_tta, scale: see `interpolate`)."""

    tta: bool = False
    fast_tta: bool = False
    scale: float = 1.0


class _Pass:
    """Backbone features of frame pairs (frames[first[i]], frames[second[i]]), reused for every t.

    Per-frame work is done once per frame, so a frame shared by two consecutive pairs costs one pass. Frames
    that already are the pairs' rows (one pair [f0, f1], the CPU's case) are used as they are, without copies;
    in HR mode only what the flow heads read is kept of the low-resolution pass (appearance levels 3 and 4).
    """

    def __init__(self, model: EMAVFI, frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor, scale: float):
        self.model, self.scale = model, scale
        b = first.shape[0]
        in_order = torch.cat([first, second]).tolist() == list(range(frames.shape[0]))
        pick = (None, None) if in_order else (first, second)
        self.img0, self.img1 = (frames[:b], frames[b:]) if in_order else (frames.index_select(0, first),
                                                                          frames.index_select(0, second))
        bone = model.feature_bone
        if scale == 1:
            self.low_imgs = (self.img0, self.img1)
            self.low = self.full = bone.pair_features(bone.frame_features(frames), *pick)
        else:
            small = resize(frames, scale)
            self.low_imgs = (small[:b], small[b:]) if in_order else (small.index_select(0, first),
                                                                     small.index_select(0, second))
            low = bone.pair_features(bone.frame_features(small), *pick)
            self.low = Features([low.appearance[3]] * 3 + low.appearance[3:], low.motion)  # levels 0-2: unread
            del low, small
            self.full = bone.pair_features(bone.frame_features(frames), *pick, with_motion=False)

    def at(self, ts: list[float], aux: tuple[torch.Tensor, torch.Tensor] | None):
        """Frames (and fused aux) for the timesteps `ts`, batched: rows ordered (timestep, pair)."""
        k = len(ts)
        img0, img1, low_imgs, low, full = self.img0, self.img1, self.low_imgs, self.low, self.full
        if k == 1:
            t: float | torch.Tensor = ts[0]
        else:
            img0, img1 = _tile(img0, k), _tile(img1, k)
            low_imgs = (img0, img1) if self.scale == 1 else tuple(_tile(x, k) for x in low_imgs)
            low = _tile_features(low, k)
            full = low if self.scale == 1 else _tile_features(full, k)
            aux = None if aux is None else (_tile(aux[0], k), _tile(aux[1], k))
            per_row = torch.tensor(ts, dtype=img0.dtype, device=img0.device).repeat_interleave(self.img0.shape[0])
            t = per_row.view(-1, 1, 1, 1)
        est = self.model.estimate_flow(*low_imgs, low, t)
        flow, mask = est.flow, est.mask_logit
        if self.scale != 1:
            flow = resize(flow, 1 / self.scale) * (1 / self.scale)
            mask = resize(mask, 1 / self.scale)
        out = self.model.synthesize(img0, img1, full.appearance, flow, mask)
        if aux is None:
            return out.frame, None
        grid = self.model.sampling_grid(flow.shape[-2], flow.shape[-1], flow.device, flow.dtype)
        return out.frame, blend(aux[0], aux[1], flow, out.weight0, grid)[2]


def _split_halves(x: torch.Tensor, k: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[k*2P, ...] rows ordered (t, half, pair) -> two [k*P, ...] tensors."""
    x = x.view(k, 2, -1, *x.shape[1:])
    return x[:, 0].flatten(0, 1), x[:, 1].flatten(0, 1)


def _tile(x: torch.Tensor, k: int) -> torch.Tensor:
    return x.repeat(k, *([1] * (x.dim() - 1)))


def _tile_features(feats: Features, k: int) -> Features:
    """Pair-stacked features (frame-0 rows, then frame-1 rows) repeated for k timesteps."""
    def pairs(x: torch.Tensor) -> torch.Tensor:
        half = x.shape[0] // 2
        return torch.cat([_tile(x[:half], k), _tile(x[half:], k)])

    motion = None if feats.motion is None else [pairs(m) for m in feats.motion]
    return Features([pairs(a) for a in feats.appearance], motion)


def _rot180(x: torch.Tensor) -> torch.Tensor:
    return x.flip(-2, -1)


class UntrainedTimestepWarning(UserWarning):
    """A model trained for t = 0.5 only was asked for another timestep (it works, but looks worse)."""


class Backend(Protocol):
    """Maps one device call to in-between frames: what the Runner and the library functions need from a network."""

    def __call__(self, frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
                 timesteps: Sequence[float], aux: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """frames [F,3,H,W] in 0..1 and aux [F,K,H,W] (or None); the pairs (frames[first[i]], frames[second[i]])
        -> (rgb [T,P,3,H,W] in 0..1, aux [T,P,K,H,W] warped and fused the same way, or None), on frames' device."""


def backend_for(model: Any, tta: bool = False, scale: float = 1.0, *, fast_tta: bool = False,
                timesteps_per_call: int | None = None) -> Backend:
    """The one place that picks how a model runs: its own `as_backend(tta, scale)` (a runtime model: TTA is one
    averaged rotated pass either way), else ModelBackend (a PyTorch network)."""
    as_backend = getattr(model, "as_backend", None)
    if callable(as_backend):
        return as_backend(tta=tta or fast_tta, scale=scale)
    return ModelBackend(model, tta, scale, fast_tta, timesteps_per_call)


def warn_untrained_t(model: Any, ts: Sequence[float], stacklevel: int = 2) -> None:
    """Warn (UntrainedTimestepWarning) when a t = 0.5-only model is asked for other times; stacklevel as warnings'
    counted from the caller of this function."""
    # A constant message and category: Python's own filter then shows it once per calling line.
    if message := untrained_t_warning(model.config.arbitrary_t, ts):  # the one rule and text (the schedule's too)
        warnings.warn(message, UntrainedTimestepWarning, stacklevel=stacklevel + 1)


def _preparation(model: EMAVFI, scale: float, size: torch.Size):
    """(cast-and-pad function, crop box) for frames of `size` on the model's device and dtype."""
    divisor = padding_divisor(scale)
    param = next(model.parameters())
    h, w = size
    left, right, top, bottom = pad_amounts(h, w, divisor)

    def prep(x: torch.Tensor) -> torch.Tensor:
        x = x.to(device=param.device, dtype=param.dtype)
        return F.pad(x, (left, right, top, bottom), mode="replicate") if left + right + top + bottom else x

    return prep, (top, left, h, w)


@torch.inference_mode()
def interpolate(model: EMAVFI, img0: torch.Tensor, img1: torch.Tensor, timesteps: Timesteps = 0.5, *,
                tta: bool = False, fast_tta: bool = False, scale: float = 1.0, aux0: torch.Tensor | None = None,
                aux1: torch.Tensor | None = None, timesteps_per_call: int | None = None):
    """Frames between img0 and img1 [B,3,H,W] (float, 0..1) at each t in [0, 1].

    A float `timesteps` gives [B,3,H,W]; a sequence gives [T,B,3,H,W]. The backbone runs once for all t.
    tta: average with a pass on the 180-degree-rotated frames; fast_tta: the same, batched into one pass.
    scale < 1: estimate flow at that fraction of the resolution (HR mode: 0.5 for 2K, 0.25 for 4K).
    aux0/aux1 [B,K,H,W]: extra channels (alpha, mattes) warped and fused like the RGB frames; when given,
    returns (frames, aux) with matching leading dims. Results come back on the inputs' device and dtype.
    timesteps_per_call: timesteps pushed through the flow heads and U-Net together (default: all on CUDA,
    one on CPU).
    """
    single = isinstance(timesteps, (int, float)) and not isinstance(timesteps, bool)
    check_model(model)
    ts = check_timesteps(timesteps)
    check_frames(img0, img1, aux0, aux1)
    warn_untrained_t(model, ts, stacklevel=3)  # the caller, past torch's inference_mode wrapper
    b = img0.shape[0]
    idx = torch.arange(2 * b, device=img0.device)
    backend = backend_for(model, tta, scale, fast_tta=fast_tta, timesteps_per_call=timesteps_per_call)
    out = backend(torch.cat([img0, img1]), idx[:b], idx[b:], ts, None if aux0 is None else torch.cat([aux0, aux1]))
    return _finish(out, single, img0.device, img0.dtype)


@torch.inference_mode()
def interpolate_pairs(model: EMAVFI, frames: torch.Tensor, first: Sequence[int] | torch.Tensor,
                      second: Sequence[int] | torch.Tensor, timesteps: Sequence[float], *, tta: bool = False,
                      fast_tta: bool = False, scale: float = 1.0, aux: torch.Tensor | None = None,
                      timesteps_per_call: int | None = None):
    """Frames [T,P,3,H,W] between frames[first[i]] and frames[second[i]] of frames [F,3,H,W] (float, 0..1).

    Each of the F frames gets its per-frame features once, however many pairs share it; this is what
    `interpolate` runs, and the Runner's device calls. aux [F,K,H,W]: extra channels warped and fused with the
    same flows; then returns (frames, aux [T,P,K,H,W]). Other options: see `interpolate`. It does not warn
    about untrained timesteps: its caller, the Runner, runs a schedule that already did (Schedule.warning).
    """
    check_model(model)
    ts = check_timesteps(timesteps)
    check_image("frames", frames)
    if aux is not None:
        check_aux("aux", aux, frames)
    first, second = check_indices(first, second, frames.shape[0], frames.device)
    backend = backend_for(model, tta, scale, fast_tta=fast_tta, timesteps_per_call=timesteps_per_call)
    return _finish(backend(frames, first, second, ts, aux), False, frames.device, frames.dtype)


def _finish(out: tuple[torch.Tensor, torch.Tensor | None], single: bool, device: torch.device, dtype: torch.dtype):
    frames, aux = (None if x is None else x.to(device=device, dtype=dtype) for x in out)
    if single:
        frames, aux = frames[0], None if aux is None else aux[0]
    return frames if aux is None else (frames, aux)


def _passes(model: EMAVFI, frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor,
            options: PassOptions, aux: tuple[torch.Tensor, torch.Tensor] | None):
    """The feature passes (plain, plus rotated with TTA), each as (make it, the aux pair it fuses): made one at a
    time, so only one pass's features are in memory at once."""
    scale = options.scale
    if options.fast_tta:
        n = frames.shape[0]
        return [(lambda: _Pass(model, torch.cat([frames, _rot180(frames)]), torch.cat([first, first + n]),
                               torch.cat([second, second + n]), scale),
                 None if aux is None else tuple(torch.cat([a, _rot180(a)]) for a in aux))]
    passes = [(lambda: _Pass(model, frames, first, second, scale), aux)]
    if options.tta:
        passes.append((lambda: _Pass(model, _rot180(frames), first, second, scale),
                       None if aux is None else tuple(_rot180(a) for a in aux)))
    return passes


def _run(model: EMAVFI, frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor, ts: list[float],
         options: PassOptions, aux: tuple[torch.Tensor, torch.Tensor] | None,
         crop: tuple[int, int, int, int], timesteps_per_call: int | None) -> tuple[torch.Tensor, torch.Tensor | None]:
    """[T,P,3,h,w] frames (and fused aux) for the pairs (first[i], second[i]) of padded `frames`."""
    _, _, h, w = crop
    pairs = first.shape[0]
    per_call = timesteps_per_call
    if per_call is None:  # batching timesteps pays off on GPUs; on CPUs it only costs memory
        per_call = len(ts) if frames.device.type == "cuda" else 1
    if isinstance(per_call, bool) or not isinstance(per_call, int) or per_call < 1:
        raise ValueError(f"timesteps_per_call must be a positive integer or None; got {timesteps_per_call!r}")
    out = torch.empty((len(ts), pairs, 3, h, w), dtype=frames.dtype, device=frames.device)
    aux_out = None if aux is None else torch.empty((len(ts), pairs, aux[0].shape[1], h, w),
                                                   dtype=frames.dtype, device=frames.device)
    for k, (make_pass, pass_aux) in enumerate(_passes(model, frames, first, second, options, aux)):
        feature_pass = make_pass()
        for start in range(0, len(ts), per_call):
            batch = ts[start:start + per_call]
            frame, fused = feature_pass.at(batch, pass_aux)
            if options.fast_tta:  # rows are (t, [original pairs, rotated pairs]): split the two halves per t
                frame, rotated = _split_halves(frame, len(batch))
                frame = (frame + _rot180(rotated)) / 2
                if fused is not None:
                    fused, rotated = _split_halves(fused, len(batch))
                    fused = (fused + _rot180(rotated)) / 2
            window = slice(start, start + len(batch))
            _store(out, window, frame, crop, pairs, average=k == 1)
            if aux_out is not None:
                _store(aux_out, window, fused, crop, pairs, average=k == 1)
        del feature_pass  # TTA: the plain pass's features go before the rotated pass's are made
    return out, aux_out


def _store(out: torch.Tensor, window: slice, padded: torch.Tensor, crop: tuple[int, int, int, int], pairs: int,
           average: bool) -> None:
    """Crop padded rows [k*P,C,H,W] into out[window]; average: the rotated TTA pass, (kept + rot180(padded)) / 2."""
    top, left, h, w = crop
    if average:
        padded = _rot180(padded)
    rows = padded[:, :, top:top + h, left:left + w].view(-1, pairs, padded.shape[1], h, w)
    out[window] = (out[window] + rows) / 2 if average else rows


@dataclass(frozen=True)
class ModelBackend:
    """A PyTorch network as a `Backend`: frames cast to its device and dtype, padded, run, cropped, cast back.

    Each of the F frames gets its per-frame features once, however many pairs share it. tta / fast_tta / scale /
    timesteps_per_call: see `interpolate`.
    """

    model: EMAVFI
    tta: bool = False
    scale: float = 1.0
    fast_tta: bool = False
    timesteps_per_call: int | None = None

    @torch.inference_mode()
    def __call__(self, frames: torch.Tensor, first: torch.Tensor, second: torch.Tensor, timesteps: Sequence[float],
                 aux: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor | None]:
        """See Backend."""
        prep, crop = _preparation(self.model, self.scale, frames.shape[-2:])
        padded = prep(frames)
        first, second = first.to(padded.device), second.to(padded.device)
        pair_aux = None if aux is None else (prep(aux.index_select(0, first.to(aux.device))),
                                             prep(aux.index_select(0, second.to(aux.device))))
        out = _run(self.model, padded, first, second, list(timesteps),
                   PassOptions(self.tta, self.fast_tta, self.scale), pair_aux, crop, self.timesteps_per_call)
        return tuple(None if x is None else x.to(device=frames.device, dtype=frames.dtype) for x in out)
