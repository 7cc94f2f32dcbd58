"""`python -m emavfi evaluate SET ROOT`: each published layout from a small real-photo fixture, scored as the
set's official script scores it (checked against the engine's prediction and the metric functions)."""
from __future__ import annotations

import json
from fractions import Fraction

import pytest
import torch

from emavfi import cli
from emavfi.evaluate import metrics
from emavfi.evaluate.engine import predict
from emavfi.inference import ModelBackend
from emavfi.schedule import Request
from evaluate_helpers import (blend_backend, evaluated_model, triplet, write_middlebury, write_snu, write_ucf,
                              write_vimeo, write_x4k)

pytest.importorskip("OpenImageIO", reason="evaluate reads frames with OpenImageIO (requirements-cli.txt)")
pytestmark = pytest.mark.usefixtures("one_thread")
model = evaluated_model  # fixture: a tiny random network stands in for the loaded weights


@pytest.fixture
def blending(monkeypatch):
    """The network replaced by linear blending (exact on fades; fast on large frames)."""
    monkeypatch.setattr(ModelBackend, "__call__", lambda self, *a: blend_backend(*a))


def _run(*argv: str) -> int:
    return cli.main(["evaluate", *argv])


def _expected(net, k: int, bgr: bool = True, scale: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """(truth, prediction) of fixture triplet k as the engine makes it (frames through 8-bit PNG)."""
    frames = torch.round(triplet(k) * 255) / 255
    plan, out = predict(net, frames[[0, 2]], Request(timesteps=(Fraction(1, 2),)), bgr=bgr, scale=scale)
    return frames[1], out[1]


def test_vimeo90k_scores_the_unrounded_bgr_prediction(tmp_path, model, capsys):
    names = write_vimeo(tmp_path / "vimeo_triplet")
    assert _run("vimeo90k", str(tmp_path / "vimeo_triplet"), "--json", str(tmp_path / "v.json")) == 0
    doc = json.loads((tmp_path / "v.json").read_text())
    assert [s["name"] for s in doc["samples"]] == names
    truth, pred = _expected(model, 1)
    assert doc["samples"][1]["psnr"] == pytest.approx(metrics.psnr(truth, pred), abs=1e-5)
    assert doc["samples"][1]["ssim"] == pytest.approx(metrics.ssim_matlab(truth, pred), abs=1e-6)
    assert doc["psnr"] == pytest.approx((doc["samples"][0]["psnr"] + doc["samples"][1]["psnr"]) / 2)
    assert doc["settings"]["tta"] is False and doc["settings"]["channel_order"] == "bgr"  # ours_small_t default
    rgb_truth, rgb_pred = _expected(model, 1, bgr=False)
    assert abs(metrics.psnr(rgb_truth, rgb_pred) - doc["samples"][1]["psnr"]) > 1e-3  # the order matters
    out = capsys.readouterr()
    assert "vimeo90k" in out.out and "PSNR" in out.out and "frames/s" in out.out


def test_ucf101_rounds_the_prediction_to_8_bits(tmp_path, model):
    write_ucf(tmp_path / "ucf")
    assert _run("ucf101", str(tmp_path / "ucf"), "--json", str(tmp_path / "u.json"), "--limit", "1") == 0
    doc = json.loads((tmp_path / "u.json").read_text())
    truth, pred = _expected(model, 0)
    assert [s["name"] for s in doc["samples"]] == ["1"]
    assert doc["psnr"] == pytest.approx(metrics.psnr(truth, metrics.round8(pred)), abs=1e-6)
    assert doc["ssim"] == pytest.approx(metrics.ssim_matlab(truth, metrics.round8(pred)), abs=1e-6)


def test_middlebury_reports_ie_over_the_twelve_sequences_of_different_sizes(tmp_path, model):
    write_middlebury(tmp_path / "mb")
    assert _run("middlebury", str(tmp_path / "mb"), "--json", str(tmp_path / "m.json"),
                "--csv", str(tmp_path / "m.csv")) == 0
    doc = json.loads((tmp_path / "m.json").read_text())
    assert len(doc["samples"]) == 12 and doc["samples"][0]["name"] == "Beanbags"
    assert doc["ie"] == pytest.approx(sum(s["ie"] for s in doc["samples"]) / 12)
    assert 0 < doc["ie"] < 255 and "psnr" in doc and "ssim" in doc
    rows = (tmp_path / "m.csv").read_text().splitlines()
    assert rows[0] == "set,name,psnr,ssim,ie" and len(rows) == 13 and rows[1].startswith("middlebury,Beanbags,")


def test_snu_film_levels_are_reported_apart_in_hr_mode(tmp_path, model):
    write_snu(tmp_path / "snu")
    assert _run("snu-film", str(tmp_path / "snu"), "--subset", "easy,hard", "--json", str(tmp_path / "s.json")) == 0
    doc = json.loads((tmp_path / "s.json").read_text())
    assert [s["set"] for s in doc["sets"]] == ["snu-film/easy", "snu-film/hard"]
    assert all(s["settings"]["scale"] == 0.5 for s in doc["sets"])
    truth, pred = _expected(model, 1, scale=0.5)
    assert doc["sets"][1]["psnr"] == pytest.approx(metrics.psnr(truth, pred), abs=1e-5)
    assert doc["psnr"] == pytest.approx((doc["sets"][0]["psnr"] + doc["sets"][1]["psnr"]) / 2)


def test_x4k_makes_seven_in_betweens_per_key_pair(tmp_path, model, blending):
    write_x4k(tmp_path / "xtest", frames=33)
    assert _run("x4k", str(tmp_path / "xtest"), "--subset", "4k", "--json", str(tmp_path / "x.json")) == 0
    doc = json.loads((tmp_path / "x.json").read_text())
    names = [s["name"] for s in doc["samples"]]
    assert names == [f"Type1/TEST01_f0001/{4 * m:04d}" for m in range(1, 8)]
    assert doc["psnr"] > 45 and doc["settings"]["scale"] == 0.25  # a fade: blending at t = m/8 is right


def test_user_overrides_replace_the_official_choices(tmp_path, model):
    write_vimeo(tmp_path / "v", clips=1)
    assert _run("vimeo90k", str(tmp_path / "v"), "--tta", "--channel-order", "rgb", "--scale", "0.5",
                "--json", str(tmp_path / "o.json")) == 0
    settings = json.loads((tmp_path / "o.json").read_text())["settings"]
    assert (settings["tta"], settings["channel_order"], settings["scale"]) == (True, "rgb", 0.5)


def test_official_tta_follows_the_variant(tmp_path, monkeypatch):
    from emavfi.evaluate.protocols import protocol

    vimeo, xiph = protocol("vimeo90k"), protocol("xiph", "resized")
    assert (vimeo.tta_for("ours"), vimeo.tta_for("ours_small"), vimeo.tta_for("ours_t")) == (True, False, True)
    assert xiph.tta_for("ours") and xiph.scale == 0.5 and xiph.prepare == "area-2k"
    assert protocol("xiph", "cropped").prepare == "crop-4k" and protocol("x4k", "4k").scale == 0.25
    assert vimeo.with_options(tta=False).tta_for("ours") is False
