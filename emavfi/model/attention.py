"""Inter-frame attention and the MotionFormer block (stages 4 and 5 of the backbone)."""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .windows import partition, unpartition, window_padding


class InterFrameAttention(nn.Module):
    """Window attention from each frame to its partner frame.

    Returns appearance features (attention-weighted partner values) and motion features (the
    attention-weighted partner coordinates minus the query's own coordinates, embedded per head).
    """

    def __init__(self, dim: int, motion_dim: int, num_heads: int):
        super().__init__()
        self.num_heads = num_heads
        self.scale = (dim // num_heads) ** -0.5
        self.q = nn.Linear(dim, dim)
        self.kv = nn.Linear(dim, dim * 2)
        self.cor_embed = nn.Linear(2, motion_dim)
        self.proj = nn.Linear(dim, dim)
        self.motion_proj = nn.Linear(motion_dim, motion_dim)

    def forward(
        self, tokens: torch.Tensor, partner: torch.Tensor, coords: torch.Tensor, mask: torch.Tensor | None,
        with_motion: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """tokens/partner [W,N,C] (W windows of N tokens), coords [W,N,2], mask [nW,N,N] or None."""
        nwin, n, c = tokens.shape
        heads, head_dim = self.num_heads, c // self.num_heads
        q = self.q(tokens).view(nwin, n, heads, head_dim).transpose(1, 2)
        k, v = self.kv(partner).view(nwin, n, 2, heads, head_dim).permute(2, 0, 3, 1, 4).unbind(0)
        if with_motion:
            # The partner's coordinates travel as two extra value channels, so one attention call yields both
            # the appearance (A.V) and the expected partner position (A.cor) of every query token.
            v = torch.cat([v, coords[:, None].expand(-1, heads, -1, -1)], -1)
        if mask is not None:
            mask = mask.repeat(nwin // mask.shape[0], 1, 1).unsqueeze(1)
        out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, scale=self.scale)
        appearance = self.proj(out[..., :head_dim].transpose(1, 2).reshape(nwin, n, c))
        if not with_motion:
            return appearance, None
        # cor_embed(A.cor) - cor_embed(cor) per head: the bias cancels because attention rows sum to one
        displacement = out[..., head_dim:] - coords[:, None]
        weight = self.cor_embed.weight.view(heads, -1, 2)
        motion = torch.einsum("whnk,hmk->wnhm", displacement, weight).reshape(nwin, n, -1)
        return appearance, self.motion_proj(motion)


class Mlp(nn.Module):
    """Linear -> depthwise 3x3 conv on the token grid -> GELU -> Linear."""

    def __init__(self, dim: int, hidden: int):
        super().__init__()
        self.fc1 = nn.Linear(dim, hidden)
        self.dwconv = nn.Module()
        self.dwconv.dwconv = nn.Conv2d(hidden, hidden, 3, 1, 1, groups=hidden)
        self.fc2 = nn.Linear(hidden, dim)

    def forward(self, x: torch.Tensor, h: int, w: int) -> torch.Tensor:
        x = self.fc1(x)
        n, _, c = x.shape
        x = self.dwconv.dwconv(x.transpose(1, 2).reshape(n, c, h, w)).flatten(2).transpose(1, 2)
        return self.fc2(F.gelu(x))


class MotionFormerBlock(nn.Module):
    """One transformer block; frames 0 and 1 are the two halves of the batch."""

    def __init__(self, dim: int, motion_dim: int, num_heads: int, window: int, shift: int, mlp_ratio: int = 4):
        super().__init__()
        self.window, self.shift = window, shift
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = InterFrameAttention(dim, motion_dim, num_heads)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, dim * mlp_ratio)

    def forward(
        self, x: torch.Tensor, h: int, w: int, coords: torch.Tensor, mask: torch.Tensor | None,
        with_motion: bool = True,
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """x [2B, h*w, C], coords [1,h,w,2], mask: windows.attention_mask(h, w, window, shift) ->
        (tokens [2B,h*w,C], motion [2B,h*w,Md] or None)."""
        n2, _, c = x.shape
        win, shift = self.window, self.shift
        top, bottom, left, right = window_padding(h, w, win)
        hp, wp = h + top + bottom, w + left + right
        grid = F.pad(x.view(n2, h, w, c), (0, 0, left, right, top, bottom))
        cor = F.pad(coords, (0, 0, left, right, top, bottom))
        if shift:
            grid = torch.roll(grid, shifts=(-shift, -shift), dims=(1, 2))
            cor = torch.roll(cor, shifts=(-shift, -shift), dims=(1, 2))
        windows = self.norm1(partition(grid, win))
        half = windows.shape[0] // 2
        partner = torch.cat([windows[half:], windows[:half]], 0)
        cor_windows = partition(cor, win)[None].expand(n2, -1, -1, -1).reshape(-1, win * win, 2)
        appearance, motion = self.attn(windows, partner, cor_windows, mask, with_motion)
        tokens = self._unwindow(windows + appearance, hp, wp, (top, left, h, w))
        out = tokens + self.mlp(self.norm2(tokens), h, w)
        if motion is not None:
            motion = self._unwindow(motion, hp, wp, (top, left, h, w))
        return out, motion

    def _unwindow(self, windows: torch.Tensor, hp: int, wp: int, crop: tuple[int, int, int, int]) -> torch.Tensor:
        """Windows -> [2B, h*w, C]: undo partition, roll back, crop the padding."""
        top, left, h, w = crop
        grid = unpartition(windows, self.window, hp, wp)
        if self.shift:
            grid = torch.roll(grid, shifts=(self.shift, self.shift), dims=(1, 2))
        grid = grid[:, top:top + h, left:left + w]
        return grid.reshape(grid.shape[0], h * w, -1)
