"""The node's outputs, built from a label grid with NumPy (no Python loop over voxels).

- `occupancy`: cigocc_msgs/SemanticOccupancy, the dense (X, Y, Z) uint8 grid + confidence and
  the class table, in the grid frame (velodyne: x forward, y left, z up).
- `cloud`: sensor_msgs/PointCloud2 of occupied voxel centres (label not 0 "empty", not 255
  unknown): x, y, z float32 in the grid frame, label uint8, confidence uint8, 16-byte points.
- `markers`: visualization_msgs/MarkerArray as CDR bytes, in the *camera* frame of the image (its
  pose is T_cam_grid, the cubes stay in grid coordinates), so RViz draws them over the camera
  image without any TF: a DELETEALL marker first (classes that vanished are cleared), then one
  CUBE_LIST per present class, namespace = class name, id = label (stable across frames),
  limited to `max_range` metres (horizontal distance from the grid frame's origin) and
  decimated by `decimation` (one cube of `decimation` voxels per side, label of its first voxel).
- `costmap`: nav_msgs/OccupancyGrid of an (X, Y) int8 cost grid (cigocc_ros/costmap.py), in the
  grid frame with the grid's origin and resolution: cell (i, j) = data[j * width + i], width = X.
"""
from __future__ import annotations

import array
from dataclasses import dataclass

import numpy as np
from builtin_interfaces.msg import Time
from cigocc_msgs.msg import SemanticOccupancy
from nav_msgs.msg import OccupancyGrid
from sensor_msgs.msg import Image, PointCloud2, PointField
from std_msgs.msg import ColorRGBA, Header

from ..classes import IGNORE_LABEL, ClassTable
from ..config import GridConfig
from ..geometry import quaternion_xyzw, voxel_centers
from .marker_cdr import ADD, CUBE_LIST, DELETEALL, MarkerSpec, serialize_marker_array

CLOUD_DTYPE = np.dtype(
    {
        "names": ["x", "y", "z", "label", "confidence"],
        "formats": ["<f4", "<f4", "<f4", "u1", "u1"],
        "offsets": [0, 4, 8, 12, 13],
        "itemsize": 16,
    }
)


def byte_array(a: np.ndarray) -> array.array:
    """array('B') holding the bytes of `a` with a single copy (rclpy checks a list or an ndarray
    element by element; an array('B') is taken as is)."""
    out = array.array("B")
    out.frombytes(memoryview(np.ascontiguousarray(a)).cast("B"))
    return out


IMAGE_ENCODINGS = {"32FC1": ("<f4", 1), "mono8": ("u1", 1), "rgb8": ("u1", 3)}  # encoding: (dtype, channels)


def image_message(a: np.ndarray, encoding: str, header) -> Image:
    """sensor_msgs/Image of an (H, W) or (H, W, 3) array in `encoding` (IMAGE_ENCODINGS) with the
    given header (the camera's stamp and frame: the image is a per-pixel map of that camera)."""
    dtype, channels = IMAGE_ENCODINGS[encoding]
    a = np.ascontiguousarray(a, dtype=dtype)
    H, W = a.shape[:2]
    return Image(header=header, height=H, width=W, encoding=encoding, is_bigendian=0,
                 step=W * channels * a.itemsize, data=byte_array(a))


def to_time(stamp_ns: int) -> Time:
    return Time(sec=int(stamp_ns // 1_000_000_000), nanosec=int(stamp_ns % 1_000_000_000))


def occupied_mask(labels: np.ndarray) -> np.ndarray:
    """(X, Y, Z) bool: voxels holding a class (not empty 0, not unknown 255).

    Read as int8, labels 1..127 are positive and 0 / 255 (-1) are not: one comparison instead of
    two (the class table has 20 classes)."""
    return labels.view(np.int8) > 0


@dataclass
class Occupied:
    """The occupied voxels of one grid, shared by the cloud and the markers of a frame."""

    idx: np.ndarray  # (N,) int64 flat C-order indices into the (X, Y, Z) grid
    labels: np.ndarray  # (N,) uint8 their labels


class OutputBuilder:
    """Builds the outputs for grids of one GridConfig and one class table."""

    def __init__(self, grid: GridConfig, classes: ClassTable, grid_frame: str, model_id: str) -> None:
        self.grid = grid
        self.classes = classes
        self.grid_frame = grid_frame
        self.model_id = model_id
        self.size = tuple(int(s) for s in grid.size)
        self.origin = np.asarray(grid.origin, dtype=np.float64)
        self.voxel = float(grid.voxel_size)
        self._colors = [
            ColorRGBA(r=float(c[0]) / 255, g=float(c[1]) / 255, b=float(c[2]) / 255, a=1.0)
            for c in classes.colors_rgb
        ]
        # (X*Y*Z, 4) float32: x, y, z of every voxel centre and 4 spare bytes that become the
        # cloud's label and confidence; one row gather per frame instead of index arithmetic.
        table = np.zeros((int(np.prod(self.size)), 4), np.float32)
        table[:, :3] = voxel_centers(self.size, self.voxel, tuple(self.origin)).reshape(-1, 3)
        self._table = table
        # (X, Y) horizontal distance of each voxel column from the grid frame's origin.
        cx, cy = (self.origin[i] + (np.arange(self.size[i]) + 0.5) * self.voxel for i in range(2))
        self._column_range = np.hypot(cx[:, None], cy[None, :])

    def _in_range(self, max_range: float) -> np.ndarray:
        """(X*Y*Z,) bool: voxel within `max_range` of the grid origin; cached per range value
        (it is a run-time parameter, but changes rarely)."""
        if getattr(self, "_range_key", None) != max_range:
            self._range_mask = np.repeat((self._column_range <= max_range).ravel(), self.size[2])
            self._range_key = max_range
        return self._range_mask

    def _check(self, labels: np.ndarray) -> None:
        if labels.shape != self.size or labels.dtype != np.uint8:
            raise ValueError(
                f"label grid must be uint8 {self.size} (grid.size), got {labels.dtype} {labels.shape}"
            )

    def occupied(self, labels: np.ndarray) -> Occupied:
        """Flat indices and labels of the occupied voxels of (X, Y, Z) `labels`."""
        self._check(labels)
        idx = np.flatnonzero(occupied_mask(labels))
        return Occupied(idx, labels.ravel()[idx])

    # ---------------------------------------------------------------------------------------
    def occupancy(self, labels: np.ndarray, confidence: np.ndarray | None, stamp_ns: int) -> SemanticOccupancy:
        """SemanticOccupancy of (X, Y, Z) uint8 `labels` (and `confidence`) in the grid frame."""
        self._check(labels)
        msg = SemanticOccupancy()
        msg.header = Header(stamp=to_time(stamp_ns), frame_id=self.grid_frame)
        msg.origin.position.x, msg.origin.position.y, msg.origin.position.z = (float(v) for v in self.origin)
        msg.origin.orientation.w = 1.0
        msg.voxel_size = self.voxel
        msg.size_x, msg.size_y, msg.size_z = self.size
        msg.labels = byte_array(labels)
        if confidence is not None:
            if confidence.shape != labels.shape:
                raise ValueError(f"confidence shape {confidence.shape} != labels shape {labels.shape}")
            msg.confidence = byte_array(confidence.astype(np.uint8, copy=False))
        msg.class_names = list(self.classes.names)
        msg.class_colors = self._colors
        msg.model_id = self.model_id
        return msg

    # ---------------------------------------------------------------------------------------
    def cloud(
        self, labels: np.ndarray, confidence: np.ndarray | None, stamp_ns: int, occ: Occupied | None = None
    ) -> PointCloud2:
        """PointCloud2 of the occupied voxel centres, grid frame, one 16-byte point each."""
        occ = occ or self.occupied(labels)
        idx = occ.idx
        pts = np.take(self._table, idx, axis=0)  # (N, 4) float32, a copy
        raw = pts.view(np.uint8)  # (N, 16)
        raw[:, 12] = occ.labels
        raw[:, 13] = 0 if confidence is None else confidence.ravel()[idx]
        msg = PointCloud2()
        msg.header = Header(stamp=to_time(stamp_ns), frame_id=self.grid_frame)
        msg.height, msg.width = 1, len(idx)
        msg.fields = [
            PointField(name="x", offset=0, datatype=PointField.FLOAT32, count=1),
            PointField(name="y", offset=4, datatype=PointField.FLOAT32, count=1),
            PointField(name="z", offset=8, datatype=PointField.FLOAT32, count=1),
            PointField(name="label", offset=12, datatype=PointField.UINT8, count=1),
            PointField(name="confidence", offset=13, datatype=PointField.UINT8, count=1),
        ]
        msg.is_bigendian = False
        msg.point_step = CLOUD_DTYPE.itemsize
        msg.row_step = msg.point_step * len(idx)
        msg.is_dense = True
        msg.data = byte_array(pts)
        return msg

    # ---------------------------------------------------------------------------------------
    def marker_specs(
        self,
        labels: np.ndarray,
        T_cam_grid: np.ndarray,
        max_range: float = float("inf"),
        decimation: int = 1,
        occ: Occupied | None = None,
    ) -> list[MarkerSpec]:
        """DELETEALL + one CUBE_LIST per present class; points (N, 3) in the grid frame."""
        self._check(labels)
        d = max(1, int(decimation))
        if d == 1:
            occ = occ or self.occupied(labels)
            key = occ.labels
            if np.isfinite(max_range):  # out of range -> key 255, sorted last and cut off
                key = np.where(self._in_range(max_range)[occ.idx], key, np.uint8(IGNORE_LABEL))
            counts = np.bincount(key, minlength=256)
            counts[IGNORE_LABEL] = 0
            order = np.argsort(key, kind="stable")[: counts.sum()]  # radix sort on uint8: by class
            rows = np.take(self._table, np.take(occ.idx, order), axis=0)  # 16-byte rows: fast gather
            points = np.empty((len(order), 3), np.float64)
            points[:] = rows[:, :3]
        else:
            sub = labels[::d, ::d, ::d]
            cx = self.origin[0] + (np.arange(sub.shape[0]) * d + d / 2) * self.voxel
            cy = self.origin[1] + (np.arange(sub.shape[1]) * d + d / 2) * self.voxel
            cz = self.origin[2] + (np.arange(sub.shape[2]) * d + d / 2) * self.voxel
            in_range = np.hypot(cx[:, None], cy[None, :]) <= max_range  # (X', Y')
            idx = np.flatnonzero(occupied_mask(sub) & in_range[:, :, None])
            lab = sub.ravel()[idx]
            order = np.argsort(lab, kind="stable")
            idx, lab = idx[order], lab[order]
            ix, iy, iz = np.unravel_index(idx, sub.shape)
            points = np.stack([cx[ix], cy[iy], cz[iz]], axis=1)
            counts = np.bincount(lab, minlength=256)
        starts = np.concatenate([[0], np.cumsum(counts)])
        T = np.asarray(T_cam_grid, dtype=np.float64)
        pose = tuple(float(v) for v in T[:3, 3]) + tuple(float(v) for v in quaternion_xyzw(T[:3, :3]))
        specs = [MarkerSpec(ns="", id=0, type=CUBE_LIST, action=DELETEALL)]
        size = self.voxel * d
        for c in np.flatnonzero(counts):  # at most one iteration per class
            col = self.classes.colors_rgb[c] / 255.0
            specs.append(
                MarkerSpec(
                    ns=self.classes.names[c],
                    id=int(c),
                    type=CUBE_LIST,
                    action=ADD,
                    pose=pose,
                    scale=(size, size, size),
                    color=(float(col[0]), float(col[1]), float(col[2]), 1.0),
                    points=points[starts[c] : starts[c + 1]],
                )
            )
        return specs

    def markers(
        self,
        labels: np.ndarray,
        T_cam_grid: np.ndarray,
        stamp_ns: int,
        camera_frame: str,
        max_range: float = float("inf"),
        decimation: int = 1,
        occ: Occupied | None = None,
    ) -> bytes:
        """Serialised visualization_msgs/MarkerArray, header = the image's stamp and frame."""
        specs = self.marker_specs(labels, T_cam_grid, max_range, decimation, occ)
        t = to_time(stamp_ns)
        return serialize_marker_array(specs, t.sec, t.nanosec, camera_frame)

    # ---------------------------------------------------------------------------------------
    def costmap(self, costs: np.ndarray, stamp_ns: int) -> OccupancyGrid:
        """OccupancyGrid of (X, Y) int8 `costs` (100 lethal, 0 free, -1 unknown), grid frame."""
        if costs.shape != self.size[:2] or costs.dtype != np.int8:
            raise ValueError(f"cost grid must be int8 {self.size[:2]}, got {costs.dtype} {costs.shape}")
        msg = OccupancyGrid()
        msg.header = Header(stamp=to_time(stamp_ns), frame_id=self.grid_frame)
        msg.info.map_load_time = msg.header.stamp
        msg.info.resolution = self.voxel
        msg.info.width, msg.info.height = self.size[0], self.size[1]
        msg.info.origin.position.x, msg.info.origin.position.y, msg.info.origin.position.z = (float(v) for v in self.origin)
        msg.info.origin.orientation.w = 1.0
        # Row-major with x fastest: the (X, Y) grid transposed. int8 data wants array('b').
        data = array.array("b")
        data.frombytes(np.ascontiguousarray(costs.T).tobytes())
        msg.data = data
        return msg
