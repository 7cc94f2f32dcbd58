"""Fine-tuning on a full disk: one line naming the mount, the space a checkpoint needs and what is free; no
partial checkpoint left behind; the last good checkpoint intact and loadable. Real tmpfs mounts."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from emavfi.files import is_partial
from emavfi.train.checkpoint import TrainState, latest_checkpoint, load_checkpoint, save_checkpoint

from conftest import REPO
from helpers import tiny_model
from mounts import small_disk

pytest.importorskip("skimage", reason="real footage comes from scikit-image's photographs")
pytestmark = pytest.mark.usefixtures("one_thread")


def _leftovers(folder: Path) -> list[Path]:
    return [p for p in folder.rglob("*") if is_partial(p.name)]


def test_finetune_on_a_full_disk_is_one_line_and_keeps_the_last_checkpoint(tmp_path):
    from finetune_footage import shot, write_clip

    clip = write_clip(tmp_path / "clip", shot(8, 80, 96))
    # ours_small_t: a checkpoint (weights + AdamW moments) is ~174 MB, so the first fits and the second does not
    with small_disk(tmp_path / "disk", "250m") as disk:
        run = disk / "run"
        proc = subprocess.run([sys.executable, "-m", "emavfi", "finetune", str(clip), "-o", str(run), "--variant",
                               "ours_small_t", "--steps", "4", "--checkpoint-every", "1", "--batch", "1", "--crop",
                               "64", "--device", "cpu"], cwd=REPO, capture_output=True, text=True, timeout=600,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
        lines = [line for line in proc.stderr.splitlines() if line.strip()]
        assert proc.returncode == 1 and lines, proc.stderr
        assert lines[-1].startswith(f"emavfi: error: no space left on {disk}: a checkpoint in {run / 'checkpoints'} "
                                    "needs ~174."), proc.stderr
        assert lines[-1].endswith(" MB free; free some space, then run the same command with --resume")
        assert "Traceback" not in proc.stderr and "SafetensorError" not in proc.stderr
        assert [p.name for p in (run / "checkpoints").iterdir()] == ["step-00000001"]
        assert latest_checkpoint(run) == run / "checkpoints" / "step-00000001" and not _leftovers(disk)


def _trained(seed: int = 0) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    model = tiny_model(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    sum(p.sum() for p in model.parameters()).backward()
    optimizer.step()
    return model, optimizer


def test_a_disk_that_fills_while_a_checkpoint_is_written_leaves_no_part_of_it(tmp_path):
    model, optimizer = _trained()
    with small_disk(tmp_path / "disk", "64m", inodes=64) as disk:  # room in bytes, but few files
        run = disk / "run"
        first = save_checkpoint(run, model.state_dict(), optimizer, TrainState(step=1), None, keep=2)
        filler = disk / "filler"
        filler.mkdir()
        try:
            for i in range(1000):
                (filler / str(i)).touch()
        except OSError:
            pass
        for name in sorted(os.listdir(filler), key=int)[-2:]:  # the step folder and its weights fit, no more
            (filler / name).unlink()
        with pytest.raises(OSError) as info:
            save_checkpoint(run, model.state_dict(), optimizer, TrainState(step=2), None, keep=2)
        assert str(info.value).startswith(f"no space left on {disk}: a checkpoint in {run / 'checkpoints'} needs "
                                          "~11.")  # 0.92 M parameters: weights + two AdamW moments
        assert str(info.value).endswith(" MB free but no free inodes (file entries); free some space, then run "
                                        "the same command with --resume")
        assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["step-00000001"]
        assert latest_checkpoint(run) == first and not _leftovers(disk)
        again, again_opt = _trained(seed=1)
        assert load_checkpoint(first, again, again_opt).step == 1
        assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), model.state_dict().values()))
        assert json.loads((run / "latest.json").read_text())["step"] == 1


def test_final_weights_on_a_full_disk_name_the_file_and_leave_nothing(tmp_path):
    from emavfi.train.checkpoint import save_weights

    with small_disk(tmp_path / "disk", "1m") as disk:
        with pytest.raises(OSError) as info:
            save_weights(tiny_model().state_dict(), disk / "final.safetensors", None)
        assert str(info.value) == (f"no space left on {disk}: final.safetensors in {disk} needs ~3.7 MB, 1.0 MB free; "
                                   "free some space, then run the same command with --resume")
        assert not list(disk.iterdir())
