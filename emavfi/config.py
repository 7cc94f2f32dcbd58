"""Architecture configurations: one frozen dataclass, four named official variants."""
from __future__ import annotations

from dataclasses import dataclass

VARIANTS: tuple[str, ...] = ("ours", "ours_small", "ours_t", "ours_small_t")
DEFAULT_VARIANT = "ours_small_t"  # small, and makes any t directly: the CLI's, the nodes' and build_model's default


@dataclass(frozen=True)
class ModelConfig:
    """Everything the network shape depends on; derived numbers are properties.

    width:      base channel count F (32 for ours, 16 for ours_small).
    depths:     blocks per stage for the five stages (only stages 4 and 5 are transformers).
    window:     attention window side (7 in every official model).
    arbitrary_t: trained for any timestep in [0, 1] (the `_t` checkpoints) rather than only t = 0.5.
    """

    width: int = 16
    depths: tuple[int, int, int, int, int] = (2, 2, 2, 2, 2)
    window: int = 7
    arbitrary_t: bool = True

    @property
    def embed_dims(self) -> tuple[int, ...]:
        return tuple(self.width * m for m in (1, 2, 4, 8, 16))

    @property
    def num_heads(self) -> tuple[int, int]:
        """Heads of stages 4 and 5: the per-head width is always 32 in the official models."""
        return (max(1, 8 * self.width // 32), max(1, 16 * self.width // 32))

    @property
    def motion_dims(self) -> tuple[int, int]:
        """Per-block motion width of stages 4 and 5; a stage's total is 8F resp. 16F."""
        return (8 * self.width // self.depths[3], 16 * self.width // self.depths[4])

    @property
    def head_hidden(self) -> int:
        return 4 * self.width

    @property
    def unet_width(self) -> int:
        return 2 * self.width

    @property
    def architecture(self) -> tuple[int, tuple[int, ...], int]:
        """What the state dict shapes depend on (the `_t` flag does not change any shape)."""
        return (self.width, self.depths, self.window)


_PRESETS = {
    "ours": ModelConfig(width=32, depths=(2, 2, 2, 4, 4), arbitrary_t=False),
    "ours_t": ModelConfig(width=32, depths=(2, 2, 2, 4, 4), arbitrary_t=True),
    "ours_small": ModelConfig(width=16, depths=(2, 2, 2, 2, 2), arbitrary_t=False),
    "ours_small_t": ModelConfig(width=16, depths=(2, 2, 2, 2, 2), arbitrary_t=True),
}


def get_config(variant: str) -> ModelConfig:
    """Return the configuration of an official variant name."""
    if not isinstance(variant, str) or variant not in _PRESETS:
        raise ValueError(f"unknown EMA-VFI variant {variant!r}; choose one of {', '.join(VARIANTS)}")
    return _PRESETS[variant]
