"""Multi-level deformable attention sampling with `grid_sample` only (no custom ops).

The core of both stage-2 attentions: each query gathers, per head, `P` points on each of `L`
value maps (2D image levels or one 3D voxel volume), bilinearly / trilinearly interpolated,
and sums them with its attention weights.

Conventions (shared with the loop reference in test/test_deformable_attention.py):
- `values[l]`: (B * heads, Dh, *S_l) with S_l = (h, w) for 2D or (X, Y, Z) for 3D.
- `locations`: (B, Nq, heads, L, P, nd) in [0, 1], ordered like grid_sample's grid: the first
  coordinate runs along the LAST spatial axis (w; or Z), the second along the one before it
  (h; or Y), the third (3D only) along the first (X). 0 and 1 are the outer edges of the map
  (align_corners=False); samples outside read zeros.
- `weights`: (B, Nq, heads, L, P), applied as given (the caller normalises them).
Returns (B, Nq, heads * Dh), heads concatenated in order.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def deformable_sample(values: list[Tensor], locations: Tensor, weights: Tensor) -> Tensor:
    """Weighted sum of sampled values (see module docstring for shapes)."""
    B, Nq, H, L, P, nd = locations.shape
    if len(values) != L:
        raise ValueError(f"deformable_sample: {len(values)} value maps for {L} levels")
    # grid_sample wants (B*H, ...) batches and coordinates in [-1, 1].
    grids = (2.0 * locations - 1.0).permute(0, 2, 3, 1, 4, 5).reshape(B * H, L, Nq, P, nd)
    w = weights.permute(0, 2, 3, 1, 4).reshape(B * H, L, 1, Nq, P)
    out = None
    for lvl, value in enumerate(values):
        grid = grids[:, lvl]
        # bf16 has 8 mantissa bits: as coordinates that is up to a pixel on a 320-wide map, so
        # sample in the wider of the two dtypes (fp32 under autocast).
        dtype = torch.promote_types(value.dtype, grid.dtype)
        value, grid = value.to(dtype), grid.to(dtype)
        if value.dim() == 4:
            if nd != 2:
                raise ValueError("deformable_sample: 2D value maps need 2 coordinates per point")
            sampled = F.grid_sample(value, grid, mode="bilinear",
                                    padding_mode="zeros", align_corners=False)  # (B*H, Dh, Nq, P)
        elif value.dim() == 5:
            if nd != 3:
                raise ValueError("deformable_sample: 3D value volumes need 3 coordinates per point")
            sampled = F.grid_sample(value, grid.unsqueeze(3), mode="bilinear",
                                    padding_mode="zeros", align_corners=False).squeeze(-1)
        else:
            raise ValueError(f"deformable_sample: value map {lvl} has {value.dim()} dims, expected 4 or 5")
        part = (sampled * w[:, lvl].to(sampled.dtype)).sum(-1)  # (B*H, Dh, Nq)
        out = part if out is None else out + part
    Dh = out.shape[1]
    return out.view(B, H, Dh, Nq).permute(0, 3, 1, 2).reshape(B, Nq, H * Dh)
