"""Sparse per-pixel labels of a real camera image from its labelled LiDAR scan.

A SemanticKITTI scan's points (velodyne frame) project into the colour camera through
P2 * Tr (here K and T_cam_grid of geometry.camera_from_calib). The LiDAR sits above and behind
the camera, so near an object's edge it sees background points that the camera cannot: those
would teach "road" on a car's pixels. A point is kept only if no point within
`occlusion_window` pixels is nearer by more than `occlusion_margin` (relative): the nearer
surface hides it from the camera. Where several kept points fall on one pixel the nearest wins.

Output of lidar_label_image: (H, W) uint8 training labels 0..19 at the pixels hit by a kept point, 255 elsewhere
(and for points whose raw class the learning map ignores). Label 0 (raw "unlabelled") is also
255: a LiDAR point always hits something, so it never means "empty".
"""
from __future__ import annotations

import cv2
import numpy as np

from ..classes import IGNORE_LABEL, load_class_table
from ..geometry import camera_from_calib, project
from . import semantic_kitti as sk


def visible_points(points: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray, image_hw: tuple[int, int],
                   occlusion_window: int = 5, occlusion_margin: float = 0.1, min_depth: float = 1.0
                   ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """The points (N, >=3) in the grid frame that the camera sees (module docstring): the
    nearest point of each pixel, kept unless a point within `occlusion_window` pixels is nearer
    by more than `occlusion_margin` (relative). Returns (index into points, u, v, camera depth z),
    one entry per pixel at most."""
    H, W = image_hw
    uv, z = project(np.asarray(points)[:, :3], K, T_cam_grid)
    with np.errstate(invalid="ignore"):
        u = np.floor(uv[:, 0] + 0.5)
        v = np.floor(uv[:, 1] + 0.5)
        ok = (z > min_depth) & (u >= 0) & (u < W) & (v >= 0) & (v < H)
    idx = np.flatnonzero(ok)
    u, v, z = u[ok].astype(np.int64), v[ok].astype(np.int64), z[ok].astype(np.float32)
    # The nearest point of each pixel (z-buffer): sort by pixel, then depth; take each first.
    pix = v * W + u
    order = np.lexsort((z, pix))
    _, first = np.unique(pix[order], return_index=True)
    sel = order[first]
    depth = np.full(H * W, np.inf, dtype=np.float32)
    depth[pix[sel]] = z[sel]
    nearest = cv2.erode(depth.reshape(H, W), np.ones((occlusion_window, occlusion_window), np.uint8),
                        borderType=cv2.BORDER_CONSTANT, borderValue=np.inf)  # min over the window
    sel = sel[z[sel] <= nearest[v[sel], u[sel]] * (1 + occlusion_margin)]
    return idx[sel], u[sel], v[sel], z[sel]


def lidar_label_image(points: np.ndarray, labels_raw: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
                      image_hw: tuple[int, int], **visibility) -> np.ndarray:
    """(H, W) uint8 sparse labels (module docstring) from points (N, >=3) in the grid frame,
    raw SemanticKITTI ids (N,), the camera K (3, 3) and T_cam_grid (4, 4); `visibility` goes to
    visible_points."""
    lut = load_class_table().learning_map
    idx, u, v, _ = visible_points(points, K, T_cam_grid, image_hw, **visibility)
    lab = lut[np.minimum(np.asarray(labels_raw, dtype=np.int64)[idx], len(lut) - 1)]
    keep = lab != 0
    out = np.full(tuple(image_hw), IGNORE_LABEL, dtype=np.uint8)
    out[v[keep], u[keep]] = lab[keep]
    return out


def lidar_depth_image(points: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray, image_hw: tuple[int, int],
                      **visibility) -> np.ndarray:
    """(H, W) float32 camera depth (metres) of the visible points, 0 elsewhere: the reference
    of the stereo matcher's quality (bench/stereo_quality.py)."""
    _, u, v, z = visible_points(points, K, T_cam_grid, image_hw, **visibility)
    out = np.zeros(tuple(image_hw), dtype=np.float32)
    out[v, u] = z
    return out


def frame_label_image(paths: sk.SequencePaths, frame: str, calib: dict[str, np.ndarray] | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(image_2 (H, W, 3) uint8 RGB, its sparse LiDAR labels (H, W) uint8) of one labelled frame."""
    calib = calib if calib is not None else sk.read_calib(paths.calib, required=("P2", "Tr"))
    image = sk.read_image(paths.image(frame, 2))
    cam = camera_from_calib(calib["P2"], calib["Tr"], image.shape[:2])
    points, raw = sk.read_labelled_scan(paths, frame)
    return image, lidar_label_image(points, raw, cam.K, cam.T_cam_grid, image.shape[:2])


def labelled_frames(paths: sk.SequencePaths) -> list[str]:
    """Stems of the frames with image_2, a scan and its labels."""
    return sorted(set(paths.frames("velodyne", ".bin")) & set(paths.frames("labels", ".label"))
                  & set(paths.frames("image_2", ".png")))
