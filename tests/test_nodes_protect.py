"""Held regions in the Interpolate and Retime nodes (protect_mask, protect_feather, protect_overlays, the
overlay_mask output) on real photographs: the library's and the command line's frames, the nearest source frame
inside the mask, nothing changed by an empty mask, a composited timecode box found, and one-line errors."""
from __future__ import annotations

from fractions import Fraction

import pytest
import torch

from test_nodes import _reset, env, wrap  # noqa: F401 (fixtures)
from test_nodes_metabatch import StandinManager, in_batches, joined, photo_clip

pytestmark = pytest.mark.usefixtures("one_thread")
INTERPOLATE, RETIME = "EMAVFI_Interpolate", "EMAVFI_Retime"


def pan(n: int = 5, dx: float = 3.0, name: str = "astronaut") -> torch.Tensor:
    """[n,40,56,3]: a pan over a scikit-image photograph (ComfyUI IMAGE layout)."""
    cut_dataset = pytest.importorskip("benchmarks.cut_dataset", reason="the clip is rendered from skimage photos")
    photo = cut_dataset.photos()[name]
    view = cut_dataset.View(photo.shape[-1] / 2, photo.shape[-2] / 2, 1.3)
    frames = cut_dataset.render(photo, cut_dataset.track(view, n, dx=dx))[:, :, 16:56, 24:80]
    return frames.movedim(1, -1).contiguous()


def box_mask(count: int = 1, h: int = 40, w: int = 56) -> torch.Tensor:
    mask = torch.zeros(count, h, w)
    mask[:, 6:22, 8:36] = 1.0
    return mask


def run(pack, node_id: str, images: torch.Tensor, model, **kwargs) -> tuple:
    if node_id == INTERPOLATE:
        kwargs = {"multiplier": 2, "mode": "direct", **kwargs}
    else:
        kwargs = {"source_fps": 24.0, "target_fps": 60.0, **kwargs}
    return tuple(pack.node(node_id).run(images, model, unique_id="5", **kwargs)["result"])


def request(lib, node_id: str):
    if node_id == INTERPOLATE:
        return lib.schedule.Request(multiplier=2, source_fps=Fraction(24))
    return lib.schedule.Request(target_fps=Fraction(60), source_fps=Fraction(24))


@pytest.mark.parametrize("node_id", [INTERPOLATE, RETIME])
def test_a_mask_gives_the_library_frames_and_holds_the_nearest_source_frame(env, node_id):
    pack, _ = env
    lib, model, images = pack.emavfi, wrap(pack), pan(5)
    mask = box_mask()
    out = run(pack, node_id, images, model, fps=24.0, protect_mask=mask, protect_feather=0) if node_id == INTERPOLATE \
        else run(pack, node_id, images, model, protect_mask=mask, protect_feather=0)
    frames = images.movedim(-1, 1)
    plan = lib.schedule.make_schedule(request(lib, node_id), 5, True)
    library = lib.clips.render_clip(model.network, frames, plan, cut_threshold=lib.cuts.DEFAULT_CUT_THRESHOLD,
                                    protect=lib.protect.held_regions(5, mask, feather_px=0)).frames.movedim(1, -1)
    assert torch.equal(out[0], library)
    plain = run(pack, node_id, images, model)[0]
    inside = mask[0] > 0
    inbetweens = [(k, o) for k, o in enumerate(plan.plan) if o.t != 0]
    assert len(inbetweens) >= 4
    for k, o in inbetweens:
        nearest = images[o.source + int(o.t > Fraction(1, 2))]  # the earlier frame on a tie
        assert torch.equal(out[0][k][inside], nearest[inside]), o
        assert torch.equal(out[0][k][~inside], plain[k][~inside]), o
        assert not torch.equal(plain[k][inside], nearest[inside])  # the network's frame differs there
    assert out[-1].shape == (5, 40, 56) and not out[-1].any()  # protect_overlays off: zeros per input frame


@pytest.mark.parametrize("node_id", [INTERPOLATE, RETIME])
def test_an_empty_mask_changes_nothing(env, node_id):
    pack, _ = env
    model, images = wrap(pack), pan(4)
    plain = run(pack, node_id, images, model)[0]
    assert torch.equal(run(pack, node_id, images, model, protect_mask=torch.zeros(40, 56))[0], plain)
    assert torch.equal(run(pack, node_id, images, model, protect_mask=torch.zeros(4, 40, 56), protect_feather=9)[0],
                       plain)


def test_the_retime_node_gives_the_command_lines_frames(env, tmp_path, monkeypatch):
    """24 -> 60 fps with a mask per input frame (feathered): the same frames in ComfyUI and on the command line."""
    oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO")
    import numpy as np
    from emavfi import cli, loading

    pack, _ = env
    model = wrap(pack)
    source = (pan(5) * 255).round().to(torch.uint8)
    masks = box_mask(5)
    masks[2:, 20:34, 30:50] = 1.0  # another region from frame 2 on
    folder, mask_folder = tmp_path / "in", tmp_path / "masks"
    folder.mkdir(), mask_folder.mkdir()
    for i, (frame, mask) in enumerate(zip(source, masks)):
        assert oiio.ImageBuf(frame.numpy()).write(str(folder / f"f.{i}.png"))
        assert oiio.ImageBuf((mask * 255).to(torch.uint8).numpy()).write(str(mask_folder / f"m.{i}.png"))
    images = source.float() / 255
    node_out = run(pack, RETIME, images, model, protect_mask=masks, protect_feather=3)[0]
    monkeypatch.setattr(loading, "load_model_for", lambda job, state=None, progress=None: model.network)
    assert cli.main(["interpolate", str(folder), "-o", str(tmp_path / "out"), "--source-fps", "24", "--fps", "60",
                     "--device", "cpu", "--protect", str(mask_folder), "--protect-feather", "3"]) == 0
    files = sorted((tmp_path / "out").glob("*.png"))
    cli_out = np.stack([oiio.ImageBuf(str(p)).get_pixels(oiio.UINT8) for p in files])
    assert cli_out.shape[0] == node_out.shape[0] == 11
    assert np.array_equal(cli_out, np.rint(node_out.numpy() * 255).astype(np.uint8))


@pytest.mark.parametrize("node_id", [INTERPOLATE, RETIME])
def test_with_dedupe_the_mask_indexes_input_frames(env, node_id):
    """Held frames dropped: the same frame count as without a mask, and each drawing held with its own input
    frame's mask, as the library's held timeline does it."""
    pack, _ = env
    lib, model = pack.emavfi, wrap(pack)
    drawings = pan(4)
    images = drawings.repeat_interleave(2, 0)  # on twos: 8 input frames, 4 drawings
    masks = torch.zeros(8, 40, 56)
    for k in range(8):
        masks[k, 4 * k:4 * k + 8, 10:40] = 1.0  # a different band in every input frame
    out = run(pack, node_id, images, model, dedupe=True, protect_mask=masks, protect_feather=1)
    plain = run(pack, node_id, images, model, dedupe=True)
    line = lib.dedupe.held_timeline(images.movedim(-1, 1), 8, request(lib, node_id), True, threshold=None,
                                    cut_threshold=lib.cuts.DEFAULT_CUT_THRESHOLD)
    assert line.kept == [0, 2, 4, 6, 7]
    held = lib.protect.held_regions(len(line.kept), masks, feather_px=1, index=line.kept.__getitem__)
    library = lib.clips.render_clip(model.network, images.movedim(-1, 1)[line.kept], line.schedule,
                                    cut_threshold=lib.cuts.DEFAULT_CUT_THRESHOLD, protect=held).frames
    assert out[0].shape == plain[0].shape and torch.equal(out[0], library.movedim(1, -1))
    assert not torch.equal(out[0], plain[0])


def test_a_meta_batch_with_a_mask_equals_one_whole_run(env):
    pack, _ = env
    images, model = photo_clip(30, cut_at=12), wrap(pack)
    mask = box_mask()
    whole = run(pack, INTERPOLATE, images, model, protect_mask=mask)
    outs = in_batches(pack, INTERPOLATE, images, 10, model=model, multiplier=2, mode="direct", protect_mask=mask)
    assert torch.equal(joined(outs), whole[0]) and joined(outs).shape[0] == 59
    assert not torch.equal(whole[0], run(pack, INTERPOLATE, images, model)[0])
    assert joined(outs, 3).shape == (30, 40, 56) and not joined(outs, 3).any()


def test_protect_overlays_finds_a_burned_in_timecode(env):
    """A timecode box over a pan: the overlay_mask output covers the box (per input frame, nothing far outside it),
    and the frames are the library's with the detected overlays held."""
    pytest.importorskip("PIL", reason="the timecode is drawn with Pillow")
    from benchmarks import overlay_dataset

    pack, _ = env
    lib, model = pack.emavfi, wrap(pack)
    frames, truth = overlay_dataset.timecode(overlay_dataset.pan("astronaut", 2.5, n=30))
    frames, truth = frames[..., :48, :112].contiguous(), truth[..., :48, :112]
    images = frames.movedim(1, -1).contiguous()
    out = run(pack, RETIME, images, model, target_fps=30.0, protect_overlays=True)
    found = out[-1] > 0.5
    assert found.shape == truth.shape
    recall = float((found & truth).sum() / truth.sum())
    precision = float((found & truth).sum() / found.sum().clamp(min=1))
    assert recall >= 0.9 and precision >= 0.8, (precision, recall)
    assert torch.equal(found, lib.overlays.detect_overlays(frames))
    plan = lib.schedule.make_schedule(lib.schedule.Request(target_fps=Fraction(30), source_fps=Fraction(24)), 30, True)
    held = lib.protect.held_regions(30, overlays=True)
    library = lib.clips.render_clip(model.network, frames, plan, cut_threshold=lib.cuts.DEFAULT_CUT_THRESHOLD,
                                    protect=held).frames
    assert torch.equal(out[0], library.movedim(1, -1))


def timecode_clip() -> tuple[torch.Tensor, torch.Tensor]:
    """([70,48,112,3] IMAGE, [70,48,112] bool truth): a burned-in timecode box over a pan of skimage's astronaut,
    then (from frame 40, a scene cut) over a pan of coffee the other way."""
    pytest.importorskip("PIL", reason="the timecode is drawn with Pillow")
    from benchmarks import overlay_dataset

    shots = torch.cat([overlay_dataset.pan("astronaut", 2.5, n=40), overlay_dataset.pan("coffee", -3.0, n=30)])
    frames, truth = overlay_dataset.timecode(shots)
    return frames[..., :48, :112].movedim(1, -1).contiguous(), truth[..., :48, :112]


def batch_by_batch(pack, node_id: str, images: torch.Tensor, per_batch: int, model, **kwargs) -> tuple[list, list]:
    """in_batches, also noting the frames the node carries after each batch but the last."""
    manager, node, outs, carried = StandinManager(per_batch), pack.node(node_id), [], []
    for batch, start in enumerate(range(0, images.shape[0], per_batch)):
        manager.has_closed_inputs = start + per_batch >= images.shape[0]
        prompt = {manager.unique_id: {"inputs": {"requeue": batch}}}
        outs.append(node.run(images[start:start + per_batch], model, meta_batch=manager, prompt=prompt,
                             unique_id="7", **kwargs))
        carried += [(c.frames.shape[0], c.chunk) for c in pack.state.carries._items.values()]
    return outs, carried


@pytest.mark.parametrize("node_id, per_batch, with_mask, target", [
    (INTERPOLATE, 32, False, None), (RETIME, 45, True, 60.0),
    # 24 -> 5 fps: no output reads some pairs, so their frames are left undecided, some behind the pending pair
    (RETIME, 33, False, 5.0)])
def test_a_meta_batch_with_protect_overlays_equals_one_whole_run(env, node_id, per_batch, with_mask, target):
    """Batches of 32 (32, 32, 6), 45 (45, 25) or 33 frames join into the whole run's frames and overlay_mask, bit
    for bit, with or without a protect_mask too, and when fewer frames come out than go in; the node carries at
    most 2 x overlays.CONTEXT + 1 + chunk frames."""
    pack, _ = env
    model, (images, truth) = wrap(pack), timecode_clip()
    held = torch.zeros(1, 48, 112)
    held[:, 30:44, 60:100] = 1.0  # a region of the picture below the timecode
    extra = {"protect_overlays": True, **({"protect_mask": held} if with_mask else {})}
    kind = {"multiplier": 2, "mode": "direct"} if node_id == INTERPOLATE else {"source_fps": 24.0,
                                                                                  "target_fps": target}
    whole = run(pack, node_id, images, model, **kind, **extra)
    outs, carried = batch_by_batch(pack, node_id, images, per_batch, model, **kind, **extra)
    assert torch.equal(joined(outs), whole[0]) and joined(outs).shape[0] == whole[0].shape[0] > 10
    assert torch.equal(joined(outs, 3), whole[-1]) and whole[-1].shape == (70, 48, 112)
    context = pack.emavfi.overlays.CONTEXT
    stops = [0] + [per_batch * (k + 1) - context for k in range(len(outs) - 1)] + [70]
    # each batch returns the masks of the frames whose decision window it completes
    assert [o["result"][-1].shape[0] for o in outs] == [b - a for a, b in zip(stops, stops[1:])]
    found = whole[-1] > 0.5
    for shot in (slice(0, 40), slice(40, 70)):  # found in both shots, not beyond the box
        hit = (found[shot] & truth[shot]).sum()
        assert hit >= 0.9 * truth[shot].sum() and hit >= 0.8 * found[shot].sum()
    # what a pair's decisions read behind (CONTEXT + 1) and ahead (CONTEXT), and a device batch of pairs
    assert carried and all(frames <= 2 * context + 1 + chunk <= per_batch + context for frames, chunk in carried)
    assert len(pack.state.carries) == 0
    plain = run(pack, node_id, images, model, **kind, **{k: v for k, v in extra.items() if k != "protect_overlays"})
    assert not torch.equal(whole[0], plain[0])  # the overlays were held


def test_overlays_and_masks_give_the_command_lines_frames_and_overlay_masks(env, tmp_path, monkeypatch):
    """x2 over a burned-in timecode (two shots, a cut) with a protect mask per input frame: the node's frames and
    overlay_mask output are the command line's frames and its --protect-overlays-out masks."""
    oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO")
    import numpy as np
    from emavfi import cli, loading

    pack, _ = env
    model, (images, _) = wrap(pack), timecode_clip()
    source = (images * 255).round().to(torch.uint8)
    masks = torch.zeros(70, 48, 112)
    for i in range(70):
        masks[i, 26 + i // 8:34 + i // 8, 40:100] = 1.0  # a band below the timecode, lower every eighth frame
    folder, mask_folder, found_folder = tmp_path / "in", tmp_path / "masks", tmp_path / "found"
    folder.mkdir(), mask_folder.mkdir()
    for i, (frame, mask) in enumerate(zip(source, masks)):
        assert oiio.ImageBuf(frame.numpy()).write(str(folder / f"f.{i}.png"))
        assert oiio.ImageBuf((mask * 255).to(torch.uint8).numpy()).write(str(mask_folder / f"m.{i}.png"))
    node_out = run(pack, INTERPOLATE, source.float() / 255, model, protect_mask=masks, protect_overlays=True)
    monkeypatch.setattr(loading, "load_model_for", lambda job, state=None, progress=None: model.network)
    assert cli.main(["interpolate", str(folder), "-o", str(tmp_path / "out"), "-m", "2", "--device", "cpu",
                     "--protect", str(mask_folder), "--protect-overlays", "--protect-overlays-out",
                     str(found_folder)]) == 0
    cli_out = np.stack([oiio.ImageBuf(str(p)).get_pixels(oiio.UINT8) for p in sorted((tmp_path / "out").glob("*.png"))])
    assert cli_out.shape[0] == node_out[0].shape[0] == 139
    assert np.array_equal(cli_out, np.rint(node_out[0].numpy() * 255).astype(np.uint8))
    found = np.stack([oiio.ImageBuf(str(found_folder / f"overlays.{i:06d}.png")).get_pixels(oiio.UINT8)[..., 0] > 0
                      for i in range(70)])
    assert np.array_equal(found, node_out[-1].numpy() > 0.5) and found.any(axis=(1, 2)).all()


@pytest.mark.parametrize("node_id", [INTERPOLATE, RETIME])
def test_bad_protect_input_is_a_one_line_error(env, node_id):
    pack, _ = env
    name = "EMA-VFI Interpolate" if node_id == INTERPOLATE else "EMA-VFI Retime"
    model, images = wrap(pack), pan(4)
    cases = [(dict(protect_mask=torch.zeros(1, 32, 48)),
              f"{name}: the protect mask is 48x32 but the frames are 56x40: give a mask of the frames' size"),
             (dict(protect_mask=torch.zeros(3, 40, 56)),
              f"{name}: give one protect mask per input frame (4) or one for all; got 3"),
             (dict(protect_feather=-1), f"{name}: protect feather must be a whole number of px from 0 to 64")]
    for kwargs, message in cases:
        with pytest.raises(ValueError) as info:
            run(pack, node_id, images, model, **kwargs)
        assert str(info.value).startswith(message) and "\n" not in str(info.value), str(info.value)
    with pytest.raises(ValueError) as info:
        in_batches(pack, node_id, images, 4, model=model, protect_overlays=True,
                   **({"multiplier": 2, "mode": "direct"} if node_id == INTERPOLATE
                      else {"source_fps": 24.0, "target_fps": 60.0}))
    context = pack.emavfi.overlays.CONTEXT
    assert str(info.value) == (f"{name}: the Meta Batch Manager's frames_per_batch is 4; with protect_overlays on "
                               f"(each frame's overlays are decided from {context} frames either side) it must be at "
                               f"least {context + 2} (or turn protect_overlays off)")


@pytest.mark.parametrize("node_id", [INTERPOLATE, RETIME])
def test_protect_inputs_and_output_come_after_the_others(env, node_id):
    """Saved workflows keep working: widget values and links go by position, so the new inputs and the MASK
    output are appended after every input and output a workflow saved before them has."""
    from test_nodes import declared

    pack, _ = env
    now = declared(pack.classes[node_id])
    assert list(now["optional"])[-4:] == ["meta_batch", "protect_mask", "protect_feather", "protect_overlays"]
    assert now["optional"]["protect_feather"][1]["default"] == pack.emavfi.settings.DEFAULT_PROTECT_FEATHER
    assert now["optional"]["protect_feather"][1]["max"] == pack.emavfi.settings.MAX_PROTECT_FEATHER
    assert now["outputs"][-1][:2] == ["MASK", "overlay_mask"] and len(now["outputs"]) == 4
