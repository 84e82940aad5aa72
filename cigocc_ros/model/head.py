"""Occupancy head: semantic logits from the coarse volume, upsampled to the grid.

Each coarse voxel predicts the logits of (sx, sy, sz) = `subdivide` sub-voxels (a sub-pixel
convolution, 3D pixel shuffle); that "native" volume is trilinearly upsampled to the grid.
With (1, 1, 1) the head is coarse logits upsampled: for coarse voxels of 4 grid cells (lite)
that cannot represent a 0.2 m ground layer (the best coarse labels upsampled so score about
36 IoU; docs/architecture.md, bench/ceiling.py). Lite's (2, 2, 4) resolves z fully.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class OccupancyHead(nn.Module):
    """(B, C, X', Y', Z') -> (B, num_classes, X, Y, Z) logits for `out_size` = (X, Y, Z).

    The head's native resolution is (X' sx, Y' sy, Z' sz); `upsample` takes native logits to any
    size.
    """

    def __init__(self, channels: int, num_classes: int, out_size: tuple[int, int, int],
                 subdivide: tuple[int, int, int] = (1, 1, 1)):
        super().__init__()
        self.out_size = tuple(out_size)
        self.num_classes = num_classes
        self.subdivide = tuple(int(k) for k in subdivide)
        n_sub = self.subdivide[0] * self.subdivide[1] * self.subdivide[2]
        self.body = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels),
                                  nn.ReLU(inplace=True), nn.Conv3d(channels, num_classes * n_sub, 1))

    def native(self, x: Tensor) -> Tensor:
        """(B, C, X', Y', Z') -> logits at the head's resolution (B, n_cls, X' sx, Y' sy, Z' sz);
        sub-voxel (a, b, c) of coarse voxel (i, j, k) is (i sx + a, j sy + b, k sz + c)."""
        logits = self.body(x)
        sx, sy, sz = self.subdivide
        if sx * sy * sz == 1:
            return logits
        B, _, X, Y, Z = logits.shape
        logits = logits.view(B, sx, sy, sz, self.num_classes, X, Y, Z).permute(0, 4, 5, 1, 6, 2, 7, 3)
        return logits.reshape(B, self.num_classes, X * sx, Y * sy, Z * sz)

    @staticmethod
    def upsample(logits: Tensor, size: tuple[int, int, int]) -> Tensor:
        """Native logits -> (B, n_cls, *size), trilinear with align_corners=False (an axis whose
        size is kept is copied exactly)."""
        if tuple(logits.shape[-3:]) == tuple(size):
            return logits
        return F.interpolate(logits, size=tuple(size), mode="trilinear", align_corners=False)

    def forward(self, x: Tensor, size: tuple[int, int, int] | None = None, upsample: bool = True) -> Tensor:
        """Logits at `size` (default: the full grid `out_size`); upsample=False: at the head's
        native resolution."""
        logits = self.native(x)
        return logits if not upsample else self.upsample(logits, size or self.out_size)
