"""The run record holds everything that decides the pixels; a task or resume that differs is refused, naming it."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from emavfi import cli
from emavfi.files import sha256_of
from emavfi.outputs import RECORD_NAME

from helpers import random_state

oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


def rocket_clip(folder: Path, n: int = 5) -> Path:
    photo = data.rocket()
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        view = np.ascontiguousarray(photo[200 - 4 * i:232 - 4 * i, 250:298])  # the rocket rises
        assert oiio.ImageBuf(view).write(str(folder / f"launch_{1001 + i}.png"))
    return folder


def weights_file(path: Path, seed: int) -> Path:
    from safetensors.torch import save_file

    save_file(random_state("ours_small_t", seed), str(path))
    return path


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def frames(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.suffix == ".png")


def last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def test_the_record_holds_what_decides_the_pixels(tmp_path, tiny_cli):
    weights = weights_file(tmp_path / "a.safetensors", 0)
    out = tmp_path / "out"
    assert run("interpolate", rocket_clip(tmp_path / "in"), "-o", out, "-m", "2", "--device", "cpu",
               "--weights", weights) == 0
    record = json.loads((out / RECORD_NAME).read_text())
    assert record["weights_sha256"] == sha256_of(weights)
    assert record["variant"] == "ours_small_t" and record["precision"] == "float32" and record["backend"] == "torch"
    assert record["device_type"] == "cpu" and record["chunk"] == 0 and record["dedupe"] is False
    assert record["torch_threads"] == 1  # the one_thread fixture: on a CPU the count decides the last bits
    assert record["tta"] is False and record["scale"] == 1.0 and record["cut_threshold"] > 0
    assert len(record["schedule"]) == 16


@pytest.mark.parametrize("second, difference", [
    (["--weights", "b"], "weights_sha256"),
    (["--precision", "fp16"], "precision float32 there, float16 now"),
    (["--chunk", "2"], "chunk 0 there, 2 now"),
    (["--tta"], "tta false there, true now"),
])
def test_farm_tasks_and_resumes_that_would_mix_two_runs_are_refused(tmp_path, tiny_cli, capsys, second, difference):
    weights = {"a": weights_file(tmp_path / "a.safetensors", 0), "b": weights_file(tmp_path / "b.safetensors", 1)}
    clip, out = rocket_clip(tmp_path / "in"), tmp_path / "out"
    base = ["interpolate", clip, "-o", out, "-m", "2", "--device", "cpu", "--weights", weights["a"]]
    assert run(*base, "--frames", "1001-1004") == 0
    before = sorted(p.name for p in out.iterdir())
    extra = [weights.get(a, a) for a in second]
    if second[0] == "--weights":
        base = base[:-2]
    assert run(*base, *extra, "--frames", "1005-1009") == 2
    message = last_line(capsys)
    assert "holds the output of a different run" in message and difference in message
    assert sorted(p.name for p in out.iterdir()) == before  # nothing written by the refused task
    assert run(*base, *extra, "--resume") == 2 and difference in last_line(capsys)  # a resume, the same


@pytest.fixture
def two_threads():
    torch.set_num_threads(2)  # the one_thread fixture restores the count


def test_a_resume_with_other_cpu_threads_is_refused_with_the_recorded_count(tmp_path, tiny_cli, capsys, two_threads):
    clip, out = rocket_clip(tmp_path / "in"), tmp_path / "out"
    weights = weights_file(tmp_path / "a.safetensors", 0)
    base = ["interpolate", clip, "-o", out, "-m", "2", "--device", "cpu", "--weights", weights]
    torch.set_num_threads(1)
    assert run(*base, "--frames", "1001-1004") == 0
    before = sorted(p.name for p in out.iterdir())
    torch.set_num_threads(2)
    assert run(*base, "--resume") == 2
    assert last_line(capsys).endswith("(torch_threads 1 there, 2 now); use the same command with OMP_NUM_THREADS=1 "
                                      "to resume it, --overwrite to replace its frames, or another folder")
    assert sorted(p.name for p in out.iterdir()) == before
    torch.set_num_threads(1)
    assert run(*base, "--resume") == 0 and len(frames(out)) == 9


def test_a_record_older_than_the_thread_count_is_resumed_as_it_is(tmp_path, tiny_cli, two_threads):
    clip, out = rocket_clip(tmp_path / "in"), tmp_path / "out"
    weights = weights_file(tmp_path / "a.safetensors", 0)
    base = ["interpolate", clip, "-o", out, "-m", "2", "--device", "cpu", "--weights", weights]
    torch.set_num_threads(1)
    assert run(*base, "--frames", "1001-1004") == 0
    older = json.loads((out / RECORD_NAME).read_text())
    del older["torch_threads"]  # as emavfi wrote records before it held the count
    (out / RECORD_NAME).write_text(json.dumps(older, indent=1, sort_keys=True))
    kept = {p.name: p.read_bytes() for p in frames(out)}
    torch.set_num_threads(2)
    assert run(*base, "--resume") == 0
    assert len(frames(out)) == 9 and all((out / n).read_bytes() == b for n, b in kept.items())
    assert json.loads((out / RECORD_NAME).read_text()) == older  # it does not claim a count its frames lack
    assert run(*base, "--overwrite") == 0  # a new run in its place records the count it computes with
    assert json.loads((out / RECORD_NAME).read_text())["torch_threads"] == 2
