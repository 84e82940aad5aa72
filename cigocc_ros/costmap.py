"""A 2D costmap for planners (Nav2 / Autoware style) from a semantic voxel grid, NumPy only.

Cells are the grid's (X, Y) columns (same origin and resolution, grid frame: x forward, y left,
z up); values follow nav_msgs/OccupancyGrid: LETHAL 100, FREE 0, UNKNOWN -1. Per column:

- **local ground** g: the top face of the highest *confident* drivable-ground voxel of the column;
  a column without one takes the mean g of the columns that have one within `GROUND_FILL_RADIUS`
  metres, else the median g of the whole frame, else `ground_z` (the grid frame's nominal ground
  height). Voxel heights are then measured above g.
- **lethal** when a confident voxel of an obstacle class has its centre in the band
  [g + band_bottom, g + band_top);
- **free** when not lethal, the column holds confident drivable ground, and every voxel in the band
  is confident (whatever its class; "empty" counts) — nothing uncertain could hide in it;
- **unknown** otherwise: outside the camera frustum (no voxel between the ground and the band top
  projects into the part of the image the model sees), farther than `max_range` horizontally
  from the camera, uncertain (confidence below `min_confidence` where it matters), or seen but
  neither an obstacle nor drivable ground (sidewalk, terrain... unless listed as drivable).
- `inflation_radius` > 0 turns every seen cell within that distance of a lethal cell lethal.

"Confident" = the head's top class probability (Prediction.confidence, 255 = 1.0) is at least
`min_confidence`. Everything is array arithmetic over the (X, Y, Z) grid; what depends only on
the camera geometry (frustum, per-column counts, range) is computed once per geometry and
cached. docs/node.md ("Costmap") states the same rules for users.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from .classes import ClassTable
from .config import GridConfig, NodeConfig
from .geometry import crop_window, in_view, voxel_centers

LETHAL, FREE, UNKNOWN = 100, 0, -1
# Columns without drivable ground borrow the mean ground height of their neighbours within this
# many metres (a car hides the road under it; its neighbours' road is the best guess).
GROUND_FILL_RADIUS = 2.0

_OBSTACLE, _DRIVABLE = 1, 2  # values of the per-label kind lookup table


def class_ids(names: tuple[str, ...], classes: ClassTable, what: str) -> tuple[int, ...]:
    """Class names -> label ids; ValueError naming `what` and the unknown names."""
    index = {n: i for i, n in enumerate(classes.names)}
    unknown = [n for n in names if n not in index]
    if unknown:
        raise ValueError(f"{what}: unknown class name(s) {unknown} (known: {', '.join(classes.names[1:])})")
    return tuple(sorted(index[n] for n in names))


@dataclass(frozen=True)
class CostmapSpec:
    """The costmap rules of one configuration (label ids resolved from class names)."""

    band_bottom: float  # m above the local ground
    band_top: float  # m above the local ground
    obstacle_ids: tuple[int, ...]
    drivable_ids: tuple[int, ...]
    max_range: float  # m, horizontal distance from the camera
    min_confidence: float  # 0..1
    inflation_radius: float  # m; 0 = none
    ground_z: float  # m, nominal ground height in the grid frame

    @classmethod
    def from_node_config(cls, cfg: NodeConfig, classes: ClassTable) -> CostmapSpec:
        """The spec of the node's `costmap_*` parameters; ValueError names a bad parameter."""
        if not cfg.costmap_band_bottom < cfg.costmap_band_top:
            raise ValueError(f"costmap_band_bottom ({cfg.costmap_band_bottom}) must be below "
                             f"costmap_band_top ({cfg.costmap_band_top})")
        obstacle = class_ids(cfg.costmap_obstacle_classes, classes, "costmap_obstacle_classes")
        drivable = class_ids(cfg.costmap_drivable_classes, classes, "costmap_drivable_classes")
        both = sorted(set(obstacle) & set(drivable))
        if both:
            raise ValueError(f"classes {[classes.names[i] for i in both]} are both obstacle and drivable")
        return cls(cfg.costmap_band_bottom, cfg.costmap_band_top, obstacle, drivable, cfg.costmap_max_range,
                   cfg.costmap_min_confidence, cfg.costmap_inflation_radius, cfg.costmap_ground_z)


class CameraView:
    """What one camera sees of a grid, for one geometry (K, T_cam_grid, image size).

    frustum (X, Y, Z) bool: voxel centres in front of the camera that project into the pixels the
    model sees (geometry.crop_window of the model's input size). `_counts` (X, Y, Z + 1) int32:
    per column, the number of frustum voxels below each index (a prefix sum along z), so the
    frustum voxels of any z range of every column are counted with two gathers.
    """

    def __init__(self, grid: GridConfig, K: np.ndarray, T_cam_grid: np.ndarray, image_hw: tuple[int, int],
                 model_hw: tuple[int, int]) -> None:
        size = tuple(int(s) for s in grid.size)
        centers = voxel_centers(size, float(grid.voxel_size), tuple(grid.origin)).reshape(-1, 3)
        window = crop_window(image_hw, model_hw)
        self.frustum = in_view(centers, K, T_cam_grid, window).reshape(size)
        self._counts = np.zeros(size[:2] + (size[2] + 1,), np.int32)
        np.cumsum(self.frustum, axis=2, out=self._counts[:, :, 1:])
        # Horizontal distance of each column centre from the camera centre (grid frame).
        cam = -T_cam_grid[:3, :3].T @ T_cam_grid[:3, 3]
        cx, cy = (grid.origin[i] + (np.arange(size[i]) + 0.5) * grid.voxel_size for i in range(2))
        self.column_range = np.hypot(cx[:, None] - cam[0], cy[None, :] - cam[1])  # (X, Y)

    def frustum_count(self, k_lo: np.ndarray, k_hi: np.ndarray) -> np.ndarray:
        """(X, Y) number of frustum voxels with index in [k_lo, k_hi) of each column."""
        hi = np.take_along_axis(self._counts, k_hi[..., None], axis=2)[..., 0]
        lo = np.take_along_axis(self._counts, k_lo[..., None], axis=2)[..., 0]
        return hi - lo


class Costmapper:
    """Costmaps of the grids of one GridConfig; caches the camera view and per-spec tables."""

    def __init__(self, grid: GridConfig) -> None:
        self.grid = grid
        self.size = tuple(int(s) for s in grid.size)
        self.voxel = float(grid.voxel_size)
        self.z0 = float(grid.origin[2])
        self._view: CameraView | None = None
        self._view_key: tuple | None = None
        self._spec: CostmapSpec | None = None
        self._kind = np.zeros(256, np.uint8)
        self._disk = np.ones((1, 1), np.uint8)
        r = max(1, int(round(GROUND_FILL_RADIUS / self.voxel)))
        self._fill_kernel = (2 * r + 1, 2 * r + 1)

    def view(self, K: np.ndarray, T_cam_grid: np.ndarray, image_hw: tuple[int, int],
             model_hw: tuple[int, int]) -> CameraView:
        """The CameraView of this geometry; rebuilt only when K, T, or a size changes."""
        K = np.asarray(K, dtype=np.float64)
        T = np.asarray(T_cam_grid, dtype=np.float64)
        key = (K.tobytes(), T.tobytes(), tuple(image_hw), tuple(model_hw))
        if key != self._view_key:
            self._view = CameraView(self.grid, K, T, tuple(image_hw), tuple(model_hw))
            self._view_key = key
        return self._view

    def _tables(self, spec: CostmapSpec) -> None:
        if spec == self._spec:
            return
        kind = np.zeros(256, np.uint8)
        kind[list(spec.obstacle_ids)] = _OBSTACLE
        kind[list(spec.drivable_ids)] = _DRIVABLE
        r = int(math.floor(spec.inflation_radius / self.voxel + 1e-9))
        yy, xx = np.mgrid[-r:r + 1, -r:r + 1]
        self._disk = (np.hypot(xx, yy) * self.voxel <= spec.inflation_radius + 1e-9).astype(np.uint8)
        self._kind, self._spec = kind, spec

    def _ground(self, drivable: np.ndarray, ground_z: float) -> np.ndarray:
        """(X, Y) float64 local ground height from the (X, Y, Z) confident-drivable mask."""
        X, Y, Z = self.size
        has = drivable.any(axis=2)
        top = Z - 1 - np.argmax(drivable[:, :, ::-1], axis=2)  # highest drivable voxel index
        g = self.z0 + (top + 1) * self.voxel
        if has.all():
            return g
        if not has.any():
            return np.full((X, Y), ground_z)
        known = np.where(has, g, 0.0).astype(np.float32)
        sums = cv2.boxFilter(known, -1, self._fill_kernel, normalize=False, borderType=cv2.BORDER_CONSTANT)
        counts = cv2.boxFilter(has.astype(np.float32), -1, self._fill_kernel, normalize=False,
                               borderType=cv2.BORDER_CONSTANT)
        with np.errstate(invalid="ignore", divide="ignore"):
            near = sums / counts
        fallback = float(np.median(g[has]))
        return np.where(has, g, np.where(counts > 0.5, near, fallback))

    def compute(self, labels: np.ndarray, confidence: np.ndarray | None, spec: CostmapSpec,
                view: CameraView) -> np.ndarray:
        """(X, Y) int8 costs of (X, Y, Z) uint8 `labels` (and `confidence`, 255 = 1.0; None =
        all confident) seen by `view`."""
        if labels.shape != self.size or labels.dtype != np.uint8:
            raise ValueError(f"label grid must be uint8 {self.size}, got {labels.dtype} {labels.shape}")
        if confidence is not None and confidence.shape != self.size:
            raise ValueError(f"confidence grid must be {self.size}, got {confidence.shape}")
        self._tables(spec)
        X, Y, Z = self.size
        v = self.voxel
        kind = self._kind[labels]  # (X, Y, Z) uint8
        if confidence is None or spec.min_confidence <= 0:
            confident = None
        else:
            confident = confidence >= np.uint8(min(255, math.ceil(spec.min_confidence * 255 - 1e-6)))
        drivable = kind == _DRIVABLE
        if confident is not None:
            drivable &= confident
        has_ground = drivable.any(axis=2)
        g = self._ground(drivable, spec.ground_z)

        # The band's voxel index range per column: centre z0 + (k + 0.5) v in [g + bottom, g + top).
        def index(height: np.ndarray) -> np.ndarray:
            return np.clip(np.ceil((height - self.z0) / v - 0.5 - 1e-9), 0, Z).astype(np.int64)

        k_lo, k_hi = index(g + spec.band_bottom), index(g + spec.band_top)
        k = np.arange(Z, dtype=np.int64)
        band = (k >= k_lo[..., None]) & (k < k_hi[..., None])  # (X, Y, Z)
        obstacle_voxel = (kind == _OBSTACLE) & band
        if confident is not None:
            obstacle_voxel &= confident
            band_sure = ~(band & ~confident).any(axis=2)
        else:
            band_sure = np.ones((X, Y), bool)
        lethal = obstacle_voxel.any(axis=2)
        free = has_ground & ~lethal & band_sure

        # Seen: a frustum voxel between the ground (the voxel just under g) and the band top.
        k_ground = np.clip(index(g) - 1, 0, Z)
        seen = (view.frustum_count(k_ground, np.maximum(k_hi, k_ground)) > 0) & (view.column_range <= spec.max_range)

        costs = np.full((X, Y), UNKNOWN, np.int8)
        costs[free & seen] = FREE
        lethal &= seen
        if spec.inflation_radius > 0 and lethal.any():
            lethal = (cv2.dilate(lethal.astype(np.uint8), self._disk) > 0) & seen
        costs[lethal] = LETHAL
        return costs
