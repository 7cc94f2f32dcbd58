"""emavfi.engine, the one plan -> outputs loop: the file path and the tensor path make the same frames with the
same cuts; cuts decided batch by batch equal whole-clip detection; the backend seam takes runtime models;
ordered sinks; a source that shrinks mid-run is not a usage error."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest
import torch

from emavfi import clips, cuts, engine, memory, render, runner, schedule
from emavfi.inference import ModelBackend
from emavfi.schedule import Request, Schedule
from emavfi.settings import RunOptions, Settings

from helpers import TINY, tiny_model

pytestmark = pytest.mark.usefixtures("one_thread")


def _shot(n_before: int = 5, n_after: int = 4) -> np.ndarray:
    """[N,H,W,3] float32: a pan over the astronaut photograph, then a hard cut to another part of it, panning on."""
    data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
    photo = data.astronaut().astype(np.float32) / 255
    views = [photo[40 + 3 * i:136 + 3 * i, 30 + 2 * i:158 + 2 * i] for i in range(n_before)]
    views += [photo[300 + 3 * i:396 + 3 * i, 330 - 2 * i:458 - 2 * i] for i in range(n_after)]
    return np.stack(views)


def _blend(frames, first, second, timesteps, aux):
    """A zero-flow runner.Backend: frame t = (1 - t) * first + t * second."""
    rgb = torch.stack([(1 - t) * frames[first] + t * frames[second] for t in timesteps])
    fused = None if aux is None else torch.stack([(1 - t) * aux[first] + t * aux[second] for t in timesteps])
    return rgb, fused


# ----------------------------------------------------------------------------------------------- file == tensor

def test_file_path_and_tensor_path_write_identical_frames_with_the_same_cuts(tmp_path: Path):
    oiio = pytest.importorskip("OpenImageIO", reason="the file path needs OpenImageIO (requirements-cli.txt)")
    inp = tmp_path / "in"
    inp.mkdir()
    for i, view in enumerate(_shot()):
        assert oiio.ImageBuf(np.rint(view * 65535).astype(np.uint16)).write(str(inp / f"plate.{i + 1:04d}.png"))
    model = tiny_model()
    settings = Settings(request=Request(multiplier=3), run=RunOptions(chunk=2))
    prepared = render.prepare(render.Job(inp, tmp_path / "out", settings))
    report = render.render(prepared, model)

    frames = torch.stack(list(prepared.source.frames()))
    clip = clips.render_clip(model, frames, prepared.schedule, cut_threshold=settings.run.cut_threshold, chunk=2)
    assert report.cuts == clip.cuts == [4] == cuts.detect_cuts(frames, settings.run.cut_threshold)
    files = sorted((tmp_path / "out").glob("frame_*.png"))
    assert report.written == len(files) == len(prepared.schedule.plan) == 25
    assert prepared.sink is not None
    for k, path in enumerate(files):
        written = oiio.ImageBuf(str(path)).get_pixels(oiio.UINT16)
        assert np.array_equal(written, prepared.sink.encode(clip.frames[k])), path.name
    # the in-betweens at the cut repeat the nearer source frame
    assert torch.equal(clip.frames[13], frames[4]) and torch.equal(clip.frames[14], frames[5])


@pytest.mark.parametrize("chunk", [1, 3])
def test_cuts_decided_batch_by_batch_equal_whole_clip_detection(chunk: int):
    frames = torch.from_numpy(_shot(6, 6)).permute(0, 3, 1, 2).contiguous()
    plan = schedule.multiplier_plan(frames.shape[0], 2)
    fake = type("Fake", (), {"config": TINY})()
    clip = clips.render_clip(fake, frames, plan, cut_threshold=cuts.DEFAULT_CUT_THRESHOLD, chunk=chunk,
                              backend=_blend)
    assert clip.cuts == cuts.detect_cuts(frames) == [5]
    given = clips.render_clip(fake, frames, plan, cuts=[5], chunk=chunk, backend=_blend)
    assert given.cuts == [5] and torch.equal(given.frames, clip.frames)
    with pytest.raises(ValueError, match="not both"):
        clips.render_clip(fake, frames, plan, cuts=[5], cut_threshold=2.5, backend=_blend)


# ----------------------------------------------------------------------------------------------- backend seam

class RuntimeModel:
    """What an exported runtime looks like to the engine: config, device, dtype and as_backend; no parameters."""

    def __init__(self, network: torch.nn.Module):
        self.config, self.device, self.dtype = network.config, torch.device("cpu"), torch.float32
        self.network = network
        self.asked: list[tuple[bool, float]] = []

    def as_backend(self, tta: bool, scale: float) -> runner.Backend:
        self.asked.append((tta, scale))
        return ModelBackend(self.network, tta, scale)


def test_a_model_with_as_backend_runs_through_its_own_backend(monkeypatch):
    network = tiny_model()
    frames = torch.rand(3, 3, 40, 56, generator=torch.Generator().manual_seed(1))
    plan = schedule.multiplier_plan(3, 2)
    runtime = RuntimeModel(network)
    out = clips.interpolate_clip(runtime, frames, plan, tta=True)
    assert runtime.asked == [(True, 1.0)]
    assert not hasattr(runtime, "parameters")
    assert torch.equal(out, clips.interpolate_clip(network, frames, plan, tta=True))
    # device, dtype and memory sizing come from the model's attributes, not from parameters
    monkeypatch.setattr(runner, "free_memory_bytes", lambda device: 5 * memory.estimate_pair_bytes(TINY, 40, 56))
    on_gpu = runner.Runner(runtime, device="cuda")
    assert on_gpu.resolve_chunk(40, 56) == 3 and runner.Runner(runtime).dtype == torch.float32


# ----------------------------------------------------------------------------------------------- pieces

def test_in_order_sink_passes_frames_on_in_their_turn():
    got: list[int] = []

    class Record:
        def write(self, index, image, *, copy_of=None):
            got.append(index)

    sink = clips.InOrder(Record(), [2, 3, 5, 6])
    for index in (3, 5, 2, 6):
        sink.write(index, torch.zeros(1))
        if index == 3:
            assert got == []
    assert got == [2, 3, 5, 6]


def test_rows_per_pair_counts_timesteps_or_bisection_nodes():
    quarter = (Fraction(1, 4),)
    assert schedule.needed_nodes(quarter) == [Fraction(1, 2), Fraction(1, 4)]
    assert schedule.rows_per_pair({0: quarter, 1: (Fraction(1, 3), Fraction(2, 3))}, None) == 2
    assert schedule.rows_per_pair({0: quarter}, 2) == 2 and schedule.rows_per_pair({}, None) == 1
    # the schedule's own count, over its whole plan: x4 direct makes 3 rows a pair, by bisection 3 nodes (1/2, 1/4, 3/4)
    assert schedule.make_schedule(Request(multiplier=4), 5, True).rows_per_pair() == 3
    assert schedule.make_schedule(Request(multiplier=8), 5, False).rows_per_pair() == 7
    assert schedule.make_schedule(Request(multiplier=2), 1, True).rows_per_pair() == 1


def test_a_source_that_ends_early_is_an_io_error_not_a_usage_error():
    from emavfi.media import FramesIOError
    from emavfi.settings import SettingsError
    from emavfi.source_window import FrameBuffer

    class Short:
        size, channels = (4, 4), 3

        def frames(self, start=0):
            yield from (torch.zeros(3, 4, 4) for _ in range(start, 2))

    with pytest.raises(FramesIOError, match="ended after 2 frames while 5 were counted") as caught:
        FrameBuffer(Short(), 5).get(0, 4)
    assert not isinstance(caught.value, SettingsError)


def test_the_engine_makes_only_the_batches_a_task_needs():
    calls: list[int] = []

    def counting(frames, first, second, timesteps, aux):
        calls.append(len(first))
        return _blend(frames, first, second, timesteps, aux)

    frames = torch.rand(9, 3, 8, 8, generator=torch.Generator().manual_seed(0))
    sched = Schedule(schedule.multiplier_plan(9, 2), None, None, None)
    fake = type("Fake", (), {"config": TINY})()
    whole = torch.empty(17, 3, 8, 8)
    engine.run(sched, clips.TensorFrames(frames), runner.Runner(fake, chunk=3, backend=_blend),
               clips.TensorSink(whole), engine.GivenCuts([]))
    part = torch.zeros(17, 3, 8, 8)
    report = engine.run(sched, clips.TensorFrames(frames), runner.Runner(fake, chunk=3, backend=counting),
                        clips.TensorSink(part), engine.GivenCuts([]), todo=[7, 8])
    assert calls == [3] and report.written == 2  # pair 3 only, computed with its whole batch (pairs 3..5)
    assert torch.equal(part[7:9], whole[7:9]) and not part[:7].any() and not part[9:].any()
