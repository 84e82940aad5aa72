"""A tiny SemanticKITTI-layout dataset written by tests: a structured street scene on a small
grid (32x32x8 voxels of 0.8 m), every one of the 19 classes present, images coloured by
projecting the labelled voxels with the real KITTI calibration. Small enough that a training
step takes well under a second on the CI machine."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cigocc_ros.classes import load_class_table
from cigocc_ros.config import ExperimentConfig, load_experiment
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.geometry import camera_from_calib, project, voxel_centers

GRID = (32, 32, 8)
VOXEL = 0.8
ORIGIN = (0.0, -12.8, -2.0)
IMAGE = (120, 400)  # (H, W) written to disk; the model crops to TINY_OVERRIDES' image_size

# Real KITTI odometry calibration (sequence 00) with the principal point moved into the small image.
P = np.array([[718.856, 0, 200.0, 0], [0, 718.856, 20.0, 0], [0, 0, 1, 0]])
P_RIGHT = P.copy()
P_RIGHT[0, 3] = -718.856 * 0.54
TR = np.array([[4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02],
               [-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02],
               [9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01]])

TINY_OVERRIDES = [
    f"grid.size=[{GRID[0]}, {GRID[1]}, {GRID[2]}]", f"grid.voxel_size={VOXEL}",
    f"grid.origin=[{ORIGIN[0]}, {ORIGIN[1]}, {ORIGIN[2]}]",
    "model.image_size=[96, 320]", "model.depth_bins=16", "model.max_queries=64",
    "model.embed_dims=32", "model.unet_channels=16", "model.seg_channels=16",
    "train.steps=12", "train.lr=0.003", "train.warmup_pct=0.2", "train.val_every=1000",
    "train.ckpt_every=1000", "train.log_every=1", "data.num_workers=0", "data.flip_prob=0.5",
    "data.train_sequences=[\"00\"]", "data.val_sequences=[\"01\"]",
]


def scene_labels(rng: np.random.Generator) -> np.ndarray:
    """(32, 32, 8) labels: a road with sidewalks and every class standing on the ground."""
    lab = np.zeros(GRID, dtype=np.uint8)
    lab[:, :, 0] = 17  # terrain everywhere at ground level
    lab[:, 12:20, 0] = 9  # road
    lab[:, 10:12, 0] = 11  # sidewalks
    lab[:, 20:22, 0] = 11
    lab[24:30, 20:24, 0] = 10  # parking
    lab[4:8, 24:28, 0] = 12  # other-ground
    lab[:, 2:6, 1:6] = 13  # building row on the left... (y small = right side)
    lab[:, 27:29, 1:3] = 15  # hedge
    lab[::6, 26, 1:3] = 14  # fence posts between hedge parts
    jitter = int(rng.integers(0, 3))
    objects = [(1, 6 + jitter, 14, 2, 2, 2), (4, 14, 17, 3, 2, 3), (5, 22, 13, 2, 2, 2),
               (2, 10, 21, 1, 1, 1), (3, 12, 21, 1, 1, 1), (6, 16, 21, 1, 1, 2),
               (7, 18, 19, 1, 1, 2), (8, 26, 14, 1, 1, 2), (16, 8, 23, 1, 1, 3),
               (18, 20, 22, 1, 1, 4), (19, 24, 22, 1, 1, 1)]
    for cls, x, y, dx, dy, dz in objects:
        lab[x:x + dx, y:y + dy, 1:1 + dz] = cls
    lab[8, 23, 4:6] = 15  # a crown on the trunk
    lab[24, 22, 5] = 19  # the sign plate on its pole
    lab[:, :, 7] = 0
    return lab


def render(labels: np.ndarray, K: np.ndarray, T: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) uint8 image: labelled voxel centres splatted far-to-near in class colours."""
    H, W = IMAGE
    img = np.broadcast_to(np.array([150, 180, 230], np.uint8), (H, W, 3)).copy()  # sky
    centres = voxel_centers(GRID, VOXEL, ORIGIN)
    occ = labels > 0
    uv, z = project(centres[occ], K, T)
    colors = load_class_table().colors_rgb[labels[occ]]
    order = np.argsort(-z)
    for du in range(-6, 7):  # splat footprint offsets, not a loop over voxels
        for dv in range(-3, 4):
            u = np.round(uv[order, 0]).astype(int) + du
            v = np.round(uv[order, 1]).astype(int) + dv
            ok = (z[order] > 0.5) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
            img[v[ok], u[ok]] = colors[order][ok]
    noise = rng.integers(-10, 11, img.shape)
    return np.clip(img.astype(int) + noise, 0, 255).astype(np.uint8)


def write_tiny_dataset(root: Path, sequences: dict[str, int] | None = None) -> Path:
    """Write sequences {name: frames} (labelled frames 0, 5, 10, ...) under root/sequences."""
    sequences = sequences or {"00": 3, "01": 2}
    for s_i, (seq, n) in enumerate(sequences.items()):
        d = root / "sequences" / seq
        sk.write_calib(d / "calib.txt", {"P0": P, "P1": P_RIGHT, "P2": P, "P3": P_RIGHT, "Tr": TR})
        sk.write_times(d / "times.txt", np.arange(n * 5) * 0.1)
        sk.write_poses(d / "poses.txt", np.tile(np.eye(4), (n * 5, 1, 1)))
        cam = camera_from_calib(P, TR, IMAGE)
        cam_r = camera_from_calib(P_RIGHT, TR, IMAGE)
        for k in range(n):
            frame = f"{5 * k:06d}"
            rng = np.random.default_rng(100 * s_i + k)
            lab = scene_labels(rng)
            sk.write_image(d / "image_2" / f"{frame}.png", render(lab, cam.K, cam.T_cam_grid, rng))
            sk.write_image(d / "image_3" / f"{frame}.png", render(lab, cam_r.K, cam_r.T_cam_grid, rng))
            invalid = np.zeros(GRID, bool)
            invalid[:, :, 7] = True
            sk.write_voxels(d / "voxels" / frame, lab, invalid=invalid, occupancy=lab > 0)
            sk.write_teacher_mask(d / "teacher_masks" / f"{frame}.png",
                                  np.full(IMAGE, 255, np.uint8) if k % 2 else
                                  np.where(np.arange(IMAGE[0])[:, None] > 80, 9, 255).astype(np.uint8)
                                  * np.ones((1, IMAGE[1]), np.uint8))
            pts = voxel_centers(GRID, VOXEL, ORIGIN)[lab > 0]
            sk.write_scan(d / "velodyne" / f"{frame}.bin", pts)
    return root


def tiny_config(root: Path, extra: list[str] | tuple[str, ...] = ()) -> ExperimentConfig:
    return load_experiment("lite", [*TINY_OVERRIDES, f"data.root={root}", *extra])
