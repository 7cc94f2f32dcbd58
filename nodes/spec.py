"""What ComfyUI's V3 schema leaves to the pack: the pinned API version, the pack's type ids, and the inputs that
more than one node declares (written once here, so Interpolate and Retime cannot drift apart).

`comfy_api.v0_0_2` is a numbered API version, as ComfyUI's maintainers advise (`latest` may change under a pack).
It needs ComfyUI's source on the import path, as it is inside ComfyUI.
"""
from __future__ import annotations

from typing import ClassVar

from comfy_api.v0_0_2 import ComfyExtension, io

from ..emavfi.overlays import CONTEXT
from ..emavfi.settings import DEFAULT_PROTECT_FEATHER, MAX_CHUNK, MAX_PROTECT_FEATHER, SCALES

API_VERSION = "0.0.2"
CATEGORY = "video/frame interpolation"
MODEL = io.Custom("EMAVFI_MODEL")  # an EmaVfiModel, from the loader to Interpolate / Retime
# VideoHelperSuite's Meta Batch Manager: its id, which saved workflows link by.
META_BATCH = io.Custom("VHS_BatchManager")
SCALE_CHOICES = tuple(str(scale) for scale in SCALES)  # "1.0", "0.5", "0.25"


class ClipNodeSchema:
    """The V3 `define_schema` of a node that makes frames from a clip (Interpolate, Retime), from the node's own
    NODE_ID, DISPLAY_NAME, DESCRIPTION, clip_inputs() and clip_outputs(): the frames and the model first, then its
    inputs, the meta-batch link, then the held regions (added later: saved workflows keep their order); its
    outputs, then the overlay mask; the node id and the prompt as hidden inputs."""

    NODE_ID: ClassVar[str]
    DISPLAY_NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str]

    @classmethod
    def clip_inputs(cls) -> list[io.Input]:
        """The node's own inputs, between the model and the meta-batch link."""
        raise NotImplementedError

    @classmethod
    def clip_outputs(cls) -> list[io.Output]:
        """The node's own outputs, before the overlay mask."""
        raise NotImplementedError

    @classmethod
    def define_schema(cls) -> io.Schema:
        clip = [io.Image.Input("images", tooltip="The clip: a batch of at least 2 frames, in order."),
                MODEL.Input("model", tooltip="From Load EMA-VFI Model.")]
        return io.Schema(node_id=cls.NODE_ID, display_name=cls.DISPLAY_NAME, category=CATEGORY,
                         description=cls.DESCRIPTION,
                         inputs=[*clip, *cls.clip_inputs(), _meta_batch_input(), *protect_inputs()],
                         outputs=[*cls.clip_outputs(), _overlay_mask_output()],
                         hidden=[io.Hidden.unique_id, io.Hidden.prompt])  # progress and status text; meta batches


def run_inputs(cut_default: float) -> list[io.Input]:
    """How in-between frames are computed: the optional inputs Interpolate and Retime share
    (emavfi.settings.RunOptions)."""
    return [
        io.Boolean.Input("tta", default=False, optional=True, tooltip="Test-time augmentation: average with a "
                         "pass on the rotated frames. Slightly better, twice as slow."),
        io.Combo.Input("scale", options=list(SCALE_CHOICES), default="1.0", optional=True, tooltip="Flow "
                       "estimation resolution: 1.0 up to ~1080p, 0.5 for 2K, 0.25 for 4K (large motion at high "
                       "resolution, less memory)."),
        io.Int.Input("chunk_size", default=0, min=0, max=MAX_CHUNK, step=1, optional=True, tooltip="Frame pairs "
                     "per device batch; 0 = automatic (1 on CPU, from free memory on a GPU). Halved automatically "
                     "after an out-of-memory error."),
        io.Float.Input("scene_cut_threshold", default=cut_default, min=0.0, max=20.0, step=0.1, optional=True,
                       tooltip="Scene-cut sensitivity: a pair whose change stands out this many times above its "
                       "neighbours' is a cut and is not blended (the nearer frame is repeated). "
                       f"{cut_default:g} is the default; 1.5 eager, 6 strict; 0 disables."),
    ]


def dedupe_inputs(threshold_default: float, max_threshold: float) -> list[io.Input]:
    """Held-frame retiming (emavfi.dedupe): optional inputs appended after a node's other inputs, so workflows
    saved before they existed keep their widget values in place."""
    return [
        io.Boolean.Input("dedupe", default=False, optional=True, tooltip="Drop held frames (anime on twos or "
                         "threes, repeated captures) and retime the drawings at their true times: the same duration "
                         "and frame count, smooth motion instead of stutter. The node reports how many frames were "
                         "held."),
        io.Float.Input("dedupe_threshold", default=threshold_default, min=0.0, max=max_threshold, step=0.1,
                       optional=True, tooltip="How far a held frame may differ from the one before, in multiples of "
                       f"the difference noise alone makes: 1.5 strict, {threshold_default:g} default, 4 lenient; 0 = "
                       "bit-identical repeats only. Used when dedupe is on."),
    ]


def protect_inputs() -> list[io.Input]:
    """Held regions (emavfi.protect): optional inputs after all the others (saved widget values stay put)."""
    return [
        io.Mask.Input("protect_mask", optional=True, tooltip="Optional: where the picture must not move (burned-in "
                      "text, a logo, UI). Inside it an in-between frame shows the nearest source frame (the earlier "
                      "on a tie); outside nothing changes. One mask per input frame, or one for all."),
        io.Int.Input("protect_feather", default=DEFAULT_PROTECT_FEATHER, min=0, max=MAX_PROTECT_FEATHER, step=1,
                     optional=True, tooltip="Px over which the held regions' edge blends into the interpolated "
                     "picture (protect_mask and protect_overlays)."),
        io.Boolean.Input("protect_overlays", default=False, optional=True, tooltip="Find burned-in overlays "
                         "(timecode, subtitles, logos, HUDs: pixels that stay put while the picture moves) and hold "
                         "them. The overlay_mask output shows what was found."),
    ]


def _overlay_mask_output() -> io.Output:
    """The detected overlays, after a node's other outputs (saved links go by output index)."""
    return io.Mask.Output(display_name="overlay_mask", tooltip="The burned-in overlays found, one mask per input "
                          "frame (all zeros when protect_overlays is off). With a Meta Batch Manager a batch returns "
                          f"the masks of the input frames whose next {CONTEXT} frames have come (the previous "
                          f"batch's last {CONTEXT} and its own first ones; the last batch: its own last ones too), so "
                          "joined they are one per input frame; off: zeros, one per frame of the batch.")


def _meta_batch_input() -> io.Input:
    """The optional link to VideoHelperSuite's Meta Batch Manager."""
    return META_BATCH.Input(
        "meta_batch", optional=True, tooltip="Optional: link VideoHelperSuite's Meta Batch Manager (the same one "
        "Load Video and Video Combine use) to process a long clip in batches: the last frames of each batch are "
        "carried to the next, so the joined video equals one whole run.")


__all__ = ["API_VERSION", "CATEGORY", "ClipNodeSchema", "ComfyExtension", "META_BATCH", "MODEL", "dedupe_inputs",
           "io", "protect_inputs", "run_inputs"]
