"""emavfi.hub (through local_weights.resolve_weights) against a loopback fake Hub: real huggingface_hub downloads,
injected faults, nothing mocked."""
from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
import stat
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from emavfi import files, hub, local_weights
from emavfi.errors import HubError, WeightsError
from emavfi.hub import WeightsSource
from emavfi.local_weights import resolve_weights, weights_status
from fakehub import FakeHub, make_tiny_weights
from hub_fixtures import (  # noqa: F401  (fixtures)
    FILE, REPO, cache, fake_hub, hub_env, models, small_repo, source, tiny, umask_mode)


def stray_files(cache: Path) -> list[str]:
    """Files in a Hub cache that hold (part of) weights or a temporary: blobs, snapshots, .incomplete, .tmp."""
    stray = []
    for root, _dirs, files in os.walk(cache):
        for name in files:
            rel = (Path(root) / name).relative_to(cache).as_posix()
            bookkeeping = ("/refs/" in rel or "/.no_exist/" in rel or name == "CACHEDIR.TAG"
                           or (rel.startswith(".locks/") and name.endswith((".lock", ".json"))))
            if not bookkeeping:
                stray.append(rel)
    return sorted(stray)


def records(cache: Path, repo_id: str = REPO) -> dict:
    """The trust-on-first-use records hub keeps for a repo."""
    path = cache / ".locks" / "emavfi" / (repo_id.replace("/", "--") + ".json")
    return json.loads(path.read_text())["files"]


def flip_byte(path: Path, offset: int = -100) -> None:
    """Change one byte of a cached file in place (the blob behind the snapshot link)."""
    real = Path(os.path.realpath(path))
    data = bytearray(real.read_bytes())
    data[offset] ^= 0xFF
    real.write_bytes(bytes(data))


def closed_port_url() -> str:
    """URL of a loopback port nothing listens on."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Cancelled(Exception):
    """What a front end's progress callback raises to cancel (ComfyUI: InterruptProcessingException)."""


def fetch(source: WeightsSource, cache: Path, hub_: FakeHub, variant: str = "ours_small_t", **kwargs) -> Path:
    return resolve_weights(variant, source=source, cache_dir=cache, endpoint=hub_.url, **kwargs)


# ------------------------------------------------------------------------------------------------ happy path

@pytest.mark.parametrize("pinned", [True, False], ids=["commit", "branch"])
def test_download_then_cache_hit_without_requests(fake_hub, small_repo, tiny, cache, pinned):
    source = WeightsSource(REPO, FILE, revision=small_repo if pinned else "main")
    path = fetch(source, cache, fake_hub)
    assert path.read_bytes() == tiny
    assert path.is_relative_to(cache.resolve()) and small_repo in path.parts
    assert fake_hub.body_downloads() == 1
    assert records(cache)[f"{small_repo}/{FILE}"]["sha256"] == hashlib.sha256(tiny).hexdigest()

    fake_hub.clear_log()
    assert fetch(source, cache, fake_hub) == path
    assert fake_hub.requests == []


def test_default_cache_is_under_emavfi_home_and_created_only_when_needed(fake_hub, source, tmp_path):
    home = tmp_path / "emavfi-home"
    assert local_weights.default_models_dir() == home and not home.exists()
    path = resolve_weights("ours_small_t", source=source, endpoint=fake_hub.url)
    assert path.is_relative_to(home.resolve() / "hub")


def test_downloaded_file_and_records_get_the_umask_mode(fake_hub, source, cache, umask_mode):
    path = fetch(source, cache, fake_hub)
    record = cache / ".locks" / "emavfi" / (REPO.replace("/", "--") + ".json")
    for made in (Path(os.path.realpath(path)), record):
        assert stat.S_IMODE(made.stat().st_mode) == umask_mode, made


@pytest.mark.parametrize("variable", ["EMAVFI_HF_ENDPOINT", "HF_ENDPOINT"])
def test_endpoint_from_environment_read_at_call_time(fake_hub, source, cache, tiny, monkeypatch, variable):
    monkeypatch.setenv(variable, fake_hub.url + "/")
    assert resolve_weights("ours_small_t", source=source, cache_dir=cache).read_bytes() == tiny
    assert fake_hub.body_downloads() == 1


def test_progress_increases_to_total_even_across_a_retry(fake_hub, source, cache, tiny):
    fake_hub.fault(REPO, FILE, corrupt=True, times=1)  # the second download starts again from byte 0
    calls: list[tuple[int, int]] = []
    fetch(source, cache, fake_hub, progress=lambda done, total: calls.append((done, total)))
    assert fake_hub.body_downloads() == 2
    done = [d for d, _ in calls]
    assert done == sorted(set(done)), "bytes_done must strictly increase"
    assert {t for _, t in calls} == {len(tiny)}
    assert calls[-1] == (len(tiny), len(tiny)) and len(calls) > 1


def test_cancel_from_the_progress_callback_propagates_and_leaves_nothing(fake_hub, source, cache):
    def cancel(done: int, total: int) -> None:
        if done > 0:
            raise Cancelled("stop")

    with pytest.raises(Cancelled):
        fetch(source, cache, fake_hub, progress=cancel)
    assert fake_hub.body_downloads() == 1  # not retried
    assert stray_files(cache) == []


# ------------------------------------------------------------------------------------------------ corrupt files

@pytest.mark.parametrize("how", ["lfs-etag", "given-sha256"])
def test_corrupt_body_once_is_detected_and_downloaded_again(fake_hub, tiny, cache, how):
    fake_hub.add_repo(REPO, {FILE: tiny}, lfs=how == "lfs-etag")
    sha = hashlib.sha256(tiny).hexdigest() if how == "given-sha256" else None
    fake_hub.fault(REPO, FILE, corrupt=True, times=1)
    path = fetch(WeightsSource(REPO, FILE, sha256=sha), cache, fake_hub)
    assert path.read_bytes() == tiny
    assert fake_hub.body_downloads() == 2


@pytest.mark.parametrize("how", ["lfs-etag", "given-sha256"])
def test_corrupt_body_always_fails_clearly_and_leaves_nothing(fake_hub, tiny, cache, how):
    fake_hub.add_repo(REPO, {FILE: tiny}, lfs=how == "lfs-etag")
    sha = hashlib.sha256(tiny).hexdigest() if how == "given-sha256" else None
    fake_hub.fault(REPO, FILE, corrupt=True)
    with pytest.raises(HubError, match="sha256") as info:
        fetch(WeightsSource(REPO, FILE, sha256=sha), cache, fake_hub)
    assert "deleted" in str(info.value) and REPO in str(info.value)
    assert fake_hub.body_downloads() == 2  # one retry, then a clear error
    assert stray_files(cache) == []


def test_truncated_once_recovers(fake_hub, source, cache, tiny):
    fake_hub.fault(REPO, FILE, truncate=True, times=1)
    assert fetch(source, cache, fake_hub).read_bytes() == tiny
    assert fake_hub.body_downloads() == 2


def test_truncated_always_fails_clearly_and_leaves_nothing(fake_hub, source, cache):
    fake_hub.fault(REPO, FILE, truncate=True)
    with pytest.raises(HubError, match="cut short") as info:
        fetch(source, cache, fake_hub)
    assert isinstance(info.value.__cause__, OSError)
    assert fake_hub.body_downloads() == 2
    assert stray_files(cache) == []


def test_wrong_variant_is_rejected_removed_and_not_downloaded_twice(fake_hub, source, cache):
    with pytest.raises(WeightsError, match="ours_t") as info:
        fetch(source, cache, fake_hub, variant="ours_t")  # the repo holds ours_small_t weights
    assert "deleted" in str(info.value)
    assert fake_hub.body_downloads() == 1  # its sha256 matched the Hub's: downloading again cannot help
    assert stray_files(cache) == []


def test_cached_file_of_another_variant_is_rejected_without_downloading(fake_hub, source, cache):
    fetch(source, cache, fake_hub)
    fake_hub.clear_log()
    with pytest.raises(WeightsError, match="ours_t"):
        fetch(source, cache, fake_hub, variant="ours_t")
    assert fake_hub.requests == []
    assert stray_files(cache) == []


# ------------------------------------------------------------------------------------------------ connections

def test_connection_reset_once_is_retried(fake_hub, source, cache, tiny):
    fake_hub.fault(REPO, FILE, drop_connection=True, times=1)
    assert fetch(source, cache, fake_hub).read_bytes() == tiny
    assert fake_hub.body_downloads() == 2


def test_connection_closed_mid_body_is_resumed_with_a_range_request(fake_hub, source, cache, tiny):
    fake_hub.fault(REPO, FILE, drop_connection=True, drop_mode="close", times=1)
    assert fetch(source, cache, fake_hub).read_bytes() == tiny
    ranges = [r.headers.get("Range") for r in fake_hub.requests if r.method == "GET"]
    assert len(ranges) == 2 and ranges[0] is None
    resumed_at = int(ranges[1].removeprefix("bytes=").removesuffix("-"))
    assert 0 < resumed_at < len(tiny)


def test_connection_dropped_every_time_fails_fast_and_clearly(fake_hub, source, cache, models):
    fake_hub.fault(REPO, FILE, drop_connection=True)
    start = time.monotonic()
    with pytest.raises(HubError) as info:
        resolve_weights("ours_small_t", source=source, cache_dir=cache, endpoint=fake_hub.url, models_dirs=[models])
    assert time.monotonic() - start < 5
    message = str(info.value)
    assert f"{fake_hub.url}/{REPO}/resolve/main/{FILE}" in message
    assert str(models / "ours_small_t.safetensors") in message  # how to work offline
    assert fake_hub.body_downloads() == hub._ATTEMPTS
    assert stray_files(cache) == []


def test_server_error_fails_fast_mentioning_offline_use(fake_hub, source, cache):
    fake_hub.fault(REPO, FILE, status=500)
    start = time.monotonic()
    with pytest.raises(HubError, match="offline") as info:
        fetch(source, cache, fake_hub)
    assert time.monotonic() - start < 5
    assert "500" in str(info.value) and fake_hub.url in str(info.value)
    assert len(fake_hub.requests) == hub._ATTEMPTS
    assert stray_files(cache) == []


def test_server_down_fails_fast_mentioning_offline_use(source, cache):
    url = closed_port_url()
    start = time.monotonic()
    with pytest.raises(HubError, match="offline") as info:
        resolve_weights("ours_small_t", source=source, cache_dir=cache, endpoint=url)
    assert time.monotonic() - start < 5
    assert url in str(info.value) and info.value.__cause__ is not None


def test_slow_server_is_waited_for_but_a_silent_one_times_out(fake_hub, source, cache, tiny, monkeypatch):
    monkeypatch.setattr(hub, "_HEAD_TIMEOUT_S", 0.3)
    fake_hub.fault(REPO, FILE, delay=0.1)
    assert fetch(source, cache, fake_hub).read_bytes() == tiny

    fake_hub.fault(REPO, FILE, delay=1.0)
    start = time.monotonic()
    with pytest.raises(HubError, match="offline"):
        fetch(WeightsSource(REPO, FILE, revision="main"), cache / "other", fake_hub)
    assert time.monotonic() - start < 3


# ------------------------------------------------------------------------------------------------ not found, access

@pytest.mark.parametrize(("source_", "words"), [
    (WeightsSource("emavfi-test/missing", FILE), ["repository 'emavfi-test/missing'", "HF_TOKEN"]),
    (WeightsSource(REPO, FILE, revision="v9"), ["revision 'v9'"]),
    (WeightsSource(REPO, "other.safetensors"), ["'other.safetensors' is not in"]),
], ids=["repo", "revision", "file"])
def test_not_found_is_permanent_and_named(fake_hub, small_repo, cache, source_, words):
    with pytest.raises(HubError) as info:
        fetch(source_, cache, fake_hub)
    for word in words:
        assert word in str(info.value)
    assert len(fake_hub.requests) == 1  # no retries of a permanent error
    assert stray_files(cache) == []


@pytest.mark.parametrize(("status", "words"), [(401, "HF_TOKEN"), (403, "HF_TOKEN"), (404, "not found")])
def test_plain_http_errors_are_permanent_and_explained(fake_hub, source, cache, status, words):
    fake_hub.fault(REPO, FILE, status=status)
    with pytest.raises(HubError, match=words) as info:
        fetch(source, cache, fake_hub)
    assert str(status) in str(info.value)
    assert info.value.__cause__ is not None
    assert len(fake_hub.requests) == 1


# ------------------------------------------------------------------------------------------------ offline

def test_offline_without_cache_fails_without_requests(fake_hub, source, cache, models):
    with pytest.raises(HubError, match="offline") as info:
        resolve_weights("ours_small_t", source=source, cache_dir=cache, endpoint=fake_hub.url,
                        models_dirs=[models], offline=True)
    assert str(models / "ours_small_t.safetensors") in str(info.value)
    assert fake_hub.requests == []


@pytest.mark.parametrize("how", ["argument", "HF_HUB_OFFLINE"])
def test_offline_with_cache_verifies_without_requests(fake_hub, source, cache, tiny, monkeypatch, how):
    path = fetch(source, cache, fake_hub)
    fake_hub.clear_log()
    if how == "HF_HUB_OFFLINE":
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert fetch(source, cache, fake_hub, offline=how == "argument") == path
    assert fake_hub.requests == []


# ------------------------------------------------------------------------------------------------ trust on first use

@pytest.fixture
def git_repo(fake_hub, tiny) -> str:
    """REPO served like a git (non-LFS) file: no sha256 from the Hub, so only the first-use record protects it."""
    return fake_hub.add_repo(REPO, {FILE: tiny}, lfs=False)


def test_changed_cached_file_is_refused_offline_and_deleted(fake_hub, git_repo, cache):
    source = WeightsSource(REPO, FILE)
    path = fetch(source, cache, fake_hub)
    flip_byte(path)
    with pytest.raises(HubError, match="recorded on its first download") as info:
        fetch(source, cache, fake_hub, offline=True)
    assert "deleted" in str(info.value)
    assert stray_files(cache) == []


def test_changed_cached_file_is_replaced_online(fake_hub, git_repo, cache, tiny):
    source = WeightsSource(REPO, FILE)
    flip_byte(fetch(source, cache, fake_hub))
    assert fetch(source, cache, fake_hub).read_bytes() == tiny
    assert fake_hub.body_downloads() == 2


def test_changed_content_for_the_same_commit_is_refused(fake_hub, git_repo, cache):
    source = WeightsSource(REPO, FILE, revision=git_repo)
    path = fetch(source, cache, fake_hub)
    flip_byte(path)  # the cached copy goes bad, and the server now serves other (valid) weights for the commit
    fake_hub.replace_file(REPO, git_repo, FILE, make_tiny_weights("ours_small_t", seed=1))
    fake_hub.clear_log()
    with pytest.raises(HubError, match="recorded on its first download"):
        fetch(source, cache, fake_hub)
    assert fake_hub.body_downloads() == 2
    assert stray_files(cache) == []


# ------------------------------------------------------------------------------------------------ disk, threads

def test_disk_full_is_explained_and_leaves_nothing(fake_hub, source, cache, monkeypatch):
    def no_space(path: Path, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))

    monkeypatch.setattr(hub, "atomic_write", no_space)
    with pytest.raises(HubError, match="no space left") as info:
        fetch(source, cache, fake_hub)
    assert str(cache.resolve()) in str(info.value)
    assert info.value.__cause__.errno == errno.ENOSPC
    assert stray_files(cache) == []


@pytest.mark.parametrize(("fault", "bodies"), [(dict(delay=0.2), 1), (dict(corrupt=True, times=1), 2)],
                         ids=["slow", "corrupt-once"])
def test_concurrent_downloads_make_one_good_file(fake_hub, source, cache, tiny, fault, bodies):
    fake_hub.fault(REPO, FILE, **fault)  # keeps the first download busy while the others arrive
    start = threading.Barrier(4)
    results: list[Path | BaseException] = []

    def worker() -> None:
        start.wait()
        try:
            results.append(fetch(source, cache, fake_hub))
        except BaseException as exc:  # reported by the assertion below
            results.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert len(set(results)) == 1 and isinstance(results[0], Path), results
    assert results[0].read_bytes() == tiny
    assert fake_hub.body_downloads() == bodies


def test_resolve_waits_while_another_process_holds_the_repo_lock(fake_hub, source, cache, tiny):
    lock = cache.resolve() / ".locks" / "emavfi" / (REPO.replace("/", "--") + ".lock")
    results: list[Path] = []
    with files.exclusive(lock):  # flock: the same as another process downloading into this cache
        worker = threading.Thread(target=lambda: results.append(fetch(source, cache, fake_hub)))
        worker.start()
        time.sleep(0.3)
        assert worker.is_alive() and fake_hub.requests == []
    worker.join(30)
    assert results[0].read_bytes() == tiny


# ------------------------------------------------------------------------------------------------ validation

@pytest.mark.parametrize(("field", "value"), [
    ("repo_id", "../etc"), ("repo_id", "owner"), ("repo_id", "a/b/c"), ("repo_id", "/abs/x"),
    ("repo_id", "a\\b"), ("repo_id", "a/.."), ("repo_id", "own--er/x"),
    ("filename", "../model.safetensors"), ("filename", "/etc/model.safetensors"), ("filename", "a/../m.safetensors"),
    ("filename", "sub\\m.safetensors"), ("filename", "C:/m.safetensors"), ("filename", "model.pkl"),
    ("revision", "../../x"), ("revision", "main/../.."), ("revision", "a b"), ("revision", "-x"), ("revision", ""),
    ("sha256", "abc"),
])
def test_weights_source_rejects_unsafe_values(field, value):
    fields = {"repo_id": "owner/name", field: value}
    with pytest.raises(ValueError, match=field):
        WeightsSource(**fields)


def test_weights_source_accepts_hub_style_values():
    sha = "AB" * 32
    source = WeightsSource("Owner_1/ema-vfi.v2", "sub/model.safetensors", "refs/pr/1", sha)
    assert source.sha256 == sha.lower() and source.describe() == "Owner_1/ema-vfi.v2/sub/model.safetensors@refs/pr/1"


def test_default_sources_name_the_known_hub_copies():
    assert hub.DEFAULT_SOURCES["ours_small_t"] == WeightsSource("vvolhejn/ema-vfi-small", "model.safetensors")
    assert hub.DEFAULT_SOURCES["ours_t"] == WeightsSource("vvolhejn/ema-vfi-large", "model.safetensors")
    assert "ours" not in hub.DEFAULT_SOURCES and "ours_small" not in hub.DEFAULT_SOURCES


# ------------------------------------------------------------------------------------------------ fake Hub script

def test_fakehub_script_serves_files_to_other_processes(tmp_path, tiny, cache):
    weights = tmp_path / "model.safetensors"
    weights.write_bytes(tiny)
    port_file = tmp_path / "url"
    script = Path(__file__).with_name("fakehub.py")
    server = subprocess.Popen([sys.executable, str(script), "--repo", f"{REPO}={weights}", "--port-file",
                               str(port_file)], stdout=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while not port_file.exists() and time.monotonic() < deadline and server.poll() is None:
            time.sleep(0.02)
        url = port_file.read_text()
        path = resolve_weights("ours_small_t", source=WeightsSource(REPO, FILE), cache_dir=cache, endpoint=url)
        assert path.read_bytes() == tiny
    finally:
        server.terminate()
        server.wait(10)
