"""A seeded scene-cut evaluation set built from the real photographs shipped with scikit-image.

Every clip is rendered at run time (nothing is committed): a virtual camera looks at a photograph through an
affine view (centre, scale, rotation), rendered at 2x and area-reduced so motion is anti-aliased, plus sensor
noise. Clips carry their true cut pairs (pair i = frames i, i+1) and the pairs to ignore (inside dissolves).

    from benchmarks.cut_dataset import make_clips
    for clip in make_clips():          # 63 clips of 32 frames, 96x128, in a few seconds
        clip.frames, clip.cuts, clip.ignore, clip.category

Categories: cuts ("same-scene cut", "cross-scene cut", "cut from black", "cut after first frame",
"two cuts"), hard negatives ("pan", "zoom", "rotation", "exposure step", "occluder", "static noise") and
"dissolve" (its inner pairs are neither cuts nor false cuts).
"""
from __future__ import annotations

import functools
import math
import zlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F

CUT_CATEGORIES = ("same-scene cut", "cross-scene cut", "cut from black", "cut after first frame", "two cuts")
NEGATIVE_CATEGORIES = ("pan", "zoom", "rotation", "exposure step", "occluder", "static noise")
DISSOLVE = "dissolve"
HEIGHT, WIDTH, LENGTH = 96, 128, 32
CUT_AT = 15  # pair index of single cuts: frame 16 starts the new shot (PySceneDetect's 15-frame minimum is met)
NOISE = 0.008


@dataclass(frozen=True)
class View:
    """Where the virtual camera looks: centre (photo px), photo px per output px, rotation (degrees), mirrored."""
    cx: float
    cy: float
    scale: float = 2.0
    angle: float = 0.0
    mirror: bool = False

    def moved(self, dx: float = 0.0, dy: float = 0.0, zoom: float = 1.0, turn: float = 0.0) -> "View":
        """The view after one frame of motion (dx, dy in output px; zoom > 1 shows more of the photo)."""
        return View(self.cx + dx * self.scale, self.cy + dy * self.scale, self.scale * zoom, self.angle + turn,
                    self.mirror)


@dataclass
class Clip:
    name: str
    category: str
    frames: torch.Tensor  # [N,3,H,W] float32 in 0..1
    cuts: tuple[int, ...] = ()
    ignore: tuple[int, ...] = field(default_factory=tuple)


@functools.lru_cache(maxsize=1)
def photos() -> dict[str, torch.Tensor]:
    """Real photographs from skimage.data as [3,H,W] float32 0..1 (grey ones repeated to RGB)."""
    import skimage.data as data

    images = {}
    for name in ("astronaut", "coffee", "chelsea", "rocket", "camera", "coins", "immunohistochemistry",
                 "hubble_deep_field", "stereo_motorcycle", "clock", "brick", "grass"):
        image = getattr(data, name)()
        image = image[0] if isinstance(image, tuple) else image
        tensor = torch.from_numpy(image.copy()).float() / 255
        tensor = tensor[None].expand(3, -1, -1) if tensor.dim() == 2 else tensor[..., :3].permute(2, 0, 1)
        images[name] = tensor.contiguous()
    return images


def render(photo: torch.Tensor, views: list[View], size: tuple[int, int] = (HEIGHT, WIDTH)) -> torch.Tensor:
    """[len(views),3,H,W] frames of photo [3,Hp,Wp] seen through each view (reflected beyond its border)."""
    h, w = size
    hp, wp = photo.shape[-2:]
    thetas = []
    for view in views:
        c, s = math.cos(math.radians(view.angle)), math.sin(math.radians(view.angle))
        half_w, half_h = view.scale * w / 2 * (-1 if view.mirror else 1), view.scale * h / 2
        thetas.append([[half_w * c / (wp / 2), -half_h * s / (wp / 2), view.cx / (wp / 2) - 1],
                       [half_w * s / (hp / 2), half_h * c / (hp / 2), view.cy / (hp / 2) - 1]])
    theta = torch.tensor(thetas, dtype=torch.float32)
    grid = F.affine_grid(theta, [len(views), 3, 2 * h, 2 * w], align_corners=False)
    source = photo[None].expand(len(views), -1, -1, -1)
    big = F.grid_sample(source, grid, mode="bilinear", padding_mode="reflection", align_corners=False)
    return F.avg_pool2d(big, 2)


def track(start: View, n: int, **motion: float) -> list[View]:
    """n views starting at start, moving by the same step every frame (see View.moved)."""
    views = [start]
    for _ in range(n - 1):
        views.append(views[-1].moved(**motion))
    return views


def _noisy(frames: torch.Tensor, generator: torch.Generator, sigma: float = NOISE) -> torch.Tensor:
    """frames plus sensor noise as a codec leaves it: mostly in luma (chroma noise is smoothed away)."""
    n, _, h, w = frames.shape
    luma = torch.randn(n, 1, h, w, generator=generator)
    chroma = torch.randn(n, 3, h, w, generator=generator)
    return (frames + sigma * (luma + 0.2 * chroma)).clamp(0, 1)


class _Collector:
    """Builds the clips wanted (all, or those named), each with its own generator so subsets match the set."""

    def __init__(self, seed: int, names: Collection[str] | None):
        self.seed, self.names, self.clips = seed, None if names is None else set(names), []

    def add(self, name: str, category: str, frames: Callable[[torch.Generator], torch.Tensor],
            cuts: tuple[int, ...] = (), ignore: tuple[int, ...] = (), sigma: float = NOISE) -> None:
        """Render frames(generator) (noise-free, 0..1), add noise and keep the clip, if it is wanted."""
        if self.names is not None and name not in self.names:
            return
        generator = torch.Generator().manual_seed(self.seed * 1_000_003 + zlib.crc32(name.encode()))
        self.clips.append(Clip(name, category, _noisy(frames(generator), generator, sigma), cuts, ignore))


def _centre(photo: torch.Tensor, fx: float = 0.5, fy: float = 0.5) -> tuple[float, float]:
    return photo.shape[-1] * fx, photo.shape[-2] * fy


def _hand(n: int, start: int, steps: int, reach: float) -> torch.Tensor:
    """[n,1,H,W] coverage 0..1 of a dark palm-with-fingers blob sweeping in from the right over steps frames."""
    ys, xs = torch.meshgrid(torch.arange(HEIGHT).float(), torch.arange(WIDTH).float(), indexing="ij")
    masks = torch.zeros(n, 1, HEIGHT, WIDTH)
    for k in range(n):
        progress = min(max(k - start, 0) / steps, 1.0)
        if k < start:
            continue
        left = WIDTH * (1 - reach * progress)  # the fingertips' x
        palm = ((xs - (left + 0.55 * WIDTH)) / (0.45 * WIDTH)) ** 2 + ((ys - 0.6 * HEIGHT) / (0.5 * HEIGHT)) ** 2
        blob = (palm < 1).float()
        for finger, y in enumerate((0.22, 0.42, 0.62, 0.8)):
            length = (0.3 + 0.05 * finger) * WIDTH
            shape = ((xs - (left + length / 2)) / (length / 2)) ** 2 + ((ys - y * HEIGHT) / (0.07 * HEIGHT)) ** 2
            blob = torch.maximum(blob, (shape < 1).float())
        masks[k, 0] = F.avg_pool2d(blob[None, None], 5, 1, 2)[0, 0]  # soft, slightly out-of-focus edge
    return masks


def _occluded(frames: torch.Tensor, mask: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    skin = torch.tensor([0.16, 0.11, 0.09]).view(1, 3, 1, 1)
    shade = skin * (0.8 + 0.4 * torch.rand(1, 1, HEIGHT, WIDTH, generator=generator))
    return frames * (1 - mask) + shade * mask


def _two_shots(photo_a: torch.Tensor, a: list[View], photo_b: torch.Tensor, b: list[View]) -> torch.Tensor:
    return torch.cat([render(photo_a, a), render(photo_b, b)])


def _same_scene_clips(p: dict[str, torch.Tensor], add: Callable[..., None]) -> None:
    # Another part of the same photo (left/right, top/bottom): the palette hardly changes.
    same = [("astronaut", "halves", (0.27, 0.5), (0.73, 0.5), 1.9), ("coffee", "halves", (0.25, 0.5), (0.75, 0.5), 1.6),
            ("chelsea", "halves", (0.3, 0.5), (0.72, 0.55), 1.1), ("rocket", "halves", (0.25, 0.55), (0.75, 0.5), 1.6),
            ("camera", "halves", (0.3, 0.45), (0.72, 0.55), 1.9), ("coins", "corners", (0.3, 0.3), (0.7, 0.72), 1.1),
            ("stereo_motorcycle", "halves", (0.28, 0.5), (0.72, 0.5), 1.7),
            ("immunohistochemistry", "corners", (0.27, 0.3), (0.7, 0.72), 1.9),
            ("clock", "halves", (0.3, 0.5), (0.7, 0.5), 1.2),
            ("astronaut", "top/bottom", (0.5, 0.25), (0.35, 0.75), 1.4)]
    for name, label, (ax, ay), (bx, by), scale in same:
        photo = p[name]
        a = track(View(*_centre(photo, ax, ay), scale), CUT_AT + 1, dx=1.0)
        b = track(View(*_centre(photo, bx, by), scale), LENGTH - CUT_AT - 1, dx=-1.0, dy=0.5)
        add(f"same {name} {label}", "same-scene cut", lambda g, photo=photo, a=a, b=b: render(photo, a + b), (CUT_AT,))
    # Reverse shot: the other side of the same set, mirrored, so the palette and layout statistics barely move.
    for name, fx in (("astronaut", 0.4), ("coffee", 0.45), ("stereo_motorcycle", 0.4), ("chelsea", 0.45),
                     ("rocket", 0.5)):
        photo = p[name]
        a = track(View(*_centre(photo, fx, 0.5), 1.5), CUT_AT + 1, dx=1.0)
        b = track(View(*_centre(photo, fx + 0.15, 0.5), 1.5, mirror=True), LENGTH - CUT_AT - 1, dx=1.0)
        add(f"reverse shot {name}", "same-scene cut", lambda g, photo=photo, a=a, b=b: render(photo, a + b), (CUT_AT,))
    # Reframe: a third of a frame over and a little closer; most of the picture is still in view.
    for name in ("coffee", "chelsea", "immunohistochemistry"):
        photo = p[name]
        a = track(View(*_centre(photo, 0.45, 0.5), 1.6), CUT_AT + 1, dx=0.5)
        b = track(View(a[-1].cx + 0.35 * 1.6 * WIDTH, a[-1].cy, 1.3), LENGTH - CUT_AT - 1, dx=0.5)
        add(f"reframe {name}", "same-scene cut", lambda g, photo=photo, a=a, b=b: render(photo, a + b), (CUT_AT,))
    # Punch-in: the same centre, 2.5x closer.
    for name, scale in (("astronaut", 2.2), ("stereo_motorcycle", 2.0), ("coffee", 1.8)):
        photo = p[name]
        a = track(View(*_centre(photo), scale), CUT_AT + 1, dx=0.5)
        b = track(View(*_centre(photo, 0.52, 0.5), scale / 2.5), LENGTH - CUT_AT - 1, dx=0.5)
        add(f"punch-in {name}", "same-scene cut", lambda g, photo=photo, a=a, b=b: render(photo, a + b), (CUT_AT,))


def _other_cut_clips(p: dict[str, torch.Tensor], add: Callable[..., None]) -> None:
    for one, two in (("astronaut", "coffee"), ("chelsea", "rocket"), ("camera", "coins"), ("coffee", "chelsea"),
                     ("hubble_deep_field", "stereo_motorcycle"), ("grass", "brick")):
        a = track(View(*_centre(p[one]), 1.8), CUT_AT + 1, dx=2.0)
        b = track(View(*_centre(p[two]), 1.8), LENGTH - CUT_AT - 1, dx=-2.0)
        add(f"{one} to {two}", "cross-scene cut", lambda g, x=p[one], a=a, y=p[two], b=b: _two_shots(x, a, y, b),
            (CUT_AT,))
    for name in ("astronaut", "rocket", "camera"):
        views = track(View(*_centre(p[name]), 1.8), LENGTH, dx=1.0)
        add(f"black then {name}", "cut from black",
            lambda g, photo=p[name], views=views: torch.cat([torch.zeros(1, 3, HEIGHT, WIDTH),
                                                             render(photo, views[1:])]),
            (0,))
    for one, two in (("chelsea", "coffee"), ("astronaut", "astronaut"), ("coins", "clock")):
        first = [View(*_centre(p[one], 0.3, 0.4), 1.8)]
        rest = track(View(*_centre(p[two], 0.7, 0.6), 1.8), LENGTH - 1, dy=1.0)
        add(f"{one} frame then {two}", "cut after first frame",
            lambda g, x=p[one], a=first, y=p[two], b=rest: _two_shots(x, a, y, b), (0,))
    for one, two, three in (("astronaut", "astronaut", "coffee"), ("rocket", "chelsea", "rocket"),
                            ("camera", "camera", "camera")):
        a = track(View(*_centre(p[one], 0.3, 0.5), 1.8), CUT_AT + 1, dx=1.0)
        b = track(View(*_centre(p[two], 0.7, 0.4), 1.5), 3, dx=-1.0)
        c = track(View(*_centre(p[three], 0.55, 0.7), 1.2), LENGTH - CUT_AT - 4, dy=-1.0)
        add(f"{one}/{two}/{three}", "two cuts",
            lambda g, x=p[one], a=a, y=p[two], b=b, z=p[three], c=c: torch.cat([_two_shots(x, a, y, b), render(z, c)]),
            (CUT_AT, CUT_AT + 3))


def _motion_clips(p: dict[str, torch.Tensor], add: Callable[..., None]) -> None:
    # Pans stay inside the photograph (a reflected border would move against the pan).
    for name, dx, dy, scale in (("astronaut", 7.0, 0.0, 1.3), ("coffee", -8.0, 0.0, 1.2),
                                ("stereo_motorcycle", 8.0, 3.0, 1.6), ("rocket", 0.0, 6.0, 1.3),
                                ("hubble_deep_field", 12.0, -4.0, 1.6)):
        cx, cy = _centre(p[name])
        travel = scale * (LENGTH - 1) / 2
        views = track(View(cx - dx * travel, cy - dy * travel, scale), LENGTH, dx=dx, dy=dy)
        add(f"pan {name} {dx:+g},{dy:+g} px", "pan", lambda g, photo=p[name], views=views: render(photo, views))
    # A pan that starts abruptly after a still shot: the first moving pair has still neighbours on one side.
    still = [View(*_centre(p["chelsea"], 0.3, 0.5), 1.0)] * 12
    views = still + track(still[-1].moved(dx=9.0), LENGTH - 12, dx=9.0)
    add("still then whip pan chelsea", "pan", lambda g, photo=p["chelsea"], views=views: render(photo, views))
    for name, zoom in (("astronaut", 0.95), ("coffee", 1.06), ("immunohistochemistry", 0.94)):
        views = track(View(*_centre(p[name]), 2.2 if zoom < 1 else 0.6), LENGTH, zoom=zoom)
        add(f"zoom {name} x{zoom}/frame", "zoom", lambda g, photo=p[name], views=views: render(photo, views))
    for name, turn in (("astronaut", 8.0), ("coins", -12.0), ("clock", 15.0)):
        views = track(View(*_centre(p[name]), 1.4), LENGTH, turn=turn)
        add(f"rotate {name} {turn:+g} deg/frame", "rotation",
            lambda g, photo=p[name], views=views: render(photo, views))


def _exposed(photo: torch.Tensor, views: list[View], gain: float) -> torch.Tensor:
    frames = render(photo, views)
    frames[CUT_AT + 1:] = (frames[CUT_AT + 1:] * gain).clamp(0, 1)
    return frames


def _dissolve(x: torch.Tensor, a: list[View], y: torch.Tensor, b: list[View]) -> torch.Tensor:
    mix = ((torch.arange(LENGTH).float() - 12) / 9).clamp(0, 1).view(-1, 1, 1, 1)  # frames 12..21 blend
    return render(x, a) * (1 - mix) + render(y, b) * mix


def _negative_clips(p: dict[str, torch.Tensor], add: Callable[..., None]) -> None:
    for name, gain in (("astronaut", 0.93), ("coffee", 0.85), ("chelsea", 1.07), ("rocket", 1.15),
                       ("stereo_motorcycle", 0.93), ("camera", 0.85)):
        views = track(View(*_centre(p[name]), 1.8), LENGTH, dx=1.0)
        add(f"exposure x{gain} {name}", "exposure step",
            lambda g, photo=p[name], views=views, gain=gain: _exposed(photo, views, gain))
    for name, steps, reach in (("astronaut", 8, 0.7), ("coffee", 4, 0.6), ("stereo_motorcycle", 6, 0.8)):
        views = track(View(*_centre(p[name]), 1.8), LENGTH, dx=0.5)
        add(f"hand over {name} in {steps} frames", "occluder",
            lambda g, photo=p[name], views=views, steps=steps, reach=reach:
            _occluded(render(photo, views), _hand(LENGTH, 10, steps, reach), g))
    for name, gain, sigma in (("camera", 1.0, 0.02), ("coffee", 0.2, 0.012), ("brick", 0.15, 0.01)):
        views = [View(*_centre(p[name]), 1.8)] * LENGTH
        add(f"still {name} x{gain} noise {sigma}", "static noise",
            lambda g, photo=p[name], views=views, gain=gain: render(photo, views) * gain, sigma=sigma)
    add("flat grey wall noise 0.01", "static noise", lambda g: torch.full((LENGTH, 3, HEIGHT, WIDTH), 0.45),
        sigma=0.01)
    for one, two in (("astronaut", "chelsea"), ("rocket", "rocket")):
        a = track(View(*_centre(p[one], 0.35, 0.5), 1.8), LENGTH, dx=1.0)
        b = track(View(*_centre(p[two], 0.7, 0.5), 1.6), LENGTH, dx=-1.0)
        add(f"dissolve {one} to {two}", DISSOLVE, lambda g, x=p[one], a=a, y=p[two], b=b: _dissolve(x, a, y, b),
            ignore=tuple(range(12, 21)))


def make_clips(seed: int = 0, names: Collection[str] | None = None) -> list[Clip]:
    """The evaluation set (or the clips named), identical for a given seed whatever the selection."""
    collector = _Collector(seed, names)
    p = photos()
    for build in (_same_scene_clips, _other_cut_clips, _motion_clips, _negative_clips):
        build(p, collector.add)
    if names is not None and len(collector.clips) != len(set(names)):
        unknown = set(names) - {clip.name for clip in collector.clips}
        raise ValueError(f"no clips named {sorted(unknown)}")
    return collector.clips
