"""EMA-VFI video frame interpolation in pure PyTorch (CVPR 2023, "Extracting Motion and Appearance via
Inter-Frame Attention for Efficient Video Frame Interpolation"), compatible with the official weights."""
from . import loss, weights
from .config import VARIANTS, ModelConfig, get_config
from .errors import Cancelled, EmaVfiError, HubError, WeightsError
from .inference import interpolate, interpolate_sequence
from .model import EMAVFI
from .optimize import optimize
from .weights import build_model, load_model

__version__ = "0.1.0"
__all__ = [
    "EMAVFI", "VARIANTS", "Cancelled", "EmaVfiError", "HubError", "ModelConfig", "WeightsError",
    "build_model", "get_config", "interpolate", "interpolate_sequence", "optimize", "load_model", "loss", "weights",
]
