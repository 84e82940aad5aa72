"""Stage-2 deformable self-attention in 3D: every voxel of the coarse volume attends to `P`
trilinearly sampled points of the (value-projected) volume around itself, per head."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .deformable import deformable_sample
from .layers import FeedForward


def voxel_reference(size: tuple[int, int, int], device: torch.device | None = None) -> Tensor:
    """(X*Y*Z, 3) normalised voxel centres in grid_sample order (z, y, x), x-major rows."""
    axes = [(torch.arange(n, dtype=torch.float32, device=device) + 0.5) / n for n in size]
    gx, gy, gz = torch.meshgrid(*axes, indexing="ij")
    return torch.stack([gz, gy, gx], -1).reshape(-1, 3)


def neighbour_offsets(n: int) -> Tensor:
    """(n, 3) initial sampling offsets in voxels: the 26 neighbours of a voxel in turn, then the
    same directions twice as far, and so on, so the first steps already see the 3D vicinity."""
    r = torch.tensor([-1.0, 0.0, 1.0])
    dirs = torch.stack(torch.meshgrid(r, r, r, indexing="ij"), -1).reshape(-1, 3)
    dirs = dirs[dirs.abs().sum(-1) > 0]  # (26, 3)
    k = torch.arange(n)
    return dirs[k % len(dirs)] * (1 + k // len(dirs)).unsqueeze(-1).float()


class DeformableSelfAttention3D(nn.Module):
    """One block: volume (B, C, X, Y, Z), pos (N, C) -> LN(x + attn(x + pos)) then FFN, same shape."""

    def __init__(self, size: tuple[int, int, int], dims: int, heads: int, points: int, ffn_hidden: int):
        super().__init__()
        if dims % heads:
            raise ValueError(f"model.unet_channels={dims} must be divisible by model.self_attn_heads={heads}")
        self.size, self.heads, self.points = tuple(size), heads, points
        self.value_proj = nn.Linear(dims, dims)
        self.offsets = nn.Linear(dims, heads * points * 3)
        self.logits = nn.Linear(dims, heads * points)
        self.out_proj = nn.Linear(dims, dims)
        self.norm = nn.LayerNorm(dims)
        self.ffn = FeedForward(dims, ffn_hidden)
        self.register_buffer("ref", voxel_reference(self.size), persistent=False)
        # grid_sample order (z, y, x): an offset of one voxel along each axis, normalised.
        self.register_buffer("voxel_step", 1.0 / torch.tensor(self.size[::-1], dtype=torch.float32), persistent=False)
        nn.init.zeros_(self.offsets.weight)
        nn.init.zeros_(self.logits.weight)
        nn.init.zeros_(self.logits.bias)
        with torch.no_grad():
            self.offsets.bias.copy_(neighbour_offsets(heads * points).flatten())

    def forward(self, volume: Tensor, pos: Tensor) -> Tensor:
        B, C, X, Y, Z = volume.shape
        H, P = self.heads, self.points
        x = volume.flatten(2).transpose(1, 2)  # (B, N, C)
        N = x.shape[1]
        q = x + pos
        # fp32 coordinates also under autocast (see deformable.py).
        loc = self.ref.view(1, N, 1, 1, 1, 3) + self.offsets(q).float().view(B, N, H, 1, P, 3) * self.voxel_step
        weights = self.logits(q).view(B, N, H, P).softmax(-1).view(B, N, H, 1, P)
        value = self.value_proj(x).transpose(1, 2).reshape(B * H, C // H, X, Y, Z)
        out = deformable_sample([value], loc, weights)
        x = self.ffn(self.norm(x + self.out_proj(out)))
        return x.transpose(1, 2).reshape(B, C, X, Y, Z)
