"""emavfi.vapoursynth with protect= (a GRAY mask clip) and protect_overlays=True: the CLI's frames (with overlays
found too), bad masks.

Runs where VapourSynth is installed (PyPI's wheel needs Python >= 3.12; CI: .ci/vapoursynth.sh)."""
from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest

vs = pytest.importorskip("vapoursynth", reason="VapourSynth is not installed in this interpreter (its PyPI wheel "
                         "needs Python >= 3.12; CI runs these tests through .ci/vapoursynth.sh)")
oiio = pytest.importorskip("OpenImageIO", reason="the CLI comparison writes EXR frames (requirements-cli.txt)")
from test_vapoursynth import clip_of, every, frames, run_cli, weights  # noqa: E402,F401 (fixtures)

from emavfi.settings import SettingsError  # noqa: E402
from emavfi.vapoursynth import interpolate  # noqa: E402

pytestmark = pytest.mark.usefixtures("one_thread")
core = vs.core


def _mask() -> np.ndarray:
    mask = np.zeros((32, 48), np.uint8)
    mask[4:20, 6:30] = 255
    return mask


def mask_clip(mask: np.ndarray, length: int = 1, fmt: int = vs.GRAY8) -> vs.VideoNode:
    """A GRAY clip showing mask [H,W] in every frame, or mask [N,H,W] (one per frame)."""
    blank = core.std.BlankClip(format=fmt, width=mask.shape[-1], height=mask.shape[-2], length=length)

    def fill(n: int, f: vs.VideoFrame) -> vs.VideoFrame:
        out = f.copy()
        np.copyto(np.asarray(out[0]), mask if mask.ndim == 2 else mask[n])
        return out

    return core.std.ModifyFrame(blank, blank, fill)


def test_protect_gives_the_clis_frames_and_holds_the_nearest_frame(tmp_path, frames, weights):
    frames = frames[:5]
    assert oiio.ImageBuf(np.ascontiguousarray(_mask()[:, :, None])).write(str(tmp_path / "mask.png"))
    held = every(interpolate(clip_of(frames), 2, weights=weights, device="cpu",
                             protect=mask_clip(_mask(), len(frames)), protect_feather=0))
    plain = every(interpolate(clip_of(frames), 2, weights=weights, device="cpu"))
    cli = run_cli(tmp_path, frames, weights, "-m", "2", "--protect", str(tmp_path / "mask.png"),
                  "--protect-feather", "0")
    assert held.shape == cli.shape and (held - cli).abs().max() < 1e-6
    inside = _mask() > 0
    for k in range(1, held.shape[0], 2):  # t = 1/2: the earlier frame inside, the unprotected run outside
        assert np.array_equal(held[k][:, inside].numpy(), frames[k // 2][:, inside].numpy())
        assert np.array_equal(held[k][:, ~inside].numpy(), plain[k][:, ~inside].numpy())


def test_protect_overlays_runs_and_one_mask_holds_for_all(frames, weights):
    out = interpolate(clip_of(frames), 2, weights=weights, device="cpu", protect_overlays=True,
                      protect=mask_clip(np.zeros((32, 48), np.uint8)))
    assert out.num_frames == 2 * len(frames) - 1 and out.fps == Fraction(48)
    plain = interpolate(clip_of(frames), 2, weights=weights, device="cpu")
    assert np.array_equal(every(out).numpy(), every(plain).numpy())  # 9 frames: too short to call anything steady


def test_overlays_found_and_masks_per_frame_give_the_clis_frames(tmp_path, weights):
    """A burned-in timecode over a pan (30 frames) with a mask per frame: protect_overlays=True and protect= give
    the frames of --protect-overlays --protect MASKS, and the timecode found changes them."""
    pytest.importorskip("PIL", reason="the timecode is drawn with Pillow")
    from benchmarks import overlay_dataset

    frames, _ = overlay_dataset.timecode(overlay_dataset.pan("astronaut", 2.5, n=30))
    frames = frames[..., :48, :112].contiguous()
    masks = np.zeros((30, 48, 112), np.uint8)
    for i in range(30):
        masks[i, 26 + i // 4:34 + i // 4, 40:100] = 255  # a band below the timecode, lower every fourth frame
    (tmp_path / "masks").mkdir()
    for i, mask in enumerate(masks):
        assert oiio.ImageBuf(np.ascontiguousarray(mask[:, :, None])).write(str(tmp_path / "masks" / f"m.{i:04d}.png"))
    held = every(interpolate(clip_of(frames), 2, weights=weights, device="cpu", protect_overlays=True,
                             protect=mask_clip(masks, 30)))
    masks_only = every(interpolate(clip_of(frames), 2, weights=weights, device="cpu", protect=mask_clip(masks, 30)))
    cli = run_cli(tmp_path, frames, weights, "-m", "2", "--protect-overlays", "--protect", str(tmp_path / "masks"))
    assert held.shape == cli.shape == (59, 3, 48, 112) and (held - cli).abs().max() < 1e-6
    assert not np.array_equal(held.numpy(), masks_only.numpy())  # the overlays found were held


@pytest.mark.parametrize("mask, fragment", [
    (lambda: clip_of(__import__("torch").zeros(1, 3, 32, 48)), "protect must be a GRAY clip"),
    (lambda: mask_clip(np.zeros((16, 24), np.uint8)), "the protect clip is 24x16 with 1 frames; the clip is 48x32"),
    (lambda: mask_clip(np.zeros((32, 48), np.uint8), 3), "with 3 frames; the clip is 48x32 with 9")])
def test_bad_protect_clips_are_one_line_errors(frames, weights, mask, fragment):
    with pytest.raises(SettingsError, match=fragment) as error:
        interpolate(clip_of(frames), 2, weights=weights, device="cpu", protect=mask())
    assert "\n" not in str(error.value)
