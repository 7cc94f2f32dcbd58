"""Never overwrite what we did not write: an existing video, an edited frame on --resume, convert -o; and a run that
fails before its first frame leaves the output unclaimed."""
from __future__ import annotations

import hashlib
import json

from pathlib import Path

import numpy as np
import pytest

from emavfi import cli, loading
from emavfi.errors import WeightsError
from emavfi.outputs import file_record_path

from helpers import tiny_model, weight_shapes

oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


def coffee_clip(folder: Path, n: int = 4, first: int = 1) -> Path:
    photo = data.coffee()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        view = np.ascontiguousarray(photo[150 + 3 * i:182 + 3 * i, 200 + 2 * i:248 + 2 * i])
        assert oiio.ImageBuf(view).write(str(folder / f"cup.{first + i:04d}.png"))
    return folder


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def one_line(capsys) -> str:
    lines = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


def test_an_existing_video_is_refused_and_overwrite_replaces_only_our_own(tmp_path, tiny_cli, capsys):
    av = pytest.importorskip("av", reason="video output needs PyAV")
    clip = coffee_clip(tmp_path / "in")
    video = tmp_path / "edit.mp4"
    video.write_bytes(b"the editor's only copy")
    base = ["interpolate", clip, "-o", video, "-m", "2", "--source-fps", "24", "--device", "cpu"]
    assert run(*base) == 2
    assert "already exists" in one_line(capsys) and video.read_bytes() == b"the editor's only copy"
    assert run(*base, "--overwrite") == 2
    assert "not written by emavfi" in one_line(capsys) and video.read_bytes() == b"the editor's only copy"
    assert tiny_cli == []  # refused before any weights were loaded
    ours = tmp_path / "ours.mp4"
    base[3] = ours
    assert run(*base) == 0 and file_record_path(ours).is_file()
    capsys.readouterr()
    assert run(*base) == 2 and "already exists" in one_line(capsys)
    first_record, first_bytes = file_record_path(ours).read_bytes(), ours.read_bytes()
    before = ours.stat().st_ino
    assert run(*base, "--overwrite") == 0 and ours.stat().st_ino != before  # a new file renamed into place
    replaced = ours.read_bytes()
    assert replaced == first_bytes  # the same frames make the same H.264 bytes (tests/test_video_bytes.py)
    record = json.loads(file_record_path(ours).read_text())
    assert len(replaced) > 0 and record["bytes"] == len(replaced)
    assert record["sha256"] == hashlib.sha256(replaced).hexdigest() and file_record_path(ours).read_bytes() != b""
    with av.open(str(ours)) as container:
        assert sum(1 for _ in container.decode(video=0)) == 7
    assert json.loads(first_record)["file"] == record["file"]
    ours.write_bytes(replaced[:-10] + b"re-graded!")  # someone changed our file since
    capsys.readouterr()
    assert run(*base, "--overwrite") == 2 and "changed after emavfi wrote it" in one_line(capsys)


def test_resume_never_replaces_a_frame_edited_after_we_wrote_it(tmp_path, tiny_cli, capsys):
    clip = coffee_clip(tmp_path / "in", 5)
    out = tmp_path / "out"
    base = ["interpolate", clip, "-o", out, "-m", "2", "--device", "cpu"]
    assert run(*base) == 0
    reference = {p.name: p.read_bytes() for p in out.glob("frame_*")}
    edited = out / "frame_000004.png"  # an artist paints over an in-between: a valid image, other pixels
    pixels = oiio.ImageBuf(str(edited)).get_pixels(oiio.UINT8)
    pixels[4:12, 4:20] = 255
    assert oiio.ImageBuf(np.ascontiguousarray(pixels)).write(str(edited))
    (out / "frame_000007.png").unlink()  # and one frame is missing: resume should make it
    artist = edited.read_bytes()
    capsys.readouterr()
    tiny_cli.clear()
    assert run(*base, "--resume") == 2
    message = one_line(capsys)
    assert tiny_cli == []  # stopped before any weights were loaded
    assert "frame 4 of frame_######.png was changed after emavfi wrote it in " in message
    assert message.endswith("they are kept: move them aside, or add --redo-changed to render them again")
    assert edited.read_bytes() == artist and not (out / "frame_000007.png").exists()
    assert run(*base, "--resume", "--redo-changed") == 0
    assert {p.name: p.read_bytes() for p in out.glob("frame_*")} == reference


def paint(path: Path) -> bytes:
    """An artist paints over a frame: a valid image with other pixels; returns its new bytes."""
    pixels = oiio.ImageBuf(str(path)).get_pixels(oiio.UINT8)
    pixels[4:12, 4:20] = 255
    assert oiio.ImageBuf(np.ascontiguousarray(pixels)).write(str(path))
    return path.read_bytes()


def frames_of(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("frame_*"))}


def test_overwrite_never_replaces_a_frame_edited_after_we_wrote_it(tmp_path, tiny_cli, capsys):
    clip = coffee_clip(tmp_path / "in", 5)
    out = tmp_path / "out"
    base = ["interpolate", clip, "-o", out, "-m", "2", "--device", "cpu"]
    assert run(*base) == 0
    reference = frames_of(out)
    artist = {name: paint(out / name) for name in ("frame_000004.png", "frame_000006.png", "frame_000007.png")}
    before = frames_of(out)
    capsys.readouterr()
    tiny_cli.clear()
    assert run(*base, "--overwrite") == 2
    message = one_line(capsys)
    assert tiny_cli == []  # stopped before any weights were loaded
    assert message.startswith("emavfi: error: --overwrite replaces only frames emavfi wrote, and frames 4, 6-7 of "
                              "frame_######.png were changed after emavfi wrote them in ")
    assert message.endswith("nothing was replaced: move them aside, or add --redo-changed to render them again")
    assert frames_of(out) == before and all(before[name] == data for name, data in artist.items())
    assert run(*base, "--overwrite", "--redo-changed") == 0
    assert frames_of(out) == reference  # rendered again, as asked
    assert run(*base, "--overwrite") == 0 and frames_of(out) == reference  # an unedited folder: replaced as before


def test_overwrite_never_replaces_a_file_we_never_wrote(tmp_path, tiny_cli, capsys):
    clip = coffee_clip(tmp_path / "in", 5)
    whole, out = tmp_path / "whole", tmp_path / "out"
    assert run("interpolate", clip, "-o", whole, "-m", "2", "--device", "cpu") == 0
    base = ["interpolate", clip, "-o", out, "-m", "2", "--device", "cpu"]
    assert run(*base, "--frames", "1-3") == 0  # one farm task of the shot
    theirs = (clip / "cup.0002.png").read_bytes()
    (out / "frame_000008.png").write_bytes(theirs)  # someone's own image under a name of the shot
    capsys.readouterr()
    assert run(*base, "--overwrite") == 2
    message = one_line(capsys)
    assert "and frame 8 of frame_######.png was not written by emavfi in " in message
    assert (out / "frame_000008.png").read_bytes() == theirs and len(frames_of(out)) == 4  # nothing deleted
    assert run(*base, "--overwrite", "--redo-changed") == 0
    assert frames_of(out) == frames_of(whole)


def test_a_run_that_fails_before_its_first_frame_leaves_the_folder_unclaimed(tmp_path, monkeypatch, capsys):
    clip = coffee_clip(tmp_path / "in")
    out = tmp_path / "shots" / "out"

    def no_weights(job, state=None, progress=None):
        raise WeightsError("no weights for ours_small_t (offline)")
    monkeypatch.setattr(loading, "load_model_for", no_weights)
    assert run("interpolate", clip, "-o", out, "-m", "2", "--device", "cpu") == 1
    assert capsys.readouterr().err.splitlines()[-1] == "emavfi: error: no weights for ours_small_t (offline)"
    assert not out.exists() and not out.parent.exists()  # nothing claimed, no empty folders left
    model = tiny_model()
    monkeypatch.setattr(loading, "load_model_for", lambda job, state=None, progress=None: model)
    assert run("interpolate", clip, "-o", out, "-m", "4", "--device", "cpu") == 0  # the corrected command


def test_convert_refuses_an_existing_destination(tmp_path, capsys):
    torch = pytest.importorskip("torch")
    state = {k: torch.zeros(shape) for k, shape in weight_shapes("ours_small_t").items()}
    pkl = tmp_path / "ours_small_t.pkl"
    torch.save(state, pkl)
    mine = tmp_path / "mine.safetensors"
    mine.write_bytes(b"someone else's weights")
    assert run("convert", pkl, "-o", mine) == 2 and "already exists" in one_line(capsys)
    assert run("convert", pkl, "-o", mine, "--overwrite") == 2 and "not written by emavfi" in one_line(capsys)
    assert mine.read_bytes() == b"someone else's weights"
    assert run("convert", pkl) == 0
    capsys.readouterr()
    assert run("convert", pkl) == 2 and "already exists" in one_line(capsys)
    assert run("convert", pkl, "--overwrite") == 0
