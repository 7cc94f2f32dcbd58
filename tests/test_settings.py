"""emavfi.settings: every setting validated once, with one line naming the value and the fix."""
from __future__ import annotations

import pytest
import torch

from emavfi import cuts
from emavfi.devices import run_device, run_dtype
from emavfi.settings import MAX_CHUNK, OutputOptions, RunOptions, Settings, SettingsError


def test_defaults_are_valid_and_take_the_detector_default():
    run = RunOptions()
    assert run.cut_threshold == cuts.DEFAULT_CUT_THRESHOLD and run.chunk == 0 and run.scale == 1.0
    assert Settings().model_variant == "ours_small_t"


@pytest.mark.parametrize("options, fragment", [
    ({"scale": 0.3}, "scale must be one of 1, 0.5, 0.25"),
    ({"scale": float("nan")}, "finite"),
    ({"cut_threshold": -1}, "cut threshold must be >= 0"),
    ({"cut_threshold": 0.06}, "below 1, which would call almost every pair a cut"),
    ({"chunk": -1}, f"chunk must be a whole number from 0 to {MAX_CHUNK}"),
    ({"chunk": 10**9}, "chunk"),
    ({"chunk": 2.5}, "chunk"),
    ({"tta": "yes"}, "tta must be true or false"),
])
def test_run_options_refuse_bad_values(options, fragment):
    with pytest.raises(SettingsError, match=fragment):
        RunOptions(**options)


@pytest.mark.parametrize("options, fragment", [
    ({"start_number": -1}, "start-number"),
    ({"start_number": 10**12}, "start-number"),
    ({"resume": True, "overwrite": True}, "exclude each other"),
    ({"on_error": "ignore"}, "on-error"),
])
def test_output_options_refuse_bad_values(options, fragment):
    with pytest.raises(SettingsError, match=fragment):
        OutputOptions(**options)


def test_settings_checks_weights_device_and_precision_before_anything_loads(tmp_path):
    with pytest.raises(SettingsError, match="not found"):
        Settings(weights=tmp_path / "missing.safetensors")
    pickle = tmp_path / "ours_t.pkl"
    pickle.write_bytes(b"\x80\x04")
    with pytest.raises(SettingsError, match="convert"):
        Settings(weights=pickle)
    with pytest.raises(SettingsError, match="unknown device 'gpu'"):
        Settings(device="gpu")
    with pytest.raises(SettingsError, match="precision"):
        Settings(precision="fp8")
    with pytest.raises(SettingsError, match="unknown variant"):
        Settings(variant="ours_huge")


def test_device_and_dtype_resolution():
    assert run_device("cpu") == torch.device("cpu")
    assert run_dtype("auto", torch.device("cpu")) == torch.float32
    assert run_dtype("fp16", torch.device("cpu")) == torch.float16  # bf16 follows the CPU: test_precision.py
    if not torch.cuda.is_available():
        with pytest.raises(SettingsError, match="needs CUDA, which is not available"):
            run_device("cuda:1")
