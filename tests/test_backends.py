"""Runtime backends (OpenVINO, ONNX Runtime; TensorRT where a GPU is): parity with the torch path, the CLI,
the engine's seam, and the checks that come before any work."""
from __future__ import annotations

import numpy as np
import pytest
import torch

import emavfi
from emavfi import backends
from emavfi.backends.runtime import RuntimeModel
from emavfi.config import ModelConfig
from emavfi.runner import Runner

from helpers import TINY, tiny_model
from test_export_trace import _photo_pair

pytestmark = pytest.mark.usefixtures("one_thread")
TOL = 2e-4
CPU_RUNTIMES = [pytest.param(name, marks=pytest.mark.skipif(
    bool(backends.missing_packages(name)), reason=f"{name} not installed (requirements-runtimes.txt)"))
    for name in ("openvino", "onnxruntime")]


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    """One compiled-model cache for the module: each backend compiles the 64x96 graphs once."""
    return tmp_path_factory.mktemp("compiled")


@pytest.fixture(scope="module")
def network():
    return tiny_model(7)


def _runtime(network, name, cache_dir) -> RuntimeModel:
    model = emavfi.load_model(network.state_dict(), TINY, backend=name, cache_dir=cache_dir)
    assert isinstance(model, RuntimeModel) and model.backend == name
    return model


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_parity_with_the_torch_path_on_real_frames(network, cache_dir, name):
    model = _runtime(network, name, cache_dir)
    assert model.config == network.config and model.dtype == torch.float32 and model.device.type == "cpu"
    for h, w in [(64, 96), (45, 77)]:  # both pad to 64x96: one compile
        img0, img1 = _photo_pair(h, w)
        aux0, aux1 = img0[:, :1] > 0.5, img1[:, :1] > 0.5
        for tta in (False, True):
            expected, fused = emavfi.interpolate(network, img0, img1, [0.25, 0.5, 0.75], tta=tta,
                                                 aux0=aux0.float(), aux1=aux1.float())
            got, got_fused = emavfi.interpolate(model, img0, img1, [0.25, 0.5, 0.75], tta=tta,
                                                aux0=aux0.float(), aux1=aux1.float())
            assert got.shape == (3, 1, 3, h, w) and got_fused.shape == (3, 1, 1, h, w)
            assert (got - expected).abs().max().item() <= TOL, (name, h, w, tta)
            assert (got_fused - fused).abs().max().item() <= TOL
            if not tta:
                plain = got
        single = emavfi.interpolate(model, img0, img1, 0.5)
        assert single.shape == (1, 3, h, w) and torch.allclose(single, plain[1], atol=TOL)
    assert [size[:2] for size in model.timings] == [(64, 96)]


def test_onnxruntime_odd_size_and_hr_scale(network, cache_dir):
    pytest.importorskip("onnxruntime", reason="requirements-runtimes.txt")
    model = _runtime(network, "onnxruntime", cache_dir)
    img0, img1 = _photo_pair(70, 101)
    for scale in (1.0, 0.5):
        expected = emavfi.interpolate(network, img0, img1, [0.3, 0.6], scale=scale)
        got = emavfi.interpolate(model, img0, img1, [0.3, 0.6], scale=scale)
        assert (got - expected).abs().max().item() <= TOL, scale


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_cached_files_run_in_the_runtimes_own_api(network, cache_dir, name):
    from emavfi.backends.graphs import ExtractGraph, feature_names

    model = _runtime(network, name, cache_dir)
    model.sessions(64, 96, 1.0)
    folder = model.cache.folder(model.key(64, 96, 1.0))
    img0, img1 = _photo_pair(64, 96)
    with torch.no_grad():
        expected = ExtractGraph(network, 1.0)(img0, img1)
    feed = {"img0": img0.numpy(), "img1": img1.numpy()}
    if name == "openvino":
        import openvino as ov

        compiled = ov.Core().compile_model(str(folder / "extract.xml"), "CPU", {"INFERENCE_PRECISION_HINT": "f32"})
        outputs = compiled(feed)
        got = [outputs[compiled.output(n)] for n in feature_names(1.0)]
    else:
        import onnxruntime as ort

        got = ort.InferenceSession(str(folder / "extract.onnx"), providers=["CPUExecutionProvider"]).run(
            feature_names(1.0), feed)
    assert len(got) == len(expected) == 7
    assert max(np.abs(g - e.numpy()).max() for g, e in zip(got, expected)) <= TOL


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_clip_runner_takes_the_runtime_model(network, cache_dir, name):
    from fractions import Fraction

    model = _runtime(network, name, cache_dir)
    frames = torch.cat(list(_photo_pair(64, 96)) + [_photo_pair(64, 96)[0].flip(-1)])
    work = {0: (Fraction(1, 2),), 1: (Fraction(1, 4), Fraction(1, 2), Fraction(3, 4))}
    results = {}
    for key, m in (("torch", network), ("runtime", model)):
        out: dict = {}
        Runner(m, device="cpu").run(frames, work, bisection_depth=None,
                                    emit=lambda i, t, f, out=out: out.__setitem__((i, t), f))
        results[key] = out
    assert results["torch"].keys() == results["runtime"].keys() and len(results["torch"]) == 4
    assert max((results["torch"][k] - results["runtime"][k]).abs().max().item() for k in results["torch"]) <= TOL


@pytest.mark.parametrize("name", CPU_RUNTIMES)
def test_sequence_and_pairs_functions_take_the_runtime_model(network, cache_dir, name):
    model = _runtime(network, name, cache_dir)
    a, b = _photo_pair(64, 96)
    frames = torch.cat([a, b, a.flip(-1), b.roll(5, -1)])  # a pan, then a cut to a mirrored shot that moves
    matte = (frames[:, :1] > 0.4).float()
    for call in (
        lambda m: emavfi.interpolate_sequence(m, frames, [0.25, 0.5], aux=matte, chunk=2),
        lambda m: emavfi.interpolate_pairs(m, frames, [0, 2, 1], [1, 3, 3], [0.5], aux=matte, tta=True),
    ):
        (expected, fused), (got, got_fused) = call(network), call(model)
        assert got.shape == expected.shape and got_fused.shape == fused.shape
        assert (got - expected).abs().max().item() <= TOL and (got_fused - fused).abs().max().item() <= TOL
    single = emavfi.interpolate_sequence(model, frames, 0.5)
    assert single.shape == (3, 3, 64, 96)
    with pytest.raises(ValueError, match="chunk must be a positive integer"):
        emavfi.interpolate_sequence(model, frames, 0.5, chunk=0)
    with pytest.raises(ValueError, match="first indices must be in 0..3"):
        emavfi.interpolate_pairs(model, frames, [0, 4], [1, 2], [0.5])


@pytest.mark.skipif(bool(backends.missing_packages("openvino")), reason="openvino not installed (requirements-runtimes.txt)")
def test_openvino_lanes_run_pairs_and_timesteps_at_once(network, cache_dir):
    """With two threads, OpenVINO's throughput streams take independent runs at once: same frames as torch."""
    from fractions import Fraction

    model = _runtime(network, "openvino", cache_dir)
    a, b = _photo_pair(64, 96)
    frames = torch.cat([a, b, a.roll(6, -1), b.roll(11, -1)])
    matte = (frames[:, :1] > 0.45).float()
    torch.set_num_threads(2)  # the module's one_thread fixture gives the thread back after the test
    lanes = model.lanes(64, 96, 1.0)
    assert lanes.count >= 2 and set(lanes.graphs) == {"extract", "synth"}
    backend = model.as_backend(tta=True)
    assert backend.pairs_in_flight(45, 77) == lanes.count  # pads to 64x96
    work = {0: (Fraction(1, 2),), 1: (Fraction(1, 3), Fraction(2, 3)), 2: (Fraction(1, 2),)}
    results = {}
    for key, m in (("torch", network), ("runtime", model)):
        runner, out = Runner(m, device="cpu", tta=True), {}
        runner.run(torch.cat([frames, matte], 1), work, bisection_depth=None,
                   emit=lambda i, t, f, out=out: out.__setitem__((i, t), f))
        results[key] = (out, runner.chunk)
    (expected, torch_chunk), (got, runtime_chunk) = results["torch"], results["runtime"]
    assert torch_chunk == 1 and runtime_chunk == lanes.count  # the torch path keeps one pair per call on CPU
    assert got.keys() == expected.keys() and len(got) == 4 and got[(1, Fraction(1, 3))].shape == (4, 64, 96)
    assert max((got[k] - expected[k]).abs().max().item() for k in got) <= TOL
    assert Runner(model, device="cpu", chunk=1).resolve_chunk(64, 96) == 1  # a chunk the user gives is kept
    compiled = set(model.timings)
    assert model.lanes(1088, 1920, 1.0) is None and model.as_backend().pairs_in_flight(1080, 1920) == 1
    assert set(model.timings) == compiled  # large frames: one run at a time, decided before compiling anything


@pytest.mark.skipif(bool(backends.missing_packages("openvino")), reason="openvino not installed (requirements-runtimes.txt)")
def test_openvino_lanes_give_the_same_bytes_as_one_run_at_a_time(network, cache_dir):
    """Two pairs per call go to the lanes in flight at once; one pair per call runs alone: equal bytes."""
    from fractions import Fraction

    model = _runtime(network, "openvino", cache_dir)
    a, b = _photo_pair(64, 96)
    frames = torch.cat([a, b, a.roll(6, -1), b.roll(11, -1), a.roll(-7, -2)])
    work = {p: (Fraction(1, 2),) for p in range(4)}
    torch.set_num_threads(2)
    assert model.lanes(64, 96, 1.0).count == 2
    results = []
    for chunk in (1, 2):  # chunk 1: one extract and one synth run per call, never on the lanes
        out: dict = {}
        Runner(model, device="cpu", chunk=chunk).run(frames, work, bisection_depth=None,
                                                     emit=lambda i, t, f, out=out: out.__setitem__((i, t), f))
        results.append(out)
    assert results[0].keys() == results[1].keys() and len(results[0]) == 4
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])


@pytest.mark.skipif(bool(backends.missing_packages("openvino")), reason="openvino not installed (requirements-runtimes.txt)")
def test_a_stalled_runtime_run_stops_the_job_with_one_line(network, cache_dir):
    """The last line of defence against a runtime that never answers: a run with no result within the limit
    (here 0 s, injected) ends the call with one line naming the backend and the way out, and nothing is left
    running (the next call with the normal limit works)."""
    from emavfi.backends.runtime import BackendStalled, stall_limit

    model = _runtime(network, "openvino", cache_dir)
    img0, img1 = _photo_pair(192, 256)
    frames, first, second = torch.cat([img0, img1]), torch.tensor([0]), torch.tensor([1])
    model.sessions(192, 256, 1.0)  # compiled before the clock starts
    with pytest.raises(BackendStalled) as caught:
        model.as_backend(stall_seconds=0)(frames, first, second, [0.5], None)
    message = str(caught.value)
    assert "\n" not in message and "openvino" in message and "--backend torch" in message and "256x192" in message
    rgb, _ = model.as_backend()(frames, first, second, [0.5], None)
    assert (rgb[0, 0] - emavfi.interpolate(network, img0, img1, 0.5)[0]).abs().max().item() <= TOL
    assert 300 <= stall_limit(64, 96) < stall_limit(2176, 3840) <= 3600  # minutes, more for larger frames


def test_auto_picks_an_installed_cpu_runtime():
    expected = "torch" if backends.missing_packages("openvino") else "openvino"  # ONNX Runtime: slower than torch
    assert backends.resolve("auto", "cpu") == expected
    assert backends.resolve("auto", "mps") == "torch"
    assert backends.resolve("onnxruntime", "cpu") == "onnxruntime"


def test_tensorrt_says_what_is_missing_here():
    if torch.cuda.is_available() and not backends.missing_packages("tensorrt"):
        pytest.skip("TensorRT and CUDA are present: see test_tensorrt_engine_parity")
    reason = backends.problem("tensorrt", "auto")
    assert reason and reason.startswith("--backend tensorrt needs") and "\n" not in reason
    if not torch.cuda.is_available():
        assert "CUDA" in reason
    with pytest.raises(ValueError, match="tensorrt"):
        emavfi.load_model(tiny_model().state_dict(), TINY, backend="tensorrt")


@pytest.mark.skipif(not torch.cuda.is_available() or bool(backends.missing_packages("tensorrt")),
                    reason="TensorRT needs an NVIDIA GPU with CUDA and the tensorrt package (not on this machine)")
def test_tensorrt_engine_parity(network, cache_dir):
    model = emavfi.load_model(network.state_dict(), TINY, device="cuda", backend="tensorrt", cache_dir=cache_dir)
    img0, img1 = _photo_pair(64, 96)
    expected = emavfi.interpolate(network, img0, img1, [0.25, 0.5])
    got = emavfi.interpolate(model, img0.cuda(), img1.cuda(), [0.25, 0.5]).cpu()
    assert (got - expected).abs().max().item() <= 1e-3


def test_unknown_backend_is_refused_in_the_library():
    with pytest.raises(ValueError, match="choose one of torch, openvino, onnxruntime, tensorrt, auto"):
        emavfi.load_model(tiny_model().state_dict(), TINY, backend="coreml")
    assert isinstance(emavfi.load_model(tiny_model().state_dict(), ModelConfig(width=4, depths=TINY.depths),
                                        backend="torch"), emavfi.EMAVFI)
