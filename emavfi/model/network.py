"""EMA-VFI: backbone -> coarse-to-fine flow heads -> backward warp + mask fusion -> U-Net refinement."""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import nn

from ..config import ModelConfig
from .backbone import Features, MotionFormer
from .flow import FlowHead, resize, shuffle_features
from .geometry_cache import GeometryCache
from .refine import RefineUNet
from .warp import backward_warp, base_grid


@dataclass
class FlowEstimate:
    """Per-stage results for one timestep: accumulated flows [B,4,H,W] and mask logits [B,1,H,W]."""

    flows: list[torch.Tensor]
    mask_logits: list[torch.Tensor]

    @property
    def flow(self) -> torch.Tensor:
        return self.flows[-1]

    @property
    def mask_logit(self) -> torch.Tensor:
        return self.mask_logits[-1]


@dataclass
class Synthesis:
    """The refined frame, the pre-refine blend and the fusion weight of frame 0 (sigmoid of the mask)."""

    frame: torch.Tensor
    merged: torch.Tensor
    weight0: torch.Tensor


def blend(img0: torch.Tensor, img1: torch.Tensor, flow: torch.Tensor, weight0: torch.Tensor,
          grid: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Warp both frames to time t and fuse them: returns (warped0, warped1, merged)."""
    warped0 = backward_warp(img0, flow[:, 0:2], grid)
    warped1 = backward_warp(img1, flow[:, 2:4], grid)
    return warped0, warped1, warped0 * weight0 + warped1 * (1 - weight0)


def _init_conv(module: nn.Module) -> None:
    """He-normal over fan-out for convolutions, as the reference initialises them (transposed convs keep the default)."""
    if type(module) is nn.Conv2d:
        fan_out = module.kernel_size[0] * module.kernel_size[1] * module.out_channels // module.groups
        nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out))
        nn.init.zeros_(module.bias)


def _init_backbone(module: nn.Module) -> None:
    """The reference backbone's initialisation: truncated-normal linears, unit LayerNorms, He-normal convs."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02, a=-2.0, b=2.0)
        nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)
    else:
        _init_conv(module)


class EMAVFI(nn.Module):
    """The whole network; state-dict keys match the official checkpoints (`feature_bone.*`, `block.*`, `unet.*`)."""

    def __init__(self, cfg: ModelConfig, variant: str | None = None):
        super().__init__()
        self.config = cfg
        self.variant = variant
        self.geometry = GeometryCache()  # grids and masks by exact geometry; not in the state dict
        self.feature_bone = MotionFormer(cfg, self.geometry)
        dims = cfg.embed_dims
        # block[0] works on stride-16 features, block[1] on stride-8 ones
        head_in = [2 * (16 * cfg.width + dims[4]) // 16 + 6, 2 * (8 * cfg.width + dims[3]) // 16 + 17]
        self.block = nn.ModuleList([FlowHead(head_in[0], cfg.head_hidden, 16),
                                    FlowHead(head_in[1], cfg.head_hidden, 8)])
        self.unet = RefineUNet(cfg.unet_width)
        self.feature_bone.apply(_init_backbone)
        self.unet.apply(_init_conv)

    def clear_caches(self) -> None:
        """Free the cached sampling grids, attention masks and coordinate maps (also done on `.to()`)."""
        self.geometry.clear()

    def _apply(self, fn, *args, **kwargs):
        self.geometry.clear()
        return super()._apply(fn, *args, **kwargs)

    def sampling_grid(self, height: int, width: int, device: torch.device, dtype: torch.dtype) -> torch.Tensor:
        """base_grid [1,2,H,W] in at least float32 (warp positions are never computed in half precision)."""
        dtype = torch.promote_types(dtype, torch.float32)
        return self.geometry.get(("grid", height, width, device, dtype),
                                 lambda: base_grid(height, width, device, dtype))

    def extract(self, img0: torch.Tensor, img1: torch.Tensor, with_motion: bool = True) -> Features:
        """Backbone features of both frames; the part of the work that does not depend on t."""
        return self.feature_bone(torch.cat([img0, img1], 0), with_motion)

    def estimate_flow(self, img0: torch.Tensor, img1: torch.Tensor, feats: Features, t: float) -> FlowEstimate:
        """Coarse (stride 16) then fine (stride 8) flow and mask logit at timestep t."""
        assert feats.motion is not None, "flow estimation needs motion features"
        b = img0.shape[0]
        grid = self.sampling_grid(img0.shape[-2], img0.shape[-1], img0.device, img0.dtype)
        flows, masks = [], []
        flow = mask = None
        for i, head in enumerate(self.block):
            level = 4 - i
            mot, app = feats.motion[1 - i], feats.appearance[level]
            shuffled = shuffle_features(torch.cat([t * mot[:b], (1 - t) * mot[b:], app[:b], app[b:]], 1))
            if flow is None:
                flow, mask = head(shuffled, resize(torch.cat([img0, img1], 1), 0.25))
            else:
                warped0 = backward_warp(img0, flow[:, 0:2], grid)
                warped1 = backward_warp(img1, flow[:, 2:4], grid)
                side = torch.cat([resize(torch.cat([img0, img1, warped0, warped1, mask], 1), 0.5),
                                  resize(flow, 0.5) * 0.5], 1)
                d_flow, d_mask = head(shuffled, side)
                flow, mask = flow + d_flow, mask + d_mask
            flows.append(flow)
            masks.append(mask)
        return FlowEstimate(flows, masks)

    def synthesize(self, img0: torch.Tensor, img1: torch.Tensor, appearance: list[torch.Tensor],
                   flow: torch.Tensor, mask_logit: torch.Tensor) -> Synthesis:
        """Warp frames and features with `flow`, fuse with sigmoid(mask_logit), refine with the U-Net."""
        b = img0.shape[0]
        grid = self.sampling_grid(img0.shape[-2], img0.shape[-1], img0.device, img0.dtype)
        weight0 = torch.sigmoid(mask_logit)
        warped0, warped1, merged = blend(img0, img1, flow, weight0, grid)
        level_flows = [flow]
        for _ in appearance[1:]:
            level_flows.append(resize(level_flows[-1], 0.5) * 0.5)

        def warped(level: int) -> tuple[torch.Tensor, torch.Tensor]:
            """Appearance level `level` of frames 0 and 1 warped to t (made when the U-Net reaches that level)."""
            level_flow, app = level_flows[level], appearance[level]
            level_grid = self.sampling_grid(*level_flow.shape[-2:], level_flow.device, level_flow.dtype)
            return (backward_warp(app[:b], level_flow[:, 0:2], level_grid),
                    backward_warp(app[b:], level_flow[:, 2:4], level_grid))

        res = self.unet(lambda: torch.cat([img0, img1, warped0, warped1, mask_logit, flow], 1), warped)
        return Synthesis(torch.clamp(merged + res, 0, 1), merged, weight0)

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, t: float = 0.5) -> dict[str, object]:
        """Training-style pass: per-stage flows, fusion weights and blends, plus the refined prediction."""
        feats = self.extract(img0, img1)
        est = self.estimate_flow(img0, img1, feats, t)
        merged = [blend(img0, img1, f, torch.sigmoid(m))[2] for f, m in zip(est.flows, est.mask_logits)]
        out = self.synthesize(img0, img1, feats.appearance, est.flow, est.mask_logit)
        return {"flows": est.flows, "masks": [torch.sigmoid(m) for m in est.mask_logits],
                "merged": merged, "pred": out.frame}
