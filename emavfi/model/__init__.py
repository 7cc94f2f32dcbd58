"""nn.Modules of EMA-VFI (no I/O, no caches created in forward)."""
from .backbone import Features, MotionFormer
from .network import EMAVFI, FlowEstimate, Synthesis

__all__ = ["EMAVFI", "Features", "FlowEstimate", "MotionFormer", "Synthesis"]
