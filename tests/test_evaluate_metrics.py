"""Metric arithmetic of emavfi.evaluate against independent computations on real photographs."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from emavfi.evaluate import metrics
from evaluate_helpers import pan

ndimage = pytest.importorskip("scipy.ndimage")
skm = pytest.importorskip("skimage.metrics")


@pytest.fixture(scope="module")
def pair() -> tuple[torch.Tensor, torch.Tensor]:
    """A real frame and a plausible prediction of it (its neighbour in a pan, slightly off)."""
    clip = pan(3, h=36, w=44)
    return clip[1], (clip[0] + clip[2]) / 2 + 0.004


def _ssim_by_hand(a: np.ndarray, b: np.ndarray) -> float:
    """The spec's ssim_matlab with a full (non-separable) 3-D window in numpy/scipy, range 1."""
    g = np.exp(-((np.arange(11) - 5) ** 2) / (2 * 1.5 ** 2))
    g /= g.sum()
    window = g[:, None, None] * g[None, :, None] * g[None, None, :]

    def blur(x: np.ndarray) -> np.ndarray:
        return ndimage.correlate(x, window, mode="nearest")  # 'nearest' = replicate padding

    mu1, mu2 = blur(a), blur(b)
    s11, s22, s12 = blur(a * a) - mu1 ** 2, blur(b * b) - mu2 ** 2, blur(a * b) - mu1 * mu2
    c1, c2 = 0.01 ** 2, 0.03 ** 2
    return float((((2 * mu1 * mu2 + c1) * (2 * s12 + c2)) / ((mu1 ** 2 + mu2 ** 2 + c1) * (s11 + s22 + c2))).mean())


def test_psnr_matches_scikit_image(pair):
    truth, pred = pair
    expected = skm.peak_signal_noise_ratio(truth.double().numpy(), pred.double().numpy(), data_range=1.0)
    assert metrics.psnr(truth, pred) == pytest.approx(expected, abs=1e-9)
    assert metrics.psnr(truth, truth) == math.inf


def test_ssim_matlab_matches_a_full_3d_window_by_hand(pair):
    truth, pred = pair
    assert metrics.ssim_matlab(truth, pred) == pytest.approx(_ssim_by_hand(truth.double().numpy(),
                                                                           pred.double().numpy()), abs=1e-10)
    assert metrics.ssim_matlab(truth, truth) == pytest.approx(1.0, abs=1e-12)


def test_ssim_matlab_range_inference_and_channel_order(pair):
    truth, pred = pair
    base = metrics.ssim_matlab(truth, pred)
    assert metrics.ssim_matlab(truth * 255, pred * 255) == pytest.approx(base, abs=1e-8)  # L = 255 inferred
    assert metrics.ssim_matlab(truth.flip(0), pred.flip(0)) == pytest.approx(base, abs=1e-12)  # BGR: same score
    # With L = 1 forced on 0..255 data (max <= 128 decides), the score changes: the inference is real.
    assert metrics.ssim_matlab(truth * 128, pred * 128) != pytest.approx(base, abs=1e-4)


def test_ssim_matlab_is_not_scikit_image_ssim(pair):
    truth, pred = pair
    sk = skm.structural_similarity(truth.permute(1, 2, 0).double().numpy(), pred.permute(1, 2, 0).double().numpy(),
                                   data_range=1.0, channel_axis=2)
    assert abs(metrics.ssim_matlab(truth, pred) - sk) > 1e-3


def test_round8_and_interpolation_error_by_hand(pair):
    truth, pred = pair
    values = torch.tensor([-0.2, 0.0, 0.3, 0.50196, 1.0, 1.7], dtype=torch.float64)
    expected8 = np.round(np.clip(values.numpy(), 0, 1) * 255) / 255
    assert np.array_equal(metrics.round8(values).numpy(), expected8)
    truth8 = np.round(truth.double().numpy() * 255).astype(np.uint8)  # as read from the 8-bit file
    expected = np.abs(np.round(pred.double().numpy() * 255) - truth8.astype(np.float64)).mean()
    assert metrics.interpolation_error(truth, pred) == pytest.approx(expected, abs=1e-9)
    assert metrics.interpolation_error(truth, truth) == 0


def test_skimage_metrics_score_the_8_bit_prediction(pair):
    truth, pred = pair
    eight = metrics.round8(pred.double())
    mse = float(((eight - truth.double()) ** 2).mean())
    assert metrics.skimage_psnr(truth, pred) == pytest.approx(10 * math.log10(1 / mse), abs=1e-6)
    assert metrics.skimage_psnr(truth, pred) != pytest.approx(metrics.psnr(truth, pred), abs=1e-4)
    expected = skm.structural_similarity(np.round(truth.permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                                         np.round(eight.permute(1, 2, 0).numpy() * 255).astype(np.uint8),
                                         data_range=255, channel_axis=2)
    assert metrics.skimage_ssim(truth, pred) == pytest.approx(expected, abs=1e-12)


def test_bad_shapes_are_named():
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.psnr(torch.zeros(3, 16, 16), torch.zeros(3, 16, 12))
    with pytest.raises(ValueError, match="at least 11x11"):
        metrics.ssim_matlab(torch.zeros(3, 8, 8), torch.zeros(3, 8, 8))
