"""The pseudo-LiDAR volume: stereo depth kept at its resolution, counted per voxel.

Every pixel with a stereo depth is back-projected (camera point d K^-1 [u, v, 1] through the
pixel's centre, carried into the grid frame by T_cam_grid^-1) and adds its matching confidence
to the voxel holding it, on the occupancy head's native grid (grid / model.coarse_downsample *
model.head_subdivide: 0.4 x 0.4 x 0.2 m for lite and full); with per-pixel features (the
segmentation branch's class probabilities of the pixel's stride-8 cell) each point also adds
its confidence times them: a semantic pseudo-LiDAR, the network's own version of the stereo +
segmentation control. Like the lift, one `index_add_` over all pixels with a spare slot for
points outside the volume: no shape depends on the data.

Where it goes (model/cigocc.py, docs/architecture.md): summed into the coarse volume as two
channels of the 3D UNet's input (stage 1), into the stage-2 proposal score (a coarse voxel that
holds stereo points is proposed, as VoxFormer proposes from depth), and as per-voxel evidence
added to the occupancy head's native logits. With no stereo map (mono) it is empty and costs
nothing at inference.

Counts say where stereo saw a surface, not where it saw through: a voxel without points may be
free (in front of the measured surface) or hidden (behind it). With `model.stereo_free_space`
(StereoFreeSpace) every native voxel also gets its signed distance along its ray to the
nearest stereo surface in its pixel neighbourhood, split into "in front" and "behind" channels
of the same evidence term, so the network can empty the free space that stereo observed (what
the stereo height-rule control gets for free by predicting nothing where it has no point).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .lift import project_to_image


class PseudoLidar(nn.Module):
    """forward(depth (B, 1, H, W) metric, 0 = none; conf (B, 1, H, W) in [0, 1] or None (1 where
    there is a depth); K (B, 3, 3) of that image; T_cam_grid (B, 4, 4); optional feats (B, F,
    h, w), one vector per stride-s cell of the image) -> (B, 1 + F, X, Y, Z): channel 0 the
    confidence-weighted point counts, channels 1.. the confidence-weighted sums of the points'
    cell features, on the volume of `size` voxels of `voxel_size` (x, y, z) metres from
    `origin` (grid frame)."""

    def __init__(self, size: tuple[int, int, int], voxel_size: tuple[float, float, float],
                 origin: tuple[float, float, float]):
        super().__init__()
        self.size = tuple(int(n) for n in size)
        self.register_buffer("voxel_size", torch.tensor(voxel_size, dtype=torch.float32), persistent=False)
        self.register_buffer("origin", torch.tensor(origin, dtype=torch.float32), persistent=False)

    def forward(self, depth: Tensor, conf: Tensor | None, K: Tensor, T_cam_grid: Tensor,
                feats: Tensor | None = None) -> Tensor:
        B, _, H, W = depth.shape
        X, Y, Z = self.size
        F_ = 0 if feats is None else feats.shape[1]
        with torch.autocast(depth.device.type, enabled=False):  # metric geometry in fp32
            d = depth.float().flatten(1)  # (B, HW)
            w = (conf.float().flatten(1) if conf is not None else torch.ones_like(d)) * (d > 0)
            v = torch.arange(H, device=d.device, dtype=torch.float32)
            u = torch.arange(W, device=d.device, dtype=torch.float32)
            vv, uu = torch.meshgrid(v, u, indexing="ij")
            pix = torch.stack([uu, vv, torch.ones_like(uu)], -1).reshape(1, H * W, 3)
            rays = pix @ torch.linalg.inv_ex(K.float())[0].transpose(1, 2)  # (B, HW, 3), z = 1
            T = torch.linalg.inv_ex(T_cam_grid.float())[0]  # grid <- camera
            pts = (rays * d.unsqueeze(-1)) @ T[:, :3, :3].transpose(1, 2) + T[:, None, :3, 3]
            idx = torch.floor((pts - self.origin) / self.voxel_size).long()
            ix, iy, iz = idx.unbind(-1)
            inside = (ix >= 0) & (ix < X) & (iy >= 0) & (iy < Y) & (iz >= 0) & (iz < Z) & (w > 0)
            b = torch.arange(B, device=d.device).view(B, 1)
            flat = torch.where(inside, ((b * X + ix) * Y + iy) * Z + iz, torch.full_like(ix, B * X * Y * Z))
            vals = w.unsqueeze(1)  # (B, 1, HW): channels first, as the volume is laid out
            if feats is not None:
                # Each pixel takes its stride-s cell's vector (depth.cells_of's rule): a nearest
                # upsampling by the integer stride is exactly cell (v // s, u // s).
                h, wc = feats.shape[-2:]
                s = -(-H // h)
                per_pixel = F.interpolate(feats.float(), size=(h * s, wc * s), mode="nearest")[..., :H, :W]
                vals = torch.cat([vals, vals * per_pixel.flatten(2)], 1)  # (B, 1 + F, HW)
            # Scattered channels-first (one row per channel), so the volume needs no transposing
            # copy before the pooling and the convolutions that read it.
            out = torch.zeros(1 + F_, B * X * Y * Z + 1, device=d.device, dtype=torch.float32)
            out.index_add_(1, flat.reshape(-1), vals.transpose(0, 1).reshape(1 + F_, -1))
        return out[:, :-1].view(1 + F_, B, X, Y, Z).transpose(0, 1)  # contiguous for B = 1 (inference)


def evidence_features(volume: Tensor) -> Tensor:
    """(B, 1 + F, X, Y, Z) pseudo-LiDAR (counts, feature sums) -> (B, 2 + F, X, Y, Z):
    log(1 + count), whether any point is there, and the points' mean features. Zero where there
    is no point (so an empty volume adds nothing to a bias-free convolution)."""
    counts = volume[:, :1]
    mean = volume[:, 1:] / counts.clamp_min(1e-6)
    return torch.cat([torch.log1p(counts), (counts > 0).to(counts.dtype), mean], 1)


def pool_evidence(volume: Tensor, factors: tuple[int, int, int]) -> Tensor:
    """(B, 1 + F, X, Y, Z) pseudo-LiDAR -> per block of `factors` (B, 2 + F, X/fx, Y/fy, Z/fz):
    log(1 + summed count), the share of the block's voxels holding a point, and the block's
    mean features (the stage-1 UNet's channels). Block sums by a reshape (avg_pool3d's CPU
    kernel took 46 ms on the lite volume)."""
    B, C, X, Y, Z = volume.shape
    fx, fy, fz = factors

    def block_sum(v: Tensor) -> Tensor:
        return v.reshape(B, v.shape[1], X // fx, fx, Y // fy, fy, Z // fz, fz).sum((3, 5, 7))

    total = block_sum(volume)
    share = block_sum((volume[:, :1] > 0).to(volume.dtype)) / (fx * fy * fz)
    return torch.cat([torch.log1p(total[:, :1]), share, total[:, 1:] / total[:, :1].clamp_min(1e-6)], 1)


class StereoFreeSpace(nn.Module):
    """forward(depth (B, 1, H, W) metric stereo depth, 0 = none; K (B, 3, 3); T_cam_grid (B, 4, 4))
    -> (B, 2, X, Y, Z) on the volume of `size` voxels of `voxel_size` (x, y, z) metres from
    `origin` (grid frame): channel 0 "in front", channel 1 "behind" of the stereo surface,
    each min(|r|, 3) / 3 on its side of r = (d_s - z) / sigma(d_s), where z is the voxel
    centre's camera depth and d_s the nearest valid stereo depth in the `cell` x `cell` pixel
    block its centre projects into (the nearest: a voxel counts as in front only of everything
    stereo saw there). sigma = sigma0 + quad * d_s^2 m: a voxel's size near the camera, half a
    pixel of KITTI's disparity (f b ~ 390 px m) far away. Zero for voxels outside the image,
    behind the camera or in a block without stereo, so no stereo map -> all zero."""

    def __init__(self, size: tuple[int, int, int], voxel_size: tuple[float, float, float],
                 origin: tuple[float, float, float], cell: int = 4, sigma0: float = 0.3, quad: float = 0.0013):
        super().__init__()
        self.size, self.cell, self.sigma0, self.quad = tuple(int(n) for n in size), int(cell), sigma0, quad
        axes = [origin[i] + (torch.arange(self.size[i], dtype=torch.float32) + 0.5) * voxel_size[i] for i in range(3)]
        centres = torch.stack(torch.meshgrid(*axes, indexing="ij"), -1).reshape(-1, 3)
        self.register_buffer("centres", centres, persistent=False)  # (XYZ, 3) grid frame, flat x-major

    def forward(self, depth: Tensor, K: Tensor, T_cam_grid: Tensor) -> Tensor:
        B, _, H, W = depth.shape
        s = self.cell
        with torch.autocast(depth.device.type, enabled=False):
            d = depth.float()
            far = torch.finfo(torch.float32).max
            nearest = -F.max_pool2d(-torch.where(d > 0, d, torch.full_like(d, far)), s, s, ceil_mode=True)
            hc, wc = nearest.shape[-2:]
            uv, z = project_to_image(self.centres, K.float(), T_cam_grid.float())  # (B, N, 2), (B, N)
            px = torch.floor(uv + 0.5)  # the pixel whose centre is nearest
            inside = (z > 0) & (px[..., 0] >= 0) & (px[..., 0] < W) & (px[..., 1] >= 0) & (px[..., 1] < H)
            cell = ((px[..., 1] / s).floor().clamp(0, hc - 1) * wc + (px[..., 0] / s).floor().clamp(0, wc - 1)).long()
            ds = nearest.flatten(1).gather(1, cell)  # (B, N)
            seen = inside & (ds < far)
            ds = torch.where(seen, ds, torch.zeros_like(ds))
            r = torch.where(seen, (ds - z) / (self.sigma0 + self.quad * ds * ds), torch.zeros_like(ds))
            out = torch.stack([r.clamp(0, 3), (-r).clamp(0, 3)], 1) / 3  # (B, 2, N)
        return out.view(B, 2, *self.size)


class EvidenceLogits(nn.Module):
    """Per-voxel logits from the pseudo-LiDAR evidence: a bias-free 1x1x1 convolution of
    evidence_features (B, 2 + F, X, Y, Z) -> (B, n_cls, X, Y, Z), added to the head's native
    logits. With `free_space` a second 1x1x1 convolution `free` of StereoFreeSpace's
    (B, 2, X, Y, Z) channels is added to the samples that have a stereo map (`has_stereo` (B,));
    its bias is then the per-class shift a stereo map brings everywhere (mono and stereo frames
    over-fill differently, so they need their own operating point: scripts/calibrate_empty.py
    sets both). Separate tensors, so weights trained without `free` load and start from its
    zeros. Everything starts at zero (the network learns how far to trust stereo)."""

    def __init__(self, num_classes: int, features: int = 0, free_space: bool = False):
        super().__init__()
        self.conv = nn.Conv3d(2 + features, num_classes, 1, bias=False)
        nn.init.zeros_(self.conv.weight)
        self.free = nn.Conv3d(2, num_classes, 1) if free_space else None
        if self.free is not None:
            nn.init.zeros_(self.free.weight)
            nn.init.zeros_(self.free.bias)

    def forward(self, volume: Tensor, free: Tensor | None = None, has_stereo: Tensor | None = None) -> Tensor:
        out = self.conv(evidence_features(volume).to(self.conv.weight.dtype))
        if self.free is not None and free is not None:
            gate = has_stereo.to(out.dtype).view(-1, 1, 1, 1, 1) if has_stereo is not None else 1.0
            out = out + self.free(free.to(self.free.weight.dtype)) * gate
        return out
