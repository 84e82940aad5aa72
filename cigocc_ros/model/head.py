"""Occupancy head: semantic logits on the coarse volume, trilinearly upsampled to the grid."""
from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class OccupancyHead(nn.Module):
    """(B, C, X/ds, Y/ds, Z/ds) -> (B, num_classes, X, Y, Z) logits for `out_size` = (X, Y, Z)."""

    def __init__(self, channels: int, num_classes: int, out_size: tuple[int, int, int]):
        super().__init__()
        self.out_size = tuple(out_size)
        self.body = nn.Sequential(nn.Conv3d(channels, channels, 3, padding=1, bias=False), nn.BatchNorm3d(channels),
                                  nn.ReLU(inplace=True), nn.Conv3d(channels, num_classes, 1))

    def forward(self, x: Tensor, size: tuple[int, int, int] | None = None, upsample: bool = True) -> Tensor:
        """Logits at `size` (default: the full grid `out_size`); upsample=False: at the input's
        (coarse) resolution."""
        logits = self.body(x)
        size = tuple(size or self.out_size)
        if not upsample or tuple(logits.shape[-3:]) == size:
            return logits
        return F.interpolate(logits, size=size, mode="trilinear", align_corners=False)
