"""Image-quality metrics exactly as the official benchmark scripts compute them (see docs/evaluation.md).

All functions take one frame pair, `truth` and `pred`, as [3,H,W] (or [1,3,H,W]) float tensors in 0..1
(or 8-bit numpy/torch arrays where named) and return a Python float. Arithmetic is done in float64 on the
CPU so a score does not depend on the device or precision the prediction was made with.

- `psnr`: -10·log10(mean((truth - pred)²)) on 0..1 values (Vimeo90K, UCF101, SNU-FILM, X4K scripts);
  inf for identical frames.
- `ssim_matlab`: the authors' SSIM: one 3-D Gaussian window (11, σ 1.5) over (channel, row, column) with
  replicate padding of 5 on all three axes; dynamic range inferred from `truth`.
- `round8`: a prediction rounded to 8 bits (round half to even, as numpy/torch round) and back to 0..1.
- `interpolation_error`: Middlebury IE, mean |round(pred·255) − truth·255| in 8-bit units.
- `skimage_psnr` / `skimage_ssim`: scikit-image's PSNR and SSIM of 8-bit frames (the Xiph script).
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F

SSIM_WINDOW = 11
SSIM_SIGMA = 1.5


def _as_chw64(name: str, image: Any) -> torch.Tensor:
    """[C,H,W] float64 CPU tensor of an image given as [C,H,W] or [1,C,H,W]."""
    tensor = torch.as_tensor(image)
    if tensor.dim() == 4 and tensor.shape[0] == 1:
        tensor = tensor[0]
    if tensor.dim() != 3:
        raise ValueError(f"{name} must be one image [C,H,W] (or [1,C,H,W]); got shape {list(tensor.shape)}")
    return tensor.detach().to("cpu", torch.float64)


def _pair(truth: Any, pred: Any) -> tuple[torch.Tensor, torch.Tensor]:
    truth, pred = _as_chw64("truth", truth), _as_chw64("pred", pred)
    if truth.shape != pred.shape:
        raise ValueError(f"truth and prediction differ in shape: {list(truth.shape)} vs {list(pred.shape)}")
    return truth, pred


def psnr(truth: Any, pred: Any) -> float:
    """PSNR in dB of 0..1 images (peak 1): -10·log10(mean squared error); inf when they are equal."""
    truth, pred = _pair(truth, pred)
    mse = float(((truth - pred) ** 2).mean())
    return math.inf if mse == 0 else -10.0 * math.log10(mse)


def round8(image: torch.Tensor) -> torch.Tensor:
    """A 0..1 image quantised to 8 bits and back: round(x·255)/255 (clamped first; half to even), computed
    in the image's own dtype as the scripts do (float32 predictions are rounded in float32)."""
    return torch.round(torch.as_tensor(image).clamp(0, 1) * 255) / 255


def _gaussian(size: int, sigma: float) -> torch.Tensor:
    offsets = torch.arange(size, dtype=torch.float64) - size // 2
    weights = torch.exp(-offsets ** 2 / (2 * sigma ** 2))
    return weights / weights.sum()


def _blur3d(volume: torch.Tensor, kernel: torch.Tensor) -> torch.Tensor:
    """[K,D,H,W] -> each map correlated ('valid') with the separable window kernel⊗kernel⊗kernel.

    One axis at a time as a weighted sum of shifted views: in float64 on a CPU this is several times faster
    than conv3d, and equal to the full 3-D window to rounding (checked against scipy in the tests)."""
    size = kernel.numel()
    for axis in (1, 2, 3):
        length = volume.shape[axis] - size + 1
        out = volume.narrow(axis, 0, length) * float(kernel[0])
        for offset in range(1, size):
            out.add_(volume.narrow(axis, offset, length), alpha=float(kernel[offset]))
        volume = out
    return volume


def ssim_matlab(truth: Any, pred: Any) -> float:
    """The authors' SSIM of two images [C,H,W]: colour as a third axis under one 3-D Gaussian window.

    Range L = (255 if max(truth) > 128 else 1) - (-1 if min(truth) < -0.5 else 0); C1 = (0.01 L)²,
    C2 = (0.03 L)²; mean of the SSIM map over channels, rows and columns.
    """
    truth, pred = _pair(truth, pred)
    if min(truth.shape[-2:]) < SSIM_WINDOW:
        raise ValueError(f"ssim_matlab needs frames of at least {SSIM_WINDOW}x{SSIM_WINDOW}; "
                         f"got {truth.shape[-1]}x{truth.shape[-2]}")
    top = 255.0 if float(truth.max()) > 128 else 1.0
    bottom = -1.0 if float(truth.min()) < -0.5 else 0.0
    c1, c2 = (0.01 * (top - bottom)) ** 2, (0.03 * (top - bottom)) ** 2
    half = SSIM_WINDOW // 2
    stack = torch.stack([truth, pred, truth * truth, pred * pred, truth * pred])[None]  # [1,5,C,H,W]
    stack = F.pad(stack, (half,) * 6, mode="replicate")[0]
    mu1, mu2, e11, e22, e12 = _blur3d(stack, _gaussian(SSIM_WINDOW, SSIM_SIGMA))
    var1, var2, cov = e11 - mu1 * mu1, e22 - mu2 * mu2, e12 - mu1 * mu2
    ssim_map = ((2 * mu1 * mu2 + c1) * (2 * cov + c2)) / ((mu1 * mu1 + mu2 * mu2 + c1) * (var1 + var2 + c2))
    return float(ssim_map.mean())


def interpolation_error(truth: Any, pred: Any) -> float:
    """Middlebury IE in 8-bit units: mean |round(pred·255) - truth·255|, truth an 8-bit frame scaled to 0..1
    (its codes are recovered exactly by rounding, so float32 truth gives the same integers as the file)."""
    truth, pred = _pair(round8(truth), round8(pred))
    return float(((pred - truth) * 255).round().abs().mean())


def to_uint8_hwc(image: torch.Tensor) -> Any:
    """[3,H,W] 0..1 -> numpy uint8 [H,W,3]: clamped, rounded (half to even), as the Xiph script stores it."""
    tensor = torch.as_tensor(image).detach().cpu()
    tensor = tensor[0] if tensor.dim() == 4 and tensor.shape[0] == 1 else tensor
    return torch.round(tensor.clamp(0, 1) * 255).to(torch.uint8).permute(1, 2, 0).numpy()


def _skimage_metrics() -> Any:
    try:
        from skimage import metrics
    except ImportError:
        raise ImportError("the Xiph protocol scores with scikit-image: pip install scikit-image "
                          "(see requirements-evaluate.txt)") from None
    return metrics


def skimage_psnr(truth: Any, pred: Any) -> float:
    """scikit-image peak_signal_noise_ratio of two 0..1 images after 8-bit rounding (data_range 255)."""
    metrics = _skimage_metrics()
    return float(metrics.peak_signal_noise_ratio(to_uint8_hwc(truth), to_uint8_hwc(pred), data_range=255))


def skimage_ssim(truth: Any, pred: Any) -> float:
    """scikit-image structural_similarity (its defaults: 7x7 uniform window, per channel) of 8-bit frames."""
    metrics = _skimage_metrics()
    return float(metrics.structural_similarity(to_uint8_hwc(truth), to_uint8_hwc(pred), data_range=255,
                                               channel_axis=2))
