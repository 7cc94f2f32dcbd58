"""EMA-VFI Retime (`EMAVFI_Retime`): convert a clip to another frame rate (and speed), skipping scene cuts."""
from __future__ import annotations

from typing import Any

import torch

from ..emavfi import schedule
from . import host
from .frames import check_images
from .model import require_model
from .run import SCALES, parse_scale, run_clip
from .spec import CLIP_INPUTS, Input, NodeBase, Output

# Models trained for t = 0.5 only reach other times by bisection, to the nearest 1/2^depth.
NON_T_DYADIC_DEPTH = 4


def cut_report(cuts: list[int], threshold: float, frames_in: int, frames_out: int, source_fps: float,
               target_fps: float) -> str:
    head = f"{frames_in} frames at {source_fps:g} fps -> {frames_out} frames at {target_fps:g} fps"
    if threshold <= 0:
        return f"{head}; scene-cut detection off"
    if not cuts:
        return f"{head}; no scene cuts (threshold {threshold:g})"
    where = ", ".join(f"{i}|{i + 1}" for i in cuts[:20]) + (" ..." if len(cuts) > 20 else "")
    return f"{head}; {len(cuts)} scene cut(s) (threshold {threshold:g}) between frames {where}: not blended"


class RetimeNode(NodeBase):
    NODE_ID = "EMAVFI_Retime"
    DISPLAY_NAME = "EMA-VFI Retime"
    DESCRIPTION = ("Converts a clip from one frame rate to another (e.g. 24 -> 60 fps), or slows it down, by "
                   "making frames at the new times; frames that fall on source frames are copied unchanged.")
    INPUTS = (
        *CLIP_INPUTS,
        Input("source_fps", "FLOAT", "Frame rate of the input clip (23.976 and 29.97 are read as 24000/1001 "
              "and 30000/1001).", {"default": 24.0, "min": 0.001, "max": 1000.0, "step": 0.001}),
        Input("target_fps", "FLOAT", "Frame rate of the output clip.",
              {"default": 60.0, "min": 0.001, "max": 1000.0, "step": 0.001}),
        Input("scene_cut_threshold", "FLOAT", "Scene-cut sensitivity: pairs whose colours change more than this "
              "are not blended (the nearer frame is repeated). 0 disables.",
              {"default": schedule.DEFAULT_CUT_THRESHOLD, "min": 0.0, "max": 3.0, "step": 0.01}),
        Input("speed", "FLOAT", "Playback speed: 1 keeps the duration, 0.5 = half-speed slow motion.",
              {"default": 1.0, "min": 0.01, "max": 100.0, "step": 0.01}, optional=True),
        Input("tta", "BOOLEAN", "Test-time augmentation: slightly better, twice as slow.", {"default": False},
              optional=True),
        Input("scale", "COMBO", "Flow estimation resolution: 1.0 up to ~1080p, 0.5 for 2K, 0.25 for 4K.",
              {"default": "1.0"}, choices=SCALES, optional=True),
        Input("chunk_size", "INT", "Frame pairs sent to the device at once; 0 = automatic from free memory.",
              {"default": 0, "min": 0, "max": 256, "step": 1}, optional=True),
    )
    OUTPUTS = (
        Output("IMAGE", "images", "The retimed clip."),
        Output("FLOAT", "fps", "The output frame rate (target_fps)."),
        Output("STRING", "cut_report", "Frame counts and the scene cuts found (pairs that were not blended)."),
    )
    HIDDEN = {"unique_id": "UNIQUE_ID"}

    def run(self, images: torch.Tensor, model: Any, source_fps: float, target_fps: float,
            scene_cut_threshold: float = schedule.DEFAULT_CUT_THRESHOLD, speed: float = 1.0, tta: bool = False,
            scale: str = "1.0", chunk_size: int = 0, unique_id: str | None = None) -> dict[str, Any]:
        node = self.DISPLAY_NAME
        frames = check_images(images, node)
        model = require_model(model, node)
        depth = None if model.arbitrary_t else NON_T_DYADIC_DEPTH
        plan = schedule.retime_plan(frames.shape[0], source_fps, target_fps, speed=speed, dyadic_depth=depth)
        # recursive=None: bisection exactly when the model needs it (t = 0.5-only model, dyadic times).
        result = run_clip(model, frames, plan, mask=None, recursive=None, tta=tta, scale=parse_scale(scale),
                          chunk_size=chunk_size, cut_threshold=scene_cut_threshold, node_id=unique_id)
        fps_out = float(schedule.parse_fps(target_fps))
        report = cut_report(result.cuts, scene_cut_threshold, frames.shape[0], len(plan), source_fps, target_fps)
        host.send_text(report, unique_id)
        summary = {"frames_in": frames.shape[0], "frames_out": len(plan), "source_fps": source_fps,
                   "target_fps": target_fps, "speed": speed, "fps_out": fps_out, "cuts": result.cuts, "report": report}
        return {"ui": {"emavfi": [summary]}, "result": (result.images, fps_out, report)}
