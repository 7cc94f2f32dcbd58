"""The command line starts light: help, usage errors and `plan` never load PyTorch (`python -X importtime`)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "OpenImageIO", "PyOpenColorIO", "av", "ray")


def _run(*args: str, cwd: Path = REPO) -> tuple[subprocess.CompletedProcess, set[str]]:
    """`python -X importtime -m emavfi ARGS`: the finished process and the top-level packages it imported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")]))}
    proc = subprocess.run([sys.executable, "-X", "importtime", "-m", "emavfi", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)
    imported = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines()
                if line.startswith("import time:") and line.count("|") == 2}
    assert "emavfi" in imported, proc.stderr[-2000:]
    return proc, imported


def _errors(proc: subprocess.CompletedProcess) -> list[str]:
    return [line for line in proc.stderr.splitlines() if not line.startswith("import time:")]


@pytest.mark.parametrize("args", [["--help"], ["plan", "--help"], ["interpolate", "--help"]])
def test_help_imports_no_torch_and_no_media_or_cluster_packages(args):
    proc, imported = _run(*args)
    assert proc.returncode == 0 and "usage: emavfi" in proc.stdout
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


@pytest.mark.parametrize("args, fragment", [
    ([], "arguments are required: COMMAND"),
    (["interpolate", "{input}", "-o", "{out}", "--scale", "0.3"], "scale must be one of"),
    (["interpolate", "{input}", "-o", "{out}", "--fps", "abc"], "frame rate must be a number"),
    (["interpolate", "{input}", "-o", "{out}", "--device", "gpu"], "unknown device 'gpu'"),
    (["interpolate", "{input}", "-o", "{out}", "--cut-threshold", "0.06"], "cut threshold 0.06 is below 1"),
    (["interpolate", "{input}_missing", "-o", "{out}"], "input not found"),
    (["interpolate", "{input}", "-o", "{input}"], "is the input"),
    (["plan", "{input}", "--tasks", "2", "--frames-per-task", "3"], "not allowed with argument --tasks"),
])
def test_usage_errors_exit_2_before_any_heavy_import(tmp_path, args, fragment):
    (tmp_path / "in").mkdir()
    args = [a.format(input=tmp_path / "in", out=tmp_path / "out") for a in args]
    proc, imported = _run(*args)
    errors = _errors(proc)
    assert proc.returncode == 2 and len(errors) == 1 and fragment in errors[0], errors
    assert imported.isdisjoint(HEAVY), sorted(imported & set(HEAVY))


@pytest.fixture(scope="module")
def png_folder(tmp_path_factory) -> Path:
    """Six 16-bit PNG frames of a pan across the astronaut (scikit-image), with a cut to the coffee cup."""
    oiio = pytest.importorskip("OpenImageIO", reason="writing PNG frames needs OpenImageIO (requirements-cli.txt)")
    data = pytest.importorskip("skimage.data", reason="test pictures come from scikit-image")
    folder = tmp_path_factory.mktemp("plate")
    astronaut, coffee = data.astronaut(), data.coffee()
    shots = [astronaut[100:164, 40 + 6 * i:136 + 6 * i] for i in range(4)] + [coffee[50:114, 60 + 5 * i:156 + 5 * i]
                                                                             for i in range(2)]
    for i, shot in enumerate(shots):
        pixels = np.ascontiguousarray(shot.astype(np.uint16) * 257)
        path = str(folder / f"plate.{1001 + i}.png")
        out = oiio.ImageOutput.create(path)
        assert out.open(path, oiio.ImageSpec(96, 64, 3, "uint16")) and out.write_image(pixels) and out.close()
    return folder


def test_plan_reads_frame_headers_without_torch(png_folder):
    proc, imported = _run("plan", str(png_folder), "--multiplier", "4", "--tasks", "3", "--start-number", "1001")
    assert proc.returncode == 0, _errors(proc)
    assert "output frames: 21" in proc.stdout and "--frames 1001-1007" in proc.stdout
    assert "torch" not in imported and "ray" not in imported and "av" not in imported
    # a usage error found from the frames (the shot has 21 output frames) is also told without PyTorch
    proc, imported = _run("interpolate", str(png_folder), "-o", str(png_folder.parent / "out"), "--frames", "5-999")
    assert proc.returncode == 2 and "outside the output frames" in _errors(proc)[0]
    assert "torch" not in imported
