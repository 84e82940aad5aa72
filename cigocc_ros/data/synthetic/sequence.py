"""A synthetic sequence in memory: the scene of a seed, its frames rendered by the sensors and
the voxel truth of its labelled frames. writer.py puts one on disk.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ...classes import load_class_table
from ...config import GridConfig
from ...geometry import CameraModel, camera_from_calib, voxel_centers
from .layout import LAYOUT_FRAMES, make_scene
from .raycast import SKY
from .sensors import (
    LIDAR_AZIMUTHS,
    calibration_index,
    camera_rays,
    kitti_calibration,
    lidar_beams,
    lidar_scan,
    render_camera,
    scaled_camera,
)
from .truth import VIS_RANGE, ObservedSpace, scan_voxels, voxel_labels

RATE_HZ = 10.0
LABEL_EVERY = 5


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


class SyntheticSequence:
    """A procedural sequence: `num_frames` frames at 10 Hz from `seed`.

    Render frames with `render(i)` (any order; each frame's rays are added to the sequence's
    observed space once); `voxels(i)` of a labelled frame (i % 5 == 0) needs every frame
    rendered first, since `invalid` is what the whole sequence observed.
    `image_scale` < 1 renders smaller images with a scaled K (tests); files always use 1.0.
    """

    def __init__(self, seed: int, num_frames: int = LAYOUT_FRAMES, grid: GridConfig | None = None,
                 image_scale: float = 1.0, lidar_azimuths: int = LIDAR_AZIMUTHS):
        if num_frames < 1:
            raise ValueError(f"num_frames must be >= 1, got {num_frames}")
        self.seed = int(seed)
        self.num_frames = int(num_frames)
        self.grid = grid or GridConfig()
        self.scene = make_scene(self.seed, self.num_frames, RATE_HZ)
        self.calibration_index = calibration_index(self.seed)
        self.image_size, self.calib = kitti_calibration(self.calibration_index)
        self.cameras = tuple(scaled_camera(camera_from_calib(self.calib[k], self.calib["Tr"], self.image_size),
                                           image_scale) for k in ("P2", "P3"))
        self._cam_dirs = [camera_rays(c) for c in self.cameras]
        self._lidar_el, self._lidar_dirs = lidar_beams(lidar_azimuths)
        self._visibility = ObservedSpace(self.scene.velo_poses, self.grid, self.scene.terrain)
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

    # The sensors and the scan's voxels go through these methods so that a profiler (and
    # bench/synthetic_figures.py's clock) can time each stage of a frame.
    def _render_camera(self, cam: CameraModel, rays: tuple[np.ndarray, np.ndarray], T_map_velo: np.ndarray,
                       rng: np.random.Generator):
        return render_camera(self.scene, self.seed, cam, rays, T_map_velo, rng)

    def _lidar(self, T_map_velo: np.ndarray, rng: np.random.Generator):
        return lidar_scan(self.scene, (self._lidar_el, self._lidar_dirs), T_map_velo, rng)

    def _scan_voxels(self, points: np.ndarray, plab: np.ndarray, t: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return scan_voxels(points, self._raw[plab], t, self._lidar_dirs, self.grid)

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
        # What this frame's scan crossed as free space, and the voxels its points fell in, are
        # observed whatever the sequence-wide grid says (its map-aligned cells do not line up
        # with a pitched frame's voxels), so invalid voxels are a subset of occluded ones (as in
        # SemanticKITTI's files).
        return VoxelTruth(labels, ~seen.reshape(labels.shape) & occluded & ~occupancy, occluded, occupancy)
