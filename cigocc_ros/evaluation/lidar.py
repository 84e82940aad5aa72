"""Quality of a predicted grid on a real frame against the frame's labelled LiDAR scan: needs no
voxel labels, only the scan (`velodyne/` + `labels/`) and the calibration.

The reference of a frame (`LidarReference`, all (X, Y, Z) in the grid frame, restricted to the
voxels whose centre projects into the camera image, `in_image`):
- surface: the scan voxelised (semantic_kitti.voxelize_scan: the voxelizer's filters), with the
  majority training label per voxel (255 where that label is ignored);
- free: voxels the LiDAR rays crossed before their hit (ray_march.free_space): seen empty;
- above_ground: voxels whose bottom lies more than `ground_margin` above a plane fitted to the
  scan's ground-class points (road, sidewalk, parking, other-ground, terrain), so a tilted road
  does not count as "above ground".

Figures of one prediction (labels 0..19, 0 = empty), `frame_scores`; all in [0, 1]:
- surface_recall: reference surface voxels predicted occupied; surface_recall_1: ... with a
  predicted occupied voxel within one voxel (3x3x3 neighbourhood);
- free_violation: free voxels predicted occupied; free_violation_above: the same above ground;
- iou_observed: occupied-vs-empty IoU over observed voxels only (surface or free);
- semantic_accuracy: surface voxels (with a class) predicted with the reference's class;
- per-class recall: counts `class_hits` / `class_total` per class 0..19 (summed over frames).
A prediction equal to the reference surface scores 1, 1, 0, 0, 1, 1; an empty one 0, 0, 0, 0, 0, 0.
Core module: numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ..classes import IGNORE_LABEL, NUM_CLASSES, load_class_table
from ..config import GridConfig
from ..data import semantic_kitti as sk
from ..data.ray_march import free_space
from ..geometry import project, voxel_centers

GROUND_CLASSES = (9, 10, 11, 12, 17)  # road, parking, sidewalk, other-ground, terrain
FIGURES = ("surface_recall", "surface_recall_1", "free_violation", "free_violation_above",
           "iou_observed", "semantic_accuracy")


@dataclass
class LidarReference:
    """What one labelled scan says about a frame's grid (module docstring); (X, Y, Z) arrays."""

    surface: np.ndarray  # uint8 training labels 0..19 / 255 where a scan point is, 0 elsewhere
    occupied: np.ndarray  # bool: voxels holding scan points (any label)
    free: np.ndarray  # bool: crossed by a ray before its hit, and not occupied
    above_ground: np.ndarray  # bool
    in_image: np.ndarray  # bool: the voxel centre projects into the image


def in_image_mask(grid: GridConfig, K: np.ndarray, T_cam_grid: np.ndarray, image_size: tuple[int, int],
                  min_depth: float = 0.5) -> np.ndarray:
    """(X, Y, Z) bool: voxel centres in front of the camera that project inside the image (H, W)."""
    H, W = image_size
    uv, z = project(voxel_centers(tuple(grid.size), grid.voxel_size, grid.origin).reshape(-1, 3), K, T_cam_grid)
    ok = (z > min_depth) & (uv[:, 0] >= -0.5) & (uv[:, 0] < W - 0.5) & (uv[:, 1] >= -0.5) & (uv[:, 1] < H - 0.5)
    return ok.reshape(tuple(grid.size))


def ground_plane(points: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """(a, b, c) of the least-squares plane z = a x + b y + c through the ground-class points
    (points (N, 3), labels (N,) training labels) within the grid's reach; a level plane at the
    median height if there are too few."""
    g = np.isin(labels, GROUND_CLASSES) & (points[:, 0] > 0) & (points[:, 0] < 55) & (np.abs(points[:, 1]) < 30)
    p = points[g]
    if len(p) < 50:
        z = float(np.median(points[:, 2])) if len(points) else -1.73
        return np.array([0.0, 0.0, z])
    A = np.c_[p[:, 0], p[:, 1], np.ones(len(p))]
    coef, *_ = np.linalg.lstsq(A, p[:, 2], rcond=None)
    # One refit without the points far from the first plane (kerbs, low walls labelled ground).
    keep = np.abs(A @ coef - p[:, 2]) < 0.3
    if keep.sum() >= 50:
        coef, *_ = np.linalg.lstsq(A[keep], p[keep, 2], rcond=None)
    return coef


def lidar_reference(points: np.ndarray, labels_raw: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
                    image_size: tuple[int, int], grid: GridConfig | None = None,
                    ground_margin: float = 0.4) -> LidarReference:
    """The reference of one frame from its scan (points (N, >=3) velodyne frame = grid frame,
    labels_raw (N,) raw SemanticKITTI ids) and its camera (K, T_cam_grid, image (H, W))."""
    grid = grid or GridConfig()
    occupied, raw = sk.voxelize_scan(points, labels_raw, grid)
    surface = np.where(occupied, sk.remap_labels(raw), 0).astype(np.uint8)
    # The same points the voxeliser keeps end the rays (the ego vehicle's own returns do not).
    xyz = np.asarray(points, dtype=np.float64)[:, :3]
    r = np.linalg.norm(xyz, axis=1)
    keep = (r >= 2.5) & (r <= 70.0) & ~((xyz[:, 0] > -2) & (xyz[:, 0] < 3) & (np.abs(xyz[:, 1]) < 2))
    free = free_space(np.zeros(3), xyz[keep], grid) & ~occupied
    lab_pts = sk.remap_labels(np.asarray(labels_raw))[keep]
    a, b, c = ground_plane(xyz[keep], lab_pts)
    centres = voxel_centers(tuple(grid.size), grid.voxel_size, grid.origin)
    bottom = centres[..., 2] - 0.5 * grid.voxel_size
    above = bottom > a * centres[..., 0] + b * centres[..., 1] + c + ground_margin
    return LidarReference(surface, occupied, free, above, in_image_mask(grid, K, T_cam_grid, image_size))


def _dilate(mask: np.ndarray) -> np.ndarray:
    """3x3x3 binary dilation (edges not wrapped)."""
    out = mask.copy()
    for ax in range(3):
        grown = out.copy()
        lo = [slice(None)] * 3
        hi = [slice(None)] * 3
        lo[ax], hi[ax] = slice(1, None), slice(None, -1)
        grown[tuple(lo)] |= out[tuple(hi)]
        grown[tuple(hi)] |= out[tuple(lo)]
        out = grown
    return out


def _ratio(num: int, den: int) -> float:
    return float(num) / den if den else float("nan")


@dataclass
class FrameScores:
    """Figures of one prediction on one frame (module docstring) and the counts behind them."""

    figures: dict[str, float]
    class_hits: np.ndarray  # (NUM_CLASSES,) int64
    class_total: np.ndarray  # (NUM_CLASSES,) int64


def frame_scores(pred: np.ndarray, ref: LidarReference) -> FrameScores:
    """Score `pred` (X, Y, Z) labels 0..19 (0 empty) against `ref` inside the image."""
    pred = np.asarray(pred)
    if pred.shape != ref.surface.shape:
        raise ValueError(f"prediction {pred.shape} and reference {ref.surface.shape} differ")
    m = ref.in_image
    p_occ = (pred > 0) & (pred != IGNORE_LABEL)
    surf = ref.occupied & m
    free = ref.free & m
    observed = surf | free
    inter = p_occ & surf
    labelled = surf & (ref.surface != IGNORE_LABEL) & (ref.surface > 0)
    figures = {
        "surface_recall": _ratio(inter.sum(), surf.sum()),
        "surface_recall_1": _ratio((_dilate(p_occ) & surf).sum(), surf.sum()),
        "free_violation": _ratio((p_occ & free).sum(), free.sum()),
        "free_violation_above": _ratio((p_occ & free & ref.above_ground).sum(), (free & ref.above_ground).sum()),
        "iou_observed": _ratio(inter.sum(), ((p_occ & observed) | surf).sum()),
        "semantic_accuracy": _ratio((pred[labelled] == ref.surface[labelled]).sum(), labelled.sum()),
    }
    ref_lab = ref.surface[labelled].astype(np.int64)
    hits = ref_lab[pred[labelled] == ref.surface[labelled]]
    return FrameScores(figures, np.bincount(hits, minlength=NUM_CLASSES)[:NUM_CLASSES],
                       np.bincount(ref_lab, minlength=NUM_CLASSES)[:NUM_CLASSES])


@dataclass
class LidarReport:
    """Scores of one predictor over frames: per frame, averaged, per-class recall (pooled)."""

    name: str
    frames: list[str] = field(default_factory=list)
    per_frame: list[dict[str, float]] = field(default_factory=list)
    class_hits: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))
    class_total: np.ndarray = field(default_factory=lambda: np.zeros(NUM_CLASSES, np.int64))

    def add(self, frame: str, s: FrameScores) -> None:
        self.frames.append(frame)
        self.per_frame.append(s.figures)
        self.class_hits += s.class_hits
        self.class_total += s.class_total

    def mean(self) -> dict[str, float]:
        """Each figure averaged over the frames where it is defined."""
        return {k: float(np.nanmean([f[k] for f in self.per_frame])) if self.per_frame else float("nan")
                for k in FIGURES}

    def class_recall(self) -> dict[str, float]:
        """{class name: recall} for classes present in the reference (pooled over frames)."""
        names = load_class_table().names
        return {names[c]: float(self.class_hits[c] / self.class_total[c])
                for c in range(1, NUM_CLASSES) if self.class_total[c]}

    def summary(self) -> dict:
        return {"name": self.name, "mean": self.mean(), "class_recall": self.class_recall(),
                "frames": dict(zip(self.frames, self.per_frame, strict=True))}


def format_reports(reports: list[LidarReport]) -> str:
    """A Markdown table: one row per predictor, the averaged figures in percent and car recall."""
    cols = ["predictor", "surface recall", "recall ±1 voxel", "free-space violation",
            "violation above ground", "IoU (observed)", "semantic acc.", "car recall"]
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in reports:
        m = r.mean()
        car = r.class_recall().get("car", float("nan"))
        vals = [f"{100 * m[k]:.1f}" for k in FIGURES] + [f"{100 * car:.1f}"]
        lines.append("| " + " | ".join([r.name, *vals]) + " |")
    return "\n".join(lines)
