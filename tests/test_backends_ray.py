"""`--ray --backend openvino` and `auto`: the files of a Ray render equal, byte for byte, those of one process with
the same backend (embedded Ray, 2 CPUs, 127.0.0.1 only); the graphs are compiled once and shared via the cache."""
from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

import emavfi
from emavfi import backends, distributed, loading, ray_cluster, render
from emavfi.schedule import Request
from emavfi.settings import Settings

from helpers import random_state

ray = pytest.importorskip("ray", reason="the distributed tests need the optional Ray extra (requirements-ray.txt)")
pytestmark = [pytest.mark.usefixtures("one_thread"),
              pytest.mark.skipif(bool(backends.missing_packages("openvino")),
                                 reason="openvino not installed (requirements-runtimes.txt)")]


@pytest.fixture(scope="module")
def home(tmp_path_factory):
    """$EMAVFI_HOME for this process and the Ray workers it starts: where the compiled graphs are cached."""
    path = tmp_path_factory.mktemp("home")
    before = os.environ.get("EMAVFI_HOME")
    os.environ["EMAVFI_HOME"] = str(path)
    yield path
    if before is None:
        del os.environ["EMAVFI_HOME"]
    else:
        os.environ["EMAVFI_HOME"] = before


@pytest.fixture(scope="module")
def cluster(home):
    assert not ray.is_initialized()
    ray_cluster.start_local(num_cpus=2)
    yield
    ray.shutdown()


def _shot(root: Path) -> tuple[Path, Path]:
    from PIL import Image
    from skimage import data

    source = root / "plate"
    source.mkdir()
    for i in range(5):  # a crop of the astronaut moving 2 px down and 3 px right per frame
        Image.fromarray(data.astronaut()[100 + 2 * i:132 + 2 * i, 150 + 3 * i:198 + 3 * i]).save(
            source / f"plate.{1001 + i}.png")
    weights = root / "ours_small_t.safetensors"
    emavfi.weights.save_safetensors(random_state("ours_small_t", seed=2), weights, "ours_small_t")
    return source, weights


def _frames(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.iterdir()) if p.suffix == ".png"}


def test_ray_with_openvino_equals_one_process(cluster, home, tmp_path):
    source, weights = _shot(tmp_path)
    settings = Settings(request=Request(multiplier=2), weights=weights, device="cpu", backend="openvino")
    one = render.Job(source, tmp_path / "one", settings)
    model = loading.load_model_for(one.settings)
    assert model.backend == "openvino"
    assert render.render(render.prepare(one), model).written == 9
    report = distributed.render(render.Job(source, tmp_path / "ray", settings), workers=2, task_frames=2)
    assert report.written == 9 and report.workers == 2
    expected, got = _frames(tmp_path / "one"), _frames(tmp_path / "ray")
    assert list(got) == list(expected) and len(got) == 9
    assert [name for name in expected if got[name] != expected[name]] == []
    entries = [p for p in (home / "compiled" / "openvino").iterdir()]
    assert len(entries) == 1  # compiled once here; both workers loaded it from the cache


def test_ray_with_auto_makes_the_files_of_one_process_with_the_backend_auto_picks(cluster, tmp_path):
    # Two threads: OpenVINO's lanes and the automatic chunk they give exist on both sides, and `auto` is resolved
    # in each worker on its own; the files must still be those of one process with the backend named.
    source, weights = _shot(tmp_path)
    torch.set_num_threads(2)  # the one_thread fixture restores it
    auto = Settings(request=Request(multiplier=2), weights=weights, device="cpu", backend="auto")
    picked = getattr(loading.load_model_for(auto), "backend", "torch")
    assert picked in backends.BACKENDS and picked != "auto"
    named = Settings(request=Request(multiplier=2), weights=weights, device="cpu", backend=picked)
    one = render.Job(source, tmp_path / "one", named)
    render.render(render.prepare(one), loading.load_model_for(one.settings))
    report = distributed.render(render.Job(source, tmp_path / "ray", auto), workers=2, task_frames=2)
    assert report.written == 9 and report.workers == 2
    expected, got = _frames(tmp_path / "one"), _frames(tmp_path / "ray")
    assert list(got) == list(expected) and [name for name in expected if got[name] != expected[name]] == []
