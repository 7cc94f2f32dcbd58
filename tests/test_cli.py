"""python -m emavfi: streaming interpolation of folders and videos, resume, Ctrl-C, errors, convert."""
from __future__ import annotations

import os
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import pytest
import torch

import emavfi
from emavfi import cli, frames_io, schedule
from emavfi.clip import interpolate_clip
from emavfi.config import ModelConfig
from emavfi.frames_io import ImageFormat

pytest.importorskip("cv2", reason="CLI tests read and write PNG frames with opencv-python-headless")

REPO = Path(__file__).resolve().parents[1]
PNG8 = ImageFormat(".png", "uint8", 3)


def _tiny(arbitrary_t: bool = True) -> emavfi.EMAVFI:
    torch.manual_seed(0)
    return emavfi.build_model(ModelConfig(width=4, depths=(1, 1, 1, 2, 2), arbitrary_t=arbitrary_t)).eval()


def _write_clip(folder: Path, n: int, h: int = 32, w: int = 48, fmt: ImageFormat = PNG8, seed: int = 0) -> list[Path]:
    """A textured square moving 3 px per frame over a gradient, saved as frame1, frame2 ... (unpadded)."""
    folder.mkdir(parents=True, exist_ok=True)
    gen = torch.Generator().manual_seed(seed)
    background = torch.linspace(0, 1, w).view(1, 1, w).expand(fmt.channels, h, w).clone() * 0.5
    patch = torch.rand(fmt.channels, h // 2, w // 3, generator=gen)
    paths = []
    for i in range(n):
        frame = background.clone()
        x = (3 * i) % (w - w // 3)
        frame[:, h // 4:h // 4 + h // 2, x:x + w // 3] = patch
        paths.append(folder / f"frame{i + 1}{fmt.extension}")
        frames_io.write_image(paths[-1], frame, fmt)
    return paths


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(monkeypatch):
    model = _tiny()
    monkeypatch.setattr(cli, "_load_model", lambda args, device, dtype: model)
    return model


def _outputs(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.name.startswith("frame_"))


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


# ----------------------------------------------------------------------------------------------- runs

def test_multiplier_run_matches_the_library_and_copies_sources(tmp_path, tiny, capsys):
    sources = _write_clip(tmp_path / "in", 4)
    out = tmp_path / "out"
    code = cli.main(["interpolate", str(tmp_path / "in"), "-o", str(out), "-m", "3", "--device", "cpu",
                     "--cut-threshold", "0", "--chunk", "2"])
    assert code == 0
    files = _outputs(out)
    assert [p.name for p in files] == [f"frame_{k:06d}.png" for k in range(10)]
    for k in (0, 3, 6, 9):  # source frames are the source files, byte for byte
        assert files[k].read_bytes() == sources[k // 3].read_bytes()
    frames = torch.stack([frames_io.read_image(p)[0] for p in sources])
    expected = interpolate_clip(tiny, frames, schedule.multiplier_plan(4, 3))
    written = torch.stack([frames_io.read_image(p)[0] for p in files])
    assert float((written - expected).abs().max()) <= 0.5 / 255 + 1e-6
    err = capsys.readouterr().err
    assert "frames/s" in err and "ETA" in err and "wrote 10 frames" in err


def test_weights_file_is_loaded_and_its_variant_detected(tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) * 0.02
             for k, shape in emavfi.weights.expected_shapes("ours_small").items()}
    weights = tmp_path / "w.safetensors"
    emavfi.weights.save_safetensors(state, weights, "ours_small")
    _write_clip(tmp_path / "in", 2)
    assert cli.main(["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", "4",
                     "--weights", str(weights), "--device", "cpu"]) == 0
    assert len(_outputs(tmp_path / "out")) == 5
    manifest = (tmp_path / "out" / cli.MANIFEST).read_text()
    assert '"variant": "ours_small"' in manifest
    assert cli.main(["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "o2"),
                     "--weights", str(tmp_path / "missing.safetensors")]) == 1
    assert "not found" in _one_line(capsys.readouterr().err.splitlines()[-1])


def test_retime_needs_a_source_rate_for_folders_and_counts_exactly(tmp_path, tiny, capsys):
    _write_clip(tmp_path / "in", 5)
    args = ["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--fps", "60", "--device", "cpu"]
    assert cli.main(args) == 2
    assert "--source-fps" in _one_line(capsys.readouterr().err)
    assert cli.main(args + ["--source-fps", "24"]) == 0
    assert len(_outputs(tmp_path / "out")) == 4 * 60 // 24 + 1


def test_scene_cut_repeats_a_frame_instead_of_blending_two_shots(tmp_path, tiny, capsys):
    first = _write_clip(tmp_path / "a", 3)
    second = _write_clip(tmp_path / "b", 3, seed=5)
    inp = tmp_path / "in"
    inp.mkdir()
    for i, path in enumerate(first + second):
        image, _ = frames_io.read_image(path)
        frames_io.write_image(inp / f"f{i}.png", image if i < 3 else 1 - image, PNG8)  # shot 2: a negative
    assert cli.main(["interpolate", str(inp), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    files = _outputs(tmp_path / "out")
    assert len(files) == 11
    cut_frame = frames_io.read_image(files[5])[0]  # between source 2 (shot 1) and source 3 (shot 2)
    assert torch.equal(cut_frame, frames_io.read_image(inp / "f2.png")[0])
    assert not torch.equal(frames_io.read_image(files[3])[0], frames_io.read_image(inp / "f1.png")[0])
    assert "1 scene cut" in capsys.readouterr().err


def test_sixteen_bit_alpha_folder_keeps_its_format(tmp_path, tiny):
    fmt = ImageFormat(".png", "uint16", 4)
    _write_clip(tmp_path / "in", 3, fmt=fmt)
    assert cli.main(["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 0
    files = _outputs(tmp_path / "out")
    assert len(files) == 5
    assert all(frames_io.read_image(p)[1] == fmt for p in files)


def test_video_in_and_out(tmp_path, tiny):
    pytest.importorskip("av", reason="video tests need PyAV")
    _write_clip(tmp_path / "in", 4)
    video = tmp_path / "clip.mp4"
    assert cli.main(["interpolate", str(tmp_path / "in"), "-o", str(video), "--source-fps", "24000/1001",
                     "--device", "cpu"]) == 0
    reader = frames_io.open_frames(video)
    assert len(reader) == 7 and reader.fps == Fraction(48000, 1001)
    assert cli.main(["interpolate", str(video), "-o", str(tmp_path / "back"), "-m", "2", "--device", "cpu"]) == 0
    assert len(_outputs(tmp_path / "back")) == 13


# ----------------------------------------------------------------------------------------------- resume

def _count_calls(monkeypatch, interrupt_at: int | None = None) -> list[int]:
    real = emavfi.interpolate
    calls: list[int] = []

    def counting(*args, **kwargs):
        calls.append(1)
        if interrupt_at is not None and len(calls) == interrupt_at:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(emavfi, "interpolate", counting)
    return calls


def test_ctrl_c_leaves_complete_files_and_resume_finishes_the_same_result(tmp_path, tiny, monkeypatch, capsys):
    _write_clip(tmp_path / "in", 7)
    base = ["interpolate", str(tmp_path / "in"), "--device", "cpu", "--chunk", "1", "-m", "2"]
    assert cli.main(base + ["-o", str(tmp_path / "ref")]) == 0
    reference = {p.name: p.read_bytes() for p in _outputs(tmp_path / "ref")}
    capsys.readouterr()

    _count_calls(monkeypatch, interrupt_at=4)
    out = tmp_path / "out"
    assert cli.main(base + ["-o", str(out)]) == cli.EXIT_INTERRUPTED
    message = capsys.readouterr().err.strip().splitlines()[-1]  # after the progress lines
    assert message.startswith("interrupted:") and "--resume" in message
    partial = _outputs(out)
    assert 0 < len(partial) < len(reference)
    assert all(frames_io.is_complete_image(p) for p in partial)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]

    # a damaged frame is made again; complete ones are kept
    partial[1].write_bytes(partial[1].read_bytes()[:40])
    monkeypatch.undo()
    monkeypatch.setattr(cli, "_load_model", lambda args, device, dtype: tiny)
    calls = _count_calls(monkeypatch)
    assert cli.main(base + ["-o", str(out)]) == 2  # frames there: refuse without --resume
    assert "--resume" in _one_line(capsys.readouterr().err)
    assert cli.main(base + ["-o", str(out), "--resume"]) == 0
    assert 0 < len(calls) < 6  # only windows with missing frames ran
    assert {p.name: p.read_bytes() for p in _outputs(out)} == reference


_SLOW_RUN = """
import sys, time, torch, emavfi
from emavfi import cli
from emavfi.config import ModelConfig
torch.set_num_threads(1)
model = emavfi.build_model(ModelConfig(width=4, depths=(1, 1, 1, 2, 2))).eval()
cli._load_model = lambda args, device, dtype: model

def slow_blend(model, img0, img1, timesteps=0.5, **kwargs):
    time.sleep(0.1)
    return torch.stack([(1 - t) * img0 + t * img1 for t in timesteps])

emavfi.interpolate = slow_blend
sys.exit(cli.main(sys.argv[1:]))
"""


def test_sigint_in_a_real_process_exits_130_with_complete_files(tmp_path):
    import signal
    import time

    _write_clip(tmp_path / "in", 40)
    out = tmp_path / "out"
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EMAVFI_DEBUG", None)
    proc = subprocess.Popen([sys.executable, "-c", _SLOW_RUN, "interpolate", str(tmp_path / "in"), "-o", str(out),
                             "--chunk", "1", "--device", "cpu", "--cut-threshold", "0"],
                            stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not out.is_dir() or len(_outputs(out)) < 4):
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == cli.EXIT_INTERRUPTED, err
    assert "Traceback" not in err
    assert err.strip().splitlines()[-1].startswith("interrupted:")
    written = _outputs(out)
    assert 4 <= len(written) < 79
    assert all(frames_io.is_complete_image(p) for p in written)
    assert not [p for p in out.iterdir() if p.name.endswith(".partial")]


def test_resume_refuses_different_settings(tmp_path, tiny, capsys):
    _write_clip(tmp_path / "in", 3)
    base = ["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--device", "cpu"]
    assert cli.main(base + ["-m", "2"]) == 0
    capsys.readouterr()
    assert cli.main(base + ["-m", "4", "--resume"]) == 2
    assert "mode" in _one_line(capsys.readouterr().err)
    assert cli.main(base + ["-m", "4", "--overwrite"]) == 0
    assert len(_outputs(tmp_path / "out")) == 9


def test_memory_stays_flat_over_a_long_clip(tmp_path, monkeypatch):
    """160 frames x4 through a stand-in network: resident memory must not grow with the clip."""
    n, h, w = 160, 128, 160
    _write_clip(tmp_path / "in", n, h, w)
    model = _tiny()
    monkeypatch.setattr(cli, "_load_model", lambda args, device, dtype: model)
    rss: list[int] = []
    page = os.sysconf("SC_PAGE_SIZE")

    def blend(model, img0, img1, timesteps=0.5, **kwargs):
        with open("/proc/self/statm") as f:
            rss.append(int(f.read().split()[1]) * page)
        return torch.stack([(1 - t) * img0 + t * img1 for t in timesteps])

    def blend_sequence(model, frames, timesteps=0.5, **kwargs):
        return blend(model, frames[:-1], frames[1:], timesteps)

    monkeypatch.setattr(emavfi, "interpolate", blend)
    monkeypatch.setattr(emavfi.inference, "interpolate_sequence", blend_sequence)
    assert cli.main(["interpolate", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "-m", "4",
                     "--device", "cpu", "--chunk", "4", "--cut-threshold", "0"]) == 0
    assert len(_outputs(tmp_path / "out")) == (n - 1) * 4 + 1
    clip_bytes = (n - 1) * 4 * 3 * h * w * 4  # the float32 output clip: ~235 MB if it were held
    growth = max(rss[len(rss) // 4:]) - rss[len(rss) // 4]
    print(f"RSS growth {growth / 2**20:.1f} MiB; the output clip is {clip_bytes / 2**20:.0f} MiB")
    assert growth < clip_bytes / 6, f"RSS grew by {growth / 2**20:.0f} MiB"


# ----------------------------------------------------------------------------------------------- checks

def test_t05_only_model_rejects_other_multipliers_and_bisects_powers_of_two(tmp_path, monkeypatch, capsys):
    model = _tiny(arbitrary_t=False)
    monkeypatch.setattr(cli, "_load_model", lambda args, device, dtype: model)
    _write_clip(tmp_path / "in", 3)
    base = ["interpolate", str(tmp_path / "in"), "--device", "cpu"]
    assert cli.main(base + ["-o", str(tmp_path / "a"), "-m", "3"]) == 1
    assert "_t" in _one_line(capsys.readouterr().err)
    calls: list[tuple[float, ...]] = []
    real = emavfi.interpolate
    monkeypatch.setattr(emavfi, "interpolate", lambda *a, **k: calls.append(tuple(k["timesteps"])) or real(*a, **k))
    assert cli.main(base + ["-o", str(tmp_path / "b"), "-m", "4"]) == 0
    assert len(_outputs(tmp_path / "b")) == 9 and set(calls) == {(0.5,)}


@pytest.mark.parametrize("argv, fragment", [
    (["interpolate", "IN", "-o", "OUT", "-m", "17"], "2 to 16"),
    (["interpolate", "IN", "-o", "OUT", "--timesteps", "0.5, 1.5"], "got 1.5 in '0.5, 1.5'"),
    (["interpolate", "IN", "-o", "OUT", "--fps", "abc", "--source-fps", "24"], "--fps"),
    (["interpolate", "IN", "-o", "OUT", "-m", "2", "--fps", "60"], "not allowed with"),
    (["interpolate", "IN", "-o", "OUT", "--chunk", "-1"], "--chunk"),
    (["interpolate", "IN", "-o", "OUT", "--device", "tpu9"], "device"),
])
def test_bad_arguments_give_one_line(tmp_path, tiny, capsys, argv, fragment):
    _write_clip(tmp_path / "IN", 2)
    argv = [str(tmp_path / a) if a in ("IN", "OUT") else a for a in argv]
    assert cli.main(argv) in (1, 2)
    assert fragment in _one_line(capsys.readouterr().err)


def test_errors_from_a_real_process_are_one_line_without_traceback(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    env.pop("EMAVFI_DEBUG", None)
    for argv in (["interpolate", str(tmp_path / "missing"), "-o", str(tmp_path / "o")],
                 ["convert", str(tmp_path / "missing.pkl")]):
        proc = subprocess.run([sys.executable, "-m", "emavfi", *argv], capture_output=True, text=True, env=env,
                              cwd=tmp_path, timeout=120)
        assert proc.returncode == 1
        assert "Traceback" not in proc.stderr
        assert "not found" in _one_line(proc.stderr)


def test_help_exits_zero(capsys):
    assert cli.main(["interpolate", "--help"]) == 0
    assert "--multiplier" in capsys.readouterr().out


def test_convert_official_layout_pickle(tmp_path, capsys):
    gen = torch.Generator().manual_seed(0)
    state = {f"module.{k}": torch.randn(shape, generator=gen) * 0.02
             for k, shape in emavfi.weights.expected_shapes("ours_small").items()}
    src = tmp_path / "ours_small.pkl"
    torch.save(state, src)
    assert cli.main(["convert", str(src), "--variant", "ours_small"]) == 0
    dst = tmp_path / "ours_small.safetensors"
    assert emavfi.weights.inspect_safetensors(dst) == "ours_small"
    assert "variant ours_small)" in capsys.readouterr().err
    assert cli.main(["convert", str(src), "-o", str(tmp_path / "x.safetensors"), "--variant", "ours"]) == 1
    assert "ours" in _one_line(capsys.readouterr().err)
    assert not (tmp_path / "x.safetensors").exists()
