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

import functools
import math
from dataclasses import dataclass

import cv2
import numpy as np

from .classes import ClassTable
from .config import GridConfig, NodeConfig
from .geometry import crop_window

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


def pack_columns(mask: np.ndarray) -> np.ndarray:
    """(X, Y, Z <= 64) bool -> (X, Y) uint64 with bit k = mask[x, y, k]: per-column questions
    ("any obstacle voxel in the band?") become one AND over X*Y words instead of Z passes."""
    packed = np.packbits(mask, axis=2, bitorder="little")  # (X, Y, ceil(Z / 8))
    words = np.zeros(mask.shape[:2] + (8,), np.uint8)
    words[..., : packed.shape[2]] = packed
    return words.view(np.uint64)[..., 0]


_BELOW = np.array([(1 << k) - 1 for k in range(65)], dtype=np.uint64)  # bits [0, k) set


def bit_range(k_lo: np.ndarray, k_hi: np.ndarray) -> np.ndarray:
    """(X, Y) uint64 with bits [k_lo, k_hi) set (k in 0..64)."""
    return _BELOW[k_hi] & ~_BELOW[k_lo]


def highest_bit(words: np.ndarray) -> np.ndarray:
    """(X, Y) int64 index of the highest set bit of each uint64 word (0 for 0). Each 32-bit half
    converts to float64 exactly, whose binary exponent is the bit length (frexp)."""
    hi = np.frexp((words >> np.uint64(32)).astype(np.float64))[1]
    lo = np.frexp((words & np.uint64(0xFFFFFFFF)).astype(np.float64))[1]
    return np.maximum(np.where(hi > 0, hi + 31, lo - 1), 0).astype(np.int64)


def frustum_columns(grid: GridConfig, K: np.ndarray, T_cam_grid: np.ndarray, window: tuple[int, int, int, int],
                    min_depth: float = 1e-3) -> np.ndarray:
    """(X, Y) uint64: bit k set when the centre of voxel (x, y, k) is in front of the camera
    (z > min_depth) and projects into the pixel `window` (v0, v1, u0, u1) of
    geometry.crop_window: geometry.in_view of every voxel centre, packed per column.

    Along a column the camera point is affine in k, and each of the five conditions (depth, two
    columns, two rows of pixels, multiplied by z > 0) is an affine function of k with a sign:
    each keeps a half-line of k, so the column's voxels in view are one interval [lo, hi). That
    takes O(X * Y) work instead of projecting all X * Y * Z centres (~1 s for 256x256x32)."""
    X, Y, Z = (int(s) for s in grid.size)
    v = float(grid.voxel_size)
    o = np.asarray(grid.origin, dtype=np.float64)
    K = np.asarray(K, dtype=np.float64)
    R, t = np.asarray(T_cam_grid, dtype=np.float64)[:3, :3], np.asarray(T_cam_grid, dtype=np.float64)[:3, 3]
    v0, v1, u0, u1 = (float(w) for w in window)
    z_row = np.array([0.0, 0.0, 1.0])
    # (row w, offset c, strict): the condition w . cam + c > 0 (strict) or >= 0.
    conditions = [(z_row, -min_depth, True), (K[0] - u0 * z_row, 0.0, False), (u1 * z_row - K[0], 0.0, True),
                  (K[1] - v0 * z_row, 0.0, False), (v1 * z_row - K[1], 0.0, True)]
    x, y = ((np.arange(n) + 0.5) * v for n in (X, Y))
    lo = np.zeros((X, Y))
    hi = np.full((X, Y), float(Z))
    for w, c, strict in conditions:
        wR = w @ R  # the condition on a grid-frame point p: wR . p + (w . t + c)
        a = (wR[0] * x)[:, None] + (wR[1] * y)[None, :] + (wR @ (o + 0.5 * v * np.array([0, 0, 1])) + w @ t + c)
        b = wR[2] * v  # the change per voxel up the column
        if b == 0.0:
            holds = a > 0 if strict else a >= 0
            hi = np.where(holds, hi, 0.0)
            continue
        with np.errstate(over="ignore"):
            root = np.clip(-a / b, -1.0, Z + 1.0)  # f(k) = a + b k is zero at k = root
        if b > 0:  # k above the root
            lo = np.maximum(lo, np.floor(root) + 1 if strict else np.ceil(root))
        else:  # k below the root
            hi = np.minimum(hi, np.ceil(root) if strict else np.floor(root) + 1)
    lo = np.clip(lo, 0, Z).astype(np.int64)
    hi = np.clip(hi, 0, Z).astype(np.int64)
    return bit_range(lo, np.maximum(hi, lo))


class CameraView:
    """What one camera sees of a grid, for one geometry (K, T_cam_grid, image size).

    `frustum_bits` (X, Y) uint64: per column, the voxels whose centres are in front of the camera
    and project into the pixels the model sees (frustum_columns, geometry.crop_window of the
    model's input size); `frustum` (X, Y, Z) bool the same unpacked (on first use: only
    `unknown_outside_frustum` needs it); `column_range` (X, Y) horizontal distance of each
    column centre from the camera centre.
    """

    def __init__(self, grid: GridConfig, K: np.ndarray, T_cam_grid: np.ndarray, image_hw: tuple[int, int],
                 model_hw: tuple[int, int]) -> None:
        size = tuple(int(s) for s in grid.size)
        self.size = size
        self.frustum_bits = frustum_columns(grid, K, T_cam_grid, crop_window(image_hw, model_hw))
        cam = -T_cam_grid[:3, :3].T @ T_cam_grid[:3, 3]
        cx, cy = (grid.origin[i] + (np.arange(size[i]) + 0.5) * grid.voxel_size for i in range(2))
        self.column_range = np.hypot(cx[:, None] - cam[0], cy[None, :] - cam[1])  # (X, Y)

    @functools.cached_property
    def frustum(self) -> np.ndarray:
        """(X, Y, Z) bool, unpacked from `frustum_bits`."""
        octets = self.frustum_bits.astype("<u8").view(np.uint8).reshape(*self.size[:2], 8)
        return np.unpackbits(octets, axis=2, bitorder="little")[..., : self.size[2]].view(bool)


class Costmapper:
    """Costmaps of the grids of one GridConfig; caches the camera view and per-spec tables."""

    def __init__(self, grid: GridConfig) -> None:
        self.grid = grid
        self.size = tuple(int(s) for s in grid.size)
        self.voxel = float(grid.voxel_size)
        self.z0 = float(grid.origin[2])
        if not 1 <= self.size[2] <= 64:
            raise ValueError(f"the costmap packs grid columns into 64-bit words: grid.size z = {self.size[2]} > 64")
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
        """(X, Y) float64 local ground height from (X, Y) uint64 confident-drivable column bits."""
        X, Y, _ = self.size
        has = drivable != 0
        g = self.z0 + (highest_bit(drivable) + 1) * self.voxel  # top face of the highest one
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
        # Three (X, Y, Z) passes, then everything per column on 64-bit words.
        kind = cv2.LUT(labels.reshape(X, -1), self._kind).reshape(self.size)  # 4x np.take's speed
        obstacle = pack_columns(kind == _OBSTACLE)
        drivable = pack_columns(kind == _DRIVABLE)
        unsure = np.zeros((X, Y), np.uint64)
        if confidence is not None and spec.min_confidence > 0:
            threshold = np.uint8(min(255, math.ceil(spec.min_confidence * 255 - 1e-6)))
            unsure = pack_columns(confidence < threshold)
            obstacle &= ~unsure
            drivable &= ~unsure
        has_ground = drivable != 0
        g = self._ground(drivable, spec.ground_z)

        # Voxel indices of heights: centre z0 + (k + 0.5) v >= h  <=>  k >= index(h).
        def index(height: np.ndarray) -> np.ndarray:
            return np.clip(np.ceil((height - self.z0) / v - 0.5 - 1e-9), 0, Z).astype(np.int64)

        k_hi = index(g + spec.band_top)
        band = bit_range(index(g + spec.band_bottom), k_hi)
        lethal = (obstacle & band) != 0
        free = has_ground & ~lethal & ((unsure & band) == 0)

        # Seen: a frustum voxel between the ground (the voxel just under g) and the band top.
        k_ground = np.maximum(index(g) - 1, 0)
        seen = ((view.frustum_bits & bit_range(k_ground, np.maximum(k_hi, k_ground))) != 0) & (
            view.column_range <= spec.max_range)

        costs = np.full((X, Y), UNKNOWN, np.int8)
        costs[free & seen] = FREE
        lethal &= seen
        if spec.inflation_radius > 0 and lethal.any():
            lethal = (cv2.dilate(lethal.astype(np.uint8), self._disk) > 0) & seen
        costs[lethal] = LETHAL
        return costs
