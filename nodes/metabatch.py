"""Long clips in batches with VideoHelperSuite's Meta Batch Manager: one whole run, made a batch at a time.

VHS's protocol (facts from its public source): the manager (`VHS_BatchManager`) is one object per manager node,
passed to the nodes linked to it; Load Video returns the next `frames_per_batch` frames on each queued run, and
sets `has_closed_inputs` on the run that returns the last ones; Video Combine appends each run's frames to one
file and queues the workflow again, adding 1 to `prompt[manager's unique_id]["inputs"]["requeue"]` (0 on the
run a user queues, when the manager resets).

Each batch here makes the outputs of the whole run that its frames complete, in the whole run's numbering: the
plan is of every frame seen so far, and a device batch of pairs is made once every frame its decisions read has
arrived: its scene cuts' (cuts.CUT_CONTEXT pairs ahead) and, with protect_overlays, its source frames' overlays
(overlays.CONTEXT frames ahead). The last frames are carried to the next batch (those the pending pairs and
their decisions read), so the joined video equals one whole run, frame for frame; so does the joined
overlay_mask output, each input frame's mask returned by the batch in which its decision's frames are all in.
"""
from __future__ import annotations

import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import torch

from ..emavfi import cuts, engine, overlays, protect, runner, schedule
from ..emavfi.settings import RunOptions
from . import host
from .model import EmaVfiModel
from .run import ClipResult, Protect, cut_text, pair_bytes, split_result, with_mask

MAX_OPEN = 8  # meta batches carried at once (managers x nodes); the oldest is dropped beyond that


@dataclass
class Carry:
    """What one node keeps between the batches of one meta batch."""

    shape: tuple[int, ...]  # (H, W, C) of the clip's frames (mask as one more channel)
    chunk: int  # pairs per device batch, fixed for the whole clip (arithmetic follows its grid); 0 = not yet
    most: int  # the largest chunk that lets every batch finish some pairs
    batches: int = 0  # batches done
    seen: int = 0  # source frames seen
    base: int = 0  # global index of frames[0]
    frames: torch.Tensor | None = None  # [F,C,H,W] CPU: source frames base..seen-1
    emitted: int = 0  # output frames returned so far
    decided: int = 0  # input frames whose overlay_mask was returned so far (protect_overlays)
    cuts: list[int] = field(default_factory=list)


class CarryStore:
    """Carries by (manager id, node id), at most MAX_OPEN; each holds a few frames, dropped when its clip ends."""

    def __init__(self, limit: int = MAX_OPEN):
        self._items: OrderedDict[tuple[str, str], Carry] = OrderedDict()
        self._limit = limit
        self._lock = threading.Lock()

    def take(self, key: tuple[str, str]) -> Carry | None:
        """Remove and return the carry of key (None when there is none)."""
        with self._lock:
            return self._items.pop(key, None)

    def put(self, key: tuple[str, str], carry: Carry) -> None:
        """Keep carry for the next batch; the oldest carry goes beyond the limit (an abandoned meta batch)."""
        with self._lock:
            self._items[key] = carry
            while len(self._items) > self._limit:
                old, _ = self._items.popitem(last=False)
                host.logger.warning("EMA-VFI: dropped the carried frames of meta batch %s (too many open)", old)

    def __len__(self) -> int:
        return len(self._items)


def requeue_count(meta_batch: Any, prompt: Any) -> int | None:
    """Which batch this is (0 = the first), as VHS counts it in the manager's prompt inputs; None if unknown."""
    try:
        return int(prompt[str(meta_batch.unique_id)]["inputs"].get("requeue", 0))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


class Reach(NamedTuple):
    """How far around a pair its decisions read (scene cuts, overlays), and what to say when batches are too small."""

    ahead: int  # frames past the pair's second frame
    behind: int  # frames before its first frame
    needs: str  # the minimum frames_per_batch, why, and how to do without


def _reach(options: RunOptions, protection: Protect | None) -> Reach:
    """The reach of a batch's decisions: overlays.CONTEXT frames either side with protect_overlays (one more
    behind: the finder reads the motion into its window's first frame), cuts.CUT_CONTEXT with scene-cut
    detection, else none."""
    if protection is not None and protection.overlays:
        return Reach(overlays.CONTEXT, overlays.CONTEXT + 1, (
            f"with protect_overlays on (each frame's overlays are decided from {overlays.CONTEXT} frames either "
            f"side) it must be at least {overlays.CONTEXT + 2} (or turn protect_overlays off)"))
    if options.cut_threshold:
        return Reach(cuts.CUT_CONTEXT, cuts.CUT_CONTEXT, (f"with scene-cut detection on it must be at least "
                                                          f"{cuts.CUT_CONTEXT + 2} (or set scene_cut_threshold to 0)"))
    return Reach(0, 0, "it must be at least 2 (a batch needs a pair of frames)")


def _open(key: tuple[str, str], meta_batch: Any, prompt: Any, frames: torch.Tensor, context: Reach,
          options: RunOptions, node: str, store: CarryStore) -> Carry:
    """The carry for this batch: a fresh one on the first batch, else the previous batch's (checked)."""
    batch = requeue_count(meta_batch, prompt)
    carry = store.take(key)
    shape = tuple(frames.shape[1:])
    if batch == 0 or (batch is None and carry is None):
        per_batch = int(getattr(meta_batch, "frames_per_batch", 0) or frames.shape[0])
        if per_batch < context.ahead + 2:
            raise ValueError(f"{node}: the Meta Batch Manager's frames_per_batch is {per_batch}; {context.needs}")
        # A device batch of pairs waits for its decisions' frames: at most this many pairs lets every batch finish some.
        most = max(1, per_batch - 1 - context.ahead)
        return Carry(shape, min(options.chunk, most), most)
    if carry is None or (batch is not None and carry.batches != batch):
        raise ValueError(f"{node}: batch {batch} of a meta batch arrived, but the frames carried from the batch "
                         "before are gone (ComfyUI restarted, or a batch was skipped): queue the workflow again "
                         "to start from the first batch")
    if carry.shape != shape:
        raise ValueError(f"{node}: the frames changed size within a meta batch ({list(carry.shape)} -> "
                         f"{list(shape)}): one meta batch carries one clip")
    return carry


class _Window:
    """engine.Frames over the carried frames and the new batch, in the whole clip's numbering."""

    def __init__(self, frames: torch.Tensor, base: int):
        self.frames, self.base = frames, base
        self.count = base + frames.shape[0]
        self.size = (frames.shape[-2], frames.shape[-1])
        self.damaged: dict[int, str] = {}

    def get(self, lo: int, hi: int) -> torch.Tensor:
        """Frames lo..hi (global indices) as a view."""
        assert lo >= self.base, f"frame {lo} was not carried (from {self.base})"
        return self.frames[lo - self.base:hi - self.base + 1]


class _LastChannel:
    """The protect policy of a meta batch: the user's mask, carried as the frames' last channel."""

    def masks(self, frames: _Window, lo: int, hi: int) -> torch.Tensor:
        """[hi - lo + 1, H, W] float32: the masks of frames lo..hi."""
        return frames.get(lo, hi)[:, -1]


class _Overlays:
    """protect_overlays in one batch: the finder over the frames seen so far, and the masks it decided."""

    def __init__(self, count: int):
        self.seen: dict[int, torch.Tensor] = {}
        self.finder = overlays.OverlayFinder(count, seen=self.seen.__setitem__)

    def masks(self, frames: _Window, wanted: range) -> torch.Tensor:
        """[len(wanted),H,W] float32: the overlays of input frames `wanted` (those the run left undecided are
        decided here, from the carried frames: each reads overlays.CONTEXT frames either side)."""
        protect.decide_overlays(frames, [j for j in wanted if j not in self.seen], self.seen.__setitem__)
        out = torch.zeros((len(wanted), *frames.size), dtype=torch.float32)
        for k, j in enumerate(wanted):
            out[k] = self.seen[j]
        return out


def _held(protection: Protect | None, count: int) -> tuple[protect.HeldRegions | None, _Overlays | None]:
    """The engine's protect policy for a batch (the carried protect mask, the overlays found), and the overlays."""
    if protection is None or not protection.active:
        return None, None
    found = _Overlays(count) if protection.overlays else None
    policies = ([_LastChannel()] if protection.mask is not None else []) + ([found.finder] if found else [])
    return protect.HeldRegions(policies, protection.feather), found


def _decided(carry: Carry, count: int, final: bool) -> range:
    """Input frames whose overlays this batch returns: all the rest on the last batch, else those whose decision
    window (overlays.CONTEXT frames ahead) lies within the frames seen."""
    return range(carry.decided, count if final else max(carry.decided, count - overlays.CONTEXT))


def _overlay_output(found: _Overlays | None, frames: _Window, carry: Carry, count: int, final: bool,
                   images: torch.Tensor) -> torch.Tensor:
    """The overlay_mask output of a batch: the overlays of the input frames it decides (joined over the batches:
    the whole run's), or zeros per input frame of the batch when protect_overlays is off."""
    device = host.model_management().intermediate_device()
    if found is None:
        return torch.zeros(images.shape[:3], dtype=torch.float32, device=device)
    wanted = _decided(carry, count, final)
    carry.decided = wanted.stop
    return found.masks(frames, wanted).to(device)


def _with_protect(frames: torch.Tensor, protection: Protect | None) -> torch.Tensor:
    """frames [N,C,H,W], with the protect mask (one per frame, or one for all) as one more channel."""
    if protection is None or protection.mask is None:
        return frames
    mask = protection.mask.expand(frames.shape[0], -1, -1) if protection.mask.shape[0] == 1 else protection.mask
    return torch.cat([frames, mask[:, None].to(frames.dtype)], dim=1)


class _Slice:
    """engine.Sink writing global outputs first.. into out[index - first]."""

    def __init__(self, out: torch.Tensor, first: int):
        self.out, self.first = out, first

    def write(self, index: int, image: torch.Tensor | None, *, copy_of: int | None = None) -> None:
        """Copy the frame into place."""
        assert image is not None
        self.out[index - self.first].copy_(image)


def _ready(plan: schedule.Schedule, carry: Carry, count: int, ahead: int, final: bool) -> range:
    """Outputs this batch can make: all the rest on the last batch, else those whose device batch of pairs and
    the windows of its decisions lie within the frames seen (the whole run would make them from the same frames)."""
    if final:
        return range(carry.emitted, len(plan.plan))
    end_pair = (count - 1 - ahead) // carry.chunk * carry.chunk
    stop = carry.emitted
    while stop < len(plan.plan) and engine.pair_of(plan.plan[stop], count) < end_pair:
        stop += 1
    return range(carry.emitted, stop)


def run_batch(model: EmaVfiModel, images: torch.Tensor, mask: torch.Tensor | None, request: schedule.Request,
              options: RunOptions, meta_batch: Any, prompt: Any, node_id: str | None, node: str,
              store: CarryStore,
              protection: Protect | None = None) -> tuple[ClipResult, schedule.Schedule, Carry, bool]:
    """Make this batch's share of the whole run: (its frames and overlay masks, the plan so far, the carry, whether
    it was the last). ComfyUI runs each batch as a separate prompt, so the frames carried between them wait in
    `store`."""
    if options.dedupe:
        raise ValueError(f"{node}: dedupe reads the whole clip first and does not work with a Meta Batch Manager "
                         "yet: turn dedupe off, or unlink meta_batch")
    key = (str(getattr(meta_batch, "unique_id", None)), str(node_id))
    context = _reach(options, protection)
    height, width, channels = images.shape[1:]
    new = _with_protect(with_mask(images, mask).movedim(-1, 1).to("cpu", torch.float32), protection)
    carry = _open(key, meta_batch, prompt, new.movedim(1, -1), context, options, node, store)
    final = bool(getattr(meta_batch, "has_closed_inputs", False))
    frames = new if carry.frames is None else torch.cat([carry.frames, new])
    count = carry.base + frames.shape[0]
    if count < 2:
        raise ValueError(f"{node} needs at least 2 frames to interpolate between; got {count}")
    plan = schedule.make_schedule(request, count, model.arbitrary_t)
    held, found = _held(protection, count)
    window = _Window(frames, carry.base)
    network = model.ready(memory_required=pair_bytes(model, plan, height, width, options) * max(1, options.chunk))
    try:
        device_side = _runner(network, model, options, carry, plan, height, width)
        todo = _ready(plan, carry, count, context.ahead, final)
        if not todo and not final:
            raise ValueError(f"{node}: this batch completes no output frames: raise the Meta Batch Manager's "
                             f"frames_per_batch above {context.ahead + carry.chunk}")
        out = torch.empty((len(todo), height, width, frames.shape[1]), dtype=torch.float32)
        bar = host.progress_bar(len(todo), node_id)
        report = engine.run(plan, window, device_side, _Slice(out.movedim(-1, 1), todo.start),
                            engine.CutFinder(count, options.cut_threshold), todo=todo, protect=held,
                            progress=lambda done, total: bar.update_absolute(done, total),
                            cancel=host.model_management().throw_exception_if_processing_interrupted)
    finally:
        model.release()
    found_masks = _overlay_output(found, window, carry, count, final, images)
    _advance(carry, plan, frames, count, todo, context.behind, report.cuts, carry.decided if found else None)
    if not final:
        store.put(key, carry)
    out = out[..., :channels + (mask is not None)]  # less the protect mask's channel
    result = split_result(out, channels, mask is not None, sorted(report.cuts))
    result.overlays = found_masks
    return result, plan, carry, final


def _runner(network: torch.nn.Module, model: EmaVfiModel, options: RunOptions, carry: Carry,
            plan: schedule.Schedule, height: int, width: int) -> runner.Runner:
    """The device side at the clip's chunk: picked on the first batch as a whole run picks it (capped), then kept."""
    settings = dict(device=model.load_device, dtype=model.dtype, tta=options.tta, scale=options.scale)
    if not carry.chunk:
        carry.chunk = min(runner.Runner(network, **settings).resolve_chunk(height, width, plan.rows_per_pair()),
                          carry.most)
    return runner.Runner(network, chunk=carry.chunk, **settings)


def _advance(carry: Carry, plan: schedule.Schedule, frames: torch.Tensor, count: int, done: range, behind: int,
             found: list[int], undecided: int | None) -> None:
    """Keep only the frames the pending outputs read (their device batch and its decisions' windows), and those
    the overlays of input frames undecided..  read (a retime that skips frames may leave some behind the pending
    pair)."""
    carry.batches += 1
    carry.seen, carry.emitted = count, done.stop
    carry.cuts = sorted(set(carry.cuts) | set(found))
    pending = engine.pair_of(plan.plan[done.stop], count) if done.stop < len(plan.plan) else count - 1
    first = pending - pending % carry.chunk if undecided is None else min(pending - pending % carry.chunk, undecided)
    keep_from = max(0, first - behind, carry.base)
    carry.frames = frames[keep_from - carry.base:].clone()
    carry.base = keep_from


def summary(frames_in: int, result: ClipResult, carry: Carry, last: bool, fps_in: float,
            fps_out: float) -> dict[str, Any]:
    """The node's ui summary of one batch, with a one-line report."""
    frames_out = result.images.shape[0]
    first = carry.emitted - frames_out
    report = (f"meta batch {carry.batches}{' (last)' if last else ''}: {frames_in} frames in, output frames "
              f"{first}..{carry.emitted - 1} ({frames_out}){'' if last else '; the rest wait for the next batch'}")
    if result.cuts:
        report += f"; {cut_text(result.cuts)}"
    return {"frames_in": frames_in, "frames_out": frames_out, "fps_in": fps_in, "fps_out": fps_out,
            "cuts": result.cuts, "batch": carry.batches, "last_batch": last, "first_output": first,
            "report": report, "warning": None}
