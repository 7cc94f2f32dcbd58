"""Long clips with VideoHelperSuite's Meta Batch Manager: the Interpolate and Retime nodes called batch by batch
(in-process, ComfyUI stand-ins) with a stand-in manager that has the attributes and prompt protocol VHS's
`BatchManager` has; test_comfy_e2e.py runs the real VideoHelperSuite (../shared/comfyui/custom_nodes)."""
from __future__ import annotations

import pytest
import torch

from test_nodes import _reset, env, wrap  # noqa: F401 (fixtures)

MANAGER_ID = "50"


class StandinManager:
    """What VHS's Meta Batch Manager hands the nodes linked to it (videohelpersuite/nodes.py, BatchManager)."""

    def __init__(self, frames_per_batch: int, unique_id: str = MANAGER_ID):
        self.frames_per_batch = frames_per_batch
        self.inputs: dict = {}
        self.outputs: dict = {}
        self.unique_id = unique_id
        self.has_closed_inputs = False
        self.total_frames = float("inf")


def photo_clip(n: int = 30, cut_at: int = 12) -> torch.Tensor:
    """[n,40,56,3]: a pan over skimage's astronaut, then (from frame cut_at) a pan over coffee: a scene cut."""
    cut_dataset = pytest.importorskip("benchmarks.cut_dataset", reason="the clip is rendered from skimage photos")
    shots = []
    for name, count, dx in (("astronaut", cut_at, 2.0), ("coffee", n - cut_at, -3.0)):
        photo = cut_dataset.photos()[name]
        view = cut_dataset.View(photo.shape[-1] / 2, photo.shape[-2] / 2, 1.3)
        shots.append(cut_dataset.render(photo, cut_dataset.track(view, count, dx=dx))[:, :, 16:56, 24:80])
    return torch.cat(shots).movedim(1, -1).contiguous()


def in_batches(pack, node_id: str, images: torch.Tensor, per_batch: int, manager=None, node_uid: str = "7",
               mask: torch.Tensor | None = None, **kwargs) -> list[dict]:
    """Run a node as a meta batch does: one queued prompt per batch, requeue counted in the manager's inputs."""
    manager = manager or StandinManager(per_batch)
    node = pack.node(node_id)
    outs = []
    for batch, start in enumerate(range(0, images.shape[0], per_batch)):
        manager.has_closed_inputs = start + per_batch >= images.shape[0]  # Load Video sets it on the last batch
        prompt = {manager.unique_id: {"class_type": "VHS_BatchManager",
                                      "inputs": {"frames_per_batch": per_batch, "requeue": batch}}}
        extra = {} if mask is None else {"mask": mask[start:start + per_batch]}
        outs.append(node.run(images[start:start + per_batch], meta_batch=manager, prompt=prompt, unique_id=node_uid,
                             **extra, **kwargs))
    return outs


def joined(outs: list[dict], index: int = 0) -> torch.Tensor:
    return torch.cat([o["result"][index] for o in outs])


def store(pack):
    return pack.state.carries


def test_three_batches_of_ten_x2_equal_one_whole_run(env):
    pack, _ = env
    images, model = photo_clip(30, cut_at=12), wrap(pack)
    node = pack.node("EMAVFI_Interpolate")
    whole = node.run(images, model, multiplier=2, mode="direct", fps=24.0, unique_id="7")
    outs = in_batches(pack, "EMAVFI_Interpolate", images, 10, model=model, multiplier=2, mode="direct", fps=24.0)
    frames = joined(outs)
    assert frames.shape[0] == whole["result"][0].shape[0] == 59
    assert torch.equal(frames, whole["result"][0])  # bit for bit: nothing missing or repeated at the borders
    assert [o["result"][1] for o in outs] == [48.0] * 3  # fps unchanged
    cuts = [c for o in outs for c in o["ui"]["emavfi"][0]["cuts"]]
    assert cuts == whole["ui"]["emavfi"][0]["cuts"] == [11]  # the cut 2 frames past the first border
    firsts = [o["ui"]["emavfi"][0]["first_output"] for o in outs]
    assert firsts[0] == 0 and all(0 < a < b for a, b in zip(firsts[1:], firsts[2:]))
    assert [o["ui"]["emavfi"][0]["last_batch"] for o in outs] == [False, False, True]
    assert len(store(pack)) == 0  # the carry is dropped when the meta batch ends


@pytest.mark.parametrize("n, per_batch", [(31, 10), (23, 8)])
def test_uneven_batches_and_a_one_frame_last_batch(env, n, per_batch):
    pack, _ = env
    images, model = photo_clip(n, cut_at=9), wrap(pack)
    whole = pack.node("EMAVFI_Interpolate").run(images, model, multiplier=3, mode="direct")
    outs = in_batches(pack, "EMAVFI_Interpolate", images, per_batch, model=model, multiplier=3, mode="direct")
    assert torch.equal(joined(outs), whole["result"][0]) and joined(outs).shape[0] == 3 * (n - 1) + 1


@pytest.mark.filterwarnings("ignore:.*t = 0.5 only")
@pytest.mark.parametrize("arbitrary_t", [True, False])
def test_retime_in_batches_continues_the_global_plan(env, arbitrary_t):
    pack, _ = env
    images, model = photo_clip(30, cut_at=17), wrap(pack, arbitrary_t=arbitrary_t)
    kwargs = dict(source_fps=24.0, target_fps=60.0)
    whole = pack.node("EMAVFI_Retime").run(images, model, **kwargs)
    outs = in_batches(pack, "EMAVFI_Retime", images, 10, model=model, **kwargs)
    assert joined(outs).shape[0] == whole["result"][0].shape[0] == 29 * 60 // 24 + 1
    assert torch.equal(joined(outs), whole["result"][0])
    assert all(o["result"][1] == 60.0 for o in outs) and "meta batch 3 (last)" in outs[-1]["result"][2]


def test_mask_rides_along_across_batches(env):
    pack, _ = env
    images, model = photo_clip(20), wrap(pack)
    mask = images[..., 0].clone()
    node = pack.node("EMAVFI_Interpolate")
    whole = node.run(images, model, multiplier=2, mode="direct", mask=mask)
    outs = in_batches(pack, "EMAVFI_Interpolate", images, 10, mask=mask, model=model, multiplier=2, mode="direct")
    assert torch.equal(joined(outs, 2), whole["result"][2]) and torch.equal(joined(outs), whole["result"][0])


def test_two_nodes_and_two_managers_carry_separately_and_a_new_run_starts_fresh(env):
    pack, _ = env
    images, model = photo_clip(20), wrap(pack)
    node = pack.node("EMAVFI_Interpolate")
    whole = node.run(images, model, multiplier=2, mode="direct")["result"][0]
    first = StandinManager(10)
    # an abandoned meta batch (cancelled after its first batch) leaves a carry; queuing again starts over
    in_batches(pack, "EMAVFI_Interpolate", images[:10], 10, manager=StandinManager(10), model=model, multiplier=2,
               mode="direct", node_uid="8")
    assert len(store(pack)) == 0  # that one ended (has_closed_inputs on its only batch)
    outs_a = in_batches(pack, "EMAVFI_Interpolate", images, 10, manager=first, model=model, multiplier=2, mode="direct")
    outs_b = in_batches(pack, "EMAVFI_Interpolate", images, 10, manager=StandinManager(10, "51"), model=model,
                        multiplier=2, mode="direct")
    assert torch.equal(joined(outs_a), whole) and torch.equal(joined(outs_b), whole)


def test_store_is_bounded(env):
    pack, _ = env
    images, model = photo_clip(20), wrap(pack)
    node = pack.node("EMAVFI_Interpolate")
    limit = pack.nodes.metabatch.MAX_OPEN
    for i in range(limit + 3):  # first batches only: meta batches that never end
        manager = StandinManager(10, unique_id=str(100 + i))
        prompt = {manager.unique_id: {"inputs": {"requeue": 0}}}
        node.run(images[:10], model, multiplier=2, mode="direct", meta_batch=manager, prompt=prompt, unique_id="7")
    assert len(store(pack)) == limit
    for key in list(store(pack)._items):
        store(pack).take(key)


def test_errors_are_one_line_and_early(env):
    pack, _ = env
    images, model = photo_clip(20), wrap(pack)
    node = pack.node("EMAVFI_Interpolate")

    def run(batch: int, frames: torch.Tensor, per_batch: int = 10, **kwargs):
        manager = StandinManager(per_batch, unique_id="60")
        prompt = {"60": {"inputs": {"requeue": batch}}}
        return node.run(frames, model, multiplier=2, mode="direct", meta_batch=manager, prompt=prompt,
                        unique_id="9", **kwargs)

    with pytest.raises(ValueError, match="batch 1 of a meta batch arrived, but the frames carried .* are gone"):
        run(1, images[10:])
    run(0, images[:10])
    with pytest.raises(ValueError, match="frames changed size within a meta batch"):
        run(1, images[10:, :32])
    with pytest.raises(ValueError, match="frames_per_batch is 4; .* at least 8"):
        run(0, images[:4], per_batch=4)
    with pytest.raises(ValueError, match="dedupe .* does not work with a Meta Batch Manager"):
        run(0, images[:10], dedupe=True)
    run(0, images[:4], per_batch=4, scene_cut_threshold=0.0)  # without cut detection, small batches work
    with pytest.raises(ValueError) as info:  # and the message does not blame cut detection when it is off
        run(0, images[:1], per_batch=1, scene_cut_threshold=0.0)
    assert str(info.value).endswith("frames_per_batch is 1; it must be at least 2 (a batch needs a pair of frames)")
