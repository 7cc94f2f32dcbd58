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
F32 = {"INFERENCE_PRECISION_HINT": "f32"}  # OpenVINO computes in bf16 by default on CPUs with native bf16


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
    compiled = ov.Core().compile_model(str(out), "CPU", F32)  # ONNX carries no precision: OpenVINO needs the hint
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
    compiled = ov.Core().compile_model(model, "CPU", F32)
    feed, img0, img1 = _feed(45, 77, 0.5)
    expected = emavfi.interpolate(tiny, img0, img1, 0.5).numpy()
    assert np.abs(compiled(feed)[compiled.output("frame")] - expected).max() <= TOL


def _computed_in(compiled) -> set[str]:
    """The element types OpenVINO's compiled graph really computes in (its runtime model's nodes)."""
    return {op.get_rt_info()["runtimePrecision"].astype(str) for op in compiled.get_runtime_model().get_ordered_ops()}


def test_exported_ir_asks_for_f32_and_both_precision_branches_run_here(tmp_path, tiny):
    """The IR records the f32 hint in its runtime info, and with the hint given at compile time it computes in
    f32 on any CPU. OpenVINO's CPU plugin defaults to bf16 where the CPU has it natively (AMX; AVX-512 BF16 as of
    2026.4) and does not read that record: a default compile follows the device's default, and a forced bf16
    hint computes in bf16 exactly where the CPU has bf16. Either way both branches are checked on this CPU."""
    ov = pytest.importorskip("openvino", reason="requirements-runtimes.txt")
    (tmp_path / "w.safetensors").write_bytes(b"")
    out = tmp_path / "ema.xml"
    assert _export(tmp_path / "w.safetensors", out, "openvino", "45x77") == 0
    core = ov.Core()
    assert core.read_model(str(out)).get_rt_info(["runtime_options", "INFERENCE_PRECISION_HINT"]).astype(str) == "f32"
    feed, img0, img1 = _feed(45, 77, 0.5)
    expected = emavfi.interpolate(tiny, img0, img1, 0.5).numpy()
    native_bf16 = "BF16" in core.get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    default_bf16 = core.get_property("CPU", "INFERENCE_PRECISION_HINT") == ov.Type.bf16
    for config, in_bf16 in ((F32, False), ({}, default_bf16), ({"INFERENCE_PRECISION_HINT": "bf16"}, native_bf16)):
        compiled = core.compile_model(str(out), "CPU", config)
        assert (compiled.get_property("INFERENCE_PRECISION_HINT") == ov.Type.bf16) == in_bf16, config
        assert ("bf16" in _computed_in(compiled)) == in_bf16, config
        difference = np.abs(compiled(feed)[compiled.output("frame")] - expected).max()
        assert (difference > TOL) == in_bf16 and difference < 0.05, (config, difference)  # bf16: ~3 digits
