"""Vectorised ray marching through a voxel grid: which cells a bundle of rays crosses.

Used for the observed / free space of LiDAR scans (the synthetic generator's visibility, the
targets built from labelled scans, the real-frame quality report) and for line of sight
through an occupancy grid. Rays are sampled every `step` metres (half a voxel or less, so a
ray misses at most the corners of cells it only grazes); all samples of a chunk of rays are
one NumPy expression, never a Python loop over rays.

Grids are (X, Y, Z) arrays flattened in C order whose cell (0, 0, 0) has its outer corner at
`grid_origin` (the convention of GridConfig, docs/conventions.md).
"""
from __future__ import annotations

import numpy as np

from ..config import GridConfig

CHUNK = 16384  # rays per NumPy expression: bounds the memory of the sample arrays


def march_samples(origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, step: float, grid_origin: np.ndarray,
                  cell: float, shape: tuple[int, int, int], end: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Cells met every `step` metres along rays origin + s * dirs, s in [0, t], and at s = t
    itself with `end` (origin (3,), dirs (N, 3) unit, t (N,) finite).

    Returns (flat (M,) int32 cell indices, ray (M,) int32 ray index) of the samples inside the
    grid, in order along each ray (ray-major)."""
    t = np.maximum(np.asarray(t, dtype=np.float64), 0.0)
    n = (np.floor(t / step) + (2 if end else 1)).astype(np.int32)
    ray = np.repeat(np.arange(len(t), dtype=np.int32), n)
    k = np.arange(int(n.sum()), dtype=np.int32) - np.repeat((np.cumsum(n) - n).astype(np.int32), n)
    s = np.minimum(k.astype(np.float32) * np.float32(step / cell), (t / cell).astype(np.float32)[ray])
    if int(np.prod(shape)) >= 2**31:
        raise ValueError(f"grid {shape} too large for int32 cell indices")
    flat = np.zeros(len(s), np.int32)
    ok = np.ones(len(s), dtype=bool)
    for a in range(3):
        o = np.float32((origin[a] - grid_origin[a]) / cell)
        ia = np.floor(o + dirs[:, a].astype(np.float32)[ray] * s).astype(np.int32)
        ok &= ia.view(np.uint32) < shape[a]  # negative indices wrap to huge values
        flat = flat * np.int32(shape[a]) + ia
    return flat[ok], ray[ok]


def march_cells(origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, step: float, grid_origin: np.ndarray,
                cell: float, shape: tuple[int, int, int], end: bool = True) -> np.ndarray:
    """Flat indices (M,) of the cells met along the rays (march_samples without ray ids)."""
    return march_samples(origin, dirs, t, step, grid_origin, cell, shape, end)[0]


def _rays_to(origin: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    d = np.asarray(targets, dtype=np.float64)[:, :3] - np.asarray(origin, dtype=np.float64)
    t = np.linalg.norm(d, axis=1)
    keep = t > 1e-6
    return d[keep] / t[keep, None], t[keep]


def _clip_to_box(origin: np.ndarray, dirs: np.ndarray, t: np.ndarray, grid: GridConfig,
                 margin: float) -> np.ndarray:
    """t cut where each ray leaves the grid's box (+ margin): samples beyond would be dropped
    anyway, so the marks are the same, only cheaper (points up to 70 m away, grid 51.2 m)."""
    lo = np.asarray(grid.origin, dtype=np.float64) - margin
    hi = lo + np.asarray(grid.size) * grid.voxel_size + 2 * margin
    with np.errstate(divide="ignore", invalid="ignore"):
        exit_t = np.where(dirs > 0, (hi - origin) / dirs, np.where(dirs < 0, (lo - origin) / dirs, np.inf))
    return np.minimum(t, exit_t.min(axis=1))


def free_space(origin: np.ndarray, points: np.ndarray, grid: GridConfig, step: float | None = None) -> np.ndarray:
    """(X, Y, Z) bool: voxels crossed by the LiDAR rays from `origin` (3,) to `points` (N, >=3)
    before their hit (the last half step before each hit is not counted, so a hit's own voxel
    is not made free by its ray). Grid frame coordinates."""
    step = step or 0.5 * grid.voxel_size
    dirs, t = _rays_to(origin, points)
    t = _clip_to_box(origin, dirs, t - 0.5 * step, grid, step)
    size = tuple(grid.size)
    free = np.zeros(int(np.prod(size)), dtype=bool)
    for c in range(0, len(t), CHUNK):
        free[march_cells(origin, dirs[c:c + CHUNK], t[c:c + CHUNK], step, np.asarray(grid.origin),
                         grid.voxel_size, size, end=False)] = True
    return free.reshape(size)


def boundary_centres(grid: GridConfig) -> np.ndarray:
    """(M, 3) centres of the voxels on the six faces of the grid (grid frame)."""
    X, Y, Z = grid.size
    face = np.zeros(tuple(grid.size), dtype=bool)
    face[[0, -1]] = True
    face[:, [0, -1]] = True
    face[:, :, [0, -1]] = True
    idx = np.argwhere(face)
    return np.asarray(grid.origin) + (idx + 0.5) * grid.voxel_size


def line_of_sight(occupied: np.ndarray, position: np.ndarray, grid: GridConfig,
                  step: float | None = None) -> np.ndarray:
    """(X, Y, Z) bool: voxels seen from `position` (3,), grid frame: the straight line from the
    position to the voxel meets no occupied voxel before it (the first occupied voxel on a
    line is seen). SemanticKITTI's visibility rule (its voxelizer traces voxel -> sensor).

    Rays go from the position to the centre of every voxel on the grid's faces; their cells
    cover the grid (rays 1 voxel apart at the far faces, denser nearer), and each ray's
    samples count until its first occupied cell.
    """
    step = step or 0.5 * grid.voxel_size
    size = tuple(grid.size)
    occ = np.asarray(occupied, dtype=bool).reshape(-1)
    if occ.size != int(np.prod(size)):
        raise ValueError(f"occupancy must be {size}, got {np.shape(occupied)}")
    position = np.asarray(position, dtype=np.float64)
    dirs, t = _rays_to(position, boundary_centres(grid))
    seen = np.zeros(occ.size, dtype=bool)
    for c in range(0, len(t), CHUNK):
        flat, ray = march_samples(position, dirs[c:c + CHUNK], t[c:c + CHUNK], step, np.asarray(grid.origin),
                                  grid.voxel_size, size, end=True)
        order = np.arange(len(flat), dtype=np.int64)
        hit = occ[flat]
        first = np.full(min(CHUNK, len(t) - c), len(flat), dtype=np.int64)
        np.minimum.at(first, ray[hit], order[hit])
        seen[flat[order <= first[ray]]] = True
    return seen.reshape(size)
