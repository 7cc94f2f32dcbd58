"""Fine-tuning in one process: the loss falls on real footage, runs are deterministic, resume is exact, the
results load in the CLI. Footage: pans and zooms over scikit-image photographs with a moving occluder
(tests/finetune_footage.py); models: the tiny test architecture (fast) and ours_small_t (for the CLI)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import emavfi
from emavfi.config import ModelConfig
from emavfi.loss import training_loss
from emavfi.train.batches import make_batch
from emavfi.train.checkpoint import latest_checkpoint, read_log
from emavfi.train.data import FrameReader, Triplets
from emavfi.train.loop import build_start_model
from emavfi.train.options import FinetuneOptions
from emavfi.train.run import StopSwitch, finetune, plan_job
from finetune_footage import dataset, shot, write_clip
from helpers import TINY

pytest.importorskip("skimage", reason="real footage comes from scikit-image's photographs")
pytestmark = pytest.mark.usefixtures("one_thread")
REPO = Path(__file__).resolve().parents[1]
CFG = ModelConfig(width=TINY.width, depths=TINY.depths, arbitrary_t=True)


@pytest.fixture(scope="module")
def footage(tmp_path_factory) -> Path:
    """Three 12-frame clips of 80x96 PNG frames (pans, zooms, occluders)."""
    return dataset(tmp_path_factory.mktemp("footage") / "clips", 12, 80, 96)


def _options(data: Path, run: Path, **changes) -> FinetuneOptions:
    base = dict(data=(str(data),), output=str(run), steps=8, batch=2, crop=64, lr=2e-3, device="cpu",
                checkpoint_every=3)
    return FinetuneOptions(**{**base, **changes})


class StopAfter(StopSwitch):
    """A Ctrl-C that arrives while step `n` (1-based) runs."""

    def __init__(self, folder: Path, n: int):
        super().__init__(folder)
        self.calls, self.n = 0, n

    def requested(self) -> bool:
        self.calls += 1
        return self.calls >= self.n


def _fixed_loss(model: torch.nn.Module, job) -> float:
    """The loss on 8 fixed samples (their own seed, not the run's)."""
    triplets = Triplets(list(job.clips), 3, True, seed=99)
    batch = make_batch(triplets, FrameReader(list(job.clips)), list(range(8)), 64)
    with torch.no_grad():
        return training_loss(model(batch.img0, batch.img1, batch.t), batch.gt)[0].item()


def test_loss_falls_on_real_footage(footage, tmp_path):
    opts = _options(footage, tmp_path / "run", steps=24, checkpoint_every=100)
    job = plan_job(opts, resume=False, config=CFG)
    before = _fixed_loss(build_start_model(job), job)
    outcome = finetune(opts, config=CFG)
    assert outcome.step == 24 and not outcome.interrupted
    trained = build_start_model(job)
    trained.load_state_dict(load_file(str(tmp_path / "run" / "final.safetensors")))
    after = _fixed_loss(trained, job)
    assert after < 0.85 * before, (before, after)
    rows = read_log(tmp_path / "run")
    assert [r["step"] for r in rows] == list(range(24))
    assert rows[0]["lr"] == 0.0 and max(r["lr"] for r in rows) == pytest.approx(2e-3)  # warm-up, then cosine
    assert rows[-1]["lr"] == pytest.approx(2e-4)


def test_same_seed_same_weights_and_resume_is_exact(footage, tmp_path):
    straight = tmp_path / "straight"
    finetune(_options(footage, straight), config=CFG)
    again = tmp_path / "again"
    finetune(_options(footage, again), config=CFG)
    reference = load_file(str(straight / "final.safetensors"))
    assert all(torch.equal(reference[k], v) for k, v in load_file(str(again / "final.safetensors")).items())
    other = tmp_path / "other_seed"
    finetune(_options(footage, other, seed=7), config=CFG)
    assert not torch.equal(load_file(str(other / "final.safetensors"))["unet.conv.weight"], reference["unet.conv.weight"])

    split = tmp_path / "split"
    first = finetune(_options(footage, split), config=CFG, stop=StopAfter(split, 4))
    assert first.interrupted and first.step == 4 and not (split / "final.safetensors").exists()
    assert latest_checkpoint(split).name == "step-00000004"
    second = finetune(_options(footage, split), config=CFG, resume=True)
    assert second.step == 8 and not second.interrupted
    resumed = load_file(str(split / "final.safetensors"))
    assert resumed.keys() == reference.keys()
    assert all(torch.equal(reference[k], resumed[k]) for k in reference), "resumed weights differ from a straight run"
    assert read_log(split) == read_log(straight)  # the same loss at every step, bit for bit
    # checkpoints: every 3 steps, the interrupted step, the end; only the newest two are kept
    assert sorted(p.name for p in (split / "checkpoints").iterdir()) == ["step-00000006", "step-00000008"]


def test_validation_keeps_the_best_weights(footage, tmp_path):
    val = write_clip(tmp_path / "held_out", shot(7, 64, 96, background="rocket", occluder="coffee"))
    run = tmp_path / "run"
    finetune(_options(footage, run, steps=6, val=str(val), val_every=3, val_frames=5, val_crop=64), config=CFG)
    rows = {r["step"]: r for r in read_log(run)}
    scored = {step + 1: row["val_psnr"] for step, row in rows.items() if row["val_psnr"] is not None}
    assert sorted(scored) == [3, 6] and all(10 < v < 60 for v in scored.values())
    state = json.loads((latest_checkpoint(run) / "state.json").read_text())
    best_step = max(scored, key=scored.get)
    assert state["best"]["step"] == best_step and state["best"]["psnr"] == scored[best_step]
    from emavfi.evaluate.holdout import score_holdout
    from emavfi.train.validate import load_clip

    model = build_start_model(plan_job(_options(footage, tmp_path / "x"), resume=False, config=CFG))
    model.load_state_dict(load_file(str(run / "best.safetensors")))
    again = score_holdout(model, load_clip(str(val), 5, 64, 2), 2)
    assert again.psnr == pytest.approx(scored[best_step], abs=1e-6)


def test_gradient_checkpointing_gives_the_same_step(footage, tmp_path):
    plain = finetune(_options(footage, tmp_path / "plain", steps=2), config=CFG)
    saved = finetune(_options(footage, tmp_path / "ckpt", steps=2, grad_checkpoint=True), config=CFG)
    assert saved.last_loss == pytest.approx(plain.last_loss, rel=1e-6)
    a, b = (load_file(str(tmp_path / n / "final.safetensors")) for n in ("plain", "ckpt"))
    assert max((a[k] - b[k]).abs().max().item() for k in a) < 1e-5


def _cli(*args: str, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "emavfi", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=600, **kwargs)


def test_ctrl_c_leaves_a_checkpoint_that_resumes_exactly_and_loads_in_the_cli(footage, tmp_path):
    run, straight = tmp_path / "run", tmp_path / "straight"
    args = [str(footage), "--variant", "ours_small_t", "--steps", "5", "--batch", "1", "--crop", "64", "--device",
            "cpu", "--lr", "1e-4"]
    env = {**__import__("os").environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "emavfi", "finetune", *args, "-o", str(run)], cwd=REPO, env=env,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 300
    while not ((run / "log.csv").is_file() and len((run / "log.csv").read_text().splitlines()) >= 2):
        assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.poll() else "slow"
        time.sleep(0.05)
    proc.send_signal(__import__("signal").SIGINT)
    err = proc.communicate(timeout=300)[1]
    assert proc.returncode == 130, err
    assert "--resume" in err and "Traceback" not in err
    where = latest_checkpoint(run)
    step = json.loads((where / "state.json").read_text())["step"]
    assert 1 <= step < 5 and not (run / "final.safetensors").exists()
    assert emavfi.weights.check_weights_file(where / "model.safetensors") == "ours_small_t"
    emavfi.load_model(where / "model.safetensors")  # a complete, loadable checkpoint

    resumed = _cli("finetune", *args, "-o", str(run), "--resume", env=env)
    assert resumed.returncode == 0, resumed.stderr
    done = _cli("finetune", *args, "-o", str(straight), env=env)
    assert done.returncode == 0, done.stderr
    a, b = load_file(str(run / "final.safetensors")), load_file(str(straight / "final.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)

    plate = write_clip(tmp_path / "plate", shot(3, 64, 64))
    out = _cli("interpolate", str(plate), "-o", str(tmp_path / "out"), "--weights", str(run / "final.safetensors"),
               "--device", "cpu", env=env)
    assert out.returncode == 0, out.stderr
    assert len(list((tmp_path / "out").glob("*.png"))) == 5
    from emavfi.weights import inspect_safetensors

    assert inspect_safetensors(run / "final.safetensors") == "ours_small_t"


def test_the_finetune_command_imports_no_torch():
    code = "import sys, emavfi.train.cli, emavfi.train.options; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "False", out.stderr
