"""EMA-VFI Retime (`EMAVFI_Retime`): convert a clip to another frame rate (and speed), skipping scene cuts."""
from __future__ import annotations

from fractions import Fraction
from typing import Any

import torch

from ..emavfi import cuts, schedule
from ..emavfi.settings import DEFAULT_DEDUPE_THRESHOLD, DEFAULT_PROTECT_FEATHER, MAX_DEDUPE_THRESHOLD
from . import host, metabatch
from .frames import check_images
from .model import require_model
from .run import Held, cut_text, protect_options, run_clip, run_options, timeline
from .spec import ClipNodeSchema, dedupe_inputs, io, run_inputs
from .state import PackNode

NAME = "EMA-VFI Retime"
DESCRIPTION = ("Converts a clip from one frame rate to another (e.g. 24 -> 60 fps), or slows it down, by making "
               "frames at the new times; frames that fall on source frames are copied unchanged.")


def cut_report(found: list[int], threshold: float, frames_in: int, frames_out: int, source_fps: float,
               target_fps: float) -> str:
    """One line for the cut_report output: frame counts, then where the scene cuts are (or that there are none)."""
    head = f"{frames_in} frames at {source_fps:g} fps -> {frames_out} frames at {target_fps:g} fps"
    if threshold <= 0:
        return f"{head}; scene-cut detection off"
    if not found:
        return f"{head}; no scene cuts (threshold {threshold:g})"
    return f"{head}; {cut_text(found)}"


class RetimeNode(ClipNodeSchema, PackNode):
    NODE_ID, DISPLAY_NAME, DESCRIPTION = "EMAVFI_Retime", NAME, DESCRIPTION

    @classmethod
    def clip_inputs(cls) -> list[io.Input]:
        return [
            io.Float.Input("source_fps", default=24.0, min=0.001, max=1000.0, step=0.001, tooltip="Frame rate "
                           "of the input clip (23.976 and 29.97 are read as 24000/1001 and 30000/1001)."),
            io.Float.Input("target_fps", default=60.0, min=0.001, max=1000.0, step=0.001,
                           tooltip="Frame rate of the output clip."),
            io.Float.Input("speed", default=1.0, min=0.01, max=100.0, step=0.01, optional=True,
                           tooltip="Playback speed: 1 keeps the duration, 0.5 = half-speed slow motion."),
            *run_inputs(cuts.DEFAULT_CUT_THRESHOLD),
            *dedupe_inputs(DEFAULT_DEDUPE_THRESHOLD, MAX_DEDUPE_THRESHOLD),
        ]

    @classmethod
    def clip_outputs(cls) -> list[io.Output]:
        return [
            io.Image.Output(display_name="images", tooltip="The retimed clip."),
            io.Float.Output(display_name="fps", tooltip="The output frame rate (target_fps)."),
            io.String.Output(display_name="cut_report",
                             tooltip="Frame counts and the scene cuts found (pairs that were not blended)."),
        ]

    @classmethod
    def execute(cls, images: torch.Tensor, model: Any, source_fps: float, target_fps: float, speed: float = 1.0,
                tta: bool = False, scale: str = "1.0", chunk_size: int = 0,
                scene_cut_threshold: float = cuts.DEFAULT_CUT_THRESHOLD, dedupe: bool = False,
                dedupe_threshold: float = DEFAULT_DEDUPE_THRESHOLD, protect_mask: torch.Tensor | None = None,
                protect_feather: int = DEFAULT_PROTECT_FEATHER, protect_overlays: bool = False,
                meta_batch: Any = None) -> io.NodeOutput:
        unique_id = cls.hidden.unique_id
        frames = check_images(images, NAME, min_frames=1 if meta_batch is not None else 2)
        model = require_model(model, NAME)
        options = run_options(tta, scale, chunk_size, scene_cut_threshold, NAME, dedupe, dedupe_threshold)
        request = schedule.Request(target_fps=schedule.parse_fps(target_fps), source_fps=schedule.parse_fps(source_fps),
                                   speed=Fraction(repr(float(speed))))
        protection = protect_options(protect_mask, protect_feather, protect_overlays, frames, NAME)
        if meta_batch is not None:
            result, plan, carry, last = metabatch.run_batch(model, frames, None, request, options, meta_batch,
                                                            cls.hidden.prompt, unique_id, NAME, cls.pack().carries,
                                                            protection)
            fps_out = float(plan.out_fps or request.target_fps)
            summary = metabatch.summary(frames.shape[0], result, carry, last, source_fps, fps_out)
            host.send_text(summary["report"], unique_id)
            return io.NodeOutput(result.images, fps_out, summary["report"], result.overlays,
                                 ui={"emavfi": [summary]})
        line = timeline(frames, None, request, model.arbitrary_t, options, NAME)
        plan = line.plan
        if plan.warning:
            host.logger.warning("%s: %s", model.name, plan.warning)
        regions = Held(protection, line)
        result = run_clip(model, line.images, plan, options, mask=None, node_id=unique_id, held=regions.policy)
        fps_out = float(plan.out_fps or request.target_fps)
        found = line.input_cuts(result.cuts)
        report = cut_report(found, options.cut_threshold, frames.shape[0], len(plan.plan), source_fps, target_fps)
        if options.dedupe:
            report = f"{report}; {line.held_text()}"
        host.send_text(report, unique_id)
        summary = {"frames_in": frames.shape[0], "frames_out": len(plan.plan), "source_fps": source_fps,
                   "target_fps": target_fps, "speed": speed, "fps_out": fps_out, "cuts": found,
                   "report": report, "warning": plan.warning, **({"held": line.held} if options.dedupe else {})}
        return io.NodeOutput(result.images, fps_out, report, regions.overlay_mask(frames.shape[0]),
                             ui={"emavfi": [summary]})
