"""The compiled-model cache: hit, miss, damaged, stale and foreign entries, two processes compiling at once, and
caches on read-only and full disks (real mounts)."""
from __future__ import annotations

import gc
import json
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import emavfi
from emavfi import backends
from emavfi.backends.cache import RECORD, CacheKey, CompiledCache

from helpers import TINY, tiny_model
from mounts import read_only_view, small_disk
from test_export_trace import _photo_pair

REPO = Path(__file__).resolve().parents[1]


def _key(**change) -> CacheKey:
    fields = dict(variant="ours_small_t", weights_sha256="ab" * 32, height=64, width=96, batch=1, precision="fp32",
                  scale=1.0, runtime="onnxruntime", runtime_version="1.0", target="CPU")
    return CacheKey(**{**fields, **change})


def _builder(log: list[str], payload: bytes = b"graph"):
    def build(tmp: Path) -> None:
        log.append("built")
        (tmp / "a.onnx").write_bytes(payload)
        (tmp / "b.onnx").write_bytes(payload[::-1])
    return build


def test_miss_then_hit_then_rebuild_when_damaged_or_stale(tmp_path):
    cache, log = CompiledCache(tmp_path), []
    files = ["a.onnx", "b.onnx"]
    folder, built = cache.get(_key(), files, _builder(log))
    assert built and log == ["built"] and (folder / "a.onnx").read_bytes() == b"graph"
    assert cache.get(_key(), files, _builder(log)) == (folder, False) and log == ["built"]
    (folder / "b.onnx").write_bytes(b"hparg!")  # damaged: same size class, other bytes
    assert cache.get(_key(), files, _builder(log))[1] and (folder / "b.onnx").read_bytes() == b"hparg"
    record = json.loads((folder / RECORD).read_text())
    record["key"]["runtime_version"] = "0.9"  # an entry written for another runtime version is stale
    (folder / RECORD).write_text(json.dumps(record))
    assert cache.get(_key(), files, _builder(log))[1]
    (folder / RECORD).write_text("not json")  # foreign or truncated record
    assert cache.get(_key(), files, _builder(log))[1]
    assert log == ["built"] * 4
    assert not [p for p in folder.iterdir() if p.name.startswith(".")]  # no temporaries left behind


def test_every_part_of_the_key_makes_its_own_entry(tmp_path):
    cache, log = CompiledCache(tmp_path), []
    changes = [{}, {"height": 96}, {"weights_sha256": "cd" * 32}, {"precision": "fp16"}, {"runtime_version": "2"},
               {"target": "NVIDIA H100"}, {"batch": 2}, {"scale": 0.5}]
    folders = {cache.get(_key(**c), ["a.onnx", "b.onnx"], _builder(log))[0] for c in changes}
    assert len(folders) == len(changes) == len(log)


def test_failed_build_leaves_no_entry(tmp_path):
    cache = CompiledCache(tmp_path)

    def broken(tmp: Path) -> None:
        (tmp / "a.onnx").write_bytes(b"half")
        raise RuntimeError("compiler crashed")

    with pytest.raises(RuntimeError):
        cache.get(_key(), ["a.onnx", "b.onnx"], broken)
    assert not cache.valid(_key(), ["a.onnx", "b.onnx"])
    log: list[str] = []
    assert cache.get(_key(), ["a.onnx", "b.onnx"], _builder(log))[1] and log == ["built"]


def test_two_processes_compiling_at_once_build_once(tmp_path):
    script = textwrap.dedent(f"""
        import sys, time
        from pathlib import Path
        sys.path.insert(0, {str(REPO)!r})
        from emavfi.backends.cache import CacheKey, CompiledCache
        key = CacheKey("v", "00", 64, 96, 1, "fp32", 1.0, "onnxruntime", "1", "CPU")
        def build(tmp):
            with open({str(tmp_path / "builds.log")!r}, "a") as log:
                log.write("x")
            time.sleep(1.0)  # a slow compile: the other process must wait, not build a second copy
            (tmp / "m.onnx").write_bytes(b"model")
        folder, built = CompiledCache({str(tmp_path / "cache")!r}).get(key, ["m.onnx"], build)
        print(built, (folder / "m.onnx").read_bytes().decode())
    """)
    procs = [subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True) for _ in range(2)]
    outs = sorted(p.communicate(timeout=120)[0].split() for p in procs)
    assert [p.returncode for p in procs] == [0, 0]
    assert outs == [["False", "model"], ["True", "model"]]
    assert (tmp_path / "builds.log").read_text() == "x"


@pytest.mark.skipif(bool(backends.missing_packages("onnxruntime")), reason="onnxruntime not installed")
def test_runtime_model_rebuilds_a_damaged_graph_and_loads_from_cache(tmp_path, one_thread):
    network = tiny_model(8)
    img0, img1 = _photo_pair(40, 60)
    expected = emavfi.interpolate(network, img0, img1, 0.5)
    first = emavfi.load_model(network.state_dict(), TINY, backend="onnxruntime", cache_dir=tmp_path)
    assert (emavfi.interpolate(first, img0, img1, 0.5) - expected).abs().max() <= 2e-4
    assert first.timings[(64, 64, 1.0)]["built"] is True
    again = emavfi.load_model(network.state_dict(), TINY, backend="onnxruntime", cache_dir=tmp_path)
    emavfi.interpolate(again, img0, img1, 0.5)
    assert again.timings[(64, 64, 1.0)]["built"] is False
    graph = again.cache.folder(again.key(64, 64, 1.0)) / "synth.onnx"
    graph.write_bytes(graph.read_bytes()[: graph.stat().st_size // 2])  # truncated by a full disk, say
    third = emavfi.load_model(network.state_dict(), TINY, backend="onnxruntime", cache_dir=tmp_path)
    assert (emavfi.interpolate(third, img0, img1, 0.5) - expected).abs().max() <= 2e-4
    assert third.timings[(64, 64, 1.0)]["built"] is True
    other = {k: v + 0.01 for k, v in network.state_dict().items()}  # other weights: never the cached graphs
    fourth = emavfi.load_model(other, TINY, backend="onnxruntime", cache_dir=tmp_path)
    assert fourth.key(64, 64, 1.0) != third.key(64, 64, 1.0)


def test_a_valid_entry_in_a_read_only_cache_is_used_and_a_miss_compiles_elsewhere(tmp_path, caplog):
    files, log = ["a.onnx", "b.onnx"], []
    source = CompiledCache(tmp_path / "cache")
    folder, _ = source.get(_key(), files, _builder(log))
    shutil.rmtree(tmp_path / "cache" / "locks")  # a cache shipped ahead of time: no lock files in it
    with read_only_view(tmp_path / "cache", tmp_path / "ro") as view:
        cache = CompiledCache(view)
        hit = cache.get(_key(), files, _builder(log))
        assert hit == (view / folder.relative_to(tmp_path / "cache"), False) and log == ["built"]
        assert not caplog.records
        other = _key(height=96)  # not in the read-only cache: compiled into a temporary folder, with one warning
        built, fresh = cache.get(other, files, _builder(log, b"other"))
        assert fresh and log == ["built"] * 2 and (built / "a.onnx").read_bytes() == b"other"
        assert not built.is_relative_to(view) and cache.folder(other) == built
        assert cache.get(other, files, _builder(log)) == (built, False) and log == ["built"] * 2
        assert [r.getMessage() for r in caplog.records] == [
            f"the compiled-model cache {view} cannot be written (read-only file system): compiled in a temporary "
            "folder for this run only (set EMAVFI_HOME to a writable folder to keep compiled models)"]
        cache.invalidate(_key())  # a read-only entry that fails to load is left alone and rebuilt elsewhere
        again, rebuilt = cache.get(_key(), files, _builder(log))
        assert rebuilt and not again.is_relative_to(view) and (view / "onnxruntime").exists()
        del cache
        gc.collect()
        assert not built.exists() and not again.exists()  # the temporary folders go with the cache


def test_a_full_cache_disk_compiles_elsewhere_and_names_the_space_needed(tmp_path, caplog):
    files = ["a.onnx", "b.onnx"]
    with small_disk(tmp_path / "disk", "64k") as disk:
        cache = CompiledCache(disk / "compiled")
        folder, built = cache.get(_key(), files, _builder([], bytes(range(256)) * 400))  # 2 x 102 kB
        assert built and (folder / "b.onnx").stat().st_size == 102_400 and not folder.is_relative_to(disk)
        [warning] = [r.getMessage() for r in caplog.records]
        assert warning.startswith(f"no space left on {disk}: the compiled model in {disk / 'compiled'} needs "
                                  "~0.2 MB, 0.1 MB free; compiled in a temporary folder for this run only")
        assert not [p for p in (disk / "compiled").rglob("*") if p.is_file() and p.suffix != ".lock"]


@pytest.mark.skipif(bool(backends.missing_packages("onnxruntime")), reason="onnxruntime not installed")
def test_runtime_model_runs_from_a_read_only_cache_and_on_a_full_disk(tmp_path, one_thread, caplog):
    network = tiny_model(8)
    img0, img1 = _photo_pair(40, 60)
    expected = emavfi.interpolate(network, img0, img1, 0.5)
    emavfi.interpolate(emavfi.load_model(network.state_dict(), TINY, backend="onnxruntime",
                                         cache_dir=tmp_path / "cache"), img0, img1, 0.5)
    with read_only_view(tmp_path / "cache", tmp_path / "ro") as view:  # e.g. a farm's shared, pre-built cache
        shared = emavfi.load_model(network.state_dict(), TINY, backend="onnxruntime", cache_dir=view)
        assert (emavfi.interpolate(shared, img0, img1, 0.5) - expected).abs().max() <= 2e-4
        assert shared.timings[(64, 64, 1.0)]["built"] is False and not caplog.records
    with small_disk(tmp_path / "disk", "64k") as disk:  # the graphs are megabytes
        full = emavfi.load_model(network.state_dict(), TINY, backend="onnxruntime", cache_dir=disk)
        assert (emavfi.interpolate(full, img0, img1, 0.5) - expected).abs().max() <= 2e-4
        [warning] = [r.getMessage() for r in caplog.records]
        assert re.match(rf"no space left on {re.escape(str(disk))}: the compiled model in {re.escape(str(disk))} "
                        r"needs ~\d+\.\d MB, 0\.\d MB free; compiled in a temporary folder", warning), warning
        assert not [p for p in disk.rglob("*") if p.is_file() and p.suffix != ".lock"]
