"""Shared test settings: fast deterministic CPU runs, paths to ../shared, and a parity summary line."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")
torch.set_num_threads(min(2, torch.get_num_threads()))

REPO = Path(__file__).resolve().parents[1]
SHARED = Path(os.environ.get("EMAVFI_SHARED", REPO.parent / "shared"))
PARITY_RESULTS: list[tuple[str, float, float]] = []  # (case, worst abs difference, tolerance)


def shared_path(*parts: str) -> Path:
    """A path under ../shared, skipping the test with a clear reason where it is absent."""
    path = SHARED.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} is absent (parity fixtures and manifests live in ../shared beside the checkout)")
    return path


@pytest.fixture
def one_thread():
    """Small tensors run fastest on one thread, and spinning OpenMP threads crawl on a busy machine."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def pytest_terminal_summary(terminalreporter) -> None:
    if PARITY_RESULTS:
        worst = max(PARITY_RESULTS, key=lambda r: r[1] / r[2])
        terminalreporter.write_line(
            f"parity: {len(PARITY_RESULTS)} official cases checked, worst max-abs difference "
            f"{worst[1]:.3g} ({worst[0]}, tolerance {worst[2]:g})")


@pytest.fixture
def tiny_cli(monkeypatch):
    """CLI runs use a tiny random model in place of the weights; the list holds the settings of each model load."""
    from helpers import tiny_model

    from emavfi import loading

    model, loads = tiny_model(), []

    def load(settings, state=None, progress=None):
        loads.append(settings)
        return model
    monkeypatch.setattr(loading, "load_model_for", load)
    return loads


@pytest.fixture(scope="module")
def cluster():
    """One embedded Ray (2 CPUs, on 127.0.0.1) for a test module: starting Ray costs seconds."""
    ray = pytest.importorskip("ray")
    from emavfi import ray_cluster

    assert not ray.is_initialized()
    ray_cluster.start_local(num_cpus=2)
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()
