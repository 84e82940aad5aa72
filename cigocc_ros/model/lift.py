"""Depth-weighted lift (LSS style) of fused image features into the coarse voxel volume.

Every feature pixel (i, j) of stride s is a ray through the image point
(u, v) = (s*j + (s-1)/2, s*i + (s-1)/2); each depth-bin centre d on it is a frustum point
d * K^-1 [u, v, 1] in the camera frame, carried into the grid (velodyne) frame by
T_cam_grid^-1. A frustum point adds context(i, j) * p(d | i, j) to the voxel holding it and
p(d | i, j) to that voxel's "mass" (the depth evidence that stage 2 uses as its proposal).
The scatter is one `index_add_` over all points; points outside the volume go to a spare row
that is dropped, so shapes never depend on the data.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .depth import bin_centres


def pixel_rays(K: Tensor, size: tuple[int, int], stride: int) -> Tensor:
    """Camera-frame rays with z = 1 through the feature-cell centres: (B, h*w, 3)."""
    h, w = size
    dev = K.device
    v = torch.arange(h, device=dev, dtype=torch.float32) * stride + (stride - 1) / 2
    u = torch.arange(w, device=dev, dtype=torch.float32) * stride + (stride - 1) / 2
    vv, uu = torch.meshgrid(v, u, indexing="ij")
    pix = torch.stack([uu, vv, torch.ones_like(uu)], -1).reshape(1, h * w, 3)
    return pix @ torch.linalg.inv_ex(K.float())[0].transpose(1, 2)  # inv_ex: no error check, no GPU sync


def project_to_image(points: Tensor, K: Tensor, T_cam_grid: Tensor) -> tuple[Tensor, Tensor]:
    """Grid-frame points (N, 3) -> pixel (B, N, 2) and camera depth (B, N), in fp32."""
    cam = points.unsqueeze(0) @ T_cam_grid[:, :3, :3].transpose(1, 2) + T_cam_grid[:, None, :3, 3]
    z = cam[..., 2]
    uv = (cam @ K.transpose(1, 2))[..., :2] / z.clamp_min(1e-3).unsqueeze(-1)
    return uv, z


class DepthLift(nn.Module):
    """Scatter (context (B, C, h, w), depth prob (B, D, h, w)) into (B, C, X, Y, Z) + (B, 1, X, Y, Z).

    `volume_size`, `voxel_size`, `origin` describe the coarse volume in the grid frame (x forward,
    y left, z up; origin = outer corner of voxel (0, 0, 0)). `stride` is the feature stride.
    """

    def __init__(self, volume_size: tuple[int, int, int], voxel_size: float, origin: tuple[float, float, float],
                 depth_min: float, depth_max: float, bins: int, stride: int):
        super().__init__()
        self.volume_size = tuple(volume_size)
        self.voxel_size = float(voxel_size)
        self.stride = int(stride)
        self.register_buffer("origin", torch.tensor(origin, dtype=torch.float32), persistent=False)
        self.register_buffer("depths", bin_centres(depth_min, depth_max, bins), persistent=False)

    def voxel_index(self, K: Tensor, T_cam_grid: Tensor, size: tuple[int, int]) -> Tensor:
        """(B, D, h*w) int64 flat voxel index of each frustum point over the batch (b*N + voxel),
        or B*N for points outside the volume."""
        B = K.shape[0]
        X, Y, Z = self.volume_size
        rays = pixel_rays(K, size, self.stride)  # (B, hw, 3)
        cam = self.depths.view(1, -1, 1, 1) * rays.unsqueeze(1)  # (B, D, hw, 3)
        T_grid_cam = torch.linalg.inv_ex(T_cam_grid.float())[0]
        R, t = T_grid_cam[:, :3, :3], T_grid_cam[:, :3, 3]
        pts = torch.einsum("bij,bdnj->bdni", R, cam) + t.view(B, 1, 1, 3)
        idx = torch.floor((pts - self.origin) / self.voxel_size).long()
        ix, iy, iz = idx.unbind(-1)
        inside = (ix >= 0) & (ix < X) & (iy >= 0) & (iy < Y) & (iz >= 0) & (iz < Z)
        b = torch.arange(B, device=K.device).view(B, 1, 1)
        flat = ((b * X + ix) * Y + iy) * Z + iz
        return torch.where(inside, flat, torch.full_like(flat, B * X * Y * Z))

    def forward(self, context: Tensor, prob: Tensor, K: Tensor, T_cam_grid: Tensor,
                count: bool = False) -> tuple[Tensor, ...]:
        """-> (features (B, C, X, Y, Z), mass (B, 1, X, Y, Z)), plus with `count` the number of
        frustum points in each voxel (B, 1, X, Y, Z): many near the camera, few far away."""
        B, C, h, w = context.shape
        X, Y, Z = self.volume_size
        index = self.voxel_index(K, T_cam_grid, (h, w))
        # Sums over many points: accumulate in fp32 even under autocast.
        with torch.autocast(context.device.type, enabled=False):
            ctx = context.float().flatten(2).transpose(1, 2)  # (B, hw, C)
            ctx = torch.cat([ctx, torch.ones_like(ctx[..., :1])], -1)  # last channel -> mass
            vals = prob.float().flatten(2).unsqueeze(-1) * ctx.unsqueeze(1)  # (B, D, hw, C+1)
            out = torch.zeros(B * X * Y * Z + 1, C + 1, device=context.device, dtype=torch.float32)
            out.index_add_(0, index.reshape(-1), vals.reshape(-1, C + 1))
        vol = out[:-1].view(B, X, Y, Z, C + 1).permute(0, 4, 1, 2, 3)
        if not count:
            return vol[:, :C], vol[:, C:]
        flat = index.reshape(-1)
        n = torch.zeros(B * X * Y * Z + 1, device=context.device, dtype=torch.float32)
        n.index_add_(0, flat, torch.ones_like(flat, dtype=torch.float32))
        return vol[:, :C], vol[:, C:], n[:-1].view(B, 1, X, Y, Z)
