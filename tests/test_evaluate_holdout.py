"""score_holdout: which frames are held out and scored, on real footage (pans and fades of photographs)."""
from __future__ import annotations

import pytest
import torch

from emavfi.evaluate import metrics
from emavfi.evaluate.holdout import kept_indices, score_holdout
from evaluate_helpers import blend_backend, fade, pan
from helpers import tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def test_kept_indices_and_bounds():
    assert kept_indices(11, 4) == [0, 4, 8]
    assert kept_indices(9, 2) == [0, 2, 4, 6, 8]
    for bad in (1, 17, True, 2.0):
        with pytest.raises(ValueError, match="hold-out must be"):
            kept_indices(20, bad)
    with pytest.raises(ValueError, match="at least 5 frames"):
        kept_indices(4, 4)


def test_blending_a_fade_is_exact_and_every_held_out_frame_is_scored():
    clip = fade(11)
    result = score_holdout(tiny_model(), clip, 4, backend=blend_backend)
    assert [s.name for s in result.samples] == ["1", "2", "3", "5", "6", "7"]  # 9, 10: after the last kept
    assert result.frames == 6 and result.psnr > 70 and result.ssim == pytest.approx(1, abs=1e-6)


def test_scores_compare_each_prediction_with_its_own_real_frame():
    clip = pan(5)
    names = [f"plate.{1001 + i}.exr" for i in range(5)]
    result = score_holdout(tiny_model(), clip, 2, backend=blend_backend, names=names)
    assert [s.name for s in result.samples] == ["plate.1002.exr", "plate.1004.exr"]
    for sample, k in zip(result.samples, (1, 3)):
        blend = (clip[k - 1] + clip[k + 1]) / 2
        assert sample.scores["psnr"] == pytest.approx(metrics.psnr(clip[k], blend), abs=1e-4)
        assert sample.scores["ssim"] == pytest.approx(metrics.ssim_matlab(clip[k], blend), abs=1e-5)
    assert result.psnr == pytest.approx(sum(s.scores["psnr"] for s in result.samples) / 2)


def test_the_network_runs_in_eval_mode_and_training_mode_is_restored():
    model = tiny_model().train()
    first = score_holdout(model, pan(5), 2)
    assert model.training
    second = score_holdout(model, pan(5), 2)
    assert first.psnr == second.psnr and 0 < first.psnr < 60  # deterministic; a random net is not perfect


def test_bad_frames():
    with pytest.raises(ValueError, match=r"\[N,3,H,W\]"):
        score_holdout(tiny_model(), torch.zeros(3, 8, 8), 2)
    with pytest.raises(ValueError, match="names must name every frame"):
        score_holdout(tiny_model(), pan(5), 2, names=["a"])
