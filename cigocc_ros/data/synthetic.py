"""A synthetic SemanticKITTI: sensors and ground truth for the procedural scenes of
`synthetic_scene`, written in the real SemanticKITTI layout.

Per frame (10 Hz along the ego trajectory), by ray casting the scene's analytic solids
(`raycast`, never the voxel grid):
- a rectified stereo pair at KITTI geometry (376 x 1241, P2 / P3 with a 0.54 m baseline) with
  per-class colours, world-anchored texture noise, Lambert shading, fog and a sky gradient;
- the left image's metric depth (camera z) and class ids (the teacher masks);
- a 64-beam spinning LiDAR scan (velodyne frame) with per-point labels and instance ids.
Every 5th frame, voxel ground truth in that frame's velodyne grid (256 x 256 x 32, 0.2 m):
labels from the solids' exact overlap with each voxel cube, `invalid` = never observed by any
camera or LiDAR ray of the whole sequence, `occluded` = not observed by this frame's scan, and
the scan's own voxelisation as the `.bin` input (docs/synthetic.md states every rule).

`SyntheticSequence` renders in memory; `write_sequence` writes a folder `sequences/XX/`;
`default_dataset()` makes (or reuses) the small default dataset used for training and tests.
"""
from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import load_class_table
from ..config import GridConfig
from ..geometry import CameraModel, camera_from_calib, voxel_centers
from . import semantic_kitti as sk
from .ray_march import march_cells as _march_cells
from .raycast import GROUND, SKY, camera_blocks, cast, lidar_blocks, surface_normals
from .synthetic_scene import (
    BOX,
    BUILDING,
    CYLINDER,
    ELLIPSOID,
    FENCE,
    GROUND_Z,
    OTHER_GROUND,
    OTHER_VEHICLE,
    PARKING,
    PAT_BARK,
    PAT_FOLIAGE,
    PAT_SLATS,
    PAT_WINDOWS,
    ROAD,
    SIDEWALK,
    TERRAIN,
    Primitives,
    Scene,
    make_scene,
)

IMAGE_SIZE = (376, 1241)  # (H, W) of KITTI odometry's colour images
FOCAL, CX, CY = 707.0912, 601.8873, 183.1104  # KITTI-like rectified intrinsics (sequence 08's)
BASELINE = 0.54  # metres between image_2 and image_3
CAM2_OFFSET = 0.06  # image_2 sits this far left of cam0, as in KITTI
RATE_HZ = 10.0
LABEL_EVERY = 5
LIDAR_ELEVATIONS_DEG = (2.0, -24.8)  # HDL-64E vertical field of view
LIDAR_BEAMS = 64
LIDAR_AZIMUTHS = 2048
LIDAR_MAX_RANGE = 80.0
LIDAR_RANGE_NOISE = 0.01  # metres, 1 sigma
VIS_STEP = 0.2  # metres between samples along a ray when marking observed space
VIS_RANGE = 60.0  # free space is marked this far along rays that hit nothing nearer
SKY_CLASS = 0  # class id of sky pixels: empty space, as docs/data.md defines for teacher masks

# The default dataset: sequence -> seed, the split, the number of frames.
DEFAULT_SEEDS = {"00": 1000, "01": 1001, "02": 1002, "03": 1003, "04": 1004, "05": 1005, "08": 1008}
DEFAULT_SPLIT = {"train": ("00", "01", "02", "03", "04", "05"), "val": ("08",)}
DEFAULT_FRAMES = 50
_MANIFEST = "synthetic.json"
FORMAT_VERSION = 4

# Per class: albedo of ground bands, texture amplitudes (low-frequency blotches, grain) and the
# grain's cells per metre; reflectance of the LiDAR returns.
_GROUND_ALBEDO = np.zeros((20, 3), np.float32)
_GROUND_ALBEDO[ROAD] = (0.30, 0.30, 0.32)
_GROUND_ALBEDO[PARKING] = (0.40, 0.39, 0.40)
_GROUND_ALBEDO[SIDEWALK] = (0.62, 0.59, 0.55)
_GROUND_ALBEDO[OTHER_GROUND] = (0.50, 0.44, 0.36)
_GROUND_ALBEDO[TERRAIN] = (0.34, 0.44, 0.19)
_TEX = np.tile(np.array([[0.08, 0.08, 10.0]], np.float32), (20, 1))
_TEX[[ROAD, PARKING]] = (0.15, 0.30, 14.0)
_TEX[SIDEWALK] = (0.10, 0.18, 9.0)
_TEX[OTHER_GROUND] = (0.25, 0.40, 10.0)
_TEX[TERRAIN] = (0.40, 0.55, 11.0)
_TEX[BUILDING] = (0.12, 0.10, 6.0)
_TEX[FENCE] = (0.10, 0.20, 8.0)
_TEX[15] = (0.30, 0.50, 7.0)  # vegetation
_TEX[16] = (0.15, 0.40, 12.0)  # trunk
_REFLECTANCE = np.full(20, 0.3, np.float32)
_REFLECTANCE[[ROAD, PARKING]] = 0.22
_REFLECTANCE[[SIDEWALK, OTHER_GROUND]] = 0.3
_REFLECTANCE[TERRAIN] = 0.45
_REFLECTANCE[15] = 0.5
_REFLECTANCE[[1, 4, 5]] = 0.15
_REFLECTANCE[19] = 0.9  # retro-reflective sign plates
_SKY_HORIZON = np.array([0.84, 0.87, 0.91], np.float32)
_SKY_ZENITH = np.array([0.38, 0.55, 0.83], np.float32)
_FOG_DISTANCE = 450.0


# --------------------------------------------------------------------------------------------
# Calibration
# --------------------------------------------------------------------------------------------
def kitti_calibration() -> dict[str, np.ndarray]:
    """KITTI-like `calib.txt` entries: P0..P3 (3, 4) rectified projections and Tr (3, 4)
    velodyne -> cam0. Cam0 sits 0.27 m ahead of and 0.08 m below the LiDAR, axes exactly
    aligned (x right, y down, z forward); image_2 is 0.06 m left of cam0, image_3 0.48 m right."""
    K = np.array([[FOCAL, 0.0, CX], [0.0, FOCAL, CY], [0.0, 0.0, 1.0]])

    def P(tx: float) -> np.ndarray:
        return np.hstack([K, (K @ np.array([tx, 0.0, 0.0]))[:, None]])

    R = np.array([[0.0, -1.0, 0.0], [0.0, 0.0, -1.0], [1.0, 0.0, 0.0]])
    cam0_in_velo = np.array([0.27, 0.0, -0.08])
    Tr = np.hstack([R, (-R @ cam0_in_velo)[:, None]])
    return {"P0": P(0.0), "P1": P(-BASELINE), "P2": P(CAM2_OFFSET), "P3": P(CAM2_OFFSET - BASELINE), "Tr": Tr}


def _scaled_camera(cam: CameraModel, scale: float) -> CameraModel:
    """The same camera with its image resized by `scale` (pixel centres at integer coordinates)."""
    if scale == 1.0:
        return cam
    K = cam.K.copy()
    K[:2] *= scale
    H, W = cam.image_size
    return CameraModel(K, cam.T_cam_grid, (int(round(H * scale)), int(round(W * scale))))


# --------------------------------------------------------------------------------------------
# Texture
# --------------------------------------------------------------------------------------------
def _hash(ix: np.ndarray, iy: np.ndarray, iz: np.ndarray, seed: int) -> np.ndarray:
    """Uniform [0, 1) float32 from integer lattice coordinates (deterministic, vectorised)."""
    h = (ix.astype(np.uint32) * np.uint32(0x8DA6B343)) ^ (iy.astype(np.uint32) * np.uint32(0xD8163841))
    h ^= iz.astype(np.uint32) * np.uint32(0xCB1AB31F)
    h ^= np.uint32(seed & 0xFFFFFFFF)
    h ^= h >> np.uint32(13)
    h *= np.uint32(0x5BD1E995)
    h ^= h >> np.uint32(15)
    return h.astype(np.float32) * np.float32(1.0 / 4294967296.0)


def _cell_noise(p: np.ndarray, freq: np.ndarray | float, seed: int) -> np.ndarray:
    """Piecewise-constant noise (N,) in [0, 1) on cells of 1/freq metres, anchored to the world
    so both cameras and every frame see the same grain."""
    q = np.floor(p * np.asarray(freq, np.float32).reshape(-1, 1)).astype(np.int64)
    return _hash(q[:, 0], q[:, 1], q[:, 2], seed)


def _value_noise(p: np.ndarray, freq: float, seed: int) -> np.ndarray:
    """Smooth (trilinear) lattice noise (N,) in [0, 1) at `freq` lattice cells per metre."""
    q = p * freq
    i = np.floor(q)
    f = q - i
    f = f * f * (3.0 - 2.0 * f)
    i = i.astype(np.int64)
    out = np.zeros(len(p), np.float32)
    for dx in (0, 1):
        wx = f[:, 0] if dx else 1.0 - f[:, 0]
        for dy in (0, 1):
            wy = f[:, 1] if dy else 1.0 - f[:, 1]
            for dz in (0, 1):
                wz = f[:, 2] if dz else 1.0 - f[:, 2]
                out += (wx * wy * wz).astype(np.float32) * _hash(i[:, 0] + dx, i[:, 1] + dy, i[:, 2] + dz, seed)
    return out


# --------------------------------------------------------------------------------------------
# Frames
# --------------------------------------------------------------------------------------------
@dataclass
class Frame:
    """One rendered frame. Images are the uncropped KITTI-size images (or scaled, see
    SyntheticSequence.image_scale); depth and classes belong to the left image (image_2)."""

    index: int
    image_left: np.ndarray  # (H, W, 3) uint8 RGB
    image_right: np.ndarray  # (H, W, 3) uint8 RGB
    depth: np.ndarray  # (H, W) float32 metres along the optical axis, 0 = sky
    classes: np.ndarray  # (H, W) uint8 labels 1..19 of the surface seen, 0 = sky
    points: np.ndarray  # (N, 4) float32 x, y, z, reflectance, velodyne frame
    point_labels: np.ndarray  # (N,) uint8 labels 1..19
    point_instances: np.ndarray  # (N,) uint16, 0 for stuff


@dataclass
class VoxelTruth:
    """The voxel files of one labelled frame, (X, Y, Z) arrays in its velodyne grid."""

    labels: np.ndarray  # uint8 labels 0..19
    invalid: np.ndarray  # bool: never observed over the sequence
    occluded: np.ndarray  # bool: not observed by this frame's scan
    occupancy: np.ndarray  # bool: this frame's scan voxelised (the `.bin` input)


class _Visibility:
    """Space observed by any ray of a sequence, accumulated in a map-aligned grid of 0.2 m
    cells around the trajectory (looked up at the voxel centres of each labelled frame)."""

    def __init__(self, velo_poses: np.ndarray, grid: GridConfig, margin: float = 62.0):
        xy = velo_poses[:, :2, 3]
        cell = grid.voxel_size
        # Cell boundaries on frame 0's voxel lattice; in z they coincide with every frame's
        # layers (the ego moves on the flat ground without pitch or roll), so the ground
        # surface's layer is the same cell row everywhere.
        base = velo_poses[0, :3, 3] + np.asarray(grid.origin)
        lo = np.array([*(xy.min(0) - margin), GROUND_Z - 0.6])
        lo = base + cell * np.floor((lo - base) / cell)
        hi = np.array([*(xy.max(0) + margin), GROUND_Z + 8.0])
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
            self.seen[_march_cells(origin, dirs[c:c + 16384], t[c:c + 16384], VIS_STEP, self.origin,
                                   self.cell, self.shape)] = True

    def lookup(self, pts: np.ndarray) -> np.ndarray:
        """(M,) bool: the cells holding map-frame points (M, 3) were observed."""
        idx = np.floor((pts - self.origin) / self.cell).astype(np.int64)
        ok = np.all((idx >= 0) & (idx < np.array(self.shape)), axis=1)
        out = np.zeros(len(pts), dtype=bool)
        out[ok] = self.seen[np.ravel_multi_index(tuple(idx[ok].T), self.shape)]
        return out


def voxel_labels(scene: Scene, T_map_velo: np.ndarray, grid: GridConfig) -> np.ndarray:
    """(X, Y, Z) uint8 labels of the grid of a velodyne pose T_map_velo (4, 4).

    A voxel takes the class of every solid that overlaps its cube (exact for boxes and vertical
    cylinders, whose yaw the test handles by separating axes; an ellipsoid inflated by the
    cube's half diagonal), later solids (higher class priority) overwriting earlier ones; the
    ground plane labels the voxels its surface passes through with the ground class at the
    column's centre."""
    size = tuple(grid.size)
    half = grid.voxel_size / 2.0
    centres = voxel_centers(size, grid.voxel_size, grid.origin).astype(np.float64)
    R, t = T_map_velo[:3, :3], T_map_velo[:3, 3]
    labels = np.zeros(size, dtype=np.uint8)
    # Ground: the layer(s) whose cube contains the plane, in map z.
    zc = centres[0, 0, :, 2] + t[2]
    layers = np.flatnonzero(np.abs(zc - GROUND_Z) <= half)
    if layers.size:
        col_xy = centres[:, :, 0, :] @ R.T + t
        ground = scene.ground_labels(col_xy[..., :2].reshape(-1, 2)).reshape(size[:2])
        labels[:, :, layers] = ground[:, :, None]
    prims = scene.prims
    # Index bounds of each solid's bounding box in this grid.
    corners = (prims.corners() - t) @ R  # map -> velodyne
    lo = np.floor((corners.min(1) - np.asarray(grid.origin)) / grid.voxel_size - 0.5).astype(np.int64)
    hi = np.ceil((corners.max(1) - np.asarray(grid.origin)) / grid.voxel_size + 0.5).astype(np.int64)
    lo = np.clip(lo, 0, size)
    hi = np.clip(hi, 0, size)
    frame_yaw = np.arctan2(R[1, 0], R[0, 0])
    for i in np.flatnonzero(np.all(hi > lo, axis=1)):
        sl = tuple(slice(lo[i, a], hi[i, a]) for a in range(3))
        c = centres[sl]  # velodyne frame
        d = (c - ((prims.center[i] - t) @ R))  # offsets from the solid's centre, grid axes
        occ = _overlap(prims, i, d, prims.yaw[i] - frame_yaw, half)
        labels[sl][occ] = prims.label[i]
    return labels


def _overlap(prims: Primitives, i: int, d: np.ndarray, alpha: float, half: float) -> np.ndarray:
    """Does the cube of half size `half` at offsets d (..., 3) (grid axes) from solid i's centre
    overlap solid i? alpha is the solid's yaw relative to the grid."""
    h = prims.half[i]
    ca, sa = abs(np.cos(alpha)), abs(np.sin(alpha))
    z_ok = np.abs(d[..., 2]) <= h[2] + half
    kind = prims.kind[i]
    if kind == BOX:
        u = np.cos(alpha) * d[..., 0] + np.sin(alpha) * d[..., 1]
        v = -np.sin(alpha) * d[..., 0] + np.cos(alpha) * d[..., 1]
        return (z_ok
                & (np.abs(d[..., 0]) <= half + h[0] * ca + h[1] * sa)
                & (np.abs(d[..., 1]) <= half + h[0] * sa + h[1] * ca)
                & (np.abs(u) <= h[0] + half * (ca + sa))
                & (np.abs(v) <= h[1] + half * (ca + sa)))
    if kind == CYLINDER:
        gx = np.maximum(np.abs(d[..., 0]) - half, 0.0)
        gy = np.maximum(np.abs(d[..., 1]) - half, 0.0)
        return z_ok & (gx * gx + gy * gy <= h[0] * h[0])
    if kind == ELLIPSOID:
        u = np.cos(alpha) * d[..., 0] + np.sin(alpha) * d[..., 1]
        v = -np.sin(alpha) * d[..., 0] + np.cos(alpha) * d[..., 1]
        r = h + half * np.sqrt(3.0)
        return (u / r[0]) ** 2 + (v / r[1]) ** 2 + (d[..., 2] / r[2]) ** 2 <= 1.0
    raise ValueError(f"unknown solid kind {kind} at index {i}")


class SyntheticSequence:
    """A procedural sequence: `num_frames` frames at 10 Hz from `seed`.

    Render frames with `render(i)` (any order; each frame's rays are added to the sequence's
    observed space once); `voxels(i)` of a labelled frame (i % 5 == 0) needs every frame
    rendered first, since `invalid` is what the whole sequence observed.
    `image_scale` < 1 renders smaller images with a scaled K (tests); files always use 1.0.
    """

    def __init__(self, seed: int, num_frames: int = DEFAULT_FRAMES, grid: GridConfig | None = None,
                 image_scale: float = 1.0, lidar_azimuths: int = LIDAR_AZIMUTHS):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.seed = int(seed)
        self.num_frames = int(num_frames)
        self.grid = grid or GridConfig()
        self.scene = make_scene(self.seed, self.num_frames, RATE_HZ)
        self.calib = kitti_calibration()
        self.cameras = tuple(_scaled_camera(camera_from_calib(self.calib[k], self.calib["Tr"], IMAGE_SIZE),
                                            image_scale) for k in ("P2", "P3"))
        self._cam_dirs = [self._camera_rays(c) for c in self.cameras]
        el = np.deg2rad(np.linspace(*LIDAR_ELEVATIONS_DEG, LIDAR_BEAMS))
        az = -np.pi + (np.arange(lidar_azimuths) + 0.5) * 2 * np.pi / lidar_azimuths
        self._lidar_el = el
        self._lidar_dirs = np.stack([np.cos(el)[:, None] * np.cos(az)[None], np.cos(el)[:, None] * np.sin(az)[None],
                                     np.broadcast_to(np.sin(el)[:, None], (len(el), len(az)))], -1)
        self._visibility = _Visibility(self.scene.velo_poses, self.grid)
        self._observed = np.zeros(self.num_frames, dtype=bool)
        self._scan_grids: dict[int, tuple[np.ndarray, np.ndarray]] = {}
        self._raw = load_class_table().learning_map_inv

    # -- calibration and trajectory -------------------------------------------------------
    @property
    def times(self) -> np.ndarray:
        """(F,) seconds."""
        return np.arange(self.num_frames) / RATE_HZ

    @property
    def poses(self) -> np.ndarray:
        """(F, 4, 4) KITTI poses: cam0 of frame i -> cam0 of frame 0 (poses.txt)."""
        Tr = np.eye(4)
        Tr[:3] = self.calib["Tr"]
        P = self.scene.velo_poses
        rel = np.linalg.inv(P[0]) @ P
        return Tr @ rel @ np.linalg.inv(Tr)

    @property
    def labelled_frames(self) -> list[int]:
        return list(range(0, self.num_frames, LABEL_EVERY))

    @staticmethod
    def _camera_rays(cam: CameraModel) -> tuple[np.ndarray, np.ndarray]:
        """Unit ray directions (H, W, 3) in the optical frame and their z components (H, W)."""
        H, W = cam.image_size
        v, u = np.mgrid[0:H, 0:W].astype(np.float64)
        K = cam.K
        d = np.stack([(u - K[0, 2]) / K[0, 0], (v - K[1, 2]) / K[1, 1], np.ones_like(u)], -1)
        d /= np.linalg.norm(d, axis=-1, keepdims=True)
        return d, d[..., 2].copy()

    def _check(self, i: int) -> None:
        if not 0 <= i < self.num_frames:
            raise IndexError(f"frame {i} outside 0..{self.num_frames - 1}")

    # -- rendering --------------------------------------------------------------------------
    def render(self, i: int) -> Frame:
        self._check(i)
        T_map_velo = self.scene.velo_poses[i]
        rng = np.random.default_rng(np.random.SeedSequence([self.seed, i, 0xF4A3]))
        images, depth, classes = [], None, None
        for k, cam in enumerate(self.cameras):
            rgb, t, ids, lab, dirs, origin = self._render_camera(cam, self._cam_dirs[k], T_map_velo, rng)
            images.append(rgb)
            if k == 0:
                depth = np.where(ids == SKY, 0.0, t * self._cam_dirs[0][1]).astype(np.float32)
                classes = lab
                if not self._observed[i]:
                    sub = (slice(2, None, 5), slice(2, None, 5))
                    tv = np.minimum(t[sub], VIS_RANGE).reshape(-1)
                    self._visibility.add(origin, dirs[sub].reshape(-1, 3), tv)
        points, plab, pinst, t_l, dirs_l = self._lidar(T_map_velo, rng)
        if not self._observed[i]:
            tv = np.minimum(t_l[:, ::2], VIS_RANGE).reshape(-1)
            self._visibility.add(T_map_velo[:3, 3], dirs_l[:, ::2].reshape(-1, 3), tv)
            self._observed[i] = True
        if i % LABEL_EVERY == 0 and i not in self._scan_grids:
            # Bit-packed until voxels(i): long sequences keep many labelled frames.
            self._scan_grids[i] = tuple(np.packbits(m) for m in self._scan_voxels(points, plab, t_l))
        return Frame(i, images[0], images[1], depth, classes, points, plab, pinst)

    def _render_camera(self, cam: CameraModel, rays: tuple[np.ndarray, np.ndarray], T_map_velo: np.ndarray,
                       rng: np.random.Generator):
        scene, prims = self.scene, self.scene.prims
        T_map_cam = T_map_velo @ np.linalg.inv(cam.T_cam_grid)
        origin = T_map_cam[:3, 3]
        dirs = rays[0] @ T_map_cam[:3, :3].T
        blocks = camera_blocks(prims, np.linalg.inv(T_map_cam), cam.K, cam.image_size)
        t, ids = cast(prims, origin, dirs, blocks, max_t=1000.0)
        H, W = t.shape
        hit = ids != SKY
        P = origin + t[hit][:, None] * dirs[hit]
        hid = ids[hit]
        ground = hid == GROUND
        lab_hit = np.empty(len(hid), np.uint8)
        paint = np.zeros(len(hid), np.float32)
        if ground.any():
            g_lab, g_paint = scene.ground_surface(P[ground, :2])
            lab_hit[ground] = g_lab
            paint[ground] = g_paint
        lab_hit[~ground] = prims.label[hid[~ground]]
        col = self._shade(P.astype(np.float32), hid, lab_hit, paint, t[hit])
        img = np.empty((H, W, 3), np.float32)
        img[hit] = col
        # Sky: a gradient with the elevation of the ray.
        sky_e = np.clip(dirs[~hit][:, 2] / 0.35, 0.0, 1.0)[:, None] ** 0.7
        img[~hit] = _SKY_HORIZON + (_SKY_ZENITH - _SKY_HORIZON) * sky_e
        img *= (1.0 + scene.palette_shift).astype(np.float32)
        img += rng.normal(0.0, 0.01, img.shape).astype(np.float32)
        rgb = np.clip(img * 255.0 + 0.5, 0, 255).astype(np.uint8)
        lab = np.full((H, W), SKY_CLASS, np.uint8)
        lab[hit] = lab_hit
        return rgb, t, ids, lab, dirs, origin

    def _shade(self, P: np.ndarray, ids: np.ndarray, lab: np.ndarray, paint: np.ndarray,
               t: np.ndarray) -> np.ndarray:
        """RGB (N, 3) float of hit points P (N, 3) at ray lengths t (N,), with hit ids, labels
        lab and ground paint (N,)."""
        prims = self.scene.prims
        seed = self.seed
        solid = ids >= 0
        albedo = _GROUND_ALBEDO[lab].copy()
        albedo[solid] = prims.color[ids[solid]]
        albedo = albedo * (1.0 - paint[:, None]) + np.float32(0.88) * paint[:, None]
        tex = _TEX[lab]
        lo = _value_noise(P, 0.7, seed) - 0.5
        grain = _cell_noise(P, tex[:, 2], seed + 1) - 0.5
        albedo *= (1.0 + tex[:, 0] * lo * 2.0 + tex[:, 1] * grain)[:, None]
        normals = surface_normals(prims, ids, P.astype(np.float64)).astype(np.float32)
        pat = np.where(solid, prims.pattern[np.maximum(ids, 0)], 0)
        vertical = np.abs(normals[:, 2]) < 0.5
        # Facade coordinates: along the wall and height above the ground.
        u = P[:, 0] * -normals[:, 1] + P[:, 1] * normals[:, 0]
        h = P[:, 2] - GROUND_Z
        m = (pat == PAT_WINDOWS) & vertical
        if m.any():
            Ii = ids[m]
            top = (prims.center[Ii, 2] + prims.half[Ii, 2] - GROUND_Z).astype(np.float32)
            ph = (_hash(Ii, Ii * 3, Ii * 7, seed) * 1.4 + 2.6).astype(np.float32)
            bus = prims.label[Ii] == OTHER_VEHICLE
            fu = np.mod(u[m] / np.where(bus, 1.6, ph), 1.0)
            fv = np.mod(h[m] / 3.0, 1.0)
            win = np.where(bus, (h[m] > 1.3) & (h[m] < 2.6) & (fu > 0.06),
                           (fu > 0.28) & (fu < 0.72) & (fv > 0.3) & (fv < 0.78) & (h[m] > 0.8) & (h[m] < top - 0.5))
            glass = np.array([0.13, 0.16, 0.21], np.float32) + 0.12 * _value_noise(P[m], 0.3, seed + 5)[:, None]
            albedo[m] = np.where(win[:, None], glass, albedo[m])
        m = (pat == PAT_SLATS) & vertical
        albedo[m] *= np.where(np.mod(u[m] / 0.22, 1.0) < 0.3, 0.55, 1.0)[:, None]
        m = pat == PAT_FOLIAGE
        albedo[m] *= (0.55 + 0.9 * _cell_noise(P[m], 9.0, seed + 2))[:, None]
        m = pat == PAT_BARK
        albedo[m] *= (0.75 + 0.5 * _cell_noise(P[m] * np.array([1.0, 1.0, 0.15], np.float32), 14.0, seed + 3))[:, None]
        lambert = 0.42 + 0.62 * np.maximum(normals @ self.scene.sun.astype(np.float32), 0.0)
        # Surfaces seen from behind (never for closed solids) stay dark rather than lit.
        col = albedo * lambert[:, None]
        fog = np.exp(-t / _FOG_DISTANCE).astype(np.float32)[:, None]
        return col * fog + _SKY_HORIZON * (1.0 - fog)

    def _lidar(self, T_map_velo: np.ndarray, rng: np.random.Generator):
        prims = self.scene.prims
        origin = T_map_velo[:3, 3]
        dirs = self._lidar_dirs @ T_map_velo[:3, :3].T
        blocks = lidar_blocks(prims, np.linalg.inv(T_map_velo), self._lidar_el, dirs.shape[1], LIDAR_MAX_RANGE)
        t, ids = cast(prims, origin, dirs, blocks, max_t=LIDAR_MAX_RANGE)
        valid = (ids != SKY) & (t <= LIDAR_MAX_RANGE)
        tv, iv = t[valid], ids[valid]
        ground = iv == GROUND
        lab = np.empty(len(iv), np.uint8)
        inst = np.zeros(len(iv), np.uint16)
        if ground.any():
            lab[ground] = self.scene.ground_labels((origin + tv[ground, None] * dirs[valid][ground])[:, :2])
        lab[~ground] = prims.label[iv[~ground]]
        inst[~ground] = prims.instance[iv[~ground]]
        r = tv + rng.normal(0.0, LIDAR_RANGE_NOISE, len(tv))
        xyz = self._lidar_dirs[valid] * r[:, None]
        refl = np.clip(_REFLECTANCE[lab] + rng.normal(0.0, 0.05, len(tv)), 0.0, 1.0)
        points = np.hstack([xyz, refl[:, None]]).astype(np.float32)
        return points, lab, inst, np.where(valid, t, np.inf), dirs

    def _scan_voxels(self, points: np.ndarray, plab: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(input occupancy, occluded) of a labelled frame in its grid: the scan voxelised, and
        every voxel this scan did not cross as free space (its hit voxels included, as in
        SemanticKITTI's files)."""
        occupancy, _ = sk.voxelize_scan(points, self._raw[plab], self.grid)
        g = self.grid
        free = np.zeros(int(np.prod(g.size)), dtype=bool)
        # Stop short of the hit so the sample at the surface does not count as free space.
        tv = np.where(np.isfinite(t), t - 0.5 * VIS_STEP, VIS_RANGE).reshape(-1)
        dirs = self._lidar_dirs.reshape(-1, 3)
        for c in range(0, len(tv), 16384):
            free[_march_cells(np.zeros(3), dirs[c:c + 16384], tv[c:c + 16384], VIS_STEP, np.asarray(g.origin),
                              g.voxel_size, tuple(g.size), end=False)] = True
        return occupancy, ~free.reshape(tuple(g.size)) | occupancy

    # -- ground truth -----------------------------------------------------------------------
    def voxels(self, i: int) -> VoxelTruth:
        """Voxel ground truth of labelled frame i (every frame must have been rendered)."""
        self._check(i)
        if i % LABEL_EVERY:
            raise ValueError(f"frame {i} is not a labelled frame (every {LABEL_EVERY}th is)")
        if not self._observed.all():
            missing = np.flatnonzero(~self._observed)
            raise RuntimeError(f"render every frame before voxels(): frame {missing[0]} and "
                               f"{len(missing) - 1} more not rendered")
        T = self.scene.velo_poses[i]
        labels = voxel_labels(self.scene, T, self.grid)
        centres = voxel_centers(tuple(self.grid.size), self.grid.voxel_size, self.grid.origin).reshape(-1, 3)
        seen = self._visibility.lookup(centres @ T[:3, :3].T + T[:3, 3])
        occupancy, occluded = (np.unpackbits(m).astype(bool).reshape(labels.shape) for m in self._scan_grids[i])
        # What this frame's scan crossed as free space is observed whatever the coarser
        # sequence-wide grid says, so invalid voxels are a subset of occluded ones (as in
        # SemanticKITTI's files).
        return VoxelTruth(labels, ~seen.reshape(labels.shape) & occluded, occluded, occupancy)


# --------------------------------------------------------------------------------------------
# Writing sequences
# --------------------------------------------------------------------------------------------
def write_sequence(root: str | os.PathLike, sequence: str, seed: int, num_frames: int = DEFAULT_FRAMES,
                   log=None) -> Path:
    """Write `root/sequences/<sequence>/` in the SemanticKITTI layout: calib, poses, times,
    image_2/3, velodyne + labels and teacher_masks for every frame, voxels for every 5th.
    Returns the sequence folder."""
    seq = SyntheticSequence(seed, num_frames)
    paths = sk.SequencePaths(Path(root), sequence)
    paths.dir.mkdir(parents=True, exist_ok=True)
    sk.write_calib(paths.calib, seq.calib)
    sk.write_poses(paths.poses, seq.poses)
    sk.write_times(paths.times, seq.times)
    raw = load_class_table().learning_map_inv
    for i in range(num_frames):
        f = seq.render(i)
        sk.write_image(paths.image(i, 2), f.image_left)
        sk.write_image(paths.image(i, 3), f.image_right)
        sk.write_scan(paths.scan(i), f.points)
        sk.write_point_labels(paths.point_labels(i), raw[f.point_labels], f.point_instances)
        sk.write_teacher_mask(paths.teacher_mask(i), f.classes)
        if log:
            log(f"sequence {sequence}: frame {i + 1}/{num_frames}")
    for i in seq.labelled_frames:
        v = seq.voxels(i)
        sk.write_voxels(paths.voxel_stem(i), v.labels, v.invalid, v.occluded, v.occupancy)
    return paths.dir


def default_root() -> Path:
    """Where the default dataset lives: $CIGOCC_SYNTHETIC_ROOT, else data/synthetic-v<format> in a
    source checkout (git-ignored), else ~/.cache/cigocc/synthetic-v<format>. The format version
    in the name lets a new generator write beside data an older run may still be reading."""
    env = os.environ.get("CIGOCC_SYNTHETIC_ROOT")
    if env:
        return Path(env)
    name = f"synthetic-v{FORMAT_VERSION}"
    repo = Path(__file__).resolve().parents[2]
    if (repo / "setup.py").is_file() and (repo / "cigocc_ros").is_dir():
        return repo / "data" / name
    return Path.home() / ".cache" / "cigocc" / name


def _manifest(seeds: dict[str, int], num_frames: int) -> dict:
    return {"format": FORMAT_VERSION, "frames": num_frames, "seeds": seeds,
            "split": {k: list(v) for k, v in DEFAULT_SPLIT.items()}}


def dataset_complete(root: str | os.PathLike, seeds: dict[str, int] = DEFAULT_SEEDS,
                     num_frames: int = DEFAULT_FRAMES) -> bool:
    """True if `root` holds these sequences, written completely by this generator version."""
    root = Path(root)
    try:
        manifest = json.loads((root / _MANIFEST).read_text())
    except (OSError, ValueError):
        return False
    if manifest != _manifest(seeds, num_frames):
        return False
    for seq in seeds:
        p = sk.SequencePaths(root, seq)
        if len(p.frames("voxels", ".label")) != len(range(0, num_frames, LABEL_EVERY)):
            return False
        if len(p.frames("image_2", ".png")) != num_frames or len(p.frames("velodyne", ".bin")) != num_frames:
            return False
    return True


def default_dataset(root: str | os.PathLike | None = None, seeds: dict[str, int] = DEFAULT_SEEDS,
                    num_frames: int = DEFAULT_FRAMES, workers: int = 1, log=None) -> Path:
    """Generate the default synthetic dataset into `root` (default: `default_root()`), or reuse
    it when it is already complete. Split: DEFAULT_SPLIT. Returns the root.

    Processes asking at once take turns on a lock file beside the folder, so one generates and
    the others reuse its result. The data are written to a sibling folder first and moved into
    place once complete, so an interrupted run leaves no half dataset that looks finished."""
    import fcntl

    root = Path(root) if root is not None else default_root()
    if dataset_complete(root, seeds, num_frames):
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f".{root.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if dataset_complete(root, seeds, num_frames):  # another process made it meanwhile
            return root
        work = root.parent / f".{root.name}.partial-{os.getpid()}"
        shutil.rmtree(work, ignore_errors=True)
        jobs = [(str(work), seq, seed, num_frames) for seq, seed in seeds.items()]
        try:
            if workers > 1:
                import multiprocessing as mp

                with mp.get_context("spawn").Pool(min(workers, len(jobs))) as pool:
                    for path in pool.starmap(write_sequence, jobs):
                        if log:
                            log(f"wrote {path}")
            else:
                for job in jobs:
                    write_sequence(*job, log=log)
            (work / _MANIFEST).write_text(json.dumps(_manifest(seeds, num_frames), indent=2) + "\n")
            if root.exists():
                shutil.rmtree(root)
            work.rename(root)
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return root
