"""Each set's official choices (TTA per model, HR scale, frame preparation, score arithmetic), in one table.

Source of every row: the authors' benchmark script of that set, as summarised in ../shared/spec/benchmarks.md
(and docs/evaluation.md). All scripts read frames with OpenCV, so the network sees BGR (`bgr=True`).
"""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

import numpy as np
import torch
import torch.nn.functional as F

from . import metrics

Scorer = Callable[[torch.Tensor, torch.Tensor], dict[str, float]]
LARGE_VARIANTS = ("ours", "ours_t")  # the scripts turn TTA on for these, off for the small models
SIZE_2K = (1080, 2048)  # (height, width) of the "resized" Xiph frames and XTest-2K


def unrounded(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """PSNR and ssim_matlab of the unrounded prediction (Vimeo90K, SNU-FILM, hold-out)."""
    return {"psnr": metrics.psnr(truth, pred), "ssim": metrics.ssim_matlab(truth, pred)}


def rounded(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """PSNR and ssim_matlab of the prediction rounded to 8 bits (UCF101)."""
    return unrounded(truth, metrics.round8(pred))


def with_ie(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """Middlebury: IE of the 8-bit prediction, plus PSNR/SSIM as for Vimeo90K."""
    return {**unrounded(truth, pred), "ie": metrics.interpolation_error(truth, pred)}


def scikit(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """Xiph: scikit-image PSNR and SSIM of the 8-bit frames."""
    return {"psnr": metrics.skimage_psnr(truth, pred), "ssim": metrics.skimage_ssim(truth, pred)}


def rounded_psnr(truth: torch.Tensor, pred: torch.Tensor) -> dict[str, float]:
    """XTest: PSNR of the 8-bit prediction, ssim_matlab of the unrounded one."""
    return {"psnr": metrics.psnr(truth, metrics.round8(pred)), "ssim": metrics.ssim_matlab(truth, pred)}


def area_resize(frame: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """uint8 [H,W,C] -> `size` (height, width) by area averaging, rounded half up to uint8.

    Whole-number factors (4096x2160 -> 2048x1080) average blocks exactly as OpenCV's INTER_AREA does for
    8-bit frames; other factors use adaptive average pooling, which differs from OpenCV in the last bit."""
    height, width = size
    if frame.shape[:2] == (height, width):
        return frame
    fy, fx = frame.shape[0] / height, frame.shape[1] / width
    if fy.is_integer() and fx.is_integer():
        h, w, c = frame.shape
        blocks = frame.reshape(height, int(fy), width, int(fx), c).sum(axis=(1, 3), dtype=np.int32)
        count = int(fy * fx)
        return ((blocks + count // 2) // count).astype(np.uint8)
    tensor = torch.from_numpy(frame).permute(2, 0, 1)[None].double()
    pooled = F.adaptive_avg_pool2d(tensor, size)[0].permute(1, 2, 0)
    return torch.floor(pooled + 0.5).clamp(0, 255).to(torch.uint8).numpy()


def crop_4k(frame: np.ndarray) -> np.ndarray:
    """The Xiph 'cropped' category: the centre of a 4K frame, frame[540:-540, 1024:-1024]."""
    if frame.shape[0] <= 1080 or frame.shape[1] <= 2048:
        raise ValueError(f"the Xiph 'cropped' protocol needs 4K frames (4096x2160); got "
                         f"{frame.shape[1]}x{frame.shape[0]}")
    return frame[540:-540, 1024:-1024]


PREPARE: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "none": lambda frame: frame, "area-2k": lambda frame: area_resize(frame, SIZE_2K), "crop-4k": crop_4k}


@dataclass(frozen=True)
class Protocol:
    """How one set (or subset) is evaluated: frame preparation, HR scale, TTA rule, channel order, scorer."""

    name: str  # e.g. "vimeo90k", "snu-film/hard", "xiph/resized"
    scorer: Scorer
    scale: float = 1.0
    prepare: str = "none"  # a key of PREPARE
    tta_large: bool = True  # TTA for `ours`/`ours_t`; always off for the small models
    bgr: bool = True
    tta: bool | None = None  # None: by the variant (tta_large rule); set by the user's --tta/--no-tta

    def tta_for(self, variant: str) -> bool:
        """TTA as the official script runs this variant, unless the user chose."""
        if self.tta is not None:
            return self.tta
        return self.tta_large and variant in LARGE_VARIANTS

    def with_options(self, *, tta: bool | None = None, scale: float | None = None, bgr: bool | None = None) -> Protocol:
        """This protocol with the user's overrides (None keeps the official choice)."""
        return replace(self, tta=self.tta if tta is None else tta, scale=self.scale if scale is None else scale,
                       bgr=self.bgr if bgr is None else bgr)

    def describe(self, variant: str) -> dict[str, object]:
        """The choices of this run, for the result's settings and the table header."""
        return {"tta": self.tta_for(variant), "scale": self.scale, "channel_order": "bgr" if self.bgr else "rgb",
                "prepare": self.prepare, "scoring": self.scorer.__name__}


def protocol(set_name: str, subset: str | None = None) -> Protocol:
    """The official protocol of a set (subset: SNU-FILM level, Xiph category, XTest 2k/4k)."""
    if set_name in ("vimeo90k", "middlebury"):
        return Protocol(set_name, with_ie if set_name == "middlebury" else unrounded)
    if set_name == "ucf101":
        return Protocol(set_name, rounded)
    if set_name == "snu-film":
        return Protocol(f"snu-film/{subset}", unrounded, scale=0.5)
    if set_name == "xiph":
        return Protocol(f"xiph/{subset}", scikit, scale=0.5, prepare="area-2k" if subset == "resized" else "crop-4k")
    if set_name == "x4k":
        two_k = subset == "2k"
        return Protocol(f"x4k/{subset}", rounded_psnr, scale=0.5 if two_k else 0.25,
                        prepare="area-2k" if two_k else "none")
    raise ValueError(f"unknown data set {set_name!r}")
