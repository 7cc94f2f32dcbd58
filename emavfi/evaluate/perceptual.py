"""Optional LPIPS (AlexNet), only from weights already on this machine: nothing is ever downloaded.

The `lpips` package ships its linear layers; the AlexNet backbone is torchvision's checkpoint, which must
already be in the torch hub cache (torch.hub.get_dir()/checkpoints).
"""
from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import torch

from ..settings import SettingsError

ALEXNET_FILE = "alexnet-owt-7be5be79.pth"  # torchvision's AlexNet weights, as the lpips package loads them


def alexnet_path() -> Path:
    """Where torchvision keeps the AlexNet checkpoint LPIPS needs."""
    return Path(torch.hub.get_dir()) / "checkpoints" / ALEXNET_FILE


def lpips_scorer(device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], dict[str, float]]:
    """A scorer adding {"lpips": distance} (0 = identical) of 0..1 images; SettingsError when unavailable."""
    try:
        import lpips
    except ImportError:
        raise SettingsError("--lpips needs the lpips package: pip install lpips torchvision") from None
    if not alexnet_path().is_file():
        raise SettingsError(f"--lpips needs torchvision's AlexNet weights at {alexnet_path()} (they are never "
                            "downloaded by emavfi); copy the file there, or run without --lpips")
    network = lpips.LPIPS(net="alex", verbose=False).eval().to(device)

    def score(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
        with torch.no_grad():
            pair = [x[None, :3].to(device, torch.float32).clamp(0, 1) * 2 - 1 for x in (truth, pred)]
            return {"lpips": float(network(*pair))}

    return score
