"""Reproducible bytes: the same job gives byte-identical files, every format, whichever process wrote them."""
from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from emavfi import cli


oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


def chelsea_plate(folder: Path) -> Path:
    """16-bit PNG frames of a pan over the cat photograph, numbered from 1001."""
    photo = data.chelsea().astype(np.float32) / 255
    folder.mkdir()
    for i in range(5):
        view = photo[60 + 2 * i:92 + 2 * i, 100 + 3 * i:148 + 3 * i]
        assert oiio.ImageBuf(np.ascontiguousarray(np.rint(view * 65535).astype(np.uint16))).write(
            str(folder / f"cat.{1001 + i}.png"))
    return folder


def contents(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("frame_*"))}


@pytest.mark.parametrize("fmt", [["png"], ["tif"], ["exr", "half"], ["exr", "float"], ["dpx"]])
def test_the_same_job_gives_identical_bytes_twice_and_as_reversed_tasks(tmp_path, tiny_cli, fmt):
    clip = chelsea_plate(tmp_path / "in")
    base = ["interpolate", str(clip), "-m", "2", "--device", "cpu", "--format", fmt[0],
            *(["--bit-depth", fmt[1]] if len(fmt) > 1 else [])]
    assert cli.main([*base, "-o", str(tmp_path / "first")]) == 0
    time.sleep(1.05)  # a time stamp written into a file would now differ
    assert cli.main([*base, "-o", str(tmp_path / "second")]) == 0
    for frames in ("1005-1009", "1001-1004"):
        assert cli.main([*base, "-o", str(tmp_path / "tasks"), "--frames", frames]) == 0
    first = contents(tmp_path / "first")
    assert len(first) == 9 and all(name.endswith(f".{fmt[0]}") for name in first)
    assert contents(tmp_path / "second") == first
    assert contents(tmp_path / "tasks") == first
