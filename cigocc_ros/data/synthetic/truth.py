"""Voxel ground truth of the synthetic SemanticKITTI: labels from the exact overlap of the
scene's solids and ground surface with each voxel, the space observed along a whole sequence
(for `invalid`), and a scan's own occupancy and free space (for `.bin` and `occluded`).
"""
from __future__ import annotations

import numpy as np

from ...config import GridConfig
from ...geometry import voxel_centers
from .. import semantic_kitti as sk
from ..ray_march import march_cells
from .layout import LIDAR_HEIGHT
from .scene import BOX, CYLINDER, ELLIPSOID, Primitives, Scene

VIS_STEP = 0.2  # metres between samples along a ray when marking observed space
VIS_RANGE = 60.0  # free space is marked this far along rays that hit nothing nearer


class ObservedSpace:
    """Space observed by any ray of a sequence, accumulated in a map-aligned grid of 0.2 m
    cells around the trajectory (looked up at the voxel centres of each labelled frame)."""

    def __init__(self, velo_poses: np.ndarray, grid: GridConfig, terrain, margin: float = 62.0):
        xy = velo_poses[:, :2, 3]
        cell = grid.voxel_size
        # Map-aligned cells (frames are pitched and rolled, so no frame's lattice matches them;
        # a voxel takes the cell of its centre). z spans the ground under the region (terrain
        # minus the deepest camber) to above any grid's top (4.4 m over a velodyne tilted by up
        # to ~10 % over 52 m).
        lo_xy, hi_xy = xy.min(0) - margin, xy.max(0) + margin
        g = np.stack(np.meshgrid(np.linspace(lo_xy[0], hi_xy[0], 64), np.linspace(lo_xy[1], hi_xy[1], 64)), -1)
        z = terrain.height(g.reshape(-1, 2))
        base = velo_poses[0, :3, 3] + np.asarray(grid.origin)
        lo = np.array([*lo_xy, z.min() - 1.0])
        lo = base + cell * np.floor((lo - base) / cell)
        hi = np.array([*hi_xy, max(z.max() + 8.0, velo_poses[:, 2, 3].max() + 10.0)])
        self.cell = cell
        self.origin = lo
        self.shape = tuple(int(v) for v in np.ceil((hi - lo) / cell))
        self.seen = np.zeros(int(np.prod(self.shape)), dtype=bool)

    def add(self, origin: np.ndarray, dirs: np.ndarray, t: np.ndarray) -> None:
        """Mark the cells along rays origin (3,) + s * dirs (N, 3), s in [0, t (N,)]."""
        # Rays climbing out of the grid's top are cut one step past it: the samples beyond
        # would all fall outside and be dropped, so the marks are the same, only cheaper.
        top = self.origin[2] + self.shape[2] * self.cell
        with np.errstate(divide="ignore"):
            exit_t = np.where(dirs[:, 2] > 0, (top - origin[2]) / dirs[:, 2] + VIS_STEP, np.inf)
        t = np.minimum(t, exit_t)
        for c in range(0, len(t), 16384):
            self.seen[march_cells(origin, dirs[c:c + 16384], t[c:c + 16384], VIS_STEP, self.origin,
                                   self.cell, self.shape)] = True

    def lookup(self, pts: np.ndarray) -> np.ndarray:
        """(M,) bool: the cells holding map-frame points (M, 3) were observed."""
        idx = np.floor((pts - self.origin) / self.cell).astype(np.int64)
        ok = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
        out = np.zeros(len(pts), dtype=bool)
        out[ok] = self.seen[np.ravel_multi_index(tuple(idx[ok].T), self.shape)]
        return out


def ground_voxels(scene: Scene, T_map_velo: np.ndarray, grid: GridConfig) -> tuple[np.ndarray, np.ndarray]:
    """(X, Y, Z) bool: the voxels of the grid of velodyne pose T_map_velo (4, 4) that the ground
    surface passes through; (X, Y) uint8: the ground class at each grid column's centre.

    Per column of the (pitched, rolled) grid: the point where its axis meets the terrain's
    height, then the ground height (terrain + crown / kerb) at that point and at the column's
    four corners there. A voxel holds ground when its vertical extent in the map (centre z +-
    half * (|R20| + |R21| + |R22|)) overlaps the span of those five heights, so a slope or a
    kerb's step inside a column marks every layer it crosses."""
    size = tuple(grid.size)
    vs, half = grid.voxel_size, grid.voxel_size / 2.0
    R, t = T_map_velo[:3, :3], T_map_velo[:3, 3]
    ox, oy, oz = grid.origin
    cx = ox + (np.arange(size[0]) + 0.5) * vs
    cy = oy + (np.arange(size[1]) + 0.5) * vs
    X, Y = np.meshgrid(cx, cy, indexing="ij")
    col = np.stack([X, Y, np.zeros_like(X)], -1).reshape(-1, 3)  # velodyne, z = 0
    # Map z along a column axis is linear in the velodyne z: z_map = a + R22 * z.
    a = col @ R[2] + t[2]
    xy0 = col @ R[:2].T + t[:2]
    # z where the axis meets the terrain: two fixed-point steps (the axis is near vertical).
    zv = np.full(len(col), -float(LIDAR_HEIGHT))
    for _ in range(2):
        xy = xy0 + zv[:, None] * R[:2, 2]
        zv = (scene.terrain.height(xy) - a) / R[2, 2]
    centre = xy0 + zv[:, None] * R[:2, 2]
    corners = [centre + (sx * half) * R[:2, 0] + (sy * half) * R[:2, 1] for sx in (-1, 1) for sy in (-1, 1)]
    lab, _, off = scene.ground_surface(centre, with_paint=False, with_offset=True)
    h = [scene.terrain.height(centre) + off] + [scene.ground_height(c) for c in corners]
    h_lo, h_hi = np.min(h, axis=0), np.max(h, axis=0)
    zc = oz + (np.arange(size[2]) + 0.5) * vs
    z_map = a[:, None] + R[2, 2] * zc[None]  # (columns, Z) voxel centres' map z
    reach = half * (abs(R[2, 0]) + abs(R[2, 1]) + abs(R[2, 2]))
    surface = (z_map - reach <= h_hi[:, None]) & (z_map + reach >= h_lo[:, None])
    return surface.reshape(size), lab.reshape(size[:2])


def voxel_labels(scene: Scene, T_map_velo: np.ndarray, grid: GridConfig) -> np.ndarray:
    """(X, Y, Z) uint8 labels of the grid of a velodyne pose T_map_velo (4, 4).

    A voxel takes the class of every solid that overlaps its cube (exact for boxes and vertical
    cylinders, whose yaw the test handles by separating axes; an ellipsoid inflated by the
    cube's half diagonal), later solids (higher class priority) overwriting earlier ones; the
    ground labels the voxels its surface passes through (`ground_voxels`) with the ground class
    at the column's centre."""
    size = tuple(grid.size)
    half = grid.voxel_size / 2.0
    centres = voxel_centers(size, grid.voxel_size, grid.origin).astype(np.float64)
    R, t = T_map_velo[:3, :3], T_map_velo[:3, 3]
    labels = np.zeros(size, dtype=np.uint8)
    surface, ground = ground_voxels(scene, T_map_velo, grid)
    labels[surface] = np.broadcast_to(ground[:, :, None], size)[surface]
    prims = scene.prims
    # Index bounds of each solid's bounding box in this grid.
    corners = (prims.corners() - t) @ R  # map -> velodyne
    lo = np.floor((corners.min(1) - np.asarray(grid.origin)) / grid.voxel_size - 0.5).astype(np.int64)
    hi = np.ceil((corners.max(1) - np.asarray(grid.origin)) / grid.voxel_size + 0.5).astype(np.int64)
    lo = np.clip(lo, 0, size)
    hi = np.clip(hi, 0, size)
    # The frame is pitched and rolled: the test runs in map axes, where a voxel's cube is
    # bounded by the box of half sizes `reach` (exact for a level frame).
    reach = half * np.abs(R).sum(1)
    for i in np.flatnonzero(np.all(hi > lo, axis=1)):
        sl = tuple(slice(lo[i, a], hi[i, a]) for a in range(3))
        d = centres[sl] @ R.T + (t - prims.center[i])  # offsets from the solid's centre, map axes
        occ = _overlap(prims, i, d, prims.yaw[i], reach)
        labels[sl][occ] = prims.label[i]
    return labels


def _overlap(prims: Primitives, i: int, d: np.ndarray, alpha: float, reach: np.ndarray) -> np.ndarray:
    """Does the map-axis box of half sizes reach (3,) at offsets d (..., 3) (map axes) from
    solid i's centre overlap solid i? alpha is the solid's yaw in the map."""
    h = prims.half[i]
    rx, ry, rz = reach
    half = float(np.max(reach))
    ca, sa = abs(np.cos(alpha)), abs(np.sin(alpha))
    z_ok = np.abs(d[..., 2]) <= h[2] + rz
    kind = prims.kind[i]
    if kind == BOX:
        u = np.cos(alpha) * d[..., 0] + np.sin(alpha) * d[..., 1]
        v = -np.sin(alpha) * d[..., 0] + np.cos(alpha) * d[..., 1]
        return (z_ok
                & (np.abs(d[..., 0]) <= rx + h[0] * ca + h[1] * sa)
                & (np.abs(d[..., 1]) <= ry + h[0] * sa + h[1] * ca)
                & (np.abs(u) <= h[0] + rx * ca + ry * sa)
                & (np.abs(v) <= h[1] + rx * sa + ry * ca))
    if kind == CYLINDER:
        gx = np.maximum(np.abs(d[..., 0]) - rx, 0.0)
        gy = np.maximum(np.abs(d[..., 1]) - ry, 0.0)
        return z_ok & (gx * gx + gy * gy <= h[0] * h[0])
    if kind == ELLIPSOID:
        u = np.cos(alpha) * d[..., 0] + np.sin(alpha) * d[..., 1]
        v = -np.sin(alpha) * d[..., 0] + np.cos(alpha) * d[..., 1]
        r = h + half * np.sqrt(3.0)
        return (u / r[0]) ** 2 + (v / r[1]) ** 2 + (d[..., 2] / r[2]) ** 2 <= 1.0
    raise ValueError(f"unknown solid kind {kind} at index {i}")


def scan_voxels(points: np.ndarray, raw_labels: np.ndarray, t: np.ndarray, lidar_dirs: np.ndarray,
                grid: GridConfig) -> tuple[np.ndarray, np.ndarray]:
    """(input occupancy, occluded) of a labelled frame in its grid: the scan (points (N, 4),
    raw SemanticKITTI ids (N,), ray lengths t (B, A) and velodyne directions (B, A, 3)) voxelised, and
    every voxel this scan did not cross as free space (its hit voxels included, as in
    SemanticKITTI's files)."""
    occupancy, _ = sk.voxelize_scan(points, raw_labels, grid)
    g = grid
    free = np.zeros(int(np.prod(g.size)), dtype=bool)
    # Stop short of the hit so the sample at the surface does not count as free space.
    tv = np.where(np.isfinite(t), t - 0.5 * VIS_STEP, VIS_RANGE).reshape(-1)
    dirs = lidar_dirs.reshape(-1, 3)
    for c in range(0, len(tv), 16384):
        free[march_cells(np.zeros(3), dirs[c:c + 16384], tv[c:c + 16384], VIS_STEP, np.asarray(g.origin),
                          g.voxel_size, tuple(g.size), end=False)] = True
    return occupancy, ~free.reshape(tuple(g.size)) | occupancy
