"""Traceable wrappers around EMAVFI for export: padding inside the graph, timestep as an input.

Every shape below comes from the input tensors (0-dim tensors while tracing), so a trace made at one size
runs at any other (TorchScript for Nuke); ONNX and OpenVINO graphs are exported at one size each.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..inference import pad_amounts, padding_divisor
from ..model import EMAVFI, Features
from ..model.flow import resize
from ..model.network import blend

def pad_frames(x: torch.Tensor, divisor: int) -> tuple[torch.Tensor, tuple]:
    """x [B,C,H,W] replicate-padded (centred) to multiples of divisor, and the crop box (top, left, h, w)."""
    h, w = x.shape[-2:]
    left, right, top, bottom = pad_amounts(h, w, divisor)
    return F.pad(x, (left, right, top, bottom), mode="replicate"), (top, left, h, w)


def crop(x: torch.Tensor, box: tuple) -> torch.Tensor:
    """The unpadded window of x [B,C,Hp,Wp]."""
    top, left, h, w = box
    return x[:, :, top:top + h, left:left + w]


class FrameGraph(nn.Module):
    """img0, img1 [B,3,H,W] float 0..1 and timestep [1] -> frame [B,3,H,W] float32, with with_flow also
    flow [B,4,H,W] and weight0 [B,1,H,W] (to fuse extra channels). The network runs in `dtype`.

    Any H x W: frames are padded to the network's multiple inside and the outputs cropped back.
    """

    def __init__(self, model: EMAVFI, dtype: torch.dtype = torch.float32, with_flow: bool = False):
        super().__init__()
        self.model, self.dtype, self.with_flow = model, dtype, with_flow

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor):
        pair, box = pad_frames(torch.cat([img0, img1], 0).to(self.dtype), padding_divisor(1.0))
        b = img0.shape[0]
        a, c = pair[:b], pair[b:]
        t = timestep.to(self.dtype).view(-1, 1, 1, 1)
        feats = self.model.extract(a, c)
        est = self.model.estimate_flow(a, c, feats, t)
        out = self.model.synthesize(a, c, feats.appearance, est.flow, est.mask_logit)
        frame = crop(out.frame, box).float()
        if not self.with_flow:
            return frame
        return frame, crop(est.flow, box).float(), crop(out.weight0, box).float()


class FuseGraph(nn.Module):
    """Extra channels aux0/aux1 [B,K,H,W] warped with flow [B,4,H,W] and fused with weight0 [B,1,H,W]."""

    def forward(self, aux0: torch.Tensor, aux1: torch.Tensor, flow: torch.Tensor, weight0: torch.Tensor):
        return blend(aux0, aux1, flow, weight0)[2]


class ExtractGraph(nn.Module):
    """Backbone of one padded pair at flow scale `scale`: img0, img1 [1,3,Hp,Wp] -> features (see feature_names).

    scale 1: 5 appearance + 2 motion maps; scale < 1: the two coarsest appearance and the 2 motion maps of the
    resized pair (all the flow heads read), then the 5 full-size appearance maps.
    """

    def __init__(self, model: EMAVFI, scale: float):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, img0: torch.Tensor, img1: torch.Tensor):
        bone = self.model.feature_bone
        if self.scale == 1:
            feats = self.model.extract(img0, img1)
            return (*feats.appearance, *feats.motion)
        low = bone(resize(torch.cat([img0, img1]), self.scale))
        full = bone(torch.cat([img0, img1]), with_motion=False)
        return (*low.appearance[3:], *low.motion, *full.appearance)


class SynthesisGraph(nn.Module):
    """One timestep from a padded pair and its ExtractGraph features: -> (frame, flow, weight0), all padded."""

    def __init__(self, model: EMAVFI, scale: float):
        super().__init__()
        self.model, self.scale = model, scale

    def forward(self, img0: torch.Tensor, img1: torch.Tensor, timestep: torch.Tensor, *feats: torch.Tensor):
        t = timestep.view(-1, 1, 1, 1)
        if self.scale == 1:
            low = Features(list(feats[:5]), list(feats[5:7]))
            est = self.model.estimate_flow(img0, img1, low, t)
            flow, mask, appearance = est.flow, est.mask_logit, low.appearance
        else:  # the flow heads read appearance levels 3 and 4 only; the first three slots are never used
            low = Features([feats[0]] * 3 + list(feats[:2]), list(feats[2:4]))
            est = self.model.estimate_flow(resize(img0, self.scale), resize(img1, self.scale), low, t)
            flow = resize(est.flow, 1 / self.scale) * (1 / self.scale)
            mask, appearance = resize(est.mask_logit, 1 / self.scale), list(feats[4:9])
        out = self.model.synthesize(img0, img1, appearance, flow, mask)
        return out.frame, flow, out.weight0


def feature_names(scale: float) -> list[str]:
    """Names of ExtractGraph's outputs (and SynthesisGraph's feature inputs)."""
    if scale == 1:
        return [f"appearance{i}" for i in range(5)] + ["motion0", "motion1"]
    return ["low3", "low4", "motion0", "motion1"] + [f"appearance{i}" for i in range(5)]


class NukeInterpolator(nn.Module):
    """Cattery-style module: x [1,6+2K,H,W] (RGB of frame 0, RGB of frame 1, then K channel pairs: each extra
    channel of frame 0 followed by the same channel of frame 1) -> [1,3+K,H,W] at time `timestep`."""

    def __init__(self, core: nn.Module, fuse: nn.Module):
        super().__init__()
        self.core, self.fuse = core, fuse
        self.timestep = 0.5  # a float attribute: Nuke shows it as a knob (type inferred by torch.jit.script)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.shape[1] < 6 or x.shape[1] % 2 != 0:
            raise ValueError("expected 6 channels (rgb of frame 0, rgb of frame 1) plus extra channels in pairs")
        t = torch.full([1], float(min(max(self.timestep, 0.0), 1.0)), dtype=torch.float32, device=x.device)
        x = x.float().clamp(0.0, 1.0)
        frame, flow, weight0 = self.core(x[:, 0:3], x[:, 3:6], t)
        if x.shape[1] > 6:
            extra = x[:, 6:]
            frame = torch.cat([frame, self.fuse(extra[:, 0::2], extra[:, 1::2], flow, weight0)], 1)
        return frame
