"""EMA-VFI Interpolate (`EMAVFI_Interpolate`): (N-1)*multiplier+1 frames, source frames kept bit-exact."""
from __future__ import annotations

from typing import Any

import torch

from ..emavfi import cuts, schedule
from ..emavfi.settings import DEFAULT_DEDUPE_THRESHOLD, DEFAULT_PROTECT_FEATHER, MAX_DEDUPE_THRESHOLD
from . import host, metabatch
from .frames import check_images, check_mask
from .model import require_model
from .run import Held, cut_text, protect_options, placeholder_mask, run_clip, run_options, timeline
from .spec import ClipNodeSchema, dedupe_inputs, io, run_inputs
from .state import PackNode

NAME = "EMA-VFI Interpolate"
DESCRIPTION = ("Raises the frame rate of a clip: makes (N-1) x multiplier + 1 frames from N, keeping the original "
               "frames unchanged. Optional mask is interpolated with the same motion.")

# auto: direct for `_t` models, bisection for t = 0.5-only ones (emavfi.schedule.make_schedule decides).
MODES = ("auto", "direct", "recursive")
_METHODS = {"auto": "auto", "direct": "direct", "recursive": "bisection"}


def make_request(multiplier: int, mode: str, timesteps: str = "", fps: float = 0.0) -> schedule.Request:
    """The request from the widgets: explicit `timesteps` text wins over `multiplier`; fps 0 = unknown.
    ValueError when invalid."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    schedule.multiplier_timesteps(multiplier)  # checks the multiplier even when timesteps replace it
    text = (timesteps or "").strip()
    source_fps = schedule.parse_fps(float(fps)) if fps and fps > 0 else None
    if text:
        return schedule.Request(timesteps=tuple(schedule.parse_timesteps_exact(text)), source_fps=source_fps,
                                method=_METHODS[mode])
    return schedule.Request(multiplier=multiplier, source_fps=source_fps, method=_METHODS[mode])


class InterpolateNode(ClipNodeSchema, PackNode):
    NODE_ID, DISPLAY_NAME, DESCRIPTION = "EMAVFI_Interpolate", NAME, DESCRIPTION

    @classmethod
    def clip_inputs(cls) -> list[io.Input]:
        return [
            io.Int.Input("multiplier", default=2, min=2, max=schedule.MAX_MULTIPLIER, step=1,
                         tooltip="Frame-rate factor: output has (N-1) x multiplier + 1 frames."),
            io.Combo.Input("mode", options=list(MODES), default="auto", tooltip="auto: every in-between time "
                           "from one feature pass with `_t` models, repeated halving at t = 0.5 with the others. "
                           "direct: one feature pass with any model. recursive: repeated halving (any model; "
                           "multiplier 2, 4, 8 or 16)."),
            io.String.Input("timesteps", default="", placeholder="e.g. 0.25, 0.5, 0.75 (empty: use multiplier)",
                            optional=True, tooltip="Optional explicit in-between times per frame pair, e.g. "
                            "'0.25, 0.5, 0.75' or '1/3, 2/3'; replaces the multiplier when set. Each in (0, 1), "
                            "increasing."),
            *run_inputs(cuts.DEFAULT_CUT_THRESHOLD),
            io.Float.Input("fps", default=24.0, min=0.0, max=1000.0, step=0.001, optional=True,
                           tooltip="Frame rate of the input clip (link it from Get Video Components); fps out = "
                           "fps x multiplier. 0 = unknown."),
            io.Mask.Input("mask", optional=True, tooltip="Optional mask per frame (same count and size as the "
                          "images), interpolated with the same motion and blending as the images."),
            *dedupe_inputs(DEFAULT_DEDUPE_THRESHOLD, MAX_DEDUPE_THRESHOLD),
        ]

    @classmethod
    def clip_outputs(cls) -> list[io.Output]:
        return [
            io.Image.Output(display_name="images",
                            tooltip="The interpolated clip, (N-1) x multiplier + 1 frames."),
            io.Float.Output(display_name="fps", tooltip="Output frame rate: fps x multiplier (0 when fps is 0)."),
            io.Mask.Output(display_name="mask",
                           tooltip="The interpolated mask (64x64 zeros per frame when no mask came in)."),
        ]

    @classmethod
    def validate_inputs(cls, timesteps: str | None = None) -> bool | str:
        """Reject a bad timesteps text when the prompt is queued, before anything runs. Only this input is
        checked here: ComfyUI then still checks the others' ranges itself, and reports the error once."""
        if not (timesteps or "").strip():  # empty, or linked (checked when the node runs)
            return True
        try:
            schedule.parse_timesteps_exact(timesteps)
        except (TypeError, ValueError) as exc:
            return str(exc)
        return True

    @classmethod
    def execute(cls, images: torch.Tensor, model: Any, multiplier: int, mode: str, timesteps: str = "",
                tta: bool = False, scale: str = "1.0", chunk_size: int = 0,
                scene_cut_threshold: float = cuts.DEFAULT_CUT_THRESHOLD,
                fps: float = 24.0, mask: torch.Tensor | None = None, dedupe: bool = False,
                dedupe_threshold: float = DEFAULT_DEDUPE_THRESHOLD, protect_mask: torch.Tensor | None = None,
                protect_feather: int = DEFAULT_PROTECT_FEATHER, protect_overlays: bool = False,
                meta_batch: Any = None) -> io.NodeOutput:
        unique_id = cls.hidden.unique_id
        frames = check_images(images, NAME, min_frames=1 if meta_batch is not None else 2)
        mask = check_mask(mask, frames, NAME)
        model = require_model(model, NAME)
        options = run_options(tta, scale, chunk_size, scene_cut_threshold, NAME, dedupe, dedupe_threshold)
        request = make_request(multiplier, mode, timesteps, fps)
        protection = protect_options(protect_mask, protect_feather, protect_overlays, frames, NAME)
        if meta_batch is not None:
            result, plan, carry, last = metabatch.run_batch(model, frames, mask, request, options, meta_batch,
                                                            cls.hidden.prompt, unique_id, NAME, cls.pack().carries,
                                                            protection)
            fps_out = float(plan.out_fps or 0)
            out_mask = result.mask if result.mask is not None else placeholder_mask(result.images.shape[0])
            summary = metabatch.summary(frames.shape[0], result, carry, last, fps, fps_out)
            host.send_text(summary["report"], unique_id)
            return io.NodeOutput(result.images, fps_out, out_mask, result.overlays,
                                 ui={"emavfi": [summary]})
        line = timeline(frames, mask, request, model.arbitrary_t, options, NAME)
        plan = line.plan
        if plan.warning:
            host.logger.warning("%s: %s", model.name, plan.warning)
            host.send_text(plan.warning, unique_id)
        regions = Held(protection, line)
        result = run_clip(model, line.images, plan, options, mask=line.mask, node_id=unique_id, held=regions.policy)
        fps_out = float(plan.out_fps or 0)  # fps x multiplier, NTSC rates kept exact (emavfi.schedule)
        out_mask = result.mask if result.mask is not None else placeholder_mask(len(plan.plan))
        found = line.input_cuts(result.cuts)
        summary = {"frames_in": frames.shape[0], "frames_out": len(plan.plan), "fps_in": fps, "fps_out": fps_out,
                   "cuts": found, "warning": plan.warning}
        if options.dedupe:
            summary["held"] = line.held
            host.logger.info("%s: %s", NAME, line.held_text())
            host.send_text(line.held_text(), unique_id)
        if found:
            host.send_text(cut_text(found), unique_id)
        return io.NodeOutput(result.images, fps_out, out_mask, regions.overlay_mask(frames.shape[0]),
                             ui={"emavfi": [summary]})
