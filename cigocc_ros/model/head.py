"""Occupancy head: semantic logits from the coarse volume, upsampled to the grid.

"trilinear": one logit vector per coarse voxel, trilinearly upsampled in x, y and z. With
coarse voxels of 4 grid cells (lite) this cannot represent a 0.2 m ground layer: the best
coarse labels upsampled so score about 36 IoU (docs/architecture.md, bench/ceiling.py).
"columns": each coarse voxel predicts the logits of its `z_sub` sub-layers (the grid's full
height resolution; a sub-pixel convolution along z), which are then upsampled in x and y only.
"""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

HEADS = ("trilinear", "columns")


class OccupancyHead(nn.Module):
    """(B, C, X', Y', Z') -> (B, num_classes, X, Y, Z) logits for `out_size` = (X, Y, Z).

    The head's own ("native") resolution is (X', Y', Z') for "trilinear" and (X', Y', Z' * z_sub)
    for "columns"; `upsample` takes native logits to any size.
    """

    def __init__(self, channels: int, num_classes: int, out_size: tuple[int, int, int],
                 kind: str = "trilinear", z_sub: int = 1):
        super().__init__()
        if kind not in HEADS:
            raise ValueError(f"model.head must be one of {HEADS}, got {kind!r}")
        self.out_size = tuple(out_size)
        self.num_classes = num_classes
        self.z_sub = z_sub if kind == "columns" else 1
        self.body = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels),
                                  nn.ReLU(inplace=True), nn.Conv3d(channels, num_classes * self.z_sub, 1))

    def native(self, x: Tensor) -> Tensor:
        """(B, C, X', Y', Z') -> logits at the head's resolution (B, n_cls, X', Y', Z' * z_sub);
        sub-layer k of coarse layer z is grid layer z * z_sub + k."""
        logits = self.body(x)
        if self.z_sub == 1:
            return logits
        B, _, X, Y, Z = logits.shape
        logits = logits.view(B, self.z_sub, self.num_classes, X, Y, Z).permute(0, 2, 3, 4, 5, 1)
        return logits.reshape(B, self.num_classes, X, Y, Z * self.z_sub)

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
