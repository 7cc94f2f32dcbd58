"""emavfi.local_weights: models folders, explicit files, the search order and its messages (Hub: a loopback fake)."""
from __future__ import annotations

from pathlib import Path

import pytest

from emavfi.errors import HubError, WeightsError
from emavfi.local_weights import default_models_dir, list_local_weights, resolve_weights, weights_status
from hub_fixtures import (  # noqa: F401  (fixtures)
    FILE, REPO, cache, fake_hub, hub_env, models, small_repo, source, tiny)


# ------------------------------------------------------------------------------------------------ local files

@pytest.mark.parametrize("name", ["../secret.safetensors", "sub/../../secret.safetensors", "..\\secret.safetensors",
                                  "sub//x.safetensors"])
def test_local_names_cannot_leave_the_models_folder(tmp_path, models, tiny, name):
    (tmp_path / "secret.safetensors").write_bytes(tiny)
    with pytest.raises(ValueError, match="weights name"):
        resolve_weights("ours_small_t", weights=name, models_dirs=[models])


# ------------------------------------------------------------------------------------------------ local files

def test_local_files_come_first_and_need_no_network(fake_hub, source, models, cache, tiny):
    (models / "ours_small_t.safetensors").write_bytes(tiny)
    (models / "sub").mkdir()
    (models / "sub" / "mine.safetensors").write_bytes(tiny)
    kwargs = dict(source=source, cache_dir=cache, endpoint=fake_hub.url, models_dirs=[models])
    assert resolve_weights("ours_small_t", **kwargs) == models / "ours_small_t.safetensors"
    assert resolve_weights("ours_small_t", weights="sub/mine.safetensors", **kwargs) == models / "sub/mine.safetensors"
    assert resolve_weights("ours_small_t", weights=models / "sub/mine.safetensors", **kwargs).is_file()
    assert fake_hub.requests == []


def test_local_file_of_another_variant_or_a_pickle_is_refused(models, tiny):
    (models / "ours_t.safetensors").write_bytes(tiny)
    with pytest.raises(WeightsError, match="ours_t.safetensors"):
        resolve_weights("ours_t", models_dirs=[models])
    (models / "ours.pkl").write_bytes(b"\x80\x04")
    with pytest.raises(WeightsError, match="python -m emavfi convert"):
        resolve_weights("ours", weights=models / "ours.pkl")


def test_missing_local_name_lists_what_is_there(models, tiny):
    (models / "a.safetensors").write_bytes(tiny)
    with pytest.raises(WeightsError, match="available: a.safetensors"):
        resolve_weights("ours_small_t", weights="b.safetensors", models_dirs=[models])
    with pytest.raises(WeightsError, match="not found"):
        resolve_weights("ours_small_t", weights=models / "b.safetensors")


@pytest.mark.parametrize("variant", ["ours", "ours_small"])
def test_variants_without_a_hub_copy_explain_conversion(models, variant):
    with pytest.raises(WeightsError) as info:
        resolve_weights(variant, models_dirs=[models])
    message = str(info.value)
    assert f"python -m emavfi convert {variant}.pkl -o {models / variant}.safetensors" in message
    (models / f"{variant}.pkl").write_bytes(b"")
    with pytest.raises(WeightsError, match=f"convert {models / variant}.pkl"):
        resolve_weights(variant, models_dirs=[models])


def test_list_local_weights_skips_hub_caches_and_hidden_folders(models, tmp_path):
    second = tmp_path / "second"
    for path in [models / "a.safetensors", models / "sub" / "b.safetensors", second / "c.safetensors",
                 models / "x.pkl", models / ".hidden" / "d.safetensors",
                 models / "models--o--n" / "snapshots" / "0" / "model.safetensors"]:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")
    assert list_local_weights([models, second, tmp_path / "absent"]) == ["a.safetensors", "c.safetensors",
                                                                         "sub/b.safetensors"]


def test_weights_status_reports_missing_cached_local(fake_hub, source, cache, models, tiny):
    kwargs = dict(source=source, models_dirs=[models], cache_dir=cache)
    assert weights_status("ours_small_t", **kwargs) == {
        "state": "missing", "path": None, "bytes": None, "source": f"{REPO}/{FILE}@main"}
    path = resolve_weights("ours_small_t", source=source, cache_dir=cache, endpoint=fake_hub.url)
    fake_hub.clear_log()
    status = weights_status("ours_small_t", **kwargs)
    assert (status["state"], status["path"], status["bytes"]) == ("cached", str(path), len(tiny))
    (models / "ours_small_t.safetensors").write_bytes(tiny)
    assert weights_status("ours_small_t", **kwargs)["state"] == "local"
    assert weights_status("ours", models_dirs=[models])["source"] is None
    assert fake_hub.requests == []


# ------------------------------------------------------------------------------------------------ working offline

def test_offline_message_names_the_command_line_fix_and_emavfi_home(fake_hub, source, cache):
    home = default_models_dir()
    with pytest.raises(HubError) as info:
        resolve_weights("ours_small_t", source=source, cache_dir=cache, endpoint=fake_hub.url,
                        models_dirs=[home], offline=True)
    message = str(info.value)
    assert "--weights FILE.safetensors" in message
    assert str(home / "ours_small_t.safetensors") in message and "$EMAVFI_HOME/ours_small_t.safetensors" in message
    assert fake_hub.requests == []


def test_offline_message_without_models_folder_still_names_the_fixes(fake_hub, source, cache, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(HubError) as info:
        resolve_weights("ours_small_t", source=source, cache_dir=cache, endpoint=fake_hub.url)
    message = str(info.value)
    assert "--weights FILE.safetensors" in message and "$EMAVFI_HOME/ours_small_t.safetensors" in message


def test_front_end_remedy_replaces_the_default_in_offline_and_network_errors(fake_hub, source, cache, models):
    remedy = "put ours_small_t.safetensors into /comfy/models/frame_interpolation/emavfi"
    kwargs = dict(source=source, cache_dir=cache, models_dirs=[models], remedy=remedy)
    with pytest.raises(HubError) as offline:
        resolve_weights("ours_small_t", endpoint=fake_hub.url, offline=True, **kwargs)
    fake_hub.fault(REPO, FILE, status=500)
    with pytest.raises(HubError) as network:
        resolve_weights("ours_small_t", endpoint=fake_hub.url, **kwargs)
    for info in (offline, network):
        assert f"To work offline, {remedy}" in str(info.value) and "--weights" not in str(info.value)
