"""A seeded evaluation set of burned-in overlays on real photographs (scikit-image), with true masks.

Every clip is rendered at run time (nothing is committed). The picture is a virtual camera over a photograph
(benchmarks/cut_dataset.py: pans, zooms), sometimes with a moving object composited on it (a cut-out of
another photograph walking across, or a small fast ball), plus sensor noise. Overlays are composited on top
the way real ones are, after the camera noise and before a light codec-like noise:

- burned-in timecode: an opaque dark box whose digits change every frame (the box does not);
- a two-line subtitle, white with a black outline, that appears, stays 2 s (48 frames) and disappears;
- a semi-transparent channel logo (a rounded plate at 35 % and letters at 75 % white);
- a game HUD: an opaque panel with a health bar that moves every frame.

A clip's true mask (`Clip.truth`, [N,H,W] bool) is where an overlay covers at least half a pixel. Hard
negatives carry no overlay (an all-false mask): sensor noise on a still shot, fades, slow pans, still shots,
a small object crossing a still background, walking on a still background, cuts and a zoom.

    from benchmarks.overlay_dataset import make_clips
    for clip in make_clips():      # 26 clips of 72 frames, 144x256, in a few seconds
        clip.frames, clip.truth, clip.kind, clip.category

A held-out set (`make_held_out`, another seed) uses other photographs and speeds, and brings two clips to 1080p
by scaling (48 frames each, about 1.2 GB in float32): it was not looked at while the detector was tuned.
"""
from __future__ import annotations

import functools
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from benchmarks.cut_dataset import View, photos, render, track

HEIGHT, WIDTH, LENGTH = 144, 256, 72
SIZE = (HEIGHT, WIDTH)
SENSOR_NOISE, CODEC_NOISE = 0.008, 0.002
SUBTITLE_FRAMES = (12, 60)  # shown from frame 12 up to (not including) 60: 2 s at 24 fps
OPAQUE = ("timecode", "subtitle", "hud", "several")
KINDS = (*OPAQUE, "logo")
NEGATIVE = "negative"


@dataclass
class Clip:
    name: str
    kind: str  # an overlay kind (KINDS) or NEGATIVE
    category: str  # the picture under it: pan, zoom, walking, fast object ...
    frames: torch.Tensor  # [N,3,H,W] float32 in 0..1
    truth: torch.Tensor  # [N,H,W] bool: covered by an overlay


# ----------------------------------------------------------------------------------------------- overlays

@functools.lru_cache(maxsize=4)
def _font(size: int):
    from PIL import ImageFont

    return ImageFont.load_default(size=size)


def _text_layer(lines: list[tuple[int, int, str]], size: int, stroke: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """(fill coverage, fill+outline coverage), each [H,W] float 0..1, of text lines (x, y, text) drawn by PIL."""
    from PIL import Image, ImageDraw

    layers = []
    for width in (0, stroke):
        image = Image.new("L", (WIDTH, HEIGHT))
        draw = ImageDraw.Draw(image)
        for x, y, text in lines:
            draw.text((x, y), text, font=_font(size), fill=255, stroke_width=width, stroke_fill=255)
        layers.append(torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(HEIGHT, WIDTH) / 255)
    return layers[0], layers[1]


def _box(y0: int, y1: int, x0: int, x1: int) -> torch.Tensor:
    box = torch.zeros(HEIGHT, WIDTH)
    box[y0:y1, x0:x1] = 1
    return box


def _over(frames: torch.Tensor, colour: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """frames [N,3,H,W] under colour [N or 1,3,H,W] with coverage alpha [N or 1,1,H,W]."""
    return frames * (1 - alpha) + colour * alpha


def timecode(frames: torch.Tensor, at: tuple[int, int] = (6, 6), start: int = 86400 * 24) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames with a burned-in SMPTE timecode box at `at` (y, x), its coverage [N,H,W]): 24 fps, one per frame."""
    y, x = at
    box = _box(y, y + 18, x, x + 92)
    out, truth = frames.clone(), torch.zeros(frames.shape[0], HEIGHT, WIDTH, dtype=torch.bool)
    for k in range(frames.shape[0]):
        frame = start + k
        text = f"{frame // 86400:02d}:{frame // 1440 % 60:02d}:{frame // 24 % 60:02d}:{frame % 24:02d}"
        digits, _ = _text_layer([(x + 6, y + 1, text)], 14)
        colour = (0.08 + 0.84 * digits)[None].expand(3, -1, -1)
        out[k] = _over(frames[k], colour, box[None])
        truth[k] = box > 0.5
    return out, truth


SUBTITLE = ("- Where were you last night?", "- Out by the river, watching boats.")


def subtitle(frames: torch.Tensor, shown: tuple[int, int] = SUBTITLE_FRAMES) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames with a two-line white subtitle with a black outline in frames shown[0]..shown[1]-1, coverage)."""
    fill, outline = _text_layer([(22, HEIGHT - 38, SUBTITLE[0]), (22, HEIGHT - 21, SUBTITLE[1])], 14, stroke=2)
    colour = fill.clamp(0, 1)[None].expand(3, -1, -1) * 0.95
    alpha = outline[None]
    out, truth = frames.clone(), torch.zeros(frames.shape[0], HEIGHT, WIDTH, dtype=torch.bool)
    out[shown[0]:shown[1]] = _over(frames[shown[0]:shown[1]], colour, alpha)
    truth[shown[0]:shown[1]] = outline > 0.5
    return out, truth


def logo(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames with a semi-transparent channel logo top right, its shape [N,H,W]): plate 35 %, letters 75 %."""
    from PIL import Image, ImageDraw

    image = Image.new("L", (WIDTH, HEIGHT))
    ImageDraw.Draw(image).rounded_rectangle((WIDTH - 62, 8, WIDTH - 10, 34), radius=7, fill=255)
    plate = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8).view(HEIGHT, WIDTH) / 255
    letters, _ = _text_layer([(WIDTH - 56, 12, "TV24")], 16)
    alpha = torch.maximum(0.35 * plate, 0.75 * letters)
    out = _over(frames, torch.ones(1, 3, HEIGHT, WIDTH), alpha[None, None])
    return out, (plate > 0.5)[None].expand(frames.shape[0], -1, -1).clone()


def hud(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(frames with a game HUD panel bottom left whose health bar changes every frame, its coverage)."""
    y0, x0 = HEIGHT - 30, 6
    panel = _box(y0, y0 + 24, x0, x0 + 84)
    frame_line = panel - _box(y0 + 1, y0 + 23, x0 + 1, x0 + 83)
    label, _ = _text_layer([(x0 + 4, y0 + 5, "HP")], 12)
    out, truth = frames.clone(), torch.zeros(frames.shape[0], HEIGHT, WIDTH, dtype=torch.bool)
    for k in range(frames.shape[0]):
        health = 0.55 + 0.4 * torch.sin(torch.tensor(k * 0.37)).item()
        bar = _box(y0 + 8, y0 + 16, x0 + 26, x0 + 26 + round(52 * health))
        slot = _box(y0 + 7, y0 + 17, x0 + 25, x0 + 79)
        colour = torch.stack([0.12 + 0.8 * bar + 0.8 * label + 0.6 * frame_line,
                              0.12 + 0.15 * bar + 0.8 * label + 0.6 * frame_line,
                              0.14 + 0.1 * bar + 0.8 * label + 0.6 * frame_line]).clamp(0, 1)
        colour = colour * (1 - 0.5 * (slot - bar).clamp(0, 1))  # the empty part of the bar is darker
        out[k] = _over(frames[k], colour, panel[None])
        truth[k] = panel > 0.5
    return out, truth


OVERLAYS: dict[str, Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]]] = {
    "timecode": timecode, "subtitle": subtitle, "logo": logo, "hud": hud}


def several(frames: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Timecode, subtitle and HUD together (the logo is scored on its own)."""
    truth = torch.zeros(frames.shape[0], HEIGHT, WIDTH, dtype=torch.bool)
    for add in (timecode, subtitle, hud):
        frames, covered = add(frames)
        truth |= covered
    return frames, truth


OVERLAYS["several"] = several


# ----------------------------------------------------------------------------------------------- pictures

def _centre(photo: torch.Tensor, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
    return photo.shape[-1] * fx, photo.shape[-2] * fy


def pan(name: str, dx: float, dy: float = 0.0, scale: float = 1.2, n: int = LENGTH) -> torch.Tensor:
    """n frames panning over a photograph by (dx, dy) output px per frame, centred on the photo."""
    photo = photos()[name]
    cx, cy = _centre(photo)
    travel = scale * (n - 1) / 2
    return render(photo, track(View(cx - dx * travel, cy - dy * travel, scale), n, dx=dx, dy=dy), SIZE)


def zoom(name: str, factor: float, n: int = LENGTH) -> torch.Tensor:
    """n frames zooming into (factor < 1) or out of a photograph's centre."""
    photo = photos()[name]
    return render(photo, track(View(*_centre(photo), 1.6 if factor < 1 else 0.5), n, zoom=factor), SIZE)


def still(name: str, n: int = LENGTH) -> torch.Tensor:
    photo = photos()[name]
    return render(photo, [View(*_centre(photo), 1.2)] * n, SIZE)


def _sprite(name: str, height: int, width: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(colour [3,h,w], soft elliptical coverage [1,h,w]) of a cut-out from a photograph."""
    photo = photos()[name]
    cut = F.interpolate(photo[None], size=(height, width), mode="area")[0]
    ys, xs = torch.meshgrid(torch.linspace(-1, 1, height), torch.linspace(-1, 1, width), indexing="ij")
    inside = ((xs ** 2 + ys ** 2) < 0.9).float()[None, None]
    return cut, F.avg_pool2d(inside, 3, 1, 1)[0]


def moving_object(frames: torch.Tensor, name: str, size: tuple[int, int], start: tuple[float, float],
                  step: tuple[float, float], bob: float = 0.0) -> torch.Tensor:
    """frames with a cut-out of photo `name` moving from start (y, x) by step px per frame (walking: bob px)."""
    colour, alpha = _sprite(name, *size)
    out = frames.clone()
    for k in range(frames.shape[0]):
        y = round(start[0] + step[0] * k + bob * abs(((k % 8) - 4) / 4))
        x = round(start[1] + step[1] * k)
        y0, x0 = max(y, 0), max(x, 0)
        y1, x1 = min(y + size[0], HEIGHT), min(x + size[1], WIDTH)
        if y1 <= y0 or x1 <= x0:
            continue
        a = alpha[:, y0 - y:y1 - y, x0 - x:x1 - x]
        out[k, :, y0:y1, x0:x1] = _over(out[k, :, y0:y1, x0:x1], colour[:, y0 - y:y1 - y, x0 - x:x1 - x], a)
    return out


def fast_ball(frames: torch.Tensor) -> torch.Tensor:
    """A small bright ball (8 px) crossing the frame at 11 px per frame, twice."""
    k = torch.arange(frames.shape[0]).float()
    ys, xs = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    cx = (k * 11) % (WIDTH + 40) - 20
    cy = 30 + 0.9 * ((k * 11) % (WIDTH + 40))
    d = ((xs[None] - cx.view(-1, 1, 1)) ** 2 + (ys[None] - cy.view(-1, 1, 1)) ** 2).sqrt()
    alpha = (4.5 - d).clamp(0, 1)[:, None]
    return _over(frames, torch.tensor([0.95, 0.85, 0.2]).view(1, 3, 1, 1), alpha)


def fade(frames: torch.Tensor, start: int, length: int, out: bool = True) -> torch.Tensor:
    """frames fading to black (out) or from black over `length` frames from `start`."""
    k = torch.arange(frames.shape[0]).float()
    level = ((k - start) / length).clamp(0, 1)
    level = 1 - level if out else level
    return frames * level.view(-1, 1, 1, 1)


# ----------------------------------------------------------------------------------------------- the set

def _noise(frames: torch.Tensor, generator: torch.Generator, sigma: float) -> torch.Tensor:
    n, _, h, w = frames.shape
    luma, chroma = torch.randn(n, 1, h, w, generator=generator), torch.randn(n, 3, h, w, generator=generator)
    return (frames + sigma * (luma + 0.2 * chroma)).clamp(0, 1)


def _pictures() -> list[tuple[str, str, Callable[[], torch.Tensor]]]:
    """(name, category, picture) under the overlays: camera moves and composited movement."""
    return [
        ("pan astronaut", "pan", lambda: pan("astronaut", 2.0)),
        ("pan coffee", "pan", lambda: pan("coffee", -1.5, 0.5)),
        ("fast pan rocket", "fast pan", lambda: pan("rocket", 6.0, 0.0, 1.5)),
        ("zoom chelsea", "zoom", lambda: zoom("chelsea", 0.985)),
        ("walking over pan stereo_motorcycle", "walking",
         lambda: moving_object(pan("stereo_motorcycle", 1.0), "chelsea", (70, 44), (50, -40), (0, 3.5), bob=4)),
        ("fast ball over pan immunohistochemistry", "fast object",
         lambda: fast_ball(pan("immunohistochemistry", 1.5))),
    ]


def _negatives() -> list[tuple[str, Callable[[], torch.Tensor], float]]:
    """(name, picture, sensor noise) of the hard negatives: nothing is an overlay."""
    def cut(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return torch.cat([a[:LENGTH // 2], b[LENGTH // 2:]])

    return [
        ("still camera noise 0.02", lambda: still("camera"), 0.02),
        ("still coffee", lambda: still("coffee"), SENSOR_NOISE),
        ("still brick low light", lambda: still("brick") * 0.2, 0.012),
        ("slow pan astronaut 0.25 px", lambda: pan("astronaut", 0.25), SENSOR_NOISE),
        ("slow pan coffee 0.5 px", lambda: pan("coffee", 0.5, 0.2), SENSOR_NOISE),
        ("fade out still chelsea", lambda: fade(still("chelsea"), 20, 30), SENSOR_NOISE),
        ("fade in pan rocket", lambda: fade(pan("rocket", 1.0), 10, 24, out=False), SENSOR_NOISE),
        ("fast ball over still astronaut", lambda: fast_ball(still("astronaut")), SENSOR_NOISE),
        ("walking over still coffee", lambda: moving_object(still("coffee"), "chelsea", (70, 44), (50, -40),
                                                            (0, 3.5), bob=4), SENSOR_NOISE),
        ("cut still to still", lambda: cut(still("astronaut"), still("chelsea")), SENSOR_NOISE),
        ("cut pan to still", lambda: cut(pan("rocket", 2.0), still("coffee")), SENSOR_NOISE),
        ("zoom astronaut", lambda: zoom("astronaut", 0.985), SENSOR_NOISE),
    ]


class _Collector:
    def __init__(self, seed: int, names: Collection[str] | None):
        self.seed, self.names, self.clips = seed, None if names is None else set(names), []

    def add(self, name: str, kind: str, category: str, picture: Callable[[], torch.Tensor],
            overlay: Callable[[torch.Tensor], tuple[torch.Tensor, torch.Tensor]] | None,
            sigma: float = SENSOR_NOISE) -> None:
        if self.names is not None and name not in self.names:
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        frames = _noise(picture(), generator, sigma)
        if overlay is None:
            truth = torch.zeros(frames.shape[0], HEIGHT, WIDTH, dtype=torch.bool)
        else:
            frames, truth = overlay(frames)
        self.clips.append(Clip(name, kind, category, _noise(frames, generator, CODEC_NOISE), truth))


def make_clips(seed: int = 0, names: Collection[str] | None = None) -> list[Clip]:
    """The evaluation set (or the clips named), identical for a given seed whatever the selection."""
    collector = _Collector(seed, names)
    pictures = _pictures()
    # each overlay kind over several pictures (rotated so every picture carries several kinds)
    for offset, kind in enumerate(KINDS):
        for name, category, picture in pictures[offset % 2::2][:3] if kind != "several" else pictures[:2]:
            collector.add(f"{kind} over {name}", kind, category, picture, OVERLAYS[kind])
    for name, picture, sigma in _negatives():
        collector.add(name, NEGATIVE, "negative", picture, None, sigma)
    if names is not None and len(collector.clips) != len(set(names)):
        unknown = set(names) - {clip.name for clip in collector.clips}
        raise ValueError(f"no clips named {sorted(unknown)}")
    return collector.clips


# ----------------------------------------------------------------------------------------------- held out

HD = (1080, 1920)
HD_LENGTH = 48


def _held_out_negatives() -> list[tuple[str, Callable[[], torch.Tensor], float]]:
    return [
        ("slow pan grass 0.6 px", lambda: pan("grass", 0.6, -0.1), SENSOR_NOISE),
        ("zoom out coins", lambda: zoom("coins", 1.012), SENSOR_NOISE),
        ("fade in still clock", lambda: fade(still("clock"), 8, 30, out=False), SENSOR_NOISE),
        ("walking over still camera", lambda: moving_object(still("camera"), "coffee", (60, 50), (60, 270),
                                                            (-0.5, -4.0), bob=3), SENSOR_NOISE),
    ]


def _upscaled(clip: Clip, size: tuple[int, int], length: int) -> Clip:
    """clip's first `length` frames brought to size (bilinear frames, nearest truth), as a plate would be."""
    frames = torch.cat([F.interpolate(clip.frames[k:k + 8], size=size, mode="bilinear", align_corners=False)
                        for k in range(0, length, 8)])[:length].clamp_(0, 1)
    truth = F.interpolate(clip.truth[:length, None].float(), size=size, mode="nearest")[:, 0] > 0.5
    return Clip(f"{clip.name} {size[1]}x{size[0]}", clip.kind, clip.category, frames, truth)


def make_held_out(seed: int = 1, names: Collection[str] | None = None) -> list[Clip]:
    """The held-out set (or the clips named): other photographs, speeds and a seed, two clips at 1080p."""
    collector = _Collector(seed, None)
    pictures = {
        "pan coins": lambda: pan("coins", 2.5, 0.3), "pan grass": lambda: pan("grass", -1.2, 0.4),
        "zoom camera": lambda: zoom("camera", 0.988), "pan clock": lambda: pan("clock", 0.9, 0.0),
        "walking over pan hubble_deep_field": lambda: moving_object(pan("hubble_deep_field", 1.8), "astronaut",
                                                                    (64, 40), (60, 260), (0, -3.0), bob=3),
    }
    wanted = [("timecode", "pan coins"), ("timecode", "zoom camera"), ("subtitle", "pan grass"),
              ("subtitle", "walking over pan hubble_deep_field"), ("hud", "pan clock"), ("logo", "pan coins"),
              ("logo", "zoom camera"), ("logo", "pan clock"), ("several", "pan grass")]
    for kind, picture in wanted:
        collector.add(f"{kind} over {picture}", kind, picture.split(" over ")[0].split(" ")[0], pictures[picture],
                      OVERLAYS[kind])
    for name, picture, sigma in _held_out_negatives():
        collector.add(name, NEGATIVE, "negative", picture, None, sigma)
    clips = collector.clips
    by_name = {clip.name: clip for clip in clips}
    clips.append(_upscaled(by_name["timecode over pan coins"], HD, HD_LENGTH))
    clips.append(_upscaled(by_name["zoom out coins"], HD, HD_LENGTH))
    if names is not None:
        unknown = set(names) - {clip.name for clip in clips}
        if unknown:
            raise ValueError(f"no held-out clips named {sorted(unknown)}")
        clips = [clip for clip in clips if clip.name in set(names)]
    return clips
