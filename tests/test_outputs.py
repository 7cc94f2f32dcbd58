"""emavfi.outputs: the output folder never loses data, never mixes two runs, resumes only verified frames."""
from __future__ import annotations

import multiprocessing
import os
from pathlib import Path

import pytest

from emavfi import files
from emavfi.outputs import LOG_NAME, RECORD_NAME, Naming, OutputFolder, OutputFolderError, check_not_overlapping

NAMING = Naming("frame_", 6, ".png", 0, 5)


def _folder(path: Path, record: dict | None = None, **options) -> OutputFolder:
    defaults = {"shared": False, "resume": False, "overwrite": False, "verify": lambda p: True}
    return OutputFolder(path, record or {"run": "a"}, options.pop("naming", NAMING), **{**defaults, **options})


def _write(folder: OutputFolder, index: int, data: bytes = b"frame") -> Path:
    path = folder.path(index)
    files.atomic_write(path, data)
    folder.wrote(index)
    return path


def test_output_equal_inside_or_containing_the_input_is_refused(tmp_path):
    src = tmp_path / "plate"
    src.mkdir()
    for out, fragment in ((src, "is the input"), (src / "x2", "inside the input"), (tmp_path, "contains the input")):
        with pytest.raises(OutputFolderError, match=fragment):
            check_not_overlapping(src, out)
    video = tmp_path / "edit.mov"
    video.write_bytes(b"v")
    with pytest.raises(OutputFolderError, match="is the input"):
        check_not_overlapping(video, tmp_path / "edit.mov")
    check_not_overlapping(src, tmp_path / "plate_x2")  # a sibling is fine


def test_a_folder_with_foreign_images_is_refused_and_left_untouched(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "frame_000001.png").write_bytes(b"user's own frame")
    for options in ({}, {"overwrite": True}, {"resume": True}, {"shared": True}):
        with pytest.raises(OutputFolderError, match="did not write"):
            _folder(out, **options).__enter__()
    assert (out / "frame_000001.png").read_bytes() == b"user's own frame"
    assert not (out / RECORD_NAME).exists()


def test_overwrite_deletes_only_what_the_record_names(tmp_path):
    out = tmp_path / "out"
    with _folder(out) as folder:
        for k in range(5):
            _write(folder, k)
    (out / "notes.txt").write_text("mine")
    (out / "frame_000099.png").write_bytes(b"not in the record's range")
    with pytest.raises(OutputFolderError, match="already holds 5 frames"):
        _folder(out).__enter__()
    with _folder(out, {"run": "b"}, overwrite=True):
        pass
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".")) == ["frame_000099.png", "notes.txt"]


def test_a_different_run_is_refused_without_overwrite(tmp_path):
    out = tmp_path / "out"
    with _folder(out) as folder:
        _write(folder, 0)
    with pytest.raises(OutputFolderError, match="different run"):
        _folder(out, {"run": "other"}, resume=True).__enter__()
    assert (out / "frame_000000.png").exists()


def _hold_lock(path: str, ready, release) -> None:
    with _folder(Path(path)):
        ready.set()
        release.wait(10)


@pytest.mark.parametrize("second_shared", [False, True])
def test_a_second_run_fails_at_once_while_the_first_writes(tmp_path, second_shared):
    out = tmp_path / "out"
    ctx = multiprocessing.get_context("spawn")
    ready, release = ctx.Event(), ctx.Event()
    holder = ctx.Process(target=_hold_lock, args=(str(out), ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(OutputFolderError, match="another emavfi run"):
            _folder(out, shared=second_shared, resume=True).__enter__()
    finally:
        release.set()
        holder.join(10)
    with _folder(out, resume=True):  # free again once the first run ended
        pass


def test_farm_tasks_share_the_folder(tmp_path):
    out = tmp_path / "out"
    with _folder(out, shared=True) as a, _folder(out, shared=True) as b:
        _write(a, 0)
        _write(b, 1)
    with pytest.raises(OutputFolderError, match="another emavfi run"):
        with _folder(out, shared=True):
            _folder(out, resume=True).__enter__()


def test_resume_keeps_only_logged_unchanged_decodable_frames(tmp_path):
    out = tmp_path / "out"
    with _folder(out) as folder:
        paths = [_write(folder, k, f"frame {k}".encode()) for k in range(4)]
    paths[1].write_bytes(b"frame X")  # same size, other bytes: the hash catches it
    paths[2].write_bytes(b"frame 2 and more")  # other size
    files.atomic_write(out / NAMING.name(4), b"frame 4")  # complete but never logged
    stale = files.partial_path(out / NAMING.name(3))
    stale.write_bytes(b"half")
    undecodable = {paths[3]}
    with _folder(out, resume=True, verify=lambda p: p not in undecodable | {paths[1], paths[2]}) as folder:
        assert folder.complete(range(5)) == {0}  # damaged frames (they no longer decode) are made again
    with pytest.raises(OutputFolderError, match=r"^frames 1-2 of frame_######\.png were changed after emavfi wrote "
                                                r"them in .*--redo-changed"):
        with _folder(out, resume=True, verify=lambda p: p not in undecodable):
            pass  # changed frames stop a resume as the folder is opened: never replaced without being asked
    assert paths[1].read_bytes() == b"frame X"
    with _folder(out, resume=True, redo_changed=True, verify=lambda p: p not in undecodable) as folder:
        assert folder.complete(range(5)) == {0}
    assert not stale.exists()  # a killed writer's temporary is removed by the next exclusive run


def test_log_survives_a_torn_last_line(tmp_path):
    out = tmp_path / "out"
    with _folder(out) as folder:
        _write(folder, 0)
        _write(folder, 1)
    with open(out / LOG_NAME, "a") as log:
        log.write("frame_000002.png 12")  # killed mid-append
    with _folder(out, resume=True) as folder:
        assert folder.complete(range(3)) == {0, 1}


def test_files_follow_the_umask(tmp_path):
    old = os.umask(0o022)
    try:
        with _folder(tmp_path / "out") as folder:
            path = _write(folder, 0)
        for p in (path, tmp_path / "out" / RECORD_NAME, tmp_path / "out" / LOG_NAME):
            assert (p.stat().st_mode & 0o777) == 0o644, p
    finally:
        os.umask(old)
