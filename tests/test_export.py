"""`python -m emavfi export`: ONNX, OpenVINO IR and TorchScript files, run by the runtimes' own APIs."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import emavfi
from emavfi import cli
from emavfi import weights as library_weights
from emavfi.weights import save_safetensors

from helpers import random_state, tiny_model
from test_export_trace import _photo_pair

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 2e-4


@pytest.fixture
def tiny(monkeypatch):
    """The export command loads this tiny network instead of a real-size one (the checks before it still run)."""
    model = tiny_model(5)
    monkeypatch.setattr(library_weights, "load_model", lambda *a, **k: model)
    return model


@pytest.fixture
def weights_file(tmp_path):
    path = tmp_path / "w.safetensors"
    save_safetensors(random_state("ours_small_t", seed=1), path, "ours_small_t")
    return path


def _one_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def _export(weights, out, fmt, size="70x100", *extra) -> int:
    return cli.main(["export", "--variant", "ours_small_t", "--weights", str(weights), "--size", size, "--format", fmt,
                     "-o", str(out), *extra])


def _feed(h: int, w: int, t: float) -> tuple[dict[str, np.ndarray], torch.Tensor, torch.Tensor]:
    img0, img1 = _photo_pair(h, w)
    return {"img0": img0.numpy(), "img1": img1.numpy(), "timestep": np.array([t], np.float32)}, img0, img1


def test_onnx_export_of_real_size_weights_runs_in_onnxruntime_and_openvino(tmp_path, weights_file, capsys):
    onnx = pytest.importorskip("onnx", reason="requirements-runtimes.txt")
    ort = pytest.importorskip("onnxruntime", reason="requirements-runtimes.txt")
    ov = pytest.importorskip("openvino", reason="requirements-runtimes.txt")
    out = tmp_path / "ema.onnx"
    assert _export(weights_file, out, "onnx") == 0
    assert "exported ours_small_t as onnx" in capsys.readouterr().err
    proto = onnx.load(str(out))
    onnx.checker.check_model(proto)
    assert max(o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")) >= 16
    assert [i.name for i in proto.graph.input] == ["img0", "img1", "timestep"]
    assert [o.name for o in proto.graph.output] == ["frame"]
    dims = [[d.dim_value for d in i.type.tensor_type.shape.dim] for i in proto.graph.input]
    assert dims == [[1, 3, 70, 100], [1, 3, 70, 100], [1]]
    model = emavfi.load_model(weights_file)
    feed, img0, img1 = _feed(70, 100, 0.3)
    expected = emavfi.interpolate(model, img0, img1, 0.3).numpy()
    (frame,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["frame"], feed)
    assert frame.shape == (1, 3, 70, 100) and np.abs(frame - expected).max() <= TOL
    compiled = ov.Core().compile_model(str(out), "CPU")
    assert np.abs(compiled(feed)[compiled.output("frame")] - expected).max() <= TOL


def test_openvino_ir_has_the_same_inputs_and_outputs(tmp_path, tiny):
    ov = pytest.importorskip("openvino", reason="requirements-runtimes.txt")
    out = tmp_path / "ema.xml"
    assert _export("unused.safetensors", out, "openvino", "45x77") == 2  # weights path is checked first
    (tmp_path / "w.safetensors").write_bytes(b"")
    assert _export(tmp_path / "w.safetensors", out, "openvino", "45x77") == 0
    assert out.is_file() and out.with_suffix(".bin").is_file()
    model = ov.Core().read_model(str(out))
    assert sorted(i.get_any_name() for i in model.inputs) == ["img0", "img1", "timestep"]
    assert [o.get_any_name() for o in model.outputs] == ["frame"]
    compiled = ov.Core().compile_model(model, "CPU")
    feed, img0, img1 = _feed(45, 77, 0.5)
    expected = emavfi.interpolate(tiny, img0, img1, 0.5).numpy()
    assert np.abs(compiled(feed)[compiled.output("frame")] - expected).max() <= TOL


def test_torchscript_for_nuke_runs_at_any_size_with_a_timestep_knob(tmp_path, tiny):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(b"")
    out = tmp_path / "ema.pt"
    assert _export(weights, out, "torchscript", "64x96") == 0
    module = torch.jit.load(str(out))
    assert module.timestep == 0.5 and isinstance(module.timestep, float)
    module.timestep = 0.25
    for h, w in [(64, 96), (90, 130)]:
        img0, img1 = _photo_pair(h, w)
        with torch.no_grad():
            got = module(torch.cat([img0, img1], 1))
        assert (got - emavfi.interpolate(tiny, img0, img1, 0.25)).abs().max().item() <= TOL


@pytest.mark.parametrize("argv, expected", [
    (["--format", "tflite", "--size", "64x64"], "choose from"),
    (["--format", "onnx", "--size", "100000x64"], "32 to 8192"),
    (["--format", "onnx", "--size", "64"], "HxW"),
    (["--format", "onnx", "--size", "16x64"], "32 to 8192"),
])
def test_bad_format_or_size_is_one_line_and_exit_2(tmp_path, capsys, argv, expected, tiny):
    (tmp_path / "w.safetensors").write_bytes(b"")
    code = cli.main(["export", "--variant", "ours_t", "--weights", str(tmp_path / "w.safetensors"),
                     "-o", str(tmp_path / "x"), *argv])
    assert code == 2
    line = _one_line(capsys.readouterr().err)
    assert expected in line
    if "choose from" in line:
        assert all(name in line for name in ("onnx", "openvino", "torchscript"))
    assert not (tmp_path / "x").exists()


def test_missing_runtime_package_names_the_requirements_file(tmp_path, capsys, monkeypatch, tiny):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    (tmp_path / "w.safetensors").write_bytes(b"")
    assert _export(tmp_path / "w.safetensors", tmp_path / "m.xml", "openvino") == 2
    line = _one_line(capsys.readouterr().err)
    assert "openvino" in line and "requirements-runtimes.txt" in line


def test_existing_output_is_kept_unless_overwrite(tmp_path, capsys, tiny):
    (tmp_path / "w.safetensors").write_bytes(b"")
    out = tmp_path / "mine.pt"
    out.write_bytes(b"the user's file")
    assert _export(tmp_path / "w.safetensors", out, "torchscript", "64x64") == 2
    assert "exists" in _one_line(capsys.readouterr().err) and out.read_bytes() == b"the user's file"
    assert _export(tmp_path / "w.safetensors", out, "torchscript", "64x64", "--overwrite") == 0
    assert torch.jit.load(str(out)).timestep == 0.5


def test_fp16_onnx_keeps_float32_inputs_and_outputs(tmp_path, tiny):
    onnx = pytest.importorskip("onnx", reason="requirements-runtimes.txt")
    ort = pytest.importorskip("onnxruntime", reason="requirements-runtimes.txt")
    (tmp_path / "w.safetensors").write_bytes(b"")
    out = tmp_path / "half.onnx"
    assert _export(tmp_path / "w.safetensors", out, "onnx", "64x96", "--precision", "fp16") == 0
    proto = onnx.load(str(out))
    assert {i.type.tensor_type.elem_type for i in (*proto.graph.input, *proto.graph.output)} == {onnx.TensorProto.FLOAT}
    assert any(t.data_type == onnx.TensorProto.FLOAT16 for t in proto.graph.initializer)
    feed, img0, img1 = _feed(64, 96, 0.5)
    (frame,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(["frame"], feed)
    assert np.abs(frame - emavfi.interpolate(tiny, img0, img1, 0.5).numpy()).max() <= 5e-3


def test_the_export_and_backend_modules_import_no_runtime_nor_torch():
    import subprocess
    import sys

    code = ("import sys, emavfi.export.cli, emavfi.backends; "
            "print(sorted(m for m in ('torch', 'onnx', 'openvino', 'onnxruntime', 'tensorrt') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True).stdout.strip() == "[]"
