"""Write exported models: ONNX (one size, padding inside), OpenVINO IR (.xml + .bin), TorchScript (any size).

Files appear atomically (emavfi.files): a reader never sees half an export. The IR records the f32 inference
precision in its runtime info; the README names the compile options that make a runtime compute in f32.
"""
from __future__ import annotations

import os
import tempfile
import warnings
from pathlib import Path

import torch

from ..devices import DTYPES
from ..files import atomic_write, commit, partial_path
from ..model import EMAVFI
from .graphs import FrameGraph, FuseGraph, NukeInterpolator

OPSET = 17  # >= 16 for GridSample; 17 adds LayerNormalization


def _example(height: int, width: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return torch.rand(1, 3, height, width, generator=g), torch.rand(1, 3, height, width, generator=g), \
        torch.tensor([0.5])


def _graph_model(model: EMAVFI, precision: str) -> EMAVFI:
    """The network on the CPU in the export precision (a copy when that differs from the given one)."""
    dtype = DTYPES[precision]
    param = next(model.parameters())
    if param.device.type == "cpu" and param.dtype == dtype:
        return model.eval()
    import copy

    return copy.deepcopy(model).to(device="cpu", dtype=dtype).eval()


def onnx_export(module: torch.nn.Module, args: tuple, path: Path, inputs: list[str], outputs: list[str]) -> None:
    """torch.onnx's TorchScript-based exporter at the static shapes of `args` (window attention needs them)."""
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # tracer and deprecation chatter; the graph is checked by the callers
        torch.onnx.export(module, args, str(path), dynamo=False, opset_version=OPSET, input_names=inputs,
                          output_names=outputs, do_constant_folding=True)


def export_onnx(model: EMAVFI, height: int, width: int, path: str | os.PathLike, precision: str = "fp32") -> Path:
    """ONNX: img0, img1 [1,3,H,W] float32 0..1, timestep [1] float32 -> frame [1,3,H,W]; checked with onnx.checker."""
    import onnx

    net = _graph_model(model, precision)
    graph = FrameGraph(net, DTYPES[precision]).eval()

    def write(tmp: Path) -> None:
        onnx_export(graph, _example(height, width), tmp, ["img0", "img1", "timestep"], ["frame"])
        onnx.checker.check_model(str(tmp))

    return atomic_write(path, writer=write)


def export_openvino(model: EMAVFI, height: int, width: int, path: str | os.PathLike, precision: str = "fp32") -> Path:
    """OpenVINO IR `path` (.xml) + its .bin, converted from the fp32 ONNX graph (fp16: weights compressed); its
    runtime info asks for f32 inference (runtime_options / INFERENCE_PRECISION_HINT)."""
    import openvino as ov

    path = Path(path).with_suffix(".xml")
    with tempfile.TemporaryDirectory(dir=path.parent, prefix=".emavfi-export-") as tmp:
        onnx_path = export_onnx(model, height, width, Path(tmp) / "frame.onnx", "fp32")
        converted = ov.convert_model(str(onnx_path))
        for port in (*converted.inputs, *converted.outputs):  # keep only the ONNX names (not folded-in Casts')
            port.get_tensor().set_names({n for n in port.get_names() if n in ("img0", "img1", "timestep", "frame")})
        # the record of intent, read by runtimes that honour it; OpenVINO 2026.4's CPU plugin does not (it reads
        # only a few other runtime options), so on CPUs with native bf16 a user passes the hint at compile time
        converted.set_rt_info("f32", ["runtime_options", "INFERENCE_PRECISION_HINT"])
        staged = Path(tmp) / path.name
        ov.save_model(converted, str(staged), compress_to_fp16=precision == "fp16")
        save_ir(staged, path)
    return path


def save_ir(staged_xml: Path, path: Path) -> None:
    """Move a saved IR pair into place, .bin first: an .xml is only ever seen beside its finished .bin."""
    for suffix in (".bin", ".xml"):
        tmp = partial_path(path.with_suffix(suffix))
        os.replace(staged_xml.with_suffix(suffix), tmp)
        commit(tmp, path.with_suffix(suffix))


def trace_nuke(model: EMAVFI, height: int, width: int, precision: str = "fp32") -> torch.jit.ScriptModule:
    """The scripted NukeInterpolator: traced at height x width, valid at every size (shapes are traced)."""
    net = _graph_model(model, precision)
    img0, img1, t = _example(height, width)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        core = torch.jit.trace(FrameGraph(net, DTYPES[precision], with_flow=True).eval(), (img0, img1, t),
                               check_trace=False)
        flow = torch.zeros(1, 4, height, width)
        fuse = torch.jit.trace(FuseGraph(), (img0[:, :1], img1[:, :1], flow, flow[:, :1] + 0.5), check_trace=False)
        warnings.simplefilter("ignore", DeprecationWarning)  # torch.jit is what Nuke's CatFileCreator reads
        return torch.jit.script(NukeInterpolator(core, fuse))


def export_torchscript(model: EMAVFI, height: int, width: int, path: str | os.PathLike,
                       precision: str = "fp32") -> Path:
    """TorchScript for Nuke's CatFileCreator: forward(x [1,6+2K,H,W]) -> [1,3+K,H,W], float attribute timestep."""
    module = trace_nuke(model, height, width, precision)
    return atomic_write(path, writer=lambda tmp: torch.jit.save(module, str(tmp)))
