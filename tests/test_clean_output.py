"""One clean line: native libraries' messages hidden (shown with --verbose), a full disk worded as such,
--version, farm task sizes, and the README's output folder ignored by git."""
from __future__ import annotations

import shutil
import subprocess
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import REPO
from emavfi import cli


oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


def rocket(folder: Path, n: int = 4, size: int = 32) -> Path:
    photo = data.rocket()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        view = np.ascontiguousarray(photo[150 + 2 * i:150 + 2 * i + size, 250:250 + size + 16])
        assert oiio.ImageBuf(view).write(str(folder / f"r.{i + 1}.png"))
    return folder


def test_a_damaged_png_gives_our_line_only(tmp_path, tiny_cli, capfd):
    clip = rocket(tmp_path / "in", 5)
    frame = clip / "r.3.png"
    frame.write_bytes(frame.read_bytes()[:90])  # cut off by a failed copy
    assert cli.main(["interpolate", str(clip), "-o", str(tmp_path / "out"), "--device", "cpu"]) == 1
    err = capfd.readouterr().err
    assert "libpng" not in err.replace(str(tmp_path), "")  # libpng's own "libpng error: ..." line is held back
    assert err.strip().splitlines()[-1].startswith("emavfi: error: cannot read frame")
    assert cli.main(["interpolate", str(clip), "-o", str(tmp_path / "out2"), "--device", "cpu", "--verbose"]) == 1
    assert "libpng error" in capfd.readouterr().err  # --verbose lets it through


def test_x265_prints_nothing_of_its_own(tmp_path, capfd):
    from emavfi.media import video_out

    if "hevc_10bit" not in video_out.available_codecs():
        pytest.skip("this PyAV build has no libx265")
    with video_out.VideoSink(tmp_path / "a.mp4", Fraction(24), codec="hevc_10bit") as sink:
        for k in range(3):
            sink.write(k, torch.rand(3, 32, 64))
    assert "x265" not in capfd.readouterr().err


def test_a_full_disk_is_worded_as_such(tmp_path, tiny_cli, capsys):
    mount = tmp_path / "small"
    mount.mkdir()
    if shutil.which("mount") is None or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs",
                                                        str(mount)], capture_output=True).returncode:
        pytest.skip("mounting a small tmpfs needs root")
    try:
        (mount / "filler").write_bytes(b"x" * 40_000)
        clip = rocket(tmp_path / "in", 4, size=96)
        assert cli.main(["interpolate", str(clip), "-o", str(mount / "out"), "--device", "cpu",
                         "--format", "tif", "--bit-depth", "16"]) == 1
        message = capsys.readouterr().err.strip().splitlines()[-1]
        assert message.startswith(f"emavfi: error: no space left on {mount}")
        assert not [p for p in (mount / "out").glob("*.tif")] or all(
            oiio.ImageBuf(str(p)).read() for p in (mount / "out").glob("*.tif"))  # no cut-off frame left
    finally:
        subprocess.run(["umount", str(mount)], check=False)


def test_version(capsys):
    from emavfi import __version__

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out.strip() == f"emavfi {__version__}"


def test_frames_per_task_gives_that_many_a_task(tmp_path, capsys):
    clip = rocket(tmp_path / "in", 5)
    assert cli.main(["plan", str(clip), "-m", "2", "--frames-per-task", "4", "--json"]) == 0  # 9 outputs
    out = capsys.readouterr().out
    import json

    assert [task["count"] for task in json.loads(out)["tasks"]] == [4, 4, 1]


def test_the_readme_main_jobs_output_is_ignored_by_git():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("needs a git checkout")
    job = next(line for line in (REPO / "README.md").read_text().splitlines() if "emavfi interpolate examples" in line)
    output = job.split(" -o ")[1].split()[0]
    assert subprocess.run(["git", "-C", str(REPO), "check-ignore", "-q", output]).returncode == 0
