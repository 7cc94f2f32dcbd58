"""emavfi.vapoursynth: frame count, fps and props, equality with the CLI, random access, parallel requests,
scene-change props, held frames, bad input, and vspipe on the example script.

Runs where VapourSynth is installed (PyPI's wheel needs Python >= 3.12; CI: .ci/vapoursynth.sh)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]


def test_without_vapoursynth_the_import_error_is_one_line():
    code = "import sys; sys.modules['vapoursynth'] = None; import emavfi.vapoursynth"
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1] == ("ImportError: emavfi.vapoursynth needs VapourSynth: pip install "
                                                      "vapoursynth (Python 3.12 or newer)")


vs = pytest.importorskip("vapoursynth", reason="VapourSynth is not installed in this interpreter (its PyPI wheel "
                         "needs Python >= 3.12; CI runs these tests through .ci/vapoursynth.sh)")
from emavfi import cli  # noqa: E402
from emavfi.vapoursynth import ema_vfi, interpolate, to_tensor  # noqa: E402

oiio = pytest.importorskip("OpenImageIO", reason="the CLI comparison writes EXR frames (requirements-cli.txt)")
pytestmark = pytest.mark.usefixtures("one_thread")
core = vs.core


@pytest.fixture(scope="module")
def weights(tmp_path_factory):
    """Random weights in the layout of ours_small_t (the pixels differ from real ones; the code paths do not)."""
    from safetensors.torch import save_file

    from helpers import random_state

    path = tmp_path_factory.mktemp("weights") / "ours_small_t.safetensors"
    save_file(random_state("ours_small_t", seed=3), str(path))
    return str(path)


@pytest.fixture(scope="module")
def frames():
    """9 frames of 32x48 from scikit-image's astronaut, panning 3 px a frame, with a cut to the coffee after frame 4."""
    data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
    astronaut = data.astronaut().astype(np.float32) / 255
    coffee = data.coffee().astype(np.float32) / 255
    views = [astronaut[40:72, 30 + 3 * i:78 + 3 * i] for i in range(5)] + \
            [coffee[100 + 2 * i:132 + 2 * i, 200:248] for i in range(4)]
    return torch.from_numpy(np.stack(views)).permute(0, 3, 1, 2).contiguous()


def clip_of(frames: torch.Tensor, fps: int = 24, fmt: int = vs.RGBS) -> vs.VideoNode:
    """A clip showing frames [N,3,H,W] at fps (RGBS, or RGBH rounded to half)."""
    n, _, h, w = frames.shape
    blank = core.std.BlankClip(format=fmt, width=w, height=h, length=n, fpsnum=fps, fpsden=1)
    dtype = np.float16 if fmt == vs.RGBH else np.float32

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        for p in range(3):
            np.copyto(np.asarray(out[p]), frames[n, p].numpy().astype(dtype))
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def every(clip: vs.VideoNode) -> torch.Tensor:
    return torch.stack([to_tensor(clip.get_frame(k)) for k in range(clip.num_frames)])


def run_cli(tmp_path: Path, frames: torch.Tensor, weights: str, *args: str) -> torch.Tensor:
    """The CLI's output for frames written as float EXR (read back exactly), in the network's own encoding (the
    video RGB a clip holds), so that the CLI converts no colours."""
    from emavfi.media.colour import load_config, working_space

    inp, out = tmp_path / "in", tmp_path / "out"
    inp.mkdir(exist_ok=True)
    for i, frame in enumerate(frames):
        buf = oiio.ImageBuf(np.ascontiguousarray(frame.permute(1, 2, 0).numpy()))
        assert buf.write(str(inp / f"f.{i:04d}.exr"), oiio.FLOAT)
    argv = ["interpolate", str(inp), "-o", str(out), "--source-fps", "24", "--weights", weights, "--device", "cpu",
            "--colorspace", working_space(load_config()), *args]
    assert cli.main(argv) == 0
    files = sorted(out.glob("*.exr"))
    return torch.stack([torch.from_numpy(oiio.ImageBuf(str(p)).get_pixels(oiio.FLOAT)).permute(2, 0, 1)
                        for p in files])


# ----------------------------------------------------------------------------------------------- output

@pytest.mark.parametrize("fmt", [vs.RGBS, vs.RGBH])
def test_frame_count_rate_format_and_durations(frames, weights, fmt):
    out = interpolate(clip_of(frames, fmt=fmt), 3, weights=weights, device="cpu")
    assert out.num_frames == 3 * (len(frames) - 1) + 1 and out.fps == Fraction(72)
    assert out.format.id == fmt and (out.width, out.height) == (48, 32)
    for k in (0, 4, out.num_frames - 1):
        props = out.get_frame(k).props
        assert (props["_DurationNum"], props["_DurationDen"]) == (1, 72)
    retimed = interpolate(clip_of(frames), fps_num=30000, fps_den=1001, weights=weights, device="cpu")
    assert retimed.fps == Fraction(30000, 1001)
    assert retimed.num_frames == int(Fraction(len(frames) - 1, 24) * Fraction(30000, 1001)) + 1


@pytest.mark.parametrize("args, options", [(["-m", "2"], {"multiplier": 2}), (["-m", "4"], {"multiplier": 4}),
                                           (["--fps", "60"], {"fps_num": 60}),
                                           (["-m", "2", "--dedupe"], {"multiplier": 2, "dedupe": True})],
                         ids=["x2", "x4", "retime 24 to 60", "x2 dedupe"])
def test_the_same_frames_as_the_cli(tmp_path, frames, weights, args, options):
    if options.get("dedupe"):
        frames = frames[[0, 0, 1, 2, 2, 2, 3, 4, 5, 5, 6, 7, 8]]  # held frames, a cut after a hold
    expected = run_cli(tmp_path, frames, weights, *args)
    out = interpolate(clip_of(frames), weights=weights, device="cpu", **options)
    assert out.num_frames == len(expected)
    got = every(out)
    assert torch.equal(got, expected), f"max difference {float((got - expected).abs().max())}"


def test_every_backend_the_cli_takes_is_taken_and_loaded_as_the_cli_loads_it(tmp_path, frames, weights):
    from emavfi.backends import problem

    reason = problem("onnxruntime", "cpu")
    if reason is not None:  # not installed in this venv: the CLI's own line, before any work
        with pytest.raises(ValueError) as info:
            interpolate(clip_of(frames), weights=weights, device="cpu", backend="onnxruntime")
        assert str(info.value) == reason
        return
    expected = run_cli(tmp_path, frames[:4], weights, "-m", "2", "--backend", "onnxruntime")
    got = every(interpolate(clip_of(frames[:4]), weights=weights, device="cpu", backend="onnxruntime"))
    assert torch.equal(got, expected), f"max difference {float((got - expected).abs().max())}"


def test_scene_change_props_mark_the_cut_on_the_output(frames, weights):
    out = interpolate(clip_of(frames), 2, weights=weights, device="cpu")
    marks = [(k, out.get_frame(k).props["_SceneChangeNext"], out.get_frame(k).props["_SceneChangePrev"])
             for k in range(out.num_frames)]
    # pair 4 (frames 4, 5) is the cut: output 9 (time 4.5) repeats frame 4, output 10 is frame 5
    assert [k for k, nxt, _ in marks if nxt] == [9] and [k for k, _, prev in marks if prev] == [10]
    got = every(out)
    assert torch.equal(got[9], frames[4]) and torch.equal(got[10], frames[5])


def test_upstream_scene_change_props_are_honoured(frames, weights):
    still = frames[:5]  # one shot: no cut of its own; upstream says pair 1 and pair 3 are cuts
    clip = clip_of(still)
    clip = core.std.SetFrameProps(clip[:1], _SceneChangeNext=0) + core.std.SetFrameProps(clip[1:2],
                                                                                        _SceneChangeNext=1) + clip[2:]
    clip = clip[:4] + core.std.SetFrameProps(clip[4:], _SceneChangePrev=1)
    out = every(interpolate(clip, 2, weights=weights, device="cpu"))
    plain = every(interpolate(clip_of(still), 2, weights=weights, device="cpu"))
    assert torch.equal(out[3], still[1]) and torch.equal(out[7], still[3])  # t = 0.5 inside a cut: the earlier
    assert not torch.equal(plain[3], still[1]) and torch.equal(out[1], plain[1]) and torch.equal(out[5], plain[5])
    off = every(interpolate(clip, 2, weights=weights, device="cpu", scene_change=False))
    assert torch.equal(off, plain)


# ----------------------------------------------------------------------------------------------- access

def test_random_access_frame_k_alone_equals_the_full_run(frames, weights):
    full = every(interpolate(clip_of(frames), 4, weights=weights, device="cpu"))
    for k in (30, 17, 0, 6, 18, 19):  # the end, inside the cut pair and around it, in no order
        fresh = interpolate(clip_of(frames), 4, weights=weights, device="cpu")
        assert torch.equal(to_tensor(fresh.get_frame(k)), full[k]), k


def test_parallel_requests_give_the_same_frames(frames, weights):
    before = core.num_threads
    core.num_threads = 4
    try:
        serial = every(interpolate(clip_of(frames), 4, weights=weights, device="cpu"))
        out = interpolate(clip_of(frames), 4, weights=weights, device="cpu")
        futures = [out.get_frame_async(k) for k in reversed(range(out.num_frames))]
        parallel = torch.stack([to_tensor(f.result()) for f in reversed(futures)])
    finally:
        core.num_threads = before
    assert torch.equal(parallel, serial)


def test_vs_rife_style_arguments(frames, weights):
    a = ema_vfi(clip_of(frames), factor_num=5, factor_den=2, weights=weights, device="cpu", sc=False)
    assert a.fps == Fraction(60)
    b = interpolate(clip_of(frames), fps_num=60, weights=weights, device="cpu", scene_change=False)
    assert torch.equal(every(a), every(b))


def test_a_variable_rate_clip_is_retimed_by_its_durations(frames, weights):
    clip = clip_of(frames[:4])  # shown for 1, 3, 1 and 1 / 24 s: at 0, 1, 4 and 5 / 24 s
    vfr = core.std.Splice([core.std.SetFrameProps(core.std.AssumeFPS(clip[i:i + 1], fpsnum=24 + i), _DurationNum=d,
                                                  _DurationDen=24) for i, d in enumerate((1, 3, 1, 1))], mismatch=True)
    assert vfr.fps == 0
    out = interpolate(vfr, fps_num=24, weights=weights, device="cpu", scene_change=False)
    assert out.num_frames == 6  # frames at 0, 1, 4, 5 / 24 s: 5/24 s at 24 fps
    got = every(out)
    assert torch.equal(got[1], frames[1]) and torch.equal(got[4], frames[2]) and torch.equal(got[5], frames[3])
    with pytest.raises(ValueError, match="give fps_num/fps_den"):
        interpolate(vfr, 2, weights=weights, device="cpu")
    bare = core.std.RemoveFrameProps(vfr, ["_DurationNum"])
    with pytest.raises(ValueError, match="frame 0 has no _DurationNum"):
        interpolate(bare, fps_num=24, weights=weights, device="cpu")


# ----------------------------------------------------------------------------------------------- bad input

@pytest.mark.parametrize("fmt, name", [(vs.YUV420P8, "YUV420P8"), (vs.GRAY8, "Gray8"), (vs.RGB24, "RGB24"),
                                       (vs.GRAYS, "GrayS")])
def test_other_formats_are_refused_with_the_conversion(weights, fmt, name):
    clip = core.std.BlankClip(format=fmt, width=48, height=32, length=4)
    with pytest.raises(ValueError) as info:
        interpolate(clip, weights=weights)
    message = str(info.value)
    assert name in message and 'core.resize.Bicubic(clip, format=vs.RGBS, matrix_in_s="709")' in message
    assert "\n" not in message


@pytest.mark.parametrize("options, fragment", [({"multiplier": 17}, "multiplier must be a whole number from 2 to 16"),
                                               ({"multiplier": 1}, "from 2 to 16"),
                                               ({"fps_num": 10**9}, "frame rate must be at most"),
                                               ({"fps_num": 24 * 300}, "at most 256 are allowed"),
                                               ({"scale": 0.3}, "scale must be one of"),
                                               ({"device": "tpu"}, "unknown device"),
                                               ({"backend": "onnx"}, "unknown backend 'onnx'; choose one of torch"),
                                               ({"dedupe_threshold": -1}, "dedupe threshold")])
def test_bad_requests_are_refused_like_the_cli(frames, weights, options, fragment):
    with pytest.raises(ValueError, match=fragment):
        interpolate(clip_of(frames), weights=weights, **options)


def test_missing_weights_give_the_clis_message(tmp_path, frames, monkeypatch, capsys):
    monkeypatch.setenv("EMAVFI_HOME", str(tmp_path / "models"))
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(Exception) as info:
        interpolate(clip_of(frames), variant="ours_small_t", device="cpu")
    (tmp_path / "in").mkdir()
    assert oiio.ImageBuf(np.zeros((8, 8, 3), np.float32)).write(str(tmp_path / "in" / "a.0.exr"))
    assert oiio.ImageBuf(np.zeros((8, 8, 3), np.float32)).write(str(tmp_path / "in" / "a.1.exr"))
    assert cli.main(["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--variant", "ours_small_t",
                     "--device", "cpu"]) == 1
    assert capsys.readouterr().err.strip().endswith(" ".join(str(info.value).split()))


def test_missing_weights_file(frames, tmp_path):
    with pytest.raises(ValueError, match="weights file not found"):
        interpolate(clip_of(frames), weights=str(tmp_path / "none.safetensors"))


# ----------------------------------------------------------------------------------------------- vspipe

def _vspipe() -> str:
    vspipe = shutil.which("vspipe", path=str(Path(sys.executable).parent)) or shutil.which("vspipe")
    if vspipe is None:
        pytest.skip("vspipe is not installed beside this Python")
    return vspipe


def _checkout_env(**extra: str) -> dict[str, str]:
    """This environment without PYTHONPATH: emavfi is not installed beside VapourSynth, as in a fresh clone."""
    return {**{k: v for k, v in os.environ.items() if k != "PYTHONPATH"}, **extra}


def test_vspipe_runs_the_example_headless(tmp_path, weights):
    result = subprocess.run([_vspipe(), "-c", "y4m", "-a", "input=test", "-a", f"weights={weights}",
                             str(REPO / "examples" / "interpolate.vpy"), str(tmp_path / "out.y4m")],
                            capture_output=True, text=True, env=_checkout_env(), cwd=tmp_path, timeout=600)
    assert result.returncode == 0, result.stderr
    data = (tmp_path / "out.y4m").read_bytes()
    header = data.split(b"\n", 1)[0].decode()
    assert header.startswith("YUV4MPEG2") and " F48:1" in header and " W128" in header
    assert data.count(b"FRAME") == 2 * 24 - 1


def test_the_readmes_vspipe_line_works_from_a_checkout_as_written(tmp_path, weights):
    readme = (REPO / "README.md").read_text()
    [line] = [ln.split("#")[0].split() for ln in readme.splitlines()
              if ln.startswith("vspipe ") and "input=test" in ln]
    assert line[0] == "vspipe" and line[-2] == "examples/interpolate.vpy" and line[-1] == "out.y4m"
    home = tmp_path / "home"  # the script's default weights: $EMAVFI_HOME/ours_small_t.safetensors
    home.mkdir()
    shutil.copy(weights, home / "ours_small_t.safetensors")
    out = tmp_path / "out.y4m"
    result = subprocess.run([_vspipe(), *line[1:-1], str(out)], cwd=REPO, capture_output=True, text=True,
                            env=_checkout_env(EMAVFI_HOME=str(home), HF_HUB_OFFLINE="1"), timeout=600)
    assert result.returncode == 0, result.stderr
    header = out.read_bytes().split(b"\n", 1)[0].decode()
    assert " F60000:1001" in header and out.read_bytes().count(b"FRAME") == int(Fraction(23, 24) * 60000 / 1001) + 1


def test_a_tiny_frame_rate_is_kept_and_a_negative_one_is_shown_as_given(frames, weights):
    slow = interpolate(clip_of(frames), fps_num=1, fps_den=1_000_000, weights=weights, device="cpu")
    assert slow.fps == Fraction(1, 1_000_000) and slow.num_frames == 1  # was: "got Fraction(0, 1)"
    with pytest.raises(ValueError, match=r"^frame rate must be positive; got -1/1001$"):
        interpolate(clip_of(frames), fps_num=-1, fps_den=1001, weights=weights, device="cpu")
