"""VapourSynth filter: EMA-VFI frame interpolation of a clip, frame for frame what the CLI makes.

    import vapoursynth as vs
    from emavfi.vapoursynth import interpolate
    clip = vs.core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")
    clip = interpolate(clip, multiplier=2)          # or fps_num=60000, fps_den=1001; dedupe=True for anime

The plan comes from emavfi.schedule (emavfi.dedupe with dedupe=True), scene cuts from emavfi.cuts (fixed
window) plus `_SceneChangeNext`/`_SceneChangePrev` set upstream, and the pixels from emavfi.runner.Runner, in
emavfi.engine.run over the CLI's device batches. An output frame computes only its own batch of pairs (random
access); decoded source frames, cut evidence and finished batches are kept in small LRU caches. Only this module
imports vapoursynth.
"""
from __future__ import annotations

import bisect
import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable
from dataclasses import replace
from fractions import Fraction
from typing import Any

import numpy as np
import torch

try:
    import vapoursynth as vs
except ImportError:
    raise ImportError("emavfi.vapoursynth needs VapourSynth: pip install vapoursynth (Python 3.12 or newer)") from None

from . import cuts, dedupe, engine
from .config import get_config
from .plans import OutputFrame, apply_cuts
from .schedule import Request, Schedule, make_schedule
from .settings import DEFAULT_PROTECT_FEATHER, RunOptions, Settings, SettingsError

FORMATS = ("RGBS", "RGBH")
CACHED_BATCHES = 2  # finished batches of output frames kept: the one being read and the next (parallel requests)
_CONVERT = 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")'


class _LRU:
    """A bounded, thread-safe least-recently-used map."""

    def __init__(self, size: int):
        self.size, self._items, self._lock = size, OrderedDict(), threading.Lock()

    def get(self, key: Hashable, make: Callable[[], Any]) -> Any:
        """The value for key, made (outside the lock) when missing."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.size:
                self._items.popitem(last=False)
        return value


def interpolate(clip: vs.VideoNode, multiplier: int = 2, *, fps_num: int | None = None, fps_den: int | None = None,
                variant: str | None = None, weights: str | None = None, backend: str = "torch",
                device: str = "auto", precision: str = "auto", scale: float = 1.0, tta: bool = False,
                scene_change: bool = True, cut_threshold: float | None = None, dedupe: bool = False,
                dedupe_threshold: float | None = None, protect: vs.VideoNode | None = None,
                protect_overlays: bool = False, protect_feather: int = DEFAULT_PROTECT_FEATHER) -> vs.VideoNode:
    """An RGBS/RGBH clip interpolated to multiplier x its rate, or retimed to fps_num/fps_den (same duration).

    scene_change: no blending across cuts found by emavfi.cuts (cut_threshold; 0 = only the clip's
    `_SceneChangeNext`/`_SceneChangePrev`) or marked upstream. dedupe: held frames dropped and the drawings
    retimed at their true times (the clip is read once when the filter is made). Weights: `weights`, else
    `<variant>.safetensors` under $EMAVFI_HOME, else the Hub, as the CLI finds them. backend: any the CLI takes
    (torch, openvino, onnxruntime, tensorrt, auto), loaded as the CLI loads it (emavfi.loading). protect: a GRAY
    clip of masks (one per frame, or one frame for all; white = held: in-between frames show the nearest source
    frame there), protect_overlays: burned-in overlays found and held (emavfi.overlays), protect_feather: px.
    """
    _check_clip(clip)
    settings = _settings(clip, multiplier, fps_num, fps_den, variant, weights, backend, device, precision, scale,
                         tta, cut_threshold if scene_change else 0, dedupe, dedupe_threshold)
    held = _ClipMasks(protect, clip) if protect is not None else None
    return _Filter(clip, settings, scene_change, (held, protect_overlays, protect_feather)).output()


def ema_vfi(clip: vs.VideoNode, factor_num: int = 2, factor_den: int = 1, fps_num: int | None = None,
            fps_den: int | None = None, scale: float = 1.0, sc: bool = True, sc_threshold: float | None = None,
            **options: Any) -> vs.VideoNode:
    """vs-rife's arguments for `interpolate`: factor_num/factor_den x the rate (or fps_num/fps_den), sc = scene cuts."""
    if fps_num is None and factor_den != 1:
        if not clip.fps:
            raise SettingsError("factor_num/factor_den of a variable-frame-rate clip: give fps_num/fps_den instead")
        rate = Fraction(clip.fps.numerator, clip.fps.denominator) * Fraction(factor_num, factor_den)
        fps_num, fps_den = rate.numerator, rate.denominator
    return interpolate(clip, factor_num if fps_num is None else 2, fps_num=fps_num, fps_den=fps_den, scale=scale,
                       scene_change=sc, cut_threshold=sc_threshold, **options)


# ----------------------------------------------------------------------------------------------- checks

def _check_clip(clip: Any) -> None:
    if not isinstance(clip, vs.VideoNode):
        raise SettingsError(f"clip must be a VapourSynth video clip; got {type(clip).__name__}")
    name = clip.format.name if clip.format is not None else "a variable format"
    if name not in FORMATS:
        raise SettingsError(f"emavfi takes RGBS or RGBH clips; this one is {name}: convert it first, e.g. "
                            f"clip = {_CONVERT}")
    if not clip.width or not clip.height:
        raise SettingsError("emavfi needs a clip of one frame size; resize it to a constant size first")


def _settings(clip: vs.VideoNode, multiplier: int, fps_num: int | None, fps_den: int | None, variant: str | None,
              weights: str | None, backend: str, device: str, precision: str, scale: float, tta: bool,
              cut_threshold: float | None, dedupe_on: bool, dedupe_threshold: float | None) -> Settings:
    """The request and options, validated with the CLI's rules (SettingsError, one line)."""
    source_fps = Fraction(clip.fps.numerator, clip.fps.denominator) if clip.fps else None
    try:
        target = None if fps_num is None else Fraction(fps_num, 1 if fps_den is None else fps_den)
        request = Request(multiplier=None if target is not None else multiplier, target_fps=target,
                          source_fps=source_fps)
    except (TypeError, ValueError, ZeroDivisionError) as exc:
        raise SettingsError(str(exc)) from None
    if source_fps is None and not request.is_retime:
        raise SettingsError("a variable-frame-rate clip has no rate to multiply: give fps_num/fps_den (the output "
                            "rate), or make it constant with core.std.AssumeFPS")
    run = RunOptions(tta=tta, scale=scale, cut_threshold=cut_threshold, dedupe=dedupe_on,
                     dedupe_threshold=dedupe_threshold)
    return Settings(request=request, run=run, variant=variant, weights=weights, backend=backend, device=device,
                    precision=precision)


def _frame_times(clip: vs.VideoNode) -> list[Fraction] | None:
    """Each frame's start time from its _DurationNum/_DurationDen (variable-rate clips), else None."""
    if clip.fps:
        return None
    times, at = [], Fraction(0)
    for index, frame in enumerate(clip.frames()):
        num, den = frame.props.get("_DurationNum"), frame.props.get("_DurationDen")
        if not num or not den:
            raise SettingsError(f"this clip has a variable frame rate, but frame {index} has no _DurationNum/"
                                f"_DurationDen: set them upstream, or make it constant with core.std.AssumeFPS")
        times.append(at)
        at += Fraction(num, den)
    return times


def to_tensor(frame: vs.VideoFrame) -> torch.Tensor:
    """[3,H,W] float32 of an RGBS/RGBH frame."""
    return torch.from_numpy(np.stack([np.asarray(frame[p], dtype=np.float32) for p in range(3)]))


# ----------------------------------------------------------------------------------------------- the filter

class _Filter:
    """One interpolated clip: its schedule, the engine's parts, caches and the ModifyFrame callback (thread-safe)."""

    def __init__(self, clip: vs.VideoNode, settings: Settings, upstream_cuts: bool,
                 protect: tuple[Any, bool, int] = (None, False, DEFAULT_PROTECT_FEATHER)):
        from .loading import load_model_for
        from .overlays import OverlayFinder
        from .protect import HeldRegions
        from .runner import Runner

        self.clip, self.settings, self.upstream_cuts = clip, settings, upstream_cuts
        self.n_source = clip.num_frames
        self.index, self.schedule = self._timeline(settings.request)
        self.n = len(self.index)
        self.plan = self.schedule.plan
        self.runner = Runner(load_model_for(settings), tta=settings.run.tta, scale=settings.run.scale,
                             chunk=settings.run.chunk)
        # the whole shot's chunk, as the CLI's
        chunk = self.runner.resolve_chunk(clip.height, clip.width, self.schedule.rows_per_pair())
        self.frames = _ClipFrames(self, chunk + 2 * cuts.CUT_CONTEXT + 4)
        self.finder = engine.CutFinder(self.n, settings.run.cut_threshold)
        self._batches = _LRU(CACHED_BATCHES)
        self._lock = threading.RLock()  # one batch at a time: the device, the cut finder, the caches' makers
        masks, overlays, feather_px = protect
        if masks is not None:
            masks.index = self.index
        policies = [p for p in (masks, OverlayFinder(self.n) if overlays else None) if p is not None]
        self.protect = HeldRegions(policies, feather_px) if policies else None

    def _timeline(self, request: Request) -> tuple[list[int], Schedule]:
        """Source index of each timeline frame (all, or the kept ones with dedupe) and the CLI's schedule."""
        times = _frame_times(self.clip)
        arbitrary_t = get_config(self.settings.model_variant).arbitrary_t
        try:
            if not self.settings.run.dedupe:
                return list(range(self.n_source)), make_schedule(request, self.n_source, arbitrary_t, times=times)
            timeline = dedupe.held_timeline((to_tensor(f) for f in self.clip.frames()), self.n_source, request,
                                            arbitrary_t, threshold=self.settings.run.dedupe_threshold,
                                            cut_threshold=self.settings.run.cut_threshold, times=times)
            return timeline.kept, timeline.schedule
        except ValueError as exc:
            raise SettingsError(str(exc)) from None

    def output(self) -> vs.VideoNode:
        """The interpolated clip: constant rate, one frame per plan entry."""
        fps = self.schedule.out_fps
        assert fps is not None  # a clip has a rate, or a retime names one
        blank = vs.core.std.BlankClip(self.clip, length=len(self.plan), fpsnum=fps.numerator, fpsden=fps.denominator,
                                      keep=True)
        return vs.core.std.ModifyFrame(blank, blank, self._make)

    # -- cuts (an engine.CutPolicy) ---------------------------------------------------------------------

    def cuts(self, frames: engine.Frames, first_pair: int, end_pair: int) -> list[int]:
        """Pairs in [first_pair, end_pair) that are cuts: emavfi.cuts's fixed window, or marked upstream."""
        with self._lock:
            found = set(self.finder.cuts(frames, first_pair, end_pair))
        if self.upstream_cuts:
            found.update(p for p in range(first_pair, end_pair) if self._marked(p))
        return sorted(found)

    def is_cut(self, pair: int) -> bool:
        """Whether timeline pair (pair, pair + 1) is a scene cut."""
        return 0 <= pair < self.n - 1 and bool(self.cuts(self.frames, pair, pair + 1))

    def _marked(self, pair: int) -> bool:
        later = self.index[pair + 1]
        return bool(self.clip.get_frame(later - 1).props.get("_SceneChangeNext", 0)
                    or self.clip.get_frame(later).props.get("_SceneChangePrev", 0))

    # -- batches ------------------------------------------------------------------------------------------

    def _pair_of(self, frame: OutputFrame) -> int:
        return engine.pair_of(frame, self.n)

    def batch(self, k: int) -> dict[int, torch.Tensor]:
        """The output frames (index -> [3,H,W]) of the CLI's device batch that makes output k."""
        pairs = self.runner.batch_of(self._pair_of(self.plan[k]))
        with self._lock:
            return self._batches.get(pairs.start, lambda: self._make_batch(pairs))

    def _make_batch(self, pairs: range) -> dict[int, torch.Tensor]:
        """engine.run over the outputs of one device batch (numbered from lo), into a dict by global index."""
        lo = bisect.bisect_left(self.plan, pairs.start, key=self._pair_of)
        hi = bisect.bisect_left(self.plan, pairs.stop, key=self._pair_of)
        out = _DictSink(lo)
        engine.run(replace(self.schedule, plan=self.plan[lo:hi]), self.frames, self.runner, out, self,
                   protect=self.protect)
        return out.frames

    # -- the callback ---------------------------------------------------------------------------------------

    def _make(self, n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        image = self.batch(n)[n]
        out = f.copy()
        dtype = np.float16 if self.clip.format.name == "RGBH" else np.float32
        for p in range(3):
            np.copyto(np.asarray(out[p]), image[p].numpy().astype(dtype, copy=False))
        frame = self.plan[n]
        nearer = self.index[min(frame.source + (frame.t > Fraction(1, 2)), self.n - 1)]
        props = self.clip.get_frame(nearer).props
        for key in props.keys():
            if key not in ("_DurationNum", "_DurationDen", "_AbsoluteTime", "_SceneChangeNext", "_SceneChangePrev"):
                out.props[key] = props[key]
        out.props["_SceneChangeNext"] = int(n + 1 < len(self.plan) and self._cut_between(n, n + 1))
        out.props["_SceneChangePrev"] = int(n > 0 and self._cut_between(n - 1, n))
        return out

    def _cut_between(self, a: int, b: int) -> bool:
        """Whether output frames a < b show different shots: a cut pair lies between what they show."""
        shown = [self._shown(k) for k in (a, b)]
        return any(self.is_cut(p) for p in range(math.ceil(shown[0]), min(math.floor(shown[1]), self.n - 1)))

    def _shown(self, k: int) -> Fraction:
        """Where on the timeline output frame k's picture comes from (a frame inside a cut shows the nearer side)."""
        frame = self.plan[k]
        if not frame.is_copy and self.is_cut(frame.source):
            frame = apply_cuts([frame], [frame.source])[0]
        return frame.position


class _ClipFrames:
    """The timeline's frames as an engine.Frames: decoded on request, the last `cached` kept (LRU)."""

    def __init__(self, owner: _Filter, cached: int):
        self.owner, self.count = owner, owner.n
        self.size = (owner.clip.height, owner.clip.width)
        self.damaged: dict[int, str] = {}
        self._cache = _LRU(cached)

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """Timeline frames lo..hi, [hi - lo + 1, 3, H, W] float32."""
        clip, index = self.owner.clip, self.owner.index
        return torch.stack([self._cache.get(j, lambda j=j: to_tensor(clip.get_frame(index[j])))
                            for j in range(lo, hi + 1)])


class _ClipMasks:
    """A GRAY clip of masks as a protect policy (emavfi.protect): frame index[j] for timeline frame j, 0..1."""

    def __init__(self, masks: Any, clip: vs.VideoNode):
        if not isinstance(masks, vs.VideoNode) or masks.format is None or masks.format.color_family != vs.GRAY:
            got = masks.format.name if isinstance(masks, vs.VideoNode) and masks.format else type(masks).__name__
            raise SettingsError(f"protect must be a GRAY clip of masks (white = held); got {got}: convert it, e.g. "
                                "core.std.ShufflePlanes(mask, 0, vs.GRAY)")
        if (masks.width, masks.height) != (clip.width, clip.height) or masks.num_frames not in (1, clip.num_frames):
            raise SettingsError(f"the protect clip is {masks.width}x{masks.height} with {masks.num_frames} frames; "
                                f"the clip is {clip.width}x{clip.height} with {clip.num_frames}: give one mask per "
                                "frame (or one for all) of the clip's size")
        self.clip, self.index = masks, list(range(clip.num_frames))
        fmt = masks.format
        self.scale = 1.0 if fmt.sample_type == vs.FLOAT else 1.0 / ((1 << fmt.bits_per_sample) - 1)

    def masks(self, frames: Any, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32 of timeline frames lo..hi."""
        pick = [0 if self.clip.num_frames == 1 else self.index[j] for j in range(lo, hi + 1)]
        planes = [np.asarray(self.clip.get_frame(i)[0], dtype=np.float32) * self.scale for i in pick]
        return torch.from_numpy(np.stack(planes)).clamp(0, 1)


class _DictSink:
    """An engine.Sink for a slice of the plan that starts at global output `offset`."""

    def __init__(self, offset: int):
        self.offset, self.frames = offset, {}

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Keep the frame under its global index."""
        assert image is not None
        self.frames[self.offset + index] = image


__all__ = ["FORMATS", "ema_vfi", "interpolate", "to_tensor"]
