"""Frame sequences as pipelines see them: frame numbers, output numbering, gaps, several sequences in a folder."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from emavfi import cli, loading, sequences
from emavfi.clips import interpolate_clip
from emavfi.schedule import timesteps_plan


oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


def plate(folder: Path, numbers, prefix: str = "plate.", ext: str = ".png") -> list[Path]:
    """A pan over the astronaut photograph; frame n shows the view at time n (so a gap is a real jump)."""
    photo = data.astronaut()
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for n in numbers:
        i = n - 1001
        path = folder / f"{prefix}{n}{ext}"
        assert oiio.ImageBuf(np.ascontiguousarray(photo[100 + 4 * i:132 + 4 * i, 150:198])).write(str(path))
        paths.append(path)
    return paths


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def read(path: Path) -> torch.Tensor:
    return torch.from_numpy(oiio.ImageBuf(str(path)).get_pixels(oiio.FLOAT)).permute(2, 0, 1)


def names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if not p.name.startswith("."))


GAP = [*range(1001, 1006), *range(1007, 1012)]  # 1006 missing: a render that failed


def test_output_numbering_follows_the_input_and_start_number_overrides(tmp_path, tiny_cli, capsys):
    plate(tmp_path / "in", range(1001, 1005))
    assert run("interpolate", tmp_path / "in", "-o", tmp_path / "a", "-m", "2", "--device", "cpu") == 0
    assert names(tmp_path / "a") == [f"frame_{n:06d}.png" for n in range(1001, 1008)]
    assert run("interpolate", tmp_path / "in", "-o", tmp_path / "b", "-m", "2", "--device", "cpu",
               "--start-number", "0") == 0
    assert names(tmp_path / "b")[0] == "frame_000000.png"
    capsys.readouterr()
    assert run("plan", tmp_path / "in", "-m", "2") == 0
    assert "numbered 1001-1007" in capsys.readouterr().out


@pytest.mark.parametrize("command", ["interpolate", "plan"])
def test_a_missing_frame_is_an_error_before_any_work(tmp_path, tiny_cli, capsys, command):
    plate(tmp_path / "sh010" / "plate", [n for n in range(1001, 1012) if n not in (1006, 1009, 1010)])
    extra = ["-o", tmp_path / "out", "--device", "cpu"] if command == "interpolate" else []
    assert run(command, tmp_path / "sh010" / "plate", "-m", "2", *extra) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "missing frames 1006, 1009-1010 in" in err and "sh010/plate" in err
    assert "--gaps interpolate" in err
    assert not (tmp_path / "out").exists()


def test_gaps_interpolate_makes_the_missing_frame_at_its_true_time(tmp_path, tiny_cli, capsys):
    sources = plate(tmp_path / "in", GAP)
    out = tmp_path / "out"
    argv = ["interpolate", tmp_path / "in", "-o", out, "-m", "2", "--device", "cpu", "--cut-threshold", "0"]
    assert run(*argv, "--gaps", "interpolate") == 0
    assert "1006" in capsys.readouterr().err
    files = [out / name for name in names(out)]
    assert len(files) == 21 and files[0].name == "frame_001001.png" and files[-1].name == "frame_001021.png"
    for path, n in zip(sources, GAP):  # every real frame sits at its own time: output (n - 1001) * 2
        assert torch.equal(read(files[(n - 1001) * 2]), read(path)), n
    # the missing frame 1006 is the in-between of 1005 and 1007 at t = 1/2; 1005.5 at t = 1/4
    pair = torch.stack([read(sources[4]), read(sources[5])])
    model = loading.load_model_for(None)  # the tiny model the run used
    quarter, half = interpolate_clip(model, pair, timesteps_plan(2, [0.25, 0.5]))[1:3]
    assert float((read(files[9]) - quarter).abs().max()) <= 0.5 / 255 + 1e-6
    assert float((read(files[10]) - half).abs().max()) <= 0.5 / 255 + 1e-6
    capsys.readouterr()
    assert run("plan", tmp_path / "in", "-m", "2", "--gaps", "interpolate") == 0
    assert "output frames: 21" in capsys.readouterr().out


def test_gaps_ignore_keeps_the_files_consecutive(tmp_path, tiny_cli):
    plate(tmp_path / "in", GAP)
    assert run("interpolate", tmp_path / "in", "-o", tmp_path / "out", "-m", "2", "--device", "cpu",
               "--gaps", "ignore") == 0
    assert len(names(tmp_path / "out")) == 19


@pytest.mark.parametrize("second", [("b_", ".png"), ("a_", ".jpg")])
def test_two_sequences_in_one_folder_are_refused_and_pattern_picks_one(tmp_path, tiny_cli, capsys, second):
    plate(tmp_path / "in", range(1001, 1004), prefix="a_")
    plate(tmp_path / "in", range(1001, 1005), prefix=second[0], ext=second[1])
    assert run("plan", tmp_path / "in", "-m", "2") == 2
    err = capsys.readouterr().err.strip()
    assert "2 sequences" in err and f"{second[0]}####{second[1]} (4 files)" in err and "a_####.png (3 files)" in err
    assert "--pattern" in err and err.count("\n") == 0
    assert run("interpolate", tmp_path / "in", "-o", tmp_path / "out", "-m", "2", "--device", "cpu",
               "--pattern", "a_####.png") == 0
    assert names(tmp_path / "out") == [f"frame_{n:06d}.png" for n in range(1001, 1006)]


def test_sequence_grouping_rules(tmp_path):
    folder = tmp_path
    paths = [folder / n for n in ("sh.0999.exr", "sh.1000.exr", "sh.1001.EXR")]
    seq = sequences.group(folder, paths, {".exr": ".exr"})
    assert seq.numbers == (999, 1000, 1001) and seq.label == "sh.####.exr" and seq.missing() == []
    with pytest.raises(sequences.SequenceError, match="frame 1 of f_#.png .* twice"):
        sequences.group(folder, [folder / "f_1.png", folder / "f_01.png"])
    plain = sequences.group(folder, [folder / "b.png", folder / "a.png"])
    assert plain.numbers is None and [p.name for p in plain.paths] == ["a.png", "b.png"]
    assert sequences.describe_numbers([1006, 1009, 1010, 1012]) == "1006, 1009-1010, 1012"
