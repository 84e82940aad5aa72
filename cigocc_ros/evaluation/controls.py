"""Trivial predictors and controls that every evaluation prints beside the model (issue 16).

A model's SSC figures mean something only next to what needs no image at all:
- `flat_ground`: the ground layer(s) at a fixed height labelled road, everything else empty
  (on a flat world this alone scores a high completion IoU);
- `VoxelPrior`: the image-free per-voxel prior, the most common label of each voxel over the
  training frames (fitted once, saved as a small compressed file);
- the stereo controls, for frames with a stereo pair: `stereo_height_rule` (stereo points
  voxelised, labelled by their height) and `stereo_segmentation` (each stereo point carrying
  the segmentation branch's 2D class, voxelised: a classical semantic pseudo-LiDAR);
- the shuffled-image control: each frame scored with ANOTHER frame's image and its own
  calibration (`derangement` + `ShuffledImages`); a model that reads the image loses clearly.

Core module: numpy / torch only, no ROS, no training code. Volumes are (X, Y, Z) uint8 labels
0..19 in the grid (velodyne) frame of `GridConfig`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..classes import IGNORE_LABEL, NUM_CLASSES
from ..config import GridConfig
from .ssc_metric import SSCMetric

ROAD = 9  # training label of "road" (cigocc_ros/semantic-kitti.yaml)
KITTI_LIDAR_HEIGHT = 1.73  # metres of the HDL-64E above the road in KITTI (and the synthetic world)
PRIOR_FORMAT = 1


# --------------------------------------------------------------------------------------------
# Flat ground
# --------------------------------------------------------------------------------------------
def ground_layers(grid: GridConfig, ground_z: float = -KITTI_LIDAR_HEIGHT) -> np.ndarray:
    """Indices of the z layers whose cells contain the plane z = ground_z (grid frame, metres):
    one layer, or two when the plane lies exactly on a layer boundary. Empty if outside."""
    lo = grid.origin[2] + grid.voxel_size * np.arange(grid.size[2])
    hi = lo + grid.voxel_size
    return np.flatnonzero((lo <= ground_z) & (ground_z <= hi))


def flat_ground(grid: GridConfig, ground_z: float = -KITTI_LIDAR_HEIGHT, label: int = ROAD) -> np.ndarray:
    """(X, Y, Z) uint8: every column's ground layer(s) at height ground_z labelled `label`
    (road), all else empty. The same volume for every frame: it ignores image and scene."""
    out = np.zeros(tuple(grid.size), dtype=np.uint8)
    out[:, :, ground_layers(grid, ground_z)] = label
    return out


def best_ground_layer(targets: Iterable[np.ndarray], label: int = ROAD) -> int:
    """The z layer holding the most `label` voxels over targets (X, Y, Z) (0..19 / 255): the
    flat-ground predictor's layer fitted on training frames. Raises if no voxel has `label`."""
    counts = None
    for t in targets:
        c = np.count_nonzero(np.asarray(t) == label, axis=(0, 1))
        counts = c if counts is None else counts + c
    if counts is None or not counts.any():
        raise ValueError(f"no voxel of label {label} in the targets: cannot place the ground layer")
    return int(np.argmax(counts))


def flat_ground_at_layer(size: tuple[int, int, int], layer: int, label: int = ROAD) -> np.ndarray:
    """(X, Y, Z) uint8 with z layer `layer` labelled `label`, all else empty."""
    if not 0 <= layer < size[2]:
        raise ValueError(f"layer {layer} outside 0..{size[2] - 1}")
    out = np.zeros(tuple(size), dtype=np.uint8)
    out[:, :, layer] = label
    return out


# --------------------------------------------------------------------------------------------
# Image-free per-voxel prior
# --------------------------------------------------------------------------------------------
@dataclass
class VoxelPrior:
    """The most common label of each voxel over a set of training targets.

    labels: (X, Y, Z) uint8 0..19 (empty where a voxel was never labelled: ignored everywhere,
    or a tie, which the smaller label, i.e. empty, wins). `frames` counts the fitted targets;
    `source` records what they were (root, sequences) so a cached prior can be checked."""

    labels: np.ndarray
    frames: int
    source: dict

    @classmethod
    def fit(cls, targets: Iterable[np.ndarray], source: dict | None = None,
            num_classes: int = NUM_CLASSES) -> VoxelPrior:
        """Fit on targets (X, Y, Z) uint8/int labels 0..C-1 with 255 = ignored (not counted)."""
        counts = None
        n = 0
        for t in targets:
            t = np.asarray(t)
            if counts is None:
                # uint16 per class: 65535 frames is far more than any training split here.
                counts = np.zeros((num_classes, *t.shape), dtype=np.uint16)
            elif t.shape != counts.shape[1:]:
                raise ValueError(f"target {n} has shape {t.shape}, earlier ones {counts.shape[1:]}")
            bad = (t != IGNORE_LABEL) & ((t < 0) | (t >= num_classes))
            if bad.any():
                raise ValueError(f"target {n} has labels outside 0..{num_classes - 1} / {IGNORE_LABEL}")
            for c in np.unique(t):
                if c != IGNORE_LABEL:
                    counts[int(c)] += t == c
            n += 1
        if counts is None:
            raise ValueError("no targets to fit the voxel prior on")
        return cls(counts.argmax(0).astype(np.uint8), n, dict(source or {}))

    def predict(self) -> np.ndarray:
        """(X, Y, Z) uint8: the same volume for every frame."""
        return self.labels

    def save(self, path: str | Path) -> Path:
        """Write a compressed .npz (a few hundred kB for 256x256x32: the volume is mostly 0)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        meta = json.dumps({"format": PRIOR_FORMAT, "frames": self.frames, "source": self.source})
        tmp = path.with_name(path.name + ".tmp.npz")
        np.savez_compressed(tmp, labels=self.labels, meta=np.array(meta))
        tmp.replace(path)
        return path

    @classmethod
    def load(cls, path: str | Path) -> VoxelPrior:
        try:
            with np.load(path, allow_pickle=False) as z:
                labels, meta = z["labels"], json.loads(str(z["meta"]))
        except (OSError, KeyError, ValueError) as e:
            raise ValueError(f"cannot read voxel prior {path}: {e}") from None
        if meta.get("format") != PRIOR_FORMAT or labels.ndim != 3 or labels.dtype != np.uint8:
            raise ValueError(f"{path}: not a voxel prior of format {PRIOR_FORMAT}")
        return cls(labels, int(meta["frames"]), meta["source"])


def load_or_fit_prior(path: str | Path, targets_fn, source: dict) -> VoxelPrior:
    """The prior cached at `path` if it was fitted on `source`, else fit it on targets_fn()
    (an iterable of targets) and save it there."""
    path = Path(path)
    if path.is_file():
        try:
            prior = VoxelPrior.load(path)
        except ValueError:
            prior = None
        if prior is not None and prior.source == source:
            return prior
    prior = VoxelPrior.fit(targets_fn(), source)
    try:
        prior.save(path)
    except OSError as e:  # a read-only dataset folder: use the prior, refit next time
        print(f"note: cannot cache the voxel prior at {path}: {e}")
    return prior


# --------------------------------------------------------------------------------------------
# Shuffled-image control
# --------------------------------------------------------------------------------------------
def derangement(n: int, seed: int = 0) -> np.ndarray:
    """(n,) int64 permutation with no fixed point (perm[i] != i), deterministic per seed:
    frame i is scored with frame perm[i]'s image. A random single cycle (Sattolo's algorithm).
    n must be >= 2 (one frame has no other image to borrow)."""
    if n < 2:
        raise ValueError(f"the shuffled-image control needs at least 2 frames, got {n}")
    rng = np.random.default_rng(seed)
    perm = np.arange(n)
    for i in range(n - 1, 0, -1):
        j = int(rng.integers(0, i))  # j < i: the permutation stays one cycle
        perm[i], perm[j] = perm[j], perm[i]
    return perm


class ShuffledImages:
    """A dataset view whose sample i is sample i (calibration, targets) with the image of
    sample perm[i] (keys 'img' and, when present, the image-derived stereo 'depth').

    Both samples must have the same image size (the dataset crops / pads every frame to the
    model's input size, so they do)."""

    IMAGE_KEYS = ("img", "depth", "depth_conf")

    def __init__(self, dataset, perm: np.ndarray | None = None, seed: int = 0):
        self.dataset = dataset
        self.perm = derangement(len(dataset), seed) if perm is None else np.asarray(perm)
        if sorted(self.perm.tolist()) != list(range(len(dataset))):
            raise ValueError("perm must be a permutation of the dataset's indices")

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i: int) -> dict:
        own = dict(self.dataset[i])
        other = self.dataset[int(self.perm[i])]
        for key in self.IMAGE_KEYS:
            if key in other:
                own[key] = other[key]
            else:
                own.pop(key, None)
        return own

    def frame_info(self, i: int):
        return self.dataset.frame_info(i)


# --------------------------------------------------------------------------------------------
# Scoring
# --------------------------------------------------------------------------------------------
def score_constant(volume: np.ndarray, targets: Iterable[np.ndarray], num_classes: int = NUM_CLASSES) -> dict:
    """SSCMetric.summary() (percent) of predicting the same `volume` for every target."""
    metric = SSCMetric(num_classes)
    for t in targets:
        metric.add(volume, t)
    return metric.summary()


def _targets(dataset):
    """The targets (X, Y, Z) of a dataset with `target(i)` (SemanticKittiDataset), lazily,
    skipping frames without labels."""
    for i in range(len(dataset)):
        t = dataset.target(i)
        if t is not None:
            yield t


def prior_source(train, grid: GridConfig) -> dict:
    """What a voxel prior fitted on `train` depends on (compared when a cached prior is reused)."""
    return {"root": str(Path(train.root).resolve()), "frames": [list(s) for s in train.samples],
            "grid": [list(grid.size), grid.voxel_size, list(grid.origin)]}


def image_free_controls(train, val, grid: GridConfig, prior_path: str | Path | None = None) -> dict[str, dict]:
    """SSCMetric summaries (percent) on `val` of the image-free controls:
    'flat ground' (road at KITTI's LiDAR height, `flat_ground`) and, when `train` is given,
    'voxel prior' (`VoxelPrior` of train's targets; cached at prior_path when given).
    train / val: datasets with `target(i)`, `samples` and `root` (SemanticKittiDataset)."""
    predictors = {"flat ground": flat_ground(grid)}
    if train is not None:
        if prior_path is None:
            prior = VoxelPrior.fit(_targets(train), prior_source(train, grid))
        else:
            prior = load_or_fit_prior(prior_path, lambda: _targets(train), prior_source(train, grid))
        predictors["voxel prior"] = prior.predict()
    metrics = {name: SSCMetric() for name in predictors}
    for t in _targets(val):
        for name, vol in predictors.items():
            metrics[name].add(vol, t)
    return {name: m.summary() for name, m in metrics.items()}


def control_checks(model: dict, controls: dict[str, dict]) -> list[str]:
    """Lines comparing a model's summary with its controls' (issue 16's targets): mIoU against
    twice the voxel prior's, IoU against every control's, and how much the shuffled image
    costs in mIoU (a model that reads the image loses at least a third)."""
    lines = []
    prior = controls.get("voxel prior")
    if prior is not None:
        ratio = model["miou"] / prior["miou"] if prior["miou"] > 0 else float("inf")
        lines.append(f"mIoU {model['miou']:.2f} = {ratio:.2f}x the voxel prior's {prior['miou']:.2f} "
                     f"(target >= 2x): {'met' if ratio >= 2 else 'MISSED'}")
    best = max(controls.items(), key=lambda kv: kv[1]["iou"], default=None)
    if best is not None:
        ok = all(model["iou"] > c["iou"] for c in controls.values())
        lines.append(f"IoU {model['iou']:.2f} vs best control '{best[0]}' {best[1]['iou']:.2f} "
                     f"(target: above every control): {'met' if ok else 'MISSED'}")
    shuffled = controls.get("shuffled image")
    if shuffled is not None and model["miou"] > 0:
        drop = 1.0 - shuffled["miou"] / model["miou"]
        lines.append(f"shuffled image mIoU {shuffled['miou']:.2f}: {100 * drop:.1f} % below the model's "
                     f"(target >= 33.3 %): {'met' if drop >= 1 / 3 else 'MISSED'}")
    return lines


# --------------------------------------------------------------------------------------------
# Stereo depth with a height rule
# --------------------------------------------------------------------------------------------
CAR, BUILDING = 1, 13  # training labels (cigocc_ros/semantic-kitti.yaml)


def stereo_points(depth: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray, grid: GridConfig,
                  max_depth: float = 60.0) -> tuple[np.ndarray, np.ndarray, tuple[np.ndarray, np.ndarray]]:
    """The back-projected pixels of a metric depth map (H, W) (0 = none) that fall in the grid:
    (voxel index (N, 3) int64, grid-frame point (N, 3) float64, their pixels (rows, cols))."""
    d = np.asarray(depth, dtype=np.float64)
    v, u = np.nonzero((d > 0) & (d < max_depth))
    z = d[v, u]
    rays = np.linalg.solve(np.asarray(K, dtype=np.float64), np.stack([u, v, np.ones_like(u)]).astype(np.float64))
    cam = (rays * z).T
    T = np.asarray(T_cam_grid, dtype=np.float64)
    pts = (cam - T[:3, 3]) @ T[:3, :3]  # T^-1 of a rigid transform
    idx = np.floor((pts - np.asarray(grid.origin)) / grid.voxel_size).astype(np.int64)
    inside = np.all((idx >= 0) & (idx < np.asarray(grid.size)), axis=1)
    return idx[inside], pts[inside], (v[inside], u[inside])


def stereo_height_rule(depth: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray, grid: GridConfig,
                       ground_z: float = -KITTI_LIDAR_HEIGHT, road_band: float = 0.3,
                       car_top: float = 2.0, max_depth: float = 60.0) -> np.ndarray:
    """(X, Y, Z) uint8: the voxels holding the back-projected pixels of a metric depth map
    (H, W) float, 0 = none; the node's StereoSGBM depth, cigocc_ros/stereo.py), labelled by
    height above the plane z = ground_z: road below `road_band`, car up to `car_top`, building
    above. No learning: what plain stereo geometry gives a planner."""
    idx, pts, _ = stereo_points(depth, K, T_cam_grid, grid, max_depth)
    h = pts[:, 2] - ground_z
    lab = np.where(h < road_band, ROAD, np.where(h < car_top, CAR, BUILDING)).astype(np.uint8)
    out = np.zeros(tuple(grid.size), dtype=np.uint8)
    # Points of one voxel can straddle a band edge; then one of them wins, which is all a
    # height rule can say anyway.
    out[tuple(idx.T)] = lab
    return out


def stereo_segmentation(depth: np.ndarray, labels_2d: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
                        grid: GridConfig, max_depth: float = 60.0) -> np.ndarray:
    """(X, Y, Z) uint8: a classical semantic pseudo-LiDAR. Every stereo pixel (depth (H, W),
    0 = none) carries its 2D class (`labels_2d` (H, W): the segmentation branch's, 0 = nothing
    there: sky); the points are voxelised and each voxel takes the majority class of its points
    (pixels labelled 0 are dropped). What a careful engineer ships without a 3D network."""
    idx, _, (v, u) = stereo_points(depth, K, T_cam_grid, grid, max_depth)
    lab = np.asarray(labels_2d)[v, u].astype(np.int64)
    keep = (lab > 0) & (lab < NUM_CLASSES)
    X, Y, Z = grid.size
    flat = ((idx[keep, 0] * Y + idx[keep, 1]) * Z + idx[keep, 2]) * NUM_CLASSES + lab[keep]
    keys, counts = np.unique(flat, return_counts=True)
    order = np.lexsort((-counts, keys // NUM_CLASSES))  # per voxel, the most frequent class first
    vox = keys[order] // NUM_CLASSES
    first = np.ones(len(vox), dtype=bool)
    first[1:] = vox[1:] != vox[:-1]
    out = np.zeros(X * Y * Z, dtype=np.uint8)
    out[vox[first]] = (keys[order][first] % NUM_CLASSES).astype(np.uint8)
    return out.reshape(X, Y, Z)
