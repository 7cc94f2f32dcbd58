"""Traceable shape arithmetic (one trace, every size) and the MPS-safe warp (clamp + zeros == border)."""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

import emavfi
from emavfi.backends.writers import trace_nuke
from emavfi.model.warp import sample_border

from helpers import tiny_model


def _photo_pair(h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Two frames of a pan over scikit-image's astronaut, resized to h x w."""
    data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
    photo = torch.from_numpy(data.astronaut()).permute(2, 0, 1).float().div(255)[None]
    first = F.interpolate(photo[:, :, 40:400, 40:480], size=(h, w), mode="bilinear", align_corners=False)
    second = F.interpolate(photo[:, :, 52:412, 30:470], size=(h, w), mode="bilinear", align_corners=False)
    return first.clamp(0, 1), second.clamp(0, 1)


def test_one_trace_runs_at_every_size(one_thread):
    model = tiny_model(3)
    nuke = trace_nuke(model, 70, 100)  # traced at a size that needs padding everywhere
    nuke.timestep = 0.3
    for h, w in [(64, 96), (121, 77), (96, 160), (33, 50)]:
        img0, img1 = _photo_pair(h, w)
        with torch.no_grad():
            got = nuke(torch.cat([img0, img1], 1))
        expected = emavfi.interpolate(model, img0, img1, 0.3)
        assert got.shape == (1, 3, h, w)
        assert (got - expected).abs().max().item() <= 1e-5, (h, w)


def test_trace_keeps_extra_channels_warped(one_thread):
    model = tiny_model(4)
    nuke = trace_nuke(model, 64, 96)
    img0, img1 = _photo_pair(50, 70)
    alpha0, alpha1 = img0[:, :1] > 0.4, img1[:, :1] > 0.4
    x = torch.cat([img0, img1, alpha0.float(), alpha1.float(), img0[:, 1:2], img1[:, 1:2]], 1)
    with torch.no_grad():
        got = nuke(x)
    frames, aux = emavfi.interpolate(model, img0, img1, 0.5, aux0=torch.cat([alpha0.float(), img0[:, 1:2]], 1),
                                     aux1=torch.cat([alpha1.float(), img1[:, 1:2]], 1))
    assert got.shape == (1, 5, 50, 70)
    assert (got[:, :3] - frames).abs().max().item() <= 1e-5
    assert (got[:, 3:] - aux).abs().max().item() <= 1e-5
    with pytest.raises(Exception, match="extra channels in pairs"):
        nuke(x[:, :7])


def test_clamped_zero_padding_equals_border_padding():
    img0, img1 = _photo_pair(48, 64)
    g = torch.Generator().manual_seed(0)
    # positions up to 3x the frame size: most fall outside the frame, on every side
    coords = (torch.rand(1, 48, 64, 2, generator=g) - 0.5) * 6
    for image in (img0, torch.cat([img1, img0[:, :1]], 1)):
        border = sample_border(image, coords, clamp=False)
        clamped = sample_border(image, coords, clamp=True)
        assert (border - clamped).abs().max().item() <= 1e-6
        assert (F.grid_sample(image, coords, padding_mode="zeros", align_corners=True) - border).abs().max() > 0.1
