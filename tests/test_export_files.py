"""`emavfi export` and the disk: a read-only folder is refused before any work, a second export to a name that
another is writing is refused (never two successes and one lost file), and a full disk is named with the space."""
from __future__ import annotations

import subprocess
import sys
import textwrap
import time

import pytest
import torch

from emavfi import cli, files
from emavfi import weights as library_weights

from conftest import REPO
from fakehub import make_tiny_weights
from helpers import tiny_model
from mounts import read_only_view, small_disk

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    """The export command loads this tiny network (920k parameters) instead of a real-size one."""
    model = tiny_model(5)
    (tmp_path / "w.safetensors").write_bytes(b"")  # must exist; never read
    monkeypatch.setattr(library_weights, "load_model", lambda *a, **k: model)
    return model


def _export(out, fmt="torchscript", weights="w.safetensors", *extra) -> int:
    return cli.main(["export", "--variant", "ours_small_t", "--weights", str(weights), "--size", "64x64",
                     "--format", fmt, "-o", str(out), *extra])


def _line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 1, err
    return lines[0]


def test_a_read_only_output_folder_is_refused_before_the_weights_are_read(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    with read_only_view(tmp_path / "empty", tmp_path / "ro") as view:
        # the weights file does not exist: the folder is checked first, before any model work
        assert _export(view / "m.pt", weights=tmp_path / "missing.safetensors") == 2
        assert _line(capsys.readouterr().err) == (f"emavfi: error: cannot write into the output folder {view} "
                                                  "(read-only file system); choose a folder you can write to")


def test_an_export_to_a_name_another_export_is_writing_is_refused(tmp_path, capsys, tiny):
    out = tmp_path / "m.pt"
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sys
        sys.path.insert(0, {str(REPO)!r})
        from emavfi import files
        with files.claim({str(out)!r}):
            print("held", flush=True)
            sys.stdin.readline()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        assert _export(out, "torchscript", tmp_path / "w.safetensors", "--overwrite") == 2
        assert _line(capsys.readouterr().err) == (f"emavfi: error: another export is writing {out} now; wait for it "
                                                  "to finish or choose another name")
        assert not out.exists()
    finally:
        holder.communicate("\n", timeout=60)
    assert _export(out, "torchscript", tmp_path / "w.safetensors") == 0  # free again: the lock file is gone too
    assert torch.jit.load(str(out)).timestep == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "w.safetensors"]


def test_two_exports_to_one_name_at_once_never_both_report_success(tmp_path):
    weights = tmp_path / "w.safetensors"
    weights.write_bytes(make_tiny_weights("ours_small_t", seed=3))
    out = tmp_path / "m.pt"
    command = [sys.executable, "-m", "emavfi", "export", "--weights", str(weights), "--size", "64x64",
               "--format", "torchscript", "-o", str(out)]
    env = {"PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"}
    runs = [subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    errs = [run.communicate(timeout=600)[1] for run in runs]
    codes = sorted(run.returncode for run in runs)
    assert codes == [0, 2], errs
    lines = sorted(_line(err) for err in errs)
    assert lines[0].startswith("emavfi: error: ") and ("another export is writing" in lines[0]
                                                       or "exists; choose a new name" in lines[0]), lines
    assert lines[1].startswith("exported ours_small_t as torchscript fp32 (64x64) -> ")
    assert torch.jit.load(str(out)).timestep == 0.5
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.pt", "w.safetensors"]


def test_a_full_disk_is_named_with_the_space_an_export_needs(tmp_path, capsys, tiny):
    with small_disk(tmp_path / "disk", "1m") as disk:  # the tiny network's weights alone are 3.7 MB
        assert _export(disk / "m.onnx", "onnx", tmp_path / "w.safetensors") == 1
        assert _line(capsys.readouterr().err) == (f"emavfi: error: no space left on {disk}: the onnx export in {disk} "
                                                  "needs ~3.7 MB, 1.0 MB free; free some space or write elsewhere")
        assert not list(disk.iterdir())


def test_a_disk_that_fills_during_the_export_leaves_nothing_and_says_so(tmp_path, capsys, tiny):
    pytest.importorskip("onnx", reason="requirements-runtimes.txt")
    with small_disk(tmp_path / "disk", "8m") as disk:
        needed = sum(p.numel() for p in tiny.parameters()) * 4
        filler = files.free_space(disk) - needed - 200_000  # room for the weights, not for the graph around them
        (disk / "filler").write_bytes(b"\0" * filler)
        started = time.perf_counter()
        assert _export(disk / "m.onnx", "onnx", tmp_path / "w.safetensors") == 1
        line = _line(capsys.readouterr().err)
        assert line.startswith(f"emavfi: error: no space left on {disk}: the onnx export in {disk} needs more than "
                               "the 3.") and line.endswith(" MB free; free some space or write elsewhere"), line
        assert sorted(p.name for p in disk.iterdir()) == ["filler"], time.perf_counter() - started
