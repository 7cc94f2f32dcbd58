"""The picture's own motion between two frames, for overlay detection (emavfi.overlays): a scale about the
picture's centre and a shift, with a gain and an offset for exposure changes and fades.

Fitted coarse to fine (Gauss-Newton on luma, robust weights so a burned-in overlay or a walking figure does not pull
the fit). A motion maps a point p (px, relative to the picture's centre) of the earlier frame to scale * p + shift
in the later one; motions over several frames compose.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .overlay_masks import square_max

COARSEST = 40  # px on the long side of the coarsest level of the fit
FINEST = 256  # the fit stops at the first level at most this long (finer adds time, not accuracy)
DAMPING = 0.05  # Levenberg-Marquardt damping, of each diagonal term of the normal equations
STEPS = 4  # Gauss-Newton steps per level
LEVELS = 2  # the fit runs on the finest levels only (a coarse one blurs a gantry's thin lines away)
ROBUST = 2.0  # residuals beyond this x their typical size weigh less (Cauchy)
TYPICAL = 0.9  # quantile of the residuals on textured pixels taken as typical (a pan's edges all change)
UNCHANGED_SIGMAS, EDGE_SIGMAS = 1.5, 5.0  # an edge pixel "unchanged" between the two frames, in noise units
STILL_SHARE = 0.5  # when this share of the textured blocks is unchanged, the picture is still
TEXTURED_SHARE = 0.05  # of the blocks, at least, must have edges to measure a motion
MATCH_STEPS = 3  # reweighting steps of the exposure match
BLOCKS = 16  # blocks across the long side for that count (an overlay's dense edges fill few of them)


@dataclass(frozen=True)
class Motion:
    """p -> scale * p + (dx, dy): where the picture at p (analysis px from the centre) goes."""
    scale: float = 1.0
    dx: float = 0.0
    dy: float = 0.0

    def then(self, later: "Motion") -> "Motion":
        """This motion followed by `later`."""
        return Motion(self.scale * later.scale, later.scale * self.dx + later.dx, later.scale * self.dy + later.dy)

    def inverse(self) -> "Motion":
        """The motion back."""
        return Motion(1 / self.scale, -self.dx / self.scale, -self.dy / self.scale)

    def displacement(self, height: int, width: int) -> torch.Tensor:
        """[2,h,w] float32 (dx, dy) px that each pixel of a picture of that size travels."""
        ys = torch.arange(height, dtype=torch.float32) - (height - 1) / 2
        xs = torch.arange(width, dtype=torch.float32) - (width - 1) / 2
        grow = self.scale - 1
        return torch.stack([(grow * xs + self.dx)[None].expand(height, -1),
                            (grow * ys + self.dy)[:, None].expand(-1, width)])


def _static(a: torch.Tensor, b: torch.Tensor, sigma: float) -> tuple[torch.Tensor, float]:
    """([h,w] bool edge pixels that did not change from a to b, the share of textured blocks where most did not)."""
    edge = torch.zeros_like(a, dtype=torch.bool)
    edge[1:-1, 1:-1] = torch.maximum((a[1:-1, 2:] - a[1:-1, :-2]).abs(), (a[2:, 1:-1] - a[:-2, 1:-1]).abs()) \
        > 2 * EDGE_SIGMAS * sigma
    matched = _exposure_matched(a, b, sigma)  # a fade is not motion
    unchanged = edge & ((matched - b).abs() <= UNCHANGED_SIGMAS * math.sqrt(2) * sigma)
    block = max(4, max(a.shape) // BLOCKS)
    edges_in, unchanged_in = (F.avg_pool2d(m[None, None].float(), block, ceil_mode=True) for m in (edge, unchanged))
    textured = edges_in > 0.02
    if int(textured.sum()) < TEXTURED_SHARE * textured.numel():
        return unchanged, 1.0  # next to nothing to see (black, fog): take it as still
    return unchanged, float((textured & (unchanged_in > 0.5 * edges_in)).sum()) / int(textured.sum())


def _exposure_matched(a: torch.Tensor, b: torch.Tensor, sigma: float) -> torch.Tensor:
    """a [h,w] with the gain and offset that take it onto b [h,w], fitted robustly (a figure that walks over the
    picture changes its mean and spread, not the gain and offset of the rest)."""
    x, y = a.flatten(), b.flatten()
    gain, offset = 1.0, float((y - x).median())
    for _ in range(MATCH_STEPS):  # iteratively reweighted least squares (Cauchy, at a few x the noise)
        weight = 1 / (1 + ((y - gain * x - offset) / (ROBUST * math.sqrt(2) * sigma + 1e-6)).square())
        total, mx, my = weight.sum().clamp(min=1e-9), (weight * x).sum(), (weight * y).sum()
        mx, my = mx / total, my / total
        spread = (weight * (x - mx).square()).sum()
        gain = float((weight * (x - mx) * (y - my)).sum() / spread.clamp(min=1e-9)) if spread > 1e-9 else 1.0
        offset = float(my - gain * mx)
    return gain * a + offset


def _pyramid_of(y: torch.Tensor, pool=F.avg_pool2d) -> list[torch.Tensor]:
    """[1,1,h,w] levels of y [h,w] halved until the long side is at most COARSEST; coarsest first, from at most
    FINEST (pool: avg_pool2d, or max_pool2d for a mask)."""
    levels = [y[None, None]]
    while max(levels[-1].shape[-2:]) > COARSEST and min(levels[-1].shape[-2:]) >= 8:
        levels.append(pool(levels[-1], 2, ceil_mode=True))
    return ([level for level in levels if max(level.shape[-2:]) <= FINEST] or [levels[-1]])[::-1]


def _pyramid(y: torch.Tensor) -> list[torch.Tensor]:
    """Luma [h,w] as pyramid levels [h',w'], coarsest first."""
    return [level[0, 0] for level in _pyramid_of(y)]


def _warp(b: torch.Tensor, params: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(b [h,w] read where params (scale - 1, dx, dy, ...) send each pixel, [h,w] 1 where that is inside b)."""
    h, w = b.shape
    ys = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2)[:, None].expand(h, w)
    xs = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2)[None].expand(h, w)
    grow, dx, dy = params[:3].tolist()
    tx, ty = (1 + grow) * xs + dx, (1 + grow) * ys + dy
    grid = torch.stack([(tx + (w - 1) / 2) * 2 / (w - 1) - 1, (ty + (h - 1) / 2) * 2 / (h - 1) - 1], -1)
    warped = F.grid_sample(b[None, None], grid[None], mode="bilinear", padding_mode="border", align_corners=True)[0, 0]
    inside = ((tx > 0) & (tx < w - 2) & (ty > 0) & (ty < h - 2)).float()
    inside[[0, -1]], inside[:, [0, -1]] = 0, 0
    return warped, inside


def _step(a: torch.Tensor, b: torch.Tensor, params: torch.Tensor, ignored: torch.Tensor) -> torch.Tensor:
    """One robust Gauss-Newton update of params (scale - 1, dx, dy, gain - 1, offset) taking a onto b."""
    h, w = a.shape
    ys = (torch.arange(h, dtype=torch.float32) - (h - 1) / 2)[:, None].expand(h, w)
    xs = (torch.arange(w, dtype=torch.float32) - (w - 1) / 2)[None].expand(h, w)
    gain, offset = params[3:].tolist()
    warped, inside = _warp(b, params)
    inside = inside * (1 - ignored)
    bx, by = torch.zeros_like(warped), torch.zeros_like(warped)
    bx[:, 1:-1], by[1:-1] = (warped[:, 2:] - warped[:, :-2]) / 2, (warped[2:] - warped[:-2]) / 2
    residual = warped - (1 + gain) * a - offset
    textured = (inside > 0.5) & (bx.abs() + by.abs() > 0)
    if textured.any():  # the residual's typical size where the picture has texture (a flat sky says nothing)
        slope = (bx.abs() + by.abs())[textured]
        textured &= bx.abs() + by.abs() >= slope.median()
    typical = float(residual[textured].abs().quantile(TYPICAL)) + 1e-4 if textured.any() else 1.0
    weight = inside / (1 + (residual / (ROBUST * typical)).square())
    jac = torch.stack([bx * xs + by * ys, bx, by, -a, -torch.ones_like(a)]).flatten(1)  # [5,hw]
    weighted = jac * weight.flatten()
    normal = weighted @ jac.T
    normal = normal + torch.diag(DAMPING * normal.diagonal() + 1e-9)  # a shift along a
    # picture of parallel lines (a rocket on its gantry) is unknown: keep it near where it was, not anywhere
    return params - torch.linalg.solve(normal.double(), (weighted @ residual.flatten()).double()).float()


def _shifts(a: torch.Tensor, b: torch.Tensor) -> list[tuple[float, float]]:
    """Whole-pixel shifts (dx, dy) that may take a onto b: none, and the phase correlation's highest peak away from
    none (a burned-in overlay makes a peak at none; a pan makes its own)."""
    h, w = a.shape
    window = torch.hann_window(h, periodic=False)[:, None] * torch.hann_window(w, periodic=False)[None]
    fa, fb = (torch.fft.rfft2((x - x.mean()) * window) for x in (a, b))
    cross = fb * fa.conj()
    surface = torch.fft.irfft2(cross / cross.abs().clamp(min=1e-9), s=(h, w))
    surface[[0, 0, 0, 1, -1, 1, -1, 1, -1], [0, 1, -1, 0, 0, 1, -1, -1, 1]] = -math.inf
    dy, dx = divmod(int(surface.flatten().argmax()), w)
    return [(0.0, 0.0), (float(dx - w if dx > w // 2 else dx), float(dy - h if dy > h // 2 else dy))]


def _cost(a: torch.Tensor, b: torch.Tensor, params: torch.Tensor, ignored: torch.Tensor, sigma: float) -> float:
    """The robust misfit of params taking a onto b (Cauchy at ROBUST x the noise of a difference)."""
    h, w = a.shape
    warped, inside = _warp(b, params)
    residual = (warped - (1 + params[3]) * a - params[4]) / (ROBUST * math.sqrt(2) * sigma + 1e-6)
    weight = inside * (1 - ignored)
    return float((weight * residual.square().log1p()).sum() / weight.sum().clamp(min=1))


def estimate(a: torch.Tensor, b: torch.Tensor, sigma: float) -> Motion:
    """The motion that takes luma a [h,w] onto luma b (consecutive frames of one shot, float32 0..1, noise sigma).

    Edges that stay put between the two are left out of the fit (a burned-in overlay would hold a slow zoom
    still); when most of them stay put, the picture is still. The fit starts from no shift and from the phase
    correlation's shift, on the finer levels, and keeps the better.
    """
    unchanged, share = _static(a, b, sigma)
    if share >= STILL_SHARE:
        return Motion()
    ignored = _pyramid(square_max(unchanged.float(), 2))  # a share at coarse levels
    levels = list(zip(_pyramid(a), _pyramid(b), ignored))[-LEVELS:]
    finest = levels[-1]
    best, best_cost = None, math.inf
    for dx, dy in _shifts(finest[0], finest[1]):
        factor = levels[0][0].shape[-1] / finest[0].shape[-1]
        params = torch.tensor([0.0, dx * factor, dy * factor, 0.0, 0.0])
        previous = levels[0][0].shape[-1]
        for level_a, level_b, level_ignored in levels:
            params[1:3] *= level_a.shape[-1] / previous
            for _ in range(STEPS):
                params = _step(level_a, level_b, params, level_ignored)
            previous = level_a.shape[-1]
        cost = _cost(*finest[:2], params, finest[2], sigma)
        if cost < best_cost:
            best, best_cost = params, cost
    grow, dx, dy = best[:3].tolist()
    factor = a.shape[-1] / finest[0].shape[-1]
    if not all(math.isfinite(v) for v in (grow, dx, dy)) or abs(grow) > 0.5:
        return Motion()
    return Motion(1 + grow, dx * factor, dy * factor)


def predict(earlier: torch.Tensor, later: torch.Tensor, motion: Motion) -> torch.Tensor:
    """[h,w] luma `earlier` [h,w] carried by the picture's motion to the later frame, its gain and offset matched
    to luma `later` (where the carried picture leaves the frame it repeats its border)."""
    h, w = earlier.shape
    back = motion.inverse()
    ys = torch.arange(h, dtype=torch.float32) - (h - 1) / 2
    xs = torch.arange(w, dtype=torch.float32) - (w - 1) / 2
    sx, sy = back.scale * xs + back.dx, back.scale * ys + back.dy
    grid = torch.stack([(sx * 2 / max(w - 1, 1))[None].expand(h, -1),
                        (sy * 2 / max(h - 1, 1))[:, None].expand(-1, w)], -1)
    carried = F.grid_sample(earlier[None, None], grid[None], mode="bilinear", padding_mode="border",
                            align_corners=True)[0, 0]
    gain = later.std() / carried.std().clamp(min=1e-6)
    return (carried - carried.mean()) * gain + later.mean()
