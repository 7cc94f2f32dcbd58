"""Bad input to `python -m emavfi finetune`: one line naming the problem, before any training, and nothing of
the user's touched. Also: a video as training data (random access by seeking) and a NaN loss."""
from __future__ import annotations

import socket
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from emavfi import cli
from emavfi.config import ModelConfig
from emavfi.files import try_lock
from emavfi.train.checkpoint import read_log
from emavfi.train.loop import NonFiniteLoss
from emavfi.train.options import FinetuneOptions
from emavfi.train.run import finetune
from finetune_footage import shot, write_clip
from helpers import TINY

pytest.importorskip("skimage", reason="real footage comes from scikit-image's photographs")
pytestmark = pytest.mark.usefixtures("one_thread")
CFG = ModelConfig(width=TINY.width, depths=TINY.depths, arbitrary_t=True)


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> Path:
    return write_clip(tmp_path_factory.mktemp("data") / "plate", shot(8, 64, 64))


def _run(capsys, *args: str) -> tuple[int, str]:
    code = cli.main(["finetune", *args])
    err = capsys.readouterr().err
    return code, err


def _one_error_line(err: str) -> str:
    lines = [line for line in err.splitlines() if line.startswith("emavfi: error:")]
    assert len(lines) == 1 and "Traceback" not in err, err
    return lines[0]


@pytest.mark.parametrize("args, message, exit_code", [
    (["--crop", "100"], "--crop must be a multiple of 32", 2),
    (["--crop", "32"], "--crop must be a whole number from 64", 2),
    (["--steps", "0"], "--steps must be a whole number from 1", 2),
    (["--lr", "nan"], "--lr must be a number", 2),
    (["--batch", "100000"], "--batch must be a whole number from 1 to 1024", 2),
    (["--precision", "bf16", "--device", "cpu"], "needs a GPU", 2),
    (["--batch", "3", "--ray", "--ray-workers", "2"], "does not split evenly over 2 Ray workers", 2),
    (["--crop", "96"], "is smaller than --crop 96", 1),  # the data's problem, not a usage error
    (["--max-gap", "4", "--crop", "64"], "too short: --max-gap 4 needs 9 frames", 1),
])
def test_bad_settings_are_one_line_before_any_work(capsys, tmp_path, clip, args, message, exit_code):
    code, err = _run(capsys, str(clip), "-o", str(tmp_path / "run"), "--device", "cpu", *args)
    assert code == exit_code and message in _one_error_line(err)
    assert not (tmp_path / "run").exists()


def test_wrong_layouts_are_named(capsys, tmp_path, clip):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a frame")
    code, err = _run(capsys, str(empty), "-o", str(tmp_path / "a"))
    assert code == 1 and "holds no clips: expected numbered frames" in _one_error_line(err)

    gap = write_clip(tmp_path / "gap", shot(8, 64, 64))
    (gap / "frame.0004.png").unlink()
    code, err = _run(capsys, str(gap), "-o", str(tmp_path / "b"))
    assert code == 1 and "1 frame(s) missing between frame.0003.png and frame.0005.png" in _one_error_line(err)

    mixed = write_clip(tmp_path / "mixed", shot(8, 64, 64))
    write_clip(mixed, shot(1, 64, 96), first=6)  # frame.0006.png replaced by a wider one
    code, err = _run(capsys, str(mixed), "-o", str(tmp_path / "c"))
    line = _one_error_line(err)
    assert code == 1 and "frame.0006.png is 96x64 but frame.0001.png is 64x64" in line

    code, err = _run(capsys, str(tmp_path / "nowhere"), "-o", str(tmp_path / "d"))
    assert code == 1 and "training data not found" in _one_error_line(err)
    code, err = _run(capsys, str(clip), str(clip), "-o", str(tmp_path / "e"))
    assert code == 1 and "the same clip is given twice" in _one_error_line(err)
    code, err = _run(capsys, str(clip), "-o", str(clip / "run"))
    assert code == 2 and "inside the input folder" in _one_error_line(err)
    code, err = _run(capsys, str(clip), "-o", str(tmp_path / "f"), "--val", str(clip))
    assert code == 1 and "is part of the training data" in _one_error_line(err)
    assert not any((tmp_path / n).exists() for n in "abcdef")


def test_run_folder_safety(capsys, tmp_path, clip):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "keep.txt").write_text("the user's")
    code, err = _run(capsys, str(clip), "-o", str(mine), "--steps", "1")
    assert code == 2 and "already exists; add --resume" in _one_error_line(err)
    code, err = _run(capsys, str(clip), "-o", str(mine), "--steps", "1", "--resume")
    assert code == 2 and "is not a fine-tuning run folder" in _one_error_line(err)
    assert [p.name for p in mine.iterdir()] == ["keep.txt"] and (mine / "keep.txt").read_text() == "the user's"

    run = tmp_path / "run"
    options = dict(data=(str(clip),), output=str(run), steps=2, batch=1, crop=64, device="cpu")
    finetune(FinetuneOptions(**options), config=CFG)
    (run / "notes.txt").write_text("mine")
    with pytest.raises(ValueError, match=r"different settings \(seed differ\)"):
        finetune(FinetuneOptions(**options, seed=5), config=CFG, resume=True)
    handle = try_lock(run / ".emavfi.lock")
    try:
        with pytest.raises(ValueError, match="another emavfi run is training in"):
            finetune(FinetuneOptions(**options), config=CFG, resume=True)
    finally:
        handle.close()
    again = finetune(FinetuneOptions(**options), config=CFG, resume=True)  # already complete: nothing redone
    assert again.step == 2 and (run / "notes.txt").read_text() == "mine"


def test_pickled_weights_and_an_unreachable_cluster_are_refused(capsys, tmp_path, clip):
    pkl = tmp_path / "ours.pkl"
    torch.save({"x": torch.zeros(1)}, pkl)
    code, err = _run(capsys, str(clip), "-o", str(tmp_path / "a"), "--weights", str(pkl))
    assert code == 1 and "is a pickle checkpoint" in _one_error_line(err) and "emavfi convert" in err
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    code, err = _run(capsys, str(clip), "-o", str(tmp_path / "b"), "--ray", f"127.0.0.1:{closed}", "--steps", "1",
                     "--crop", "64")
    assert code == 1 and f"cannot reach the Ray cluster at 127.0.0.1:{closed}" in _one_error_line(err)
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_nan_loss_stops_and_names_the_last_good_checkpoint(tmp_path, clip):
    run = tmp_path / "run"
    # step 1 runs at lr 0 (warm-up), step 2 at 5e5: the weights it makes give a NaN loss in step 3
    options = FinetuneOptions(data=(str(clip),), output=str(run), steps=10, batch=1, crop=64, lr=1e6, warmup=2,
                              checkpoint_every=1, device="cpu")
    with pytest.raises(NonFiniteLoss, match=r"the loss became nan at step 3; training stopped\. the last good "
                                            r"checkpoint is .*step-00000001/model\.safetensors"):
        finetune(options, config=CFG)
    assert [r["step"] for r in read_log(run)] == [0, 1] and not (run / "final.safetensors").exists()
    from safetensors.torch import load_file

    good = load_file(str(run / "checkpoints" / "step-00000001" / "model.safetensors"))
    assert all(torch.isfinite(v).all() for v in good.values())


def _encode_h264(path: Path, frames: torch.Tensor) -> Path:
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(24))
        stream.width, stream.height, stream.pix_fmt = frames.shape[-1], frames.shape[-2], "yuv444p"
        stream.options = {"g": "5", "bf": "2", "crf": "18"}  # keyframes every 5 frames, B-frames reordered
        for frame in frames:
            array = (frame.permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
            container.mux(stream.encode(av.VideoFrame.from_ndarray(array, format="rgb24")))
        container.mux(stream.encode())
    return path


def test_video_frames_in_any_order_match_decoding_from_the_start(tmp_path):
    from emavfi.media.video import VideoSource
    from emavfi.train.video_frames import VideoFrames

    video = _encode_h264(tmp_path / "shot.mp4", shot(23, 64, 64))
    expected = list(VideoSource(video).frames())
    frames = VideoFrames(str(video))
    try:
        assert len(frames) == len(expected) == 23
        order = np.random.default_rng(0).permutation(23).tolist() + [3, 4, 5, 22, 0, 21]
        for index in order:
            assert torch.equal(frames.read(index), expected[index]), index
    finally:
        frames.close()
    run = finetune(FinetuneOptions(data=(str(video),), output=str(tmp_path / "run"), steps=2, batch=2, crop=64,
                                   device="cpu"), config=CFG)
    assert run.step == 2 and (tmp_path / "run" / "final.safetensors").is_file()


def test_triplets_follow_the_protocol_and_epochs_count_windows(tmp_path):
    from emavfi.train.data import Clip, Triplets
    from emavfi.train.run import plan_job

    clips = [Clip("a", 12, (64, 64)), Clip("b", 9, (64, 64))]
    arbitrary = Triplets(clips, gap=3, arbitrary_t=True, seed=1)
    assert len(arbitrary) == (12 - 6) + (9 - 6)
    seen_t = set()
    for position in range(4 * len(arbitrary)):
        s = arbitrary.sample(position)
        a, g, b = s.frames
        assert a < g < b <= a + 6 and b < clips[s.clip].count and s.t == (g - a) / (b - a)
        seen_t.add(s.t)
    assert len(seen_t) >= 5  # t takes many values in (0, 1), not only 0.5
    n = len(arbitrary)
    for epoch in range(3):  # each window once per epoch, in a new order each epoch
        order = [arbitrary._window(p) for p in range(epoch * n, (epoch + 1) * n)]
        assert sorted(order) == list(range(n)) and (epoch == 0 or order != first)
        first = order if epoch == 0 else first
    fixed = Triplets(clips, gap=2, arbitrary_t=False, seed=1)
    for position in range(3 * len(fixed)):
        a, g, b = fixed.sample(position).frames
        assert g - a == b - g in (1, 2) and fixed.sample(position).t == 0.5
    assert [arbitrary.sample(p) for p in range(5)] == [Triplets(clips, 3, True, 1).sample(p) for p in range(5)]

    data = write_clip(tmp_path / "clip", shot(12, 64, 64))
    job = plan_job(FinetuneOptions(data=(str(data),), output=str(tmp_path / "run"), epochs=2, batch=2, crop=64),
                   resume=False, config=CFG)
    assert job.total_steps == 2 * ((12 - 6) // 2)
