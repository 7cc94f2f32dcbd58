"""`python -m emavfi interpolate --backend ...`: outputs within 1/255 of the torch path; bad input at once."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import emavfi
from emavfi import backends, cli, loading, render
from emavfi.config import ModelConfig

from helpers import TINY, tiny_model

oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
pytestmark = pytest.mark.usefixtures("one_thread")
BACKENDS = [pytest.param(name, marks=pytest.mark.skipif(bool(backends.missing_packages(name)),
                                                        reason=f"{name} not installed (requirements-runtimes.txt)"))
            for name in ("openvino", "onnxruntime")]


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """Four 64x96 frames panning over scikit-image's coffee, as 8-bit PNGs."""
    data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
    photo = data.coffee().astype(np.float32) / 255
    folder = tmp_path_factory.mktemp("clip")
    for i in range(4):
        view = np.ascontiguousarray(photo[100 + 3 * i:164 + 3 * i, 150 + 5 * i:246 + 5 * i])
        assert oiio.ImageBuf(np.rint(view * 255).astype(np.uint8)).write(str(folder / f"f{i}.png"))
    return folder


@pytest.fixture
def models(monkeypatch, tmp_path_factory):
    """The CLI loads a tiny network (trained-for-any-t or t = 0.5-only) through the real backend code."""
    cache = tmp_path_factory.getbasetemp() / "cli-compiled"
    net = tiny_model(11)

    def load(s, state=None, progress=None):
        config = ModelConfig(width=TINY.width, depths=TINY.depths, arbitrary_t=s.model_variant.endswith("_t"))
        return emavfi.load_model(net.state_dict(), config, backend=s.backend, cache_dir=cache)

    monkeypatch.setattr(loading, "load_model_for", load)


def _frames(folder) -> list[np.ndarray]:
    return [oiio.ImageBuf(str(p)).get_pixels(oiio.FLOAT) for p in sorted(folder.glob("*.png"))]


@pytest.mark.parametrize("name", BACKENDS)
@pytest.mark.parametrize("request_args", [["-m", "2"], ["-m", "4"],
                                          ["--variant", "ours", "--source-fps", "24", "--fps", "48"]],
                         ids=["x2", "x4", "retime-t0.5-only"])
def test_backend_output_equals_torch_within_one_code_value(tmp_path, clip, models, name, request_args):
    outputs = {}
    for backend in ("torch", name):
        out = tmp_path / backend
        assert cli.main(["interpolate", str(clip), "-o", str(out), "--device", "cpu", "--backend", backend,
                         *request_args]) == 0
        outputs[backend] = _frames(out)
    assert len(outputs["torch"]) == len(outputs[name]) >= 7
    worst = max(np.abs(a - b).max() for a, b in zip(outputs["torch"], outputs[name]))
    assert worst <= 1 / 255 + 1e-6


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


@pytest.fixture
def no_load(monkeypatch):
    def fail(*args, **kwargs):
        raise AssertionError("the model was loaded before the settings were checked")

    monkeypatch.setattr(loading, "load_model_for", fail)


def test_unknown_backend_lists_the_choices(tmp_path, clip, capsys, no_load):
    assert cli.main(["interpolate", str(clip), "-o", str(tmp_path / "o"), "--backend", "coreml"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert all(name in line for name in backends.BACKENDS)
    assert not (tmp_path / "o").exists()


def test_missing_runtime_names_the_requirements_file(tmp_path, clip, capsys, monkeypatch, no_load):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda n, *a: None if n == "onnxruntime" else real(n, *a))
    assert cli.main(["interpolate", str(clip), "-o", str(tmp_path / "o"), "--backend", "onnxruntime"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "onnxruntime" in line and "requirements-runtimes.txt" in line


def test_tensorrt_without_a_gpu_exits_2_before_any_work(tmp_path, clip, capsys, no_load):
    if torch.cuda.is_available() and not backends.missing_packages("tensorrt"):
        pytest.skip("this machine has CUDA and TensorRT")
    assert cli.main(["interpolate", str(clip), "-o", str(tmp_path / "o"), "--backend", "tensorrt"]) == 2
    line = _one_line(capsys.readouterr().err)
    assert "tensorrt needs" in line
    assert not (tmp_path / "o").exists()


def test_cpu_runtime_on_a_named_gpu_is_refused(tmp_path, clip, capsys, no_load):
    assert cli.main(["interpolate", str(clip), "-o", str(tmp_path / "o"), "--backend", "openvino",
                     "--device", "mps"]) == 2
    assert "openvino" in _one_line(capsys.readouterr().err)
