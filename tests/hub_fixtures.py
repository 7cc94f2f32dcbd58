"""Fixtures for the Hub and weights tests: a loopback fake Hub, tiny official-shaped weights, isolated folders and
environment, and a process umask set for one test."""
from __future__ import annotations

import os

# huggingface_hub reads its settings once, at import (conftest.py sets this too, before any test module loads).
# Telemetry on would look up the public Hub's host even with a loopback endpoint.
os.environ["HF_HUB_DISABLE_TELEMETRY"] = "1"

from pathlib import Path  # noqa: E402
import sys  # noqa: E402
from typing import Iterator  # noqa: E402

import pytest  # noqa: E402

from emavfi.hub import WeightsSource  # noqa: E402
from fakehub import FakeHub, make_tiny_weights  # noqa: E402

REPO = "emavfi-test/small"
FILE = "model.safetensors"


@pytest.fixture(scope="session")
def tiny() -> bytes:
    """ours_small_t-shaped safetensors bytes (fp16, ~29 MB), made once per session."""
    return make_tiny_weights("ours_small_t", seed=0)


@pytest.fixture(autouse=True)
def hub_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """No endpoint or offline setting leaks in from the caller's environment; EMAVFI_HOME is per test."""
    for name in ("EMAVFI_HF_ENDPOINT", "HF_ENDPOINT", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("EMAVFI_HOME", str(tmp_path / "emavfi-home"))


@pytest.fixture
def fake_hub() -> Iterator[FakeHub]:
    """A running fake Hub on 127.0.0.1."""
    with FakeHub() as hub:
        yield hub


@pytest.fixture
def small_repo(fake_hub: FakeHub, tiny: bytes) -> str:
    """REPO on the fake Hub holding `tiny` as FILE (served like an LFS file); returns the commit."""
    return fake_hub.add_repo(REPO, {FILE: tiny})


@pytest.fixture
def source(small_repo: str) -> WeightsSource:
    """The source of REPO on branch main."""
    return WeightsSource(REPO, FILE)


@pytest.fixture
def cache(tmp_path: Path) -> Path:
    """An empty Hub cache folder."""
    return tmp_path / "cache"


@pytest.fixture
def models(tmp_path: Path) -> Path:
    """An empty models folder."""
    folder = tmp_path / "models"
    folder.mkdir()
    return folder


@pytest.fixture(params=[(0o022, 0o644), (0o077, 0o600)], ids=["umask022", "umask077"])
def umask_mode(request: pytest.FixtureRequest) -> Iterator[int]:
    """Sets the process umask for one test; yields the mode a new file should get under it."""
    if sys.platform == "win32":
        pytest.skip("POSIX file modes")
    mask, mode = request.param
    old = os.umask(mask)
    try:
        yield mode
    finally:
        os.umask(old)
