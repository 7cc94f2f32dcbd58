"""Video bytes: the same frames make the same file whatever the heap held or the cores the process may use, and a
codec that would corrupt memory on a frame size is refused with one line before any work."""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("av", reason="video output needs PyAV")

from emavfi import cli  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
# A pan over a real photograph, 320x240, 24 frames: encoded by VideoSink in a fresh process; prints the sha256.
ENCODE = """
import hashlib, os, sys
from fractions import Fraction
import torch
from skimage import data
from emavfi.media.video_out import VideoSink
if os.environ.get("ONE_CPU"):
    os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})
photo = torch.from_numpy(data.coffee()).permute(2, 0, 1).float() / 255
sink = VideoSink(sys.argv[1], Fraction(24), codec=sys.argv[2])
for i in range(24):
    sink.write(i, photo[:, 40 + i:280 + i, 60 + 2 * i:380 + 2 * i].contiguous())
sink.close()
print(hashlib.sha256(open(sys.argv[1], "rb").read()).hexdigest())
"""


def _encode(path: Path, codec: str, **env: str) -> str:
    done = subprocess.run([sys.executable, "-c", ENCODE, str(path), codec], cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), **env}, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout.split()[-1]


def test_h264_bytes_do_not_depend_on_what_the_heap_held(tmp_path):
    # glibc fills fresh allocations with MALLOC_PERTURB_'s complement: an encoder that reads memory it never wrote
    # (this PyAV build's x264 does, in macroblock-tree rate control through B-frames) makes other bytes per value
    sums = {_encode(tmp_path / f"{fill}.mp4", "h264", MALLOC_PERTURB_=fill) for fill in ("1", "90", "165", "240")}
    assert len(sums) == 1


@pytest.mark.skipif(len(os.sched_getaffinity(0)) < 2, reason="needs two CPUs to compare with one")
def test_h264_bytes_do_not_depend_on_the_cores(tmp_path):
    # the encoder's default slice threads cut each frame into one slice per core
    assert _encode(tmp_path / "one.mp4", "h264", ONE_CPU="1") == _encode(tmp_path / "all.mp4", "h264")


def test_a_codec_that_cannot_take_the_frame_width_is_refused_before_any_work(tmp_path, tiny_cli, capsys):
    import OpenImageIO as oiio
    from skimage import data

    photo = data.coffee()
    folder = tmp_path / "in"
    folder.mkdir()
    for i in range(3):  # 48 px wide, 16-bit: HEVC would be the default for a deep source
        pixels = (photo[100 + i:140 + i, 200:248].astype("uint16") * 257)
        assert oiio.ImageBuf(pixels).write(str(folder / f"narrow.{i + 1:04d}.png"), "uint16")
    out = tmp_path / "out.mp4"
    assert cli.main(["interpolate", str(folder), "-o", str(out), "--codec", "hevc_10bit", "--source-fps", "24",
                     "--device", "cpu"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1 and "hevc_10bit cannot encode frames narrower than 64 px" in err[0] and "48 px" in err[0]
    assert tiny_cli == [] and list(tmp_path.iterdir()) == [folder]  # refused before the model, nothing written
    assert cli.main(["interpolate", str(folder), "-o", str(out), "--source-fps", "24", "--device", "cpu"]) == 0  # 10-bit H.264
    import av

    with av.open(str(out)) as container:
        assert container.streams.video[0].codec_context.name == "h264"
        assert container.streams.video[0].codec_context.pix_fmt == "yuv420p10le"
        assert sum(1 for _ in container.decode(video=0)) == 5
