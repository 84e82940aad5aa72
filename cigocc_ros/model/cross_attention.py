"""Stage-2 deformable cross-attention: voxel queries -> multi-level image features, sampled
around each voxel's projection with offsets in (u, v, depth) ("3D pixel space").

The lifted feature volume of 3D pixel space is c(u, v) * p(d | u, v). Rather than build that
(C, D, h, w) volume per level, a sampling point (u', v', d') reads c bilinearly at (u', v') on
its level and p trilinearly at (u', v', d') from the depth distribution, and p enters the
attention as a log-prior: weights = softmax_{levels, points}(a + log(p + eps)). Points at
likely depths dominate while the weights of a query still sum to one. Without the depth branch
the depth offsets do not exist and this is plain 2D multi-level deformable attention.
"""
from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .deformable import deformable_sample
from .layers import FeedForward

DEPTH_PRIOR_EPS = 1e-4


class DepthAwareCrossAttention(nn.Module):
    """One attention block (post-norm): q -> LN(q + attn(q + pos)).

    forward(query (B, Nq, C), pos (B, Nq, C), ref_uv (B, Nq, L, 2) normalised per level
    (x along width first), ref_d (B, Nq) normalised depth in [0, 1] over the bins,
    feats: L maps (B, E, h_l, w_l), depth_prob (B, 1, D, h, w) or None, to_depth_grid (L, 2)
    factors taking a level's normalised (x, y) to the depth map's, level_sizes (L, 2) = (w_l, h_l)
    as floats) -> (B, Nq, C). Coordinates are fp32 also under autocast.
    """

    def __init__(self, dims: int, feat_dims: int, heads: int, levels: int, points: int, use_depth: bool):
        super().__init__()
        if dims % heads:
            raise ValueError(f"model.unet_channels={dims} must be divisible by model.cross_attn_heads={heads}")
        self.heads, self.levels, self.points = heads, levels, points
        self.nd = 3 if use_depth else 2
        self.value_proj = nn.Conv2d(feat_dims, dims, 1)
        self.offsets = nn.Linear(dims, heads * levels * points * self.nd)
        self.logits = nn.Linear(dims, heads * levels * points)
        self.out_proj = nn.Linear(dims, dims)
        self.norm = nn.LayerNorm(dims)
        self._init_offsets()

    def _init_offsets(self) -> None:
        # Start with each head looking in its own direction, points at growing radii (pixels of
        # each level) and spread over depth, so the first steps already see a neighbourhood.
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.logits.weight)
        nn.init.zeros_(self.logits.bias)
        angle = torch.arange(self.heads, dtype=torch.float32) * (2 * math.pi / self.heads)
        direction = torch.stack([angle.cos(), angle.sin()], -1)  # (H, 2)
        radius = torch.arange(1, self.points + 1, dtype=torch.float32)
        bias = torch.zeros(self.heads, self.levels, self.points, self.nd)
        bias[..., :2] = direction[:, None, None, :] * radius[None, None, :, None]
        if self.nd == 3:
            bias[..., 2] = torch.arange(self.points, dtype=torch.float32) - (self.points - 1) / 2
        with torch.no_grad():
            self.offsets.bias.copy_(bias.flatten())

    def forward(self, query: Tensor, pos: Tensor, ref_uv: Tensor, ref_d: Tensor, feats: list[Tensor],
                depth_prob: Tensor | None, to_depth_grid: Tensor, level_sizes: Tensor) -> Tensor:
        B, Nq, C = query.shape
        H, L, P = self.heads, self.levels, self.points
        q = query + pos
        off = self.offsets(q).float().view(B, Nq, H, L, P, self.nd)
        loc_uv = ref_uv[:, :, None, :, None, :] + off[..., :2] / level_sizes[None, None, None, :, None, :]
        a = self.logits(q).view(B, Nq, H, L, P)
        if depth_prob is not None:
            D = depth_prob.shape[2]
            loc_d = ref_d[:, :, None, None, None] + off[..., 2] / D
            grid = torch.cat([loc_uv * to_depth_grid[None, None, None, :, None, :],
                              loc_d.unsqueeze(-1)], -1)
            prior = F.grid_sample(depth_prob.float(), (2 * grid - 1).view(B, 1, 1, -1, 3),
                                  mode="bilinear", padding_mode="zeros", align_corners=False)
            a = a + torch.log(prior.view(B, Nq, H, L, P) + DEPTH_PRIOR_EPS)
        weights = a.view(B, Nq, H, L * P).softmax(-1).view(B, Nq, H, L, P)
        values = [self.value_proj(f).reshape(B * H, C // H, *f.shape[-2:]) for f in feats]
        out = deformable_sample(values, loc_uv, weights)
        return self.norm(query + self.out_proj(out))


class CrossAttentionStack(nn.Module):
    """`layers` x (DepthAwareCrossAttention + FeedForward) on the proposed voxel queries."""

    def __init__(self, layers: int, dims: int, feat_dims: int, heads: int, levels: int, points: int,
                 use_depth: bool, ffn_hidden: int):
        super().__init__()
        self.attn = nn.ModuleList(DepthAwareCrossAttention(dims, feat_dims, heads, levels, points, use_depth)
                                  for _ in range(layers))
        self.ffn = nn.ModuleList(FeedForward(dims, ffn_hidden) for _ in range(layers))

    def forward(self, query: Tensor, pos: Tensor, ref_uv: Tensor, ref_d: Tensor, feats: list[Tensor],
                depth_prob: Tensor | None, to_depth_grid: Tensor, level_sizes: Tensor) -> Tensor:
        for attn, ffn in zip(self.attn, self.ffn, strict=True):
            query = ffn(attn(query, pos, ref_uv, ref_d, feats, depth_prob, to_depth_grid, level_sizes))
        return query
