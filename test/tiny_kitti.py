"""A tiny KITTI-layout sequence written by tests (the bag tools' fixture): small colour and
grayscale stereo PNGs with random pixels, real KITTI-00 calibration numbers, a straight
drive in poses.txt, LiDAR scans with labels, and full-size voxel ground truth on some frames.
Written with the data layer's writers so it is exactly what the readers expect."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from cigocc_ros.data import semantic_kitti as sk

# KITTI odometry sequence 00's calib.txt (P0..P3, Tr).
CALIB = {
    "P0": np.array([[718.856, 0, 607.1928, 0], [0, 718.856, 185.2157, 0], [0, 0, 1, 0]]),
    "P1": np.array([[718.856, 0, 607.1928, -386.1448], [0, 718.856, 185.2157, 0], [0, 0, 1, 0]]),
    "P2": np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887],
                    [0, 0, 1, 0.003779761]]),
    "P3": np.array([[718.856, 0, 607.1928, -337.2877], [0, 718.856, 185.2157, 2.369057],
                    [0, 0, 1, 0.004915215]]),
    "Tr": np.array([[4.276802385584e-04, -9.999672484946e-01, -8.084491683471e-03, -1.198459927713e-02],
                    [-7.210626507497e-03, 8.081198471645e-03, -9.999413164504e-01, -5.403984729748e-02],
                    [9.999738645903e-01, 4.859485810390e-04, -7.206933692422e-03, -2.921968648686e-01]]),
}


KITTI_SIZE = (376, 1241)  # (H, W) of the images CALIB belongs to


def calib_for(size) -> dict:
    """CALIB for images of `size` (H, W): the projections' u and v rows scaled, so the principal
    point stays inside the image (the node refuses intrinsics that cannot match the image)."""
    sy, sx = size[0] / KITTI_SIZE[0], size[1] / KITTI_SIZE[1]
    out = {k: v.copy() for k, v in CALIB.items()}
    for k in ("P0", "P1", "P2", "P3"):
        out[k][0] *= sx
        out[k][1] *= sy
    return out


def write_tiny_sequence(root: Path, frames: int = 8, labelled: tuple[int, ...] = (0, 5), size=(48, 96),
                        grid=(256, 256, 32), seed: int = 0, scaled_calib: bool = False) -> Path:
    """Write sequence folder `root` and return it. Frame i is at t = 0.1 * i s (+ jitter) and
    the car drives 0.7 m a frame along cam0's z (forward) while turning slowly. `scaled_calib`
    writes calib_for(size) instead of KITTI's full-size numbers (for a node to run on it)."""
    rng = np.random.default_rng(seed)
    root = Path(root)
    sk.write_calib(root / "calib.txt", calib_for(size) if scaled_calib else CALIB)
    times = np.arange(frames) * 0.1 + rng.uniform(0, 0.004, frames)
    times[0] = 0.0
    sk.write_times(root / "times.txt", times)
    poses = np.tile(np.eye(4), (frames, 1, 1))
    for i in range(frames):
        a = 0.02 * i
        poses[i, :3, :3] = [[np.cos(a), 0, np.sin(a)], [0, 1, 0], [-np.sin(a), 0, np.cos(a)]]
        poses[i, :3, 3] = [0.05 * i, 0.01 * i, 0.7 * i]
    sk.write_poses(root / "poses.txt", poses)
    h, w = size
    for i in range(frames):
        for cam in (0, 1):
            sk.write_image(root / f"image_{cam}" / f"{i:06d}.png", rng.integers(0, 256, (h, w), dtype=np.uint8))
        for cam in (2, 3):
            sk.write_image(root / f"image_{cam}" / f"{i:06d}.png", rng.integers(0, 256, (h, w, 3), dtype=np.uint8))
        n = 500 + 10 * i
        pts = np.column_stack([rng.uniform(0, 50, n), rng.uniform(-25, 25, n), rng.uniform(-2, 2, n),
                               rng.uniform(0, 1, n)]).astype(np.float32)
        sk.write_scan(root / "velodyne" / f"{i:06d}.bin", pts)
        sk.write_point_labels(root / "labels" / f"{i:06d}.label", rng.choice([0, 10, 40, 50, 70], n),
                              rng.integers(0, 5, n))
    for i in labelled:
        raw = rng.choice([0, 10, 40, 44, 48, 50, 70, 81, 99, 252], size=grid).astype(np.uint16)
        invalid = rng.random(grid) < 0.1
        sk.write_voxels(root / "voxels" / f"{i:06d}", raw, invalid=invalid, raw=True)
    return root
