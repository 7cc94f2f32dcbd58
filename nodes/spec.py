"""Declarative node schema for ComfyUI's classic (V1) node API.

Each node lists its inputs and outputs as small frozen records; `NodeBase` turns them into the
`INPUT_TYPES` / `RETURN_TYPES` / `RETURN_NAMES` / `OUTPUT_TOOLTIPS` attributes ComfyUI reads. The records map
one-to-one onto V3's `io.<Type>.Input(name, tooltip=..., **options)` / `io.<Type>.Output(display_name=...)`, so a
later port to `comfy_api.latest` is a mechanical rewrite of `NodeBase`, not of the nodes.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..emavfi.settings import MAX_CHUNK, SCALES

PREFIX = "EMAVFI_"
CATEGORY = "video/frame interpolation"
MODEL_TYPE = "EMAVFI_MODEL"

Choices = Sequence[str] | Callable[[], Sequence[str]]


@dataclass(frozen=True)
class Input:
    """One node input.

    name:     keyword the node function receives.
    type:     ComfyUI type string ("IMAGE", "INT", "EMAVFI_MODEL", ...) or "COMBO" with `choices`.
    tooltip:  shown on hover; every input has one.
    options:  widget options (default, min, max, step, multiline, forceInput, ...).
    choices:  combo values, or a callable evaluated each time ComfyUI asks (file lists).
    optional: listed under "optional" (the node function gets its default when unlinked).
    """

    name: str
    type: str
    tooltip: str
    options: Mapping[str, Any] = field(default_factory=dict)
    choices: Choices | None = None
    optional: bool = False

    def __post_init__(self) -> None:
        if not self.tooltip:
            raise ValueError(f"input {self.name!r} needs a tooltip")
        if (self.type == "COMBO") != (self.choices is not None):
            raise ValueError(f"input {self.name!r}: choices go with type 'COMBO' and only with it")

    def declaration(self) -> tuple[Any, dict[str, Any]]:
        """The `(type, options)` pair of `INPUT_TYPES`; a combo is declared as its list of values."""
        opts = {"tooltip": self.tooltip, **self.options}
        if self.choices is None:
            return (self.type, opts)
        values = list(self.choices() if callable(self.choices) else self.choices)
        return (values, opts)


@dataclass(frozen=True)
class Output:
    type: str
    name: str
    tooltip: str


CLIP_INPUTS = (
    Input("images", "IMAGE", "The clip: a batch of at least 2 frames, in order."),
    Input("model", MODEL_TYPE, "From Load EMA-VFI Model."),
)

SCALE_CHOICES = tuple(str(scale) for scale in SCALES)  # "1.0", "0.5", "0.25"


def run_inputs(cut_default: float) -> tuple[Input, ...]:
    """How in-between frames are computed: the optional inputs Interpolate and Retime share (emavfi.settings.RunOptions)."""
    return (
        Input("tta", "BOOLEAN", "Test-time augmentation: average with a pass on the rotated frames. Slightly "
              "better, twice as slow.", {"default": False}, optional=True),
        Input("scale", "COMBO", "Flow estimation resolution: 1.0 up to ~1080p, 0.5 for 2K, 0.25 for 4K (large "
              "motion at high resolution, less memory).", {"default": "1.0"}, choices=SCALE_CHOICES, optional=True),
        Input("chunk_size", "INT", "Frame pairs per device batch; 0 = automatic (1 on CPU, from free memory on a "
              "GPU). Halved automatically after an out-of-memory error.",
              {"default": 0, "min": 0, "max": MAX_CHUNK, "step": 1}, optional=True),
        Input("scene_cut_threshold", "FLOAT", "Scene-cut sensitivity: a pair whose change stands out this many "
              "times above its neighbours' is a cut and is not blended (the nearer frame is repeated). "
              f"{cut_default:g} is the default; 1.5 eager, 6 strict; 0 disables.",
              {"default": cut_default, "min": 0.0, "max": 20.0, "step": 0.1}, optional=True),
    )


def dedupe_inputs(threshold_default: float, max_threshold: float) -> tuple[Input, ...]:
    """Held-frame retiming (emavfi.dedupe): optional inputs appended after a node's other inputs, so workflows
    saved before they existed keep their widget values in place."""
    return (
        Input("dedupe", "BOOLEAN", "Drop held frames (anime on twos or threes, repeated captures) and retime the "
              "drawings at their true times: the same duration and frame count, smooth motion instead of "
              "stutter. The node reports how many frames were held.", {"default": False}, optional=True),
        Input("dedupe_threshold", "FLOAT", "How far a held frame may differ from the one before, in multiples of "
              f"the difference noise alone makes: 1.5 strict, {threshold_default:g} default, 4 lenient; 0 = "
              "bit-identical repeats only. Used when dedupe is on.",
              {"default": threshold_default, "min": 0.0, "max": max_threshold, "step": 0.1}, optional=True),
    )


META_BATCH_TYPE = "VHS_BatchManager"
META_BATCH_INPUT = Input(
    "meta_batch", META_BATCH_TYPE, "Optional: link VideoHelperSuite's Meta Batch Manager (the same one Load Video "
    "and Video Combine use) to process a long clip in batches: the last frames of each batch are carried to the "
    "next, so the joined video equals one whole run.", optional=True)


class NodeBase:
    """Fills the V1 attributes from `INPUTS` / `OUTPUTS`; subclasses set `NODE_ID`, `DISPLAY_NAME`, `FUNCTION`."""

    NODE_ID: ClassVar[str]
    DISPLAY_NAME: ClassVar[str]
    DESCRIPTION: ClassVar[str] = ""
    CATEGORY: ClassVar[str] = CATEGORY
    FUNCTION: ClassVar[str] = "run"
    INPUTS: ClassVar[tuple[Input, ...]] = ()
    OUTPUTS: ClassVar[tuple[Output, ...]] = ()
    # ComfyUI hidden inputs this node wants, keyword -> hidden type (e.g. {"unique_id": "UNIQUE_ID"}).
    HIDDEN: ClassVar[Mapping[str, str]] = {}

    RETURN_TYPES: ClassVar[tuple[str, ...]]
    RETURN_NAMES: ClassVar[tuple[str, ...]]
    OUTPUT_TOOLTIPS: ClassVar[tuple[str, ...]]

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not cls.NODE_ID.startswith(PREFIX):
            raise ValueError(f"node id {cls.NODE_ID!r} must start with {PREFIX!r}")
        names = [i.name for i in cls.INPUTS] + list(cls.HIDDEN)
        if len(set(names)) != len(names):
            raise ValueError(f"{cls.NODE_ID}: duplicate input names {names}")
        cls.RETURN_TYPES = tuple(o.type for o in cls.OUTPUTS)
        cls.RETURN_NAMES = tuple(o.name for o in cls.OUTPUTS)
        cls.OUTPUT_TOOLTIPS = tuple(o.tooltip for o in cls.OUTPUTS)

    @classmethod
    def INPUT_TYPES(cls) -> dict[str, dict[str, Any]]:  # noqa: N802 (ComfyUI's name)
        types: dict[str, dict[str, Any]] = {"required": {}, "optional": {}}
        for spec in cls.INPUTS:
            types["optional" if spec.optional else "required"][spec.name] = spec.declaration()
        if cls.HIDDEN:
            types["hidden"] = dict(cls.HIDDEN)
        return types


def node_mappings(*nodes: type[NodeBase]) -> tuple[dict[str, type[NodeBase]], dict[str, str]]:
    """NODE_CLASS_MAPPINGS and NODE_DISPLAY_NAME_MAPPINGS for the given node classes."""
    return {n.NODE_ID: n for n in nodes}, {n.NODE_ID: n.DISPLAY_NAME for n in nodes}
