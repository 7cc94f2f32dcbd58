"""The MotionFormer backbone: three conv stages, then two inter-frame transformer stages."""
from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .attention import MotionFormerBlock
from .geometry_cache import GeometryCache
from .windows import attention_mask, coordinate_map


def conv_prelu(cin: int, cout: int, stride: int = 1) -> list[nn.Module]:
    """A 3x3 convolution followed by a per-channel PReLU."""
    return [nn.Conv2d(cin, cout, 3, stride, 1), nn.PReLU(cout)]


class ConvStage(nn.Module):
    """Two conv+PReLU layers at constant resolution (keys `conv.0..3`)."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.conv = nn.Sequential(*conv_prelu(cin, cout), *conv_prelu(cout, cout))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(x)


class CrossScalePatchEmbed(nn.Module):
    """Stage-4 tokens from dilated 3x3 convs over stages 1-3 that all land on the stride-8 grid."""

    def __init__(self, in_dims: tuple[int, int, int], width: int, out_dim: int):
        super().__init__()
        layers = []
        # level i (0 = coarsest input) contributes 2**i convs of stride 2**(i+1), dilation 1..2**i
        for level, cin in enumerate(reversed(in_dims)):
            for j in range(2 ** level):
                layers.append(nn.Conv2d(cin, width, 3, 2 ** (level + 1), padding=j + 1, dilation=j + 1))
        self.layers = nn.ModuleList(layers)
        self.proj = nn.Conv2d(len(layers) * width, out_dim, 1)
        self.norm = nn.LayerNorm(out_dim)

    def forward(self, feats: list[torch.Tensor]) -> tuple[torch.Tensor, int, int]:
        """feats = [stage1, stage2, stage3] -> (tokens [N, h*w, C], h, w)."""
        sources = [feats[2], feats[1], feats[1], feats[0], feats[0], feats[0], feats[0]]
        x = self.proj(torch.cat([layer(src) for layer, src in zip(self.layers, sources)], 1))
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


class OverlapPatchEmbed(nn.Module):
    """Stage-5 tokens: a stride-2 3x3 conv of the stage-4 map, then LayerNorm."""

    def __init__(self, cin: int, cout: int):
        super().__init__()
        self.proj = nn.Conv2d(cin, cout, 3, 2, 1)
        self.norm = nn.LayerNorm(cout)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, int, int]:
        x = self.proj(x)
        h, w = x.shape[-2:]
        return self.norm(x.flatten(2).transpose(1, 2)), h, w


@dataclass
class FrameFeatures:
    """Per-frame backbone work (no mixing between frames): conv maps at strides 1, 2, 4 and stage-4 tokens."""

    convs: list[torch.Tensor]
    tokens4: torch.Tensor
    grid4: tuple[int, int]


@dataclass
class Features:
    """Backbone output for a batch of frame pairs (rows 0..B-1 frame 0, rows B..2B-1 frame 1).

    appearance: 5 maps at strides 1, 2, 4, 8, 16.  motion: stride-8 and stride-16 maps, or None
    when only appearance was asked for.
    """

    appearance: list[torch.Tensor]
    motion: list[torch.Tensor] | None


class MotionFormer(nn.Module):
    """Extracts appearance and motion features of both frames of each pair.

    geometry: where attention masks and coordinate maps are kept (the EMAVFI shares its own; default: a new one).
    """

    def __init__(self, cfg: ModelConfig, geometry: GeometryCache | None = None):
        super().__init__()
        self.geometry = GeometryCache() if geometry is None else geometry
        dims, f = cfg.embed_dims, cfg.width
        self.block1 = ConvStage(3, dims[0])
        self.patch_embed2 = nn.Sequential(*conv_prelu(dims[0], dims[1], 2))
        self.block2 = ConvStage(dims[1], dims[1])
        self.patch_embed3 = nn.Sequential(*conv_prelu(dims[1], dims[2], 2))
        self.block3 = ConvStage(dims[2], dims[2])
        self.norm4 = nn.LayerNorm(dims[3], eps=1e-6)
        self.patch_embed4 = CrossScalePatchEmbed(dims[:3], f, dims[3])
        self.block4 = self._stage(cfg, 0)
        self.norm5 = nn.LayerNorm(dims[4], eps=1e-6)
        self.patch_embed5 = OverlapPatchEmbed(dims[3], dims[4])
        self.block5 = self._stage(cfg, 1)

    @staticmethod
    def _stage(cfg: ModelConfig, idx: int) -> nn.ModuleList:
        dim, depth = cfg.embed_dims[3 + idx], cfg.depths[3 + idx]
        return nn.ModuleList(
            MotionFormerBlock(dim, cfg.motion_dims[idx], cfg.num_heads[idx], cfg.window,
                              shift=0 if j % 2 == 0 else cfg.window // 2)
            for j in range(depth)
        )

    def frame_features(self, frames: torch.Tensor) -> FrameFeatures:
        """Everything that is purely per-frame: stages 1-3 and the stage-4 patch embedding of frames [N,3,H,W]."""
        s1 = self.block1(frames)
        s2 = self.block2(self.patch_embed2(s1))
        s3 = self.block3(self.patch_embed3(s2))
        tokens, h, w = self.patch_embed4([s1, s2, s3])
        return FrameFeatures([s1, s2, s3], tokens, (h, w))

    def forward(self, frames: torch.Tensor, with_motion: bool = True) -> Features:
        """frames [2B,3,H,W] (frame-0 rows first) -> Features of the B pairs."""
        return self.pair_features(self.frame_features(frames), None, None, with_motion)

    def pair_features(self, frames: FrameFeatures, first: torch.Tensor | None, second: torch.Tensor | None,
                      with_motion: bool = True) -> Features:
        """Features of the pairs (frames[first[i]], frames[second[i]]): the transformer stages attend across each pair.

        first = second = None: the frames already are the pairs' rows (frame-0 rows, then frame-1 rows); their
        conv maps then become the appearance levels as they are, without a copy.
        """
        if first is None or second is None:
            appearance, tokens = list(frames.convs), frames.tokens4
        else:
            order = torch.cat([first, second])
            appearance = [c.index_select(0, order) for c in frames.convs]
            tokens = frames.tokens4.index_select(0, order)
        motion: list[torch.Tensor] = []
        h, w = frames.grid4
        for blocks, norm, embed in ((self.block4, self.norm4, None), (self.block5, self.norm5, self.patch_embed5)):
            if embed is not None:
                tokens, h, w = embed(appearance[-1])
            coords = self._geometry("coords", coordinate_map, h, w, tokens.device, tokens.dtype)
            stage_motion = []
            for block in blocks:
                mask = self._geometry("mask", attention_mask, h, w, block.window, block.shift, tokens.device,
                                      tokens.dtype)
                tokens, mot = block(tokens, h, w, coords, mask, with_motion)
                stage_motion.append(mot)
            tokens = norm(tokens)
            n = tokens.shape[0]
            appearance.append(tokens.transpose(1, 2).reshape(n, -1, h, w))
            if with_motion:
                motion.append(torch.cat(stage_motion, -1).transpose(1, 2).reshape(n, -1, h, w))
        return Features(appearance, motion if with_motion else None)

    def _geometry(self, kind: str, factory: Callable[..., torch.Tensor | None], *args: object) -> torch.Tensor | None:
        return self.geometry.get((kind, *args), lambda: factory(*args))

    def _apply(self, fn, *args, **kwargs):
        self.geometry.clear()  # cached tensors live on the old device / in the old dtype
        return super()._apply(fn, *args, **kwargs)
