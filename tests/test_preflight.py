"""Every check before any work: frame headers, channels going to a video, Ray workers, timestamps, memory;
and phone videos' display rotation."""
from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

from emavfi import cli


oiio = pytest.importorskip("OpenImageIO", reason="the CLI's frame I/O needs OpenImageIO (requirements-cli.txt)")
data = pytest.importorskip("skimage.data", reason="real photographs come from scikit-image")
pytestmark = pytest.mark.usefixtures("one_thread")


def run(*argv) -> int:
    return cli.main([str(a) for a in argv])


def last_line(capsys) -> str:
    return capsys.readouterr().err.strip().splitlines()[-1]


def views(n: int, h: int = 32, w: int = 48) -> list[np.ndarray]:
    photo = data.astronaut().astype(np.float32) / 255
    return [np.ascontiguousarray(photo[80 + 3 * i:80 + 3 * i + h, 160:160 + w]) for i in range(n)]


def png_clip(folder: Path, frames: list[np.ndarray]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for i, frame in enumerate(frames):
        assert oiio.ImageBuf(np.rint(frame * 255).astype(np.uint8)).write(str(folder / f"sh.{1001 + i}.png"))
    return folder


def encode(path: Path, frames: list[np.ndarray], *, rotation: int = 0, pts: list[int] | None = None) -> Path:
    """An H.264 video made with PyAV (a phone's display rotation, or timestamps, as asked)."""
    av = pytest.importorskip("av", reason="video tests need PyAV")
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=24)
        stream.height, stream.width = frames[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        if rotation:
            stream.set_display_rotation(rotation)
        for k, image in enumerate(frames):
            frame = av.VideoFrame.from_ndarray(np.rint(image * 255).astype(np.uint8), format="rgb24")
            if pts is not None:
                frame.pts, frame.time_base = pts[k], Fraction(1, 24)
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return path


@pytest.mark.parametrize("command", ["interpolate", "plan"])
def test_a_frame_of_another_size_at_the_end_is_found_before_any_work(tmp_path, tiny_cli, capsys, command):
    frames = views(12)
    frames[-1] = views(1, 40, 48)[0]  # the last frame was rendered at another size
    clip = png_clip(tmp_path / "in", frames)
    extra = ["-o", tmp_path / "out", "--device", "cpu"] if command == "interpolate" else []
    assert run(command, clip, "-m", "2", *extra) == 1
    message = last_line(capsys)
    assert "sh.1012.png is 48x40 3 channels 8-bit, but sh.1001.png is 48x32 3 channels 8-bit" in message
    assert tiny_cli == [] and not (tmp_path / "out").exists()


def test_extra_channels_going_to_a_video_are_left_out_with_one_line(tmp_path, tiny_cli, capsys):
    pytest.importorskip("av", reason="video tests need PyAV")
    folder = tmp_path / "in"
    folder.mkdir()
    for i, rgb in enumerate(views(3)):  # an EXR with alpha, depth and a matte, as a comp renders it
        pixels = np.concatenate([rgb, np.ones_like(rgb[..., :1]), rgb[..., :1] * 10, rgb[..., 1:2]], axis=2)
        spec = oiio.ImageSpec(48, 32, 6, oiio.HALF)
        spec.channelnames = ("R", "G", "B", "A", "Z", "matte")
        spec.alpha_channel = 3
        out = oiio.ImageOutput.create(str(folder / f"comp.{i}.exr"))
        assert out.open(str(folder / f"comp.{i}.exr"), spec) and out.write_image(pixels) and out.close()
    video = tmp_path / "comp.mov"
    assert run("interpolate", folder, "-o", video, "-m", "2", "--source-fps", "24", "--device", "cpu") == 0
    err = capsys.readouterr().err
    assert "note: channels Z, matte left out: a video holds RGB and alpha only" in err
    from emavfi.media.video import VideoSource

    assert VideoSource(video).channels == 4  # ProRes 4444 keeps the alpha
    assert run("interpolate", folder, "-o", tmp_path / "c.mp4", "-m", "2", "--source-fps", "24",
               "--codec", "h264") == 2
    assert "the input has alpha and h264 has none" in last_line(capsys)


def test_ray_workers_beyond_this_machine_are_refused_at_once(tmp_path, tiny_cli, capsys):
    clip = png_clip(tmp_path / "in", views(3))
    assert run("interpolate", clip, "-o", tmp_path / "out", "--ray", "--ray-workers", "1000") == 2
    assert "--ray-workers 1000 is more than this machine's" in last_line(capsys)
    assert not (tmp_path / "out").exists()


def test_a_duplicate_timestamp_names_the_file_and_frame(tmp_path, tiny_cli, capsys):
    video = encode(tmp_path / "dup.mkv", views(5), pts=[0, 1, 2, 2, 3])
    code = run("interpolate", video, "-o", tmp_path / "out", "--fps", "48", "--device", "cpu")
    message = last_line(capsys)
    if code == 0:
        pytest.skip("this FFmpeg build repaired the duplicate timestamp while muxing")
    assert code == 1 and "dup.mkv: frame 3 has the same timestamp as frame 2" in message


def _pair_need(scale: float = 1.0, chunk: int = 1, h: int = 32, w: int = 48) -> int:
    """The estimate the memory check compares with free memory, for a pair of the test clip."""
    from emavfi import get_config, memory

    return memory.pair_memory(get_config("ours_small_t"), h, w, 1, scale=scale).batch(chunk)


def test_memory_is_checked_before_a_run(tmp_path, tiny_cli, capsys, monkeypatch):
    import emavfi.memory

    clip = png_clip(tmp_path / "in", views(3))
    free = _pair_need(chunk=1)  # one pair fits, four do not
    monkeypatch.setattr(emavfi.memory, "free_memory_bytes", lambda device: free)
    assert run("interpolate", clip, "-o", tmp_path / "out", "--device", "cpu", "--chunk", "4") == 1
    message = last_line(capsys)
    assert message.startswith("emavfi: error: a 48x32 frame pair batch of 4 needs ~") and " is available: try " in message
    assert f"--chunk 1 (now 4) (~{round(free / (1 << 20))} MiB)" in message and "--scale" not in message
    assert tiny_cli == [] and not (tmp_path / "out").exists()


@pytest.mark.parametrize("room", ["scale 0.5 fits", "no scale fits", "all fits"])
def test_the_memory_line_names_scale_only_where_it_helps(tmp_path, tiny_cli, capsys, monkeypatch, room):
    import emavfi.memory

    free = {"scale 0.5 fits": _pair_need(0.5), "no scale fits": _pair_need(0.25) - 1,
            "all fits": _pair_need(1.0)}[room]
    monkeypatch.setattr(emavfi.memory, "free_memory_bytes", lambda device: free)
    code = run("interpolate", png_clip(tmp_path / "in", views(3)), "-o", tmp_path / "out", "--device", "cpu")
    message = last_line(capsys)
    if room == "all fits":
        assert code == 0 and message.startswith("wrote 5 frames")
        return
    assert code == 1 and tiny_cli == [] and message.startswith("emavfi: error: a 48x32 frame pair needs ~")
    if room == "scale 0.5 fits":
        assert message.endswith(f"is available: try --scale 0.5 (~{round(_pair_need(0.5) / (1 << 20))} MiB)")
    else:  # even the smallest flow scale does not fit: it is not offered as a fix
        assert "try" not in message and message.endswith(
            "; even with --scale 0.25 it needs ~%d MiB: use a device with more memory, or a smaller input"
            % round(_pair_need(0.25) / (1 << 20)))


def test_the_memory_estimate_falls_with_scale_and_a_4k_line_names_what_fits():
    import torch

    from emavfi import get_config, preflight
    from emavfi.settings import RunOptions

    needs = [_pair_need(scale, h=2160, w=3840) for scale in (1.0, 0.5, 0.25)]
    assert needs[0] > needs[1] > needs[2]
    line = preflight.memory_refusal(get_config("ours_small_t"), 2160, 3840, 1, torch.float32, RunOptions(tta=True),
                                    needs[0], "cpu")
    assert line.startswith("a 3840x2160 frame pair with TTA needs ~") and line.endswith(
        f"is available: try no --tta (~{needs[0] / (1 << 30):.1f} GiB)")
    assert preflight.memory_refusal(get_config("ours_small_t"), 2160, 3840, 1, torch.float32, RunOptions(),
                                    needs[0], "cpu") is None
    both = preflight.memory_refusal(get_config("ours_small_t"), 2160, 3840, 1, torch.float32, RunOptions(tta=True),
                                    needs[2], "cpu")  # neither fix alone is enough, the two together are
    assert both.endswith(f"is available: try no --tta and --scale 0.25 (~{needs[2] / (1 << 30):.1f} GiB)")


def test_m_on_a_variable_rate_video_warns(tmp_path, tiny_cli, capsys):
    video = encode(tmp_path / "vfr.mkv", views(5), pts=[0, 1, 2, 6, 7])
    assert run("interpolate", video, "-o", tmp_path / "out", "-m", "2", "--device", "cpu") == 0
    assert "vfr.mkv has a variable frame rate" in capsys.readouterr().err


def test_a_phone_video_keeps_its_rotation_or_is_turned_upright(tmp_path, tiny_cli, capsys):
    av = pytest.importorskip("av", reason="video tests need PyAV")
    video = encode(tmp_path / "phone.mp4", views(3, 32, 64), rotation=90)
    assert run("interpolate", video, "-o", tmp_path / "kept.mp4", "-m", "2", "--device", "cpu") == 0
    err = capsys.readouterr().err
    assert "rotation carried to the output video's display matrix" in err  # said before the run, and in the summary:
    summary = err.strip().splitlines()[-1]
    assert summary.startswith("wrote 5 frames to") and summary.endswith(
        "; rotation 90\N{DEGREE SIGN} carried as the video's display matrix, pixels kept as stored (add "
        "--apply-rotation to rotate them upright)"), summary
    assert run("interpolate", video, "-o", tmp_path / "kept", "-m", "2", "--device", "cpu") == 0
    assert "rotation 90\N{DEGREE SIGN} carried as the frames' Orientation attribute" in last_line(capsys)
    with av.open(str(tmp_path / "kept.mp4")) as container:
        frame = next(container.decode(video=0))
        assert (frame.width, frame.height, frame.rotation) == (64, 32, 90)
    assert run("interpolate", video, "-o", tmp_path / "upright", "-m", "2", "--device", "cpu",
               "--apply-rotation") == 0
    err = capsys.readouterr().err
    assert "pixels are rotated upright" in err
    assert err.strip().splitlines()[-1].endswith("; pixels rotated 90\N{DEGREE SIGN} upright (--apply-rotation)")
    first = oiio.ImageBuf(str(tmp_path / "upright" / "frame_000000.png")).get_pixels(oiio.FLOAT)
    with av.open(str(video)) as container:
        stored = next(container.decode(video=0)).to_ndarray(format="rgb24").astype(np.float32) / 255
    assert first.shape == (64, 32, 3)
    assert np.abs(first - np.rot90(stored)).max() <= 1 / 255 + 1e-6  # turned counter-clockwise, as players do


@pytest.mark.parametrize("target", ["notes.txt/shot.mp4", "notes.txt/frames"])
def test_an_output_that_cannot_be_written_is_refused_before_any_work(tmp_path, tiny_cli, capsys, target):
    clip = png_clip(tmp_path / "in", views(3))
    (tmp_path / "notes.txt").write_text("a file where a folder should be")
    assert run("interpolate", clip, "-o", tmp_path / target, "--source-fps", "24", "--device", "cpu") == 2
    message = last_line(capsys)
    assert message.startswith("emavfi: error: cannot write") and "notes.txt is a file, not a folder" in message
    assert tiny_cli == []  # nothing loaded, nothing computed
