"""The loader's backend widget (ComfyUI stand-ins): runtime models run through the interpolate node, and the
runtimes are imported only when the widget asks for one."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import torch

from test_nodes import _reset, clip, env, interpolate, small_t_weights  # noqa: F401 - fixtures and helpers

from comfy_helpers import REPO, comfy_source_missing


def test_backend_widget_defaults_to_torch(env):
    pack, _ = env
    spec = pack.classes["EMAVFI_LoadModel"].INPUT_TYPES()["optional"]["backend"]
    assert spec[1]["options"] == ["torch", "openvino", "onnxruntime", "tensorrt", "auto"]
    assert spec[1]["default"] == "torch" and "tooltip" in spec[1]


def test_onnxruntime_backend_runs_through_the_interpolate_node(env, small_t_weights):
    pytest.importorskip("onnxruntime", reason="requirements-runtimes.txt")
    pack, state = env
    folder = Path(state.models_dir) / "frame_interpolation" / "emavfi"
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "rt_small_t.safetensors").write_bytes(small_t_weights.read_bytes())
    node = pack.node("EMAVFI_LoadModel")
    torch_model = node.load("ours_small_t", "auto", "cpu", weights="rt_small_t.safetensors")["result"][0]
    loaded = node.load("ours_small_t", "auto", "cpu", weights="rt_small_t.safetensors", backend="onnxruntime")
    model = loaded["result"][0]
    assert loaded["ui"]["emavfi"][0]["backend"] == "onnxruntime"
    assert type(model.network).__name__ == "RuntimeModel" and model.arbitrary_t
    images = clip(n=3, h=32, w=48)
    (expected, _, _, _), _ = interpolate(pack, images, torch_model, multiplier=2)
    (got, _, _, _), _ = interpolate(pack, images, model, multiplier=2)
    assert got.shape == expected.shape == (5, 32, 48, 3)
    assert (got - expected).abs().max().item() <= 2e-4
    assert any((folder / ".compiled" / "onnxruntime").iterdir())  # cached in ComfyUI's models folder
    if not torch.cuda.is_available():
        with pytest.raises(ValueError, match="backend tensorrt needs"):
            node.load("ours_small_t", "auto", "cpu", weights="rt_small_t.safetensors", backend="tensorrt")


def test_loading_the_pack_imports_no_runtime():
    if comfy_source_missing():
        pytest.skip(comfy_source_missing())
    code = ("import sys; sys.path.insert(0, 'tests'); from comfy_helpers import install_standins, load_pack; "
            "import asyncio, tempfile; install_standins(tempfile.mkdtemp()); "
            "asyncio.run(asyncio.run(load_pack().comfy_entrypoint()).get_node_list()); "
            "print(sorted(m for m in ('onnx', 'onnxruntime', 'openvino', 'tensorrt') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "[]"
