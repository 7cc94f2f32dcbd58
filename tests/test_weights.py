"""State-dict layout, loading, variant detection, clear errors and the .pkl converter."""
from __future__ import annotations

import json
import pickle
import stat

import pytest
import torch
from safetensors.torch import save_file

import emavfi
from emavfi.weights import canonical_keys, convert_pkl, inspect_safetensors, save_safetensors

from conftest import shared_path
from helpers import TINY, random_state
from hub_fixtures import umask_mode  # noqa: F401  (fixture)


@pytest.mark.parametrize("variant", emavfi.VARIANTS)
def test_state_dict_matches_official_manifest(variant):
    manifest = json.loads(shared_path("manifests", f"{variant}.json").read_text())
    expected = {k: tuple(v["shape"]) for k, v in manifest.items() if not v["buffer"]}
    ours = {k: tuple(v.shape) for k, v in emavfi.build_model(variant).state_dict().items()}
    assert ours == expected
    assert list(ours) == list(expected)  # same registration order as the reference


@pytest.mark.parametrize("variant,params", [("ours", 65_662_359), ("ours_small", 14_489_815)])
def test_parameter_counts(variant, params):
    model = emavfi.build_model(variant)
    assert sum(p.numel() for p in model.parameters()) == params


def test_unknown_variant_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown EMA-VFI variant 'ours_big'.*ours_small_t"):
        emavfi.build_model("ours_big")


def test_prefixes_and_runtime_buffers_are_normalised():
    state = {"module.feature_bone.block1.conv.0.weight": 1, "model.unet.conv.bias": 2,
             "module.feature_bone.block4.1.attn_mask": 3, "module.feature_bone.block4.1.HW": 4}
    assert canonical_keys(state) == {"feature_bone.block1.conv.0.weight": 1, "unet.conv.bias": 2}


def test_load_model_accepts_official_prefixed_state_dict():
    state = random_state("ours_small")
    prefixed = {f"module.{k}": v for k, v in state.items()}
    prefixed["module.feature_bone.block4.1.attn_mask"] = torch.zeros(25, 49, 49)
    prefixed["module.feature_bone.block4.1.HW"] = torch.zeros(1)
    model = emavfi.load_model(prefixed, "ours_small")
    assert not model.training
    assert model.variant == "ours_small"
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert all(isinstance(p, torch.nn.Parameter) for p in model.parameters())


def test_detects_architecture_and_honours_metadata(tmp_path):
    path = tmp_path / "w.safetensors"
    save_file(random_state("ours_small"), str(path))
    assert inspect_safetensors(path) == "ours_small_t"  # shapes alone cannot tell; the `_t` twin is assumed
    save_safetensors(random_state("ours_small"), path, "ours_small")
    assert inspect_safetensors(path) == "ours_small"
    assert emavfi.load_model(path).variant == "ours_small"
    assert emavfi.load_model(path, variant="ours_small_t").variant == "ours_small_t"


def test_wrong_variant_names_the_lookalike_and_first_keys(tmp_path):
    path = tmp_path / "small.safetensors"
    save_file(random_state("ours_small"), str(path))
    with pytest.raises(emavfi.WeightsError, match=r"do not match variant 'ours_t'.*shape mismatches"):
        emavfi.load_model(path, variant="ours_t")
    state = random_state("ours_small")
    del state["unet.conv.bias"]
    state["extra.weight"] = torch.zeros(1)
    with pytest.raises(emavfi.WeightsError, match=r"closest is 'ours_small_t'.*missing keys \(first: unet.conv.bias\)"
                                                 r".*unexpected keys \(first: extra.weight\)"):
        emavfi.load_model(state)


def test_corrupt_truncated_and_pickle_files_are_refused(tmp_path):
    good = tmp_path / "good.safetensors"
    save_file(random_state("ours_small"), str(good))
    truncated = tmp_path / "trunc.safetensors"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(emavfi.WeightsError, match="corrupt"):
        emavfi.load_model(truncated)
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    with pytest.raises(emavfi.WeightsError, match="not a valid safetensors"):
        emavfi.load_model(garbage)
    with pytest.raises(emavfi.WeightsError, match="not found"):
        emavfi.load_model(tmp_path / "missing.safetensors")
    pkl = tmp_path / "ours.pkl"
    pkl.write_bytes(b"whatever")
    with pytest.raises(emavfi.WeightsError, match="python -m emavfi convert"):
        emavfi.load_model(pkl)


def test_nan_weights_are_refused():
    state = random_state("ours_small")
    state["unet.conv.bias"][0] = float("nan")
    with pytest.raises(emavfi.WeightsError, match="NaN"):
        emavfi.load_model(state)


def test_load_model_dtype_and_tiny_config(tmp_path):
    state = emavfi.build_model(TINY).state_dict()
    model = emavfi.load_model(state, TINY, dtype=torch.float64)
    assert next(model.parameters()).dtype == torch.float64


def test_converter_round_trips_official_layout_pickle(tmp_path):
    state = random_state("ours_small", seed=3)
    official = {f"module.{k}": v for k, v in state.items()}
    official["module.feature_bone.block5.1.attn_mask"] = torch.zeros(9, 49, 49)
    src, dst = tmp_path / "ours_small_t.pkl", tmp_path / "out" / "ours_small_t.safetensors"
    torch.save(official, src)
    assert convert_pkl(src, dst, variant="ours_small_t") == "ours_small_t"
    assert inspect_safetensors(dst) == "ours_small_t"
    model = emavfi.load_model(dst)
    for key, value in model.state_dict().items():
        assert torch.equal(value, state[key])
    assert [p.name for p in dst.parent.iterdir()] == [dst.name]  # no temp file left behind


class _Payload:
    def __reduce__(self):
        return (exec, ("import pathlib; pathlib.Path('PWNED').touch()",))


def test_converter_refuses_pickle_with_code(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    src = tmp_path / "evil.pkl"
    state = {f"module.{k}": v for k, v in random_state("ours_small").items()}
    state["module.payload"] = _Payload()
    with open(src, "wb") as f:
        pickle.dump(state, f, protocol=2)
    with pytest.raises(emavfi.WeightsError, match="refusing evil.pkl") as info:
        convert_pkl(src, tmp_path / "evil.safetensors")
    message = str(info.value)
    assert "possibly code" in message and "not converted" in message
    assert "weights_only" not in message and "\n" not in message  # never torch's advice to unpickle it anyway
    assert not (tmp_path / "PWNED").exists()
    assert not (tmp_path / "evil.safetensors").exists()


def test_converter_refuses_non_emavfi_checkpoint(tmp_path):
    src = tmp_path / "other.pkl"
    torch.save({"module.conv.weight": torch.zeros(3, 3)}, src)
    with pytest.raises(emavfi.WeightsError, match="match no EMA-VFI variant"):
        convert_pkl(src, tmp_path / "other.safetensors")
    assert not (tmp_path / "other.safetensors").exists()


def test_converter_knows_official_checksums():
    assert set(emavfi.weights.OFFICIAL_PKL_SHA256.values()) == set(emavfi.VARIANTS)


def test_converted_file_gets_the_umask_mode(tmp_path, umask_mode):
    src, dst = tmp_path / "ours_small.pkl", tmp_path / "ours_small.safetensors"
    torch.save({f"module.{k}": v for k, v in random_state("ours_small").items()}, src)
    convert_pkl(src, dst, variant="ours_small")
    assert stat.S_IMODE(dst.stat().st_mode) == umask_mode


def test_pickle_under_a_safetensors_name_is_refused_by_content(tmp_path):
    path = tmp_path / "model.safetensors"
    torch.save(random_state("ours_small"), path)
    with pytest.raises(emavfi.WeightsError, match=r"pickle checkpoint.*convert .* -o .*model-converted.safetensors"):
        emavfi.load_model(path)


@pytest.mark.parametrize(("given", "expected"), [
    ("fp16", torch.float16), ("bf16", torch.bfloat16), ("fp32", torch.float32), ("float16", torch.float16),
    ("torch.bfloat16", torch.bfloat16), (torch.float16, torch.float16)])
def test_load_model_accepts_dtype_names(given, expected):
    model = emavfi.load_model(emavfi.build_model(TINY).state_dict(), TINY, dtype=given)
    assert next(model.parameters()).dtype == expected


@pytest.mark.parametrize(("dtype", "error"), [("banana", ValueError), (torch.int8, ValueError), (16, TypeError)])
def test_load_model_bad_dtype_is_one_clear_line_before_reading(tmp_path, dtype, error):
    with pytest.raises(error) as info:
        emavfi.load_model(tmp_path / "missing.safetensors", dtype=dtype)  # the dtype is checked first
    message = str(info.value)
    assert "torch.float16" in message and "'fp16'" in message and "'bf16'" in message and "\n" not in message
    assert "missing.safetensors" not in message


def test_load_model_bad_device_is_one_clear_line_before_reading(tmp_path):
    with pytest.raises(ValueError, match=r"unknown device 'nonsense'; use 'cpu', 'cuda', 'cuda:N' or 'mps'"):
        emavfi.load_model(tmp_path / "missing.safetensors", device="nonsense")
    expected = "does not exist" if torch.cuda.is_available() else r"needs CUDA, which is not available.*device='cpu'"
    with pytest.raises(ValueError, match=expected):
        emavfi.load_model(tmp_path / "missing.safetensors", device="cuda:99")
    with pytest.raises(TypeError, match="device must be"):
        emavfi.load_model(tmp_path / "missing.safetensors", device=3.5)
