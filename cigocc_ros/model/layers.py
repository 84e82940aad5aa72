"""Small building blocks shared by the stage-2 attention layers."""
from __future__ import annotations

import torch
from torch import Tensor, nn


class FeedForward(nn.Module):
    """Residual MLP block with post-norm: x -> LN(x + W2 relu(W1 x)); x (..., C)."""

    def __init__(self, dims: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dims, hidden), nn.ReLU(inplace=True), nn.Linear(hidden, dims))
        self.norm = nn.LayerNorm(dims)

    def forward(self, x: Tensor) -> Tensor:
        return self.norm(x + self.net(x))


class VoxelPositionEmbedding(nn.Module):
    """Learned position of each voxel as a sum of per-axis embeddings (X + Y + Z rows instead of
    X*Y*Z): (X, Y, Z) volume -> (X*Y*Z, C) in x-major order (the order of `flatten(2)`)."""

    def __init__(self, size: tuple[int, int, int], dims: int):
        super().__init__()
        self.size = tuple(size)
        self.embed_x = nn.Parameter(torch.randn(size[0], dims) * 0.02)
        self.embed_y = nn.Parameter(torch.randn(size[1], dims) * 0.02)
        self.embed_z = nn.Parameter(torch.randn(size[2], dims) * 0.02)

    def forward(self) -> Tensor:
        e = self.embed_x[:, None, None] + self.embed_y[None, :, None] + self.embed_z[None, None, :]
        return e.reshape(-1, e.shape[-1])
