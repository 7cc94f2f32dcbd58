"""Half-precision inference stays close to fp32 on the parity inputs (PSNR >= 45 dB)."""
from __future__ import annotations

import math

import pytest
import torch

import emavfi
from conftest import shared_path


@pytest.fixture(scope="module")
def parity():
    from safetensors.torch import load_file

    weights = {k: v.float() for k, v in load_file(shared_path("parity", "weights.safetensors")).items()}
    return weights, load_file(shared_path("parity", "cases.safetensors"))


def _psnr(a: torch.Tensor, b: torch.Tensor) -> float:
    mse = ((a - b.float()) ** 2).mean().item()
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_half_precision_psnr(parity, dtype):
    # one 64x96 case: half-precision convolutions are slow on CPU (the HR case also passes, at ~50 dB)
    case, scale = "st_t025_plain", 1.0
    weights, tensors = parity
    img0, img1 = tensors[f"{case}/img0"], tensors[f"{case}/img1"]
    t = float(tensors[f"{case}/t"][0])
    full = emavfi.interpolate(emavfi.load_model(weights, "ours_small_t"), img0, img1, t, scale=scale)
    low_model = emavfi.load_model(weights, "ours_small_t", dtype=dtype)
    low = emavfi.interpolate(low_model, img0, img1, t, scale=scale)
    assert low.dtype == torch.float32  # returned in the inputs' dtype
    assert _psnr(full, low) >= 45.0


def test_warp_positions_stay_float32_in_half_precision():
    from emavfi.model.warp import backward_warp

    width = 2048
    ramp = torch.linspace(0, 1, width).expand(1, 1, 4, width)
    flow = torch.zeros(1, 2, 4, width)
    flow[:, 0] = 0.25  # a quarter-pixel shift must survive in bf16
    exact = backward_warp(ramp, flow)
    low = backward_warp(ramp.to(torch.bfloat16), flow.to(torch.bfloat16))
    assert (low.float() - exact)[..., :-1].abs().max() < 4e-3  # bf16 value rounding only, not position error


# bf16 on the CPU: native (AMX, AVX-512 BF16) or refused. The decision is one function of the CPU's flags,
# given here as the /proc/cpuinfo flags of each kind of CPU so both branches run on any machine.
AMD_ZEN3 = {"sse2", "avx", "avx2", "fma", "f16c"}
AMD_ZEN4 = AMD_ZEN3 | {"avx512f", "avx512bw", "avx512_bf16"}
XEON_SAPPHIRE_RAPIDS = AMD_ZEN3 | {"avx512f", "avx512_bf16", "amx_tile", "amx_bf16", "amx_int8"}


def test_bf16_on_the_cpu_is_native_or_refused_with_one_line():
    from emavfi.devices import cpu_bf16_problem, native_bf16

    assert native_bf16(XEON_SAPPHIRE_RAPIDS) == "amx_bf16" and native_bf16(AMD_ZEN4) == "avx512_bf16"
    assert native_bf16(AMD_ZEN3) is None
    assert cpu_bf16_problem(XEON_SAPPHIRE_RAPIDS) is None and cpu_bf16_problem(AMD_ZEN4) is None
    reason = cpu_bf16_problem(AMD_ZEN3)
    assert reason and "\n" not in reason and "--precision fp32" in reason and "native bf16" in reason
    assert cpu_bf16_problem(set()) is None and cpu_bf16_problem({"neon", "asimd"}) is None  # not x86: no judgement


def test_a_runs_bf16_setting_follows_this_cpu():
    from emavfi.devices import cpu_bf16_problem, run_dtype
    from emavfi.errors import SettingsError

    assert run_dtype("fp32", torch.device("cpu")) == torch.float32 == run_dtype("auto", torch.device("cpu"))
    if cpu_bf16_problem() is None:
        assert run_dtype("bf16", torch.device("cpu")) == torch.bfloat16
    else:
        with pytest.raises(SettingsError, match="native bf16"):
            run_dtype("bf16", torch.device("cpu"))


@pytest.mark.usefixtures("one_thread")
def test_openvino_runs_bf16_when_asked_and_f32_otherwise(tmp_path):
    """--precision bf16 --backend openvino compiles with OpenVINO's bf16 hint (on a CPU with native bf16; refused
    elsewhere); fp32 pins f32 (OpenVINO's own default is bf16 on such CPUs; test_backends checks the lanes)."""
    pytest.importorskip("openvino", reason="requirements-runtimes.txt")
    from emavfi.devices import cpu_bf16_problem
    from helpers import TINY, tiny_model
    from test_export_trace import _photo_pair

    network = tiny_model(11)
    img0, img1 = _photo_pair(64, 96)
    expected = emavfi.interpolate(network, img0, img1, 0.5)
    f32 = emavfi.load_model(network.state_dict(), TINY, backend="openvino", cache_dir=tmp_path)
    assert f32.precision == "fp32"
    assert (emavfi.interpolate(f32, img0, img1, 0.5) - expected).abs().max().item() <= 2e-4
    if cpu_bf16_problem() is not None:
        with pytest.raises(ValueError, match="native bf16"):
            emavfi.load_model(network.state_dict(), TINY, backend="openvino", dtype="bf16", cache_dir=tmp_path)
        return
    bf16 = emavfi.load_model(network.state_dict(), TINY, backend="openvino", dtype="bf16", cache_dir=tmp_path)
    got = emavfi.interpolate(bf16, img0, img1, 0.5)
    assert bf16.precision == "bf16" and got.dtype == torch.float32
    assert 2e-4 < (got - expected).abs().max().item() < 0.05  # bf16 arithmetic: ~3 significant digits
    assert bf16.key(64, 96, 1.0) != f32.key(64, 96, 1.0)  # compiled and cached apart
