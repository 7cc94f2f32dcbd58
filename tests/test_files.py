"""emavfi.files: atomic writes (mode from the umask, nothing half-written), sha256, pickle sniffing, names, locks."""
from __future__ import annotations

import errno
import hashlib
import os
import pickle
import stat
import threading
import time
from pathlib import Path

import pytest
import torch

from emavfi import files
from hub_fixtures import umask_mode  # noqa: F401  (fixture)


def mode_of(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_atomic_write_gives_the_umask_mode_and_no_partial(tmp_path, umask_mode):
    target = files.atomic_write(tmp_path / "a.json", b"{}")
    assert target.read_bytes() == b"{}" and mode_of(target) == umask_mode
    written = files.atomic_write(tmp_path / "b.bin", writer=lambda tmp: tmp.write_bytes(b"xy"))
    assert mode_of(written) == umask_mode
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.json", "b.bin"]


def test_atomic_write_explicit_mode_wins(tmp_path, umask_mode):
    assert mode_of(files.atomic_write(tmp_path / "x", b"1", mode=0o640)) == 0o640


def test_atomic_write_leaves_no_temporary_on_failure(tmp_path):
    target = tmp_path / "records.json"
    target.write_bytes(b"old")
    with pytest.raises(TypeError):
        files.atomic_write(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["records.json"]

    def fail(tmp: Path) -> None:
        tmp.write_bytes(b"half")
        raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        files.atomic_write(target, writer=fail)
    assert target.read_bytes() == b"old" and sorted(p.name for p in tmp_path.iterdir()) == ["records.json"]


def test_partial_names_keep_the_extension_and_are_recognised(tmp_path):
    tmp = files.partial_path(tmp_path / "frame.0001.exr")
    assert tmp.suffix == ".exr" and files.is_partial(tmp.name) and not files.is_partial("frame.0001.exr")
    tmp.write_bytes(b"")
    assert list(files.stale_partials(tmp_path)) == [tmp]


def test_sha256_of_matches_hashlib(tmp_path):
    data = os.urandom(3000)
    (tmp_path / "f").write_bytes(data)
    assert files.sha256_of(tmp_path / "f", chunk=1024) == hashlib.sha256(data).hexdigest()


def test_looks_like_pickle_by_name_and_content(tmp_path):
    from safetensors.torch import save_file

    torch.save({"w": torch.zeros(1)}, tmp_path / "zip.safetensors")  # a torch zip under a safetensors name
    (tmp_path / "plain.weights").write_bytes(pickle.dumps({"a": 1}, protocol=4))
    (tmp_path / "named.pkl").write_bytes(b"")
    save_file({"w": torch.zeros(1)}, str(tmp_path / "real.safetensors"))
    assert files.looks_like_pickle(tmp_path / "zip.safetensors")
    assert files.looks_like_pickle(tmp_path / "plain.weights")
    assert files.looks_like_pickle(tmp_path / "named.pkl")
    assert not files.looks_like_pickle(tmp_path / "real.safetensors")


@pytest.mark.parametrize("name", ["../x", "a/../../x", "/abs", "a\\b", "C:/x", "a//b", "", " a", "a/./b"])
def test_check_relative_refuses_names_that_leave_the_folder(name):
    with pytest.raises(ValueError, match="invalid weights name"):
        files.check_relative("weights name", name)


def test_check_relative_accepts_subfolders():
    assert files.check_relative("filename", "sub/model.safetensors") == "sub/model.safetensors"


def test_exclusive_blocks_a_second_holder_until_released(tmp_path):
    lock = tmp_path / "deep" / "x.lock"
    order: list[str] = []

    def second() -> None:
        with files.exclusive(lock):
            order.append("second")

    with files.exclusive(lock):
        worker = threading.Thread(target=second)
        worker.start()
        time.sleep(0.2)
        order.append("first")
    worker.join(10)
    assert order == ["first", "second"]


def test_the_disk_full_message_names_the_mount_the_folder_the_need_and_the_free_space(tmp_path):
    from mounts import small_disk

    with small_disk(tmp_path / "disk", "1m") as disk:
        (disk / "run").mkdir()
        with pytest.raises(OSError) as info:
            files.check_space(disk / "run", 3_000_000, "a checkpoint")
        assert info.value.errno == errno.ENOSPC
        assert str(info.value) == (f"no space left on {disk}: a checkpoint in {disk / 'run'} needs ~3.0 MB, 1.0 MB "
                                   "free; free some space or write elsewhere")
        files.check_space(disk / "run", 500_000)  # fits: no error
        try:
            (disk / "big").write_bytes(b"\0" * 2_000_000)
        except OSError as exc:
            full = exc
        wrapped = RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)")
        assert files.disk_full(full) and files.disk_full(wrapped) and not files.disk_full(ValueError("bad"))


def test_write_refusal_tells_a_read_only_folder_even_to_root(tmp_path):
    from mounts import read_only_view

    (tmp_path / "src").mkdir()
    assert files.write_refusal(tmp_path / "src") is None
    assert files.write_refusal(tmp_path / "absent") == "no such file or directory"
    with read_only_view(tmp_path / "src", tmp_path / "ro") as view:
        assert files.write_refusal(view) == "read-only file system"
        with pytest.raises(OSError) as info:
            (view / "x").write_bytes(b"1")
        assert files.unwritable(info.value) == "read-only file system"
    assert not list((tmp_path / "src").iterdir())


def test_claim_refuses_a_second_holder_and_leaves_no_lock_file(tmp_path):
    target = tmp_path / "model.onnx"
    with files.claim(target):
        with pytest.raises(BlockingIOError, match="another process is writing"):
            with files.claim(target):
                pass
    assert not list(tmp_path.iterdir())
    with files.claim(target):  # free again
        assert [p.name for p in tmp_path.iterdir()] == [".model.onnx.emavfi-lock"]
