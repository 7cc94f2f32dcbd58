"""EMA-VFI Interpolate (`EMAVFI_Interpolate`): (N-1)*multiplier+1 frames, source frames kept bit-exact."""
from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import torch

from ..emavfi import schedule
from . import host
from .frames import check_images, check_mask
from .model import require_model
from .run import SCALES, non_t_warning, parse_scale, placeholder_mask, run_clip, scaled_fps
from .spec import CLIP_INPUTS, Input, NodeBase, Output

MODES = ("direct", "recursive")


@dataclass(frozen=True)
class Steps:
    """The in-between times of every frame pair and how to reach them."""

    timesteps: tuple[Fraction, ...]
    recursive: bool

    @property
    def factor(self) -> int:
        """Output frames per input pair (the frame-rate factor)."""
        return len(self.timesteps) + 1


def plan_steps(multiplier: int, mode: str, timesteps: str = "") -> Steps:
    """Timesteps from the widgets: explicit `timesteps` text wins over `multiplier`. ValueError when invalid."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {', '.join(MODES)}; got {mode!r}")
    recursive = mode == "recursive"
    ts = schedule.multiplier_timesteps(multiplier)  # also checks the multiplier when timesteps replace it
    text = (timesteps or "").strip()
    if not text:
        if recursive:
            schedule.recursive_levels(multiplier)  # raises: recursive mode needs a power of two
        return Steps(tuple(ts), recursive)
    ts = schedule.parse_timesteps_exact(text)
    if recursive:
        odd = [t for t in ts if schedule.dyadic_depth(t) is None]
        if odd:
            raise ValueError(f"recursive (bisection) mode can only make t = k/2^d (0.5, 0.25, 0.125 ...); "
                             f"got {float(odd[0]):g} in {text!r}. Use mode = direct with a `_t` model")
    return Steps(tuple(ts), recursive)


class InterpolateNode(NodeBase):
    NODE_ID = "EMAVFI_Interpolate"
    DISPLAY_NAME = "EMA-VFI Interpolate"
    DESCRIPTION = ("Raises the frame rate of a clip: makes (N-1) x multiplier + 1 frames from N, keeping the "
                   "original frames unchanged. Optional mask is interpolated with the same motion.")
    INPUTS = (
        *CLIP_INPUTS,
        Input("multiplier", "INT", "Frame-rate factor: output has (N-1) x multiplier + 1 frames.",
              {"default": 2, "min": 2, "max": schedule.MAX_MULTIPLIER, "step": 1}),
        Input("mode", "COMBO", "direct: every in-between time i/multiplier from one feature pass (best with _t "
              "models). recursive: repeated halving at t = 0.5 (any model; multiplier 2, 4, 8 or 16).",
              {"default": "direct"}, choices=MODES),
        Input("timesteps", "STRING", "Optional explicit in-between times per frame pair, e.g. '0.25, 0.5, 0.75' "
              "or '1/3, 2/3'; replaces the multiplier when set. Each in (0, 1), increasing.",
              {"default": "", "placeholder": "e.g. 0.25, 0.5, 0.75 (empty: use multiplier)"}, optional=True),
        Input("tta", "BOOLEAN", "Test-time augmentation: average with a pass on the rotated frames. Slightly "
              "better, twice as slow.", {"default": False}, optional=True),
        Input("scale", "COMBO", "Flow estimation resolution: 1.0 up to ~1080p, 0.5 for 2K, 0.25 for 4K (large "
              "motion at high resolution, less memory).", {"default": "1.0"}, choices=SCALES, optional=True),
        Input("chunk_size", "INT", "Frame pairs sent to the device at once; 0 = automatic from free memory. "
              "Halved automatically after an out-of-memory error.",
              {"default": 0, "min": 0, "max": 256, "step": 1}, optional=True),
        Input("scene_cut_threshold", "FLOAT", "Scene-cut sensitivity: pairs whose colours change more than this "
              f"are not blended (the nearer frame is repeated). 0 disables; {schedule.DEFAULT_CUT_THRESHOLD:g} is a "
              "good start.",
              {"default": schedule.DEFAULT_CUT_THRESHOLD, "min": 0.0, "max": 3.0, "step": 0.01}, optional=True),
        Input("fps", "FLOAT", "Frame rate of the input clip (link it from Get Video Components); fps out = "
              "fps x multiplier. 0 = unknown.", {"default": 24.0, "min": 0.0, "max": 1000.0, "step": 0.001},
              optional=True),
        Input("mask", "MASK", "Optional mask per frame (same count and size as the images), interpolated with "
              "the same motion and blending as the images.", optional=True),
    )
    OUTPUTS = (
        Output("IMAGE", "images", "The interpolated clip, (N-1) x multiplier + 1 frames."),
        Output("FLOAT", "fps", "Output frame rate: fps x multiplier (0 when fps is 0)."),
        Output("MASK", "mask", "The interpolated mask (64x64 zeros per frame when no mask came in)."),
    )
    HIDDEN = {"unique_id": "UNIQUE_ID"}

    @classmethod
    def VALIDATE_INPUTS(cls, timesteps: str | None = None) -> bool | str:  # noqa: N802 (ComfyUI's name)
        """Reject a bad timesteps text when the prompt is queued, before anything runs. Only this input is
        checked here: ComfyUI then still checks the others' ranges itself, and reports the error once."""
        if not (timesteps or "").strip():  # empty, or linked (checked when the node runs)
            return True
        try:
            schedule.parse_timesteps_exact(timesteps)
        except (TypeError, ValueError) as exc:
            return str(exc)
        return True

    def run(self, images: torch.Tensor, model: Any, multiplier: int, mode: str, timesteps: str = "",
            tta: bool = False, scale: str = "1.0", chunk_size: int = 0,
            scene_cut_threshold: float = schedule.DEFAULT_CUT_THRESHOLD,
            fps: float = 24.0, mask: torch.Tensor | None = None, unique_id: str | None = None) -> dict[str, Any]:
        node = self.DISPLAY_NAME
        frames = check_images(images, node)
        mask = check_mask(mask, frames, node)
        model = require_model(model, node)
        steps = plan_steps(multiplier, mode, timesteps)
        warning = non_t_warning(model, steps.timesteps, steps.recursive)
        if warning:
            host.logger.warning(warning)
            host.send_text(warning, unique_id)
        plan = schedule.timesteps_plan(frames.shape[0], steps.timesteps)
        result = run_clip(model, frames, plan, mask=mask, recursive=steps.recursive, tta=tta,
                          scale=parse_scale(scale), chunk_size=chunk_size, cut_threshold=scene_cut_threshold,
                          node_id=unique_id)
        fps_out = scaled_fps(fps, steps.factor)
        out_mask = result.mask if result.mask is not None else placeholder_mask(len(plan))
        summary = {"frames_in": frames.shape[0], "frames_out": len(plan), "fps_in": fps, "fps_out": fps_out,
                   "cuts": result.cuts, "warning": warning}
        return {"ui": {"emavfi": [summary]}, "result": (result.images, fps_out, out_mask)}
