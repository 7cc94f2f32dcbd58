"""`python -m emavfi evaluate --frames/--hold-out`, Xiph's 4K protocol, resume, compare, and bad input."""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from emavfi import cli
from emavfi.evaluate import metrics
from emavfi.evaluate.protocols import area_resize, crop_4k
from emavfi.evaluate.session import Session
from emavfi.inference import ModelBackend
from evaluate_helpers import blend_backend, evaluated_model, pan, save_png, triplet, write_ucf, write_vimeo, write_xiph
from helpers import tiny_model

pytest.importorskip("OpenImageIO", reason="evaluate reads frames with OpenImageIO (requirements-cli.txt)")
pytestmark = pytest.mark.usefixtures("one_thread")
model = evaluated_model  # fixture: a tiny random network stands in for the loaded weights


def _calls(monkeypatch, stop_after: int | None = None) -> list[int]:
    """Count device calls (blending stands in for the network); KeyboardInterrupt after `stop_after`."""
    calls: list[int] = []

    def call(self, *args):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt
        calls.append(1)
        return blend_backend(*args)

    monkeypatch.setattr(ModelBackend, "__call__", call)
    return calls


def _run(*argv: str) -> int:
    return cli.main(["evaluate", *argv])


def _plate(folder, n: int = 7) -> list[str]:
    clip = pan(n, step=2)
    return [save_png(folder / f"plate.{1001 + i}.png", frame).name for i, frame in enumerate(clip)]


def test_hold_out_on_a_folder_names_frames_by_file(tmp_path, model):
    names = _plate(tmp_path / "plate")
    assert _run("--frames", str(tmp_path / "plate"), "--hold-out", "3", "--json", str(tmp_path / "h.json")) == 0
    doc = json.loads((tmp_path / "h.json").read_text())
    assert [s["name"] for s in doc["samples"]] == [names[i] for i in (1, 2, 4, 5)]
    assert doc["set"] == "plate" and doc["settings"]["hold_out"] == 3 and doc["frames"] == 4
    assert _run("--frames", str(tmp_path / "plate"), "--hold-out", "3", "--limit", "1",
                "--json", str(tmp_path / "one.json")) == 0
    one = json.loads((tmp_path / "one.json").read_text())
    assert one["samples"] == doc["samples"][:2]  # each window is scored on its own: same figures


def test_hold_out_beats_or_matches_blending_only_where_it_should(tmp_path, monkeypatch):
    _plate(tmp_path / "plate", n=5)
    monkeypatch.setattr(Session, "load_model", lambda self: tiny_model())
    _calls(monkeypatch)
    assert _run("--frames", str(tmp_path / "plate"), "--hold-out", "2", "--json", str(tmp_path / "b.json")) == 0
    doc = json.loads((tmp_path / "b.json").read_text())
    clip = torch.round(pan(5, step=2) * 255) / 255
    assert doc["samples"][0]["psnr"] == pytest.approx(metrics.psnr(clip[1], (clip[0] + clip[2]) / 2), abs=1e-4)


def test_xiph_resizes_and_crops_4k_frames(tmp_path, monkeypatch):
    clip = torch.round(write_xiph(tmp_path / "xiph") * 255) / 255
    monkeypatch.setattr(Session, "load_model", lambda self: tiny_model())
    _calls(monkeypatch)
    assert _run("xiph", str(tmp_path / "xiph"), "--limit", "1", "--json", str(tmp_path / "x.json")) == 0
    doc = {s["set"]: s for s in json.loads((tmp_path / "x.json").read_text())["sets"]}
    assert doc["xiph/cropped"]["samples"][0]["name"] == "BoxingPractice-002"
    eight = (clip * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy()
    crops = [torch.from_numpy(crop_4k(f).copy()).permute(2, 0, 1) / 255 for f in eight]
    assert doc["xiph/cropped"]["psnr"] == pytest.approx(metrics.skimage_psnr(crops[1], (crops[0] + crops[2]) / 2))
    small = [torch.from_numpy(area_resize(f, (1080, 2048))).permute(2, 0, 1) / 255 for f in eight]
    assert doc["xiph/resized"]["psnr"] == pytest.approx(metrics.skimage_psnr(small[1], (small[0] + small[2]) / 2))
    assert 0.5 < doc["xiph/resized"]["ssim"] < 1


def test_area_resize_averages_blocks_like_opencv_and_crop_takes_the_centre():
    frame = np.random.default_rng(0).integers(0, 256, (8, 12, 3), dtype=np.uint8)
    half = area_resize(frame, (4, 6))
    by_hand = np.floor(frame.reshape(4, 2, 6, 2, 3).astype(float).mean(axis=(1, 3)) + 0.5)
    assert np.array_equal(half, by_hand.astype(np.uint8))
    big = np.zeros((2160, 4096, 3), np.uint8)
    big[540:-540, 1024:-1024] = 7
    assert crop_4k(big).shape == (1080, 2048, 3) and (crop_4k(big) == 7).all()
    with pytest.raises(ValueError, match="4K"):
        crop_4k(frame)


def test_an_interrupted_run_resumes_with_only_the_missing_samples(tmp_path, monkeypatch, capsys):
    write_ucf(tmp_path / "ucf", samples=3)
    monkeypatch.setattr(Session, "load_model", lambda self: tiny_model())
    args = ["ucf101", str(tmp_path / "ucf"), "--json", str(tmp_path / "r.json")]
    _calls(monkeypatch, stop_after=2)
    assert _run(*args) == 130
    assert not (tmp_path / "r.json").exists() and (tmp_path / "r.partial.json").exists()
    assert "r.partial.json: run the same command to continue" in capsys.readouterr().err
    calls = _calls(monkeypatch)
    assert _run(*args) == 0
    assert len(calls) == 1 and not (tmp_path / "r.partial.json").exists()
    resumed = json.loads((tmp_path / "r.json").read_text())
    assert _run(*args[:2], "--json", str(tmp_path / "full.json")) == 0
    full = json.loads((tmp_path / "full.json").read_text())
    assert resumed["samples"] == full["samples"] and [s["name"] for s in full["samples"]] == ["1", "2", "3"]


def test_a_partial_file_from_other_settings_is_not_continued(tmp_path, model, capsys):
    write_ucf(tmp_path / "ucf", samples=1)
    (tmp_path / "r.partial.json").write_text(json.dumps({"run": {"variant": "ours"}, "results": {"samples": []}}))
    assert _run("ucf101", str(tmp_path / "ucf"), "--json", str(tmp_path / "r.json")) == 1
    assert "other settings" in capsys.readouterr().err
    assert (tmp_path / "r.partial.json").exists()  # never deleted: not ours to judge


def test_compare_shows_the_change_per_set_and_per_sample(tmp_path, model, capsys):
    write_vimeo(tmp_path / "v")
    assert _run("vimeo90k", str(tmp_path / "v"), "--json", str(tmp_path / "a.json")) == 0
    assert _run("vimeo90k", str(tmp_path / "v"), "--tta", "--json", str(tmp_path / "b.json")) == 0
    capsys.readouterr()
    assert cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "b.json")]) == 0
    out = capsys.readouterr().out
    a, b = (json.loads((tmp_path / f"{n}.json").read_text()) for n in "ab")
    delta = b["psnr"] - a["psnr"]
    assert f"{delta:+.2f}" in out and "vimeo90k 00001/0001" in out and "vimeo90k 00001/0002" in out
    assert cli.main(["compare", str(tmp_path / "a.json"), str(tmp_path / "v" / "tri_testlist.txt")]) == 2


@pytest.mark.parametrize("layout, expected", [("vimeo90k", "tri_testlist.txt"), ("ucf101", "frame_00.png"),
                                              ("middlebury", "other-data/Beanbags/frame10.png"),
                                              ("snu-film", "test-easy.txt"), ("xiph", "BoxingPractice-001.png"),
                                              ("x4k", "TYPE/SCENE/0000.png")])
def test_a_folder_in_the_wrong_layout_names_the_expected_file(tmp_path, layout, expected, capsys):
    write_ucf(tmp_path / "data", samples=1) if layout != "ucf101" else (tmp_path / "data" / "x").mkdir(parents=True)
    assert _run(layout, str(tmp_path / "data")) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and expected in err


def test_missing_frames_and_mixed_sizes_are_named(tmp_path, model, capsys):
    names = write_vimeo(tmp_path / "v")
    (tmp_path / "v" / "sequences" / names[1] / "im3.png").unlink()
    assert _run("vimeo90k", str(tmp_path / "v")) == 2
    assert f"sample {names[1]}: missing frame" in capsys.readouterr().err
    save_png(tmp_path / "v" / "sequences" / names[1] / "im3.png", triplet(0, h=44)[2])
    assert _run("vimeo90k", str(tmp_path / "v")) == 1
    err = capsys.readouterr().err
    assert "mixes sizes" in err and "im3.png is 56x44" in err


def test_bad_options_fail_before_any_work(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(Session, "load_model", lambda self: pytest.fail("the model must not load"))
    write_ucf(tmp_path / "ucf", samples=1)
    (tmp_path / "taken.json").write_text("{}")
    cases = [(["ucf101", str(tmp_path / "ucf"), "--json", str(tmp_path / "taken.json")], "--overwrite"),
             (["--frames", str(tmp_path / "ucf")], "--hold-out"),
             (["--frames", str(tmp_path / "nope"), "--hold-out", "2"], "not found"),
             (["ucf101", str(tmp_path / "ucf"), "--subset", "hard"], "--subset"),
             (["ucf101", str(tmp_path / "ucf"), "--scale", "0.3"], "scale"),
             (["ucf101", str(tmp_path / "ucf"), "--limit", "0"], "--limit")]
    for argv, words in cases:
        assert _run(*argv) == 2, argv
        assert words in capsys.readouterr().err
    assert (tmp_path / "taken.json").read_text() == "{}"


def test_hold_out_larger_than_the_clip_is_one_line(tmp_path, model, capsys):
    _plate(tmp_path / "plate", n=3)
    assert _run("--frames", str(tmp_path / "plate"), "--hold-out", "4") == 2
    assert "at least 5 frames" in capsys.readouterr().err


def test_the_subcommand_modules_import_no_torch():
    code = ("import sys, emavfi.evaluate.cli, emavfi.evaluate.datasets, emavfi.evaluate.results; "
            "print('torch' in sys.modules)")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "False"


def test_lpips_needs_local_weights_and_never_downloads(tmp_path, monkeypatch, capsys):
    import types

    monkeypatch.setattr(Session, "load_model", lambda self: pytest.fail("the model must not load"))
    write_ucf(tmp_path / "ucf", samples=1)
    monkeypatch.setitem(sys.modules, "lpips", None)
    assert _run("ucf101", str(tmp_path / "ucf"), "--lpips") == 2
    assert "pip install lpips" in capsys.readouterr().err
    fake = types.ModuleType("lpips")
    fake.LPIPS = lambda **kw: pytest.fail("LPIPS must not be built without local weights")
    monkeypatch.setitem(sys.modules, "lpips", fake)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "torch-home"))
    assert _run("ucf101", str(tmp_path / "ucf"), "--lpips") == 2
    err = capsys.readouterr().err
    assert "alexnet-owt-7be5be79.pth" in err and str(tmp_path / "torch-home") in err


def test_hold_out_on_a_video_names_frames_by_index(tmp_path, model):
    av = pytest.importorskip("av", reason="video input needs PyAV (requirements-cli.txt)")
    clip = pan(5, h=32, w=48, step=2)
    with av.open(str(tmp_path / "shot.mkv"), "w") as container:
        stream = container.add_stream("ffv1", rate=24)
        stream.height, stream.width, stream.pix_fmt = 32, 48, "yuv444p"
        for frame in clip:
            array = np.round(frame.permute(1, 2, 0).numpy() * 255).astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24").reformat(format="yuv444p")))
        container.mux(stream.encode())
    assert _run("--frames", str(tmp_path / "shot.mkv"), "--hold-out", "2", "--json", str(tmp_path / "v.json")) == 0
    doc = json.loads((tmp_path / "v.json").read_text())
    assert [s["name"] for s in doc["samples"]] == ["1", "3"] and doc["set"] == "shot.mkv"
    assert 5 < doc["psnr"] < 60
