"""The picture of one frame of a synthetic (or any SemanticKITTI) sequence for people: the image
beside a bird's-eye view of its voxel labels, the class image (teacher mask) beside a 3D view,
the depth beside a legend, in the SemanticKITTI palette. `cigocc preview` draws it.
"""
from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from ...classes import load_class_table
from .. import semantic_kitti as sk


def _legend(height: int) -> np.ndarray:
    """A column of the 19 class colours and names."""
    table = load_class_table()
    img = np.full((height, height, 3), 255, np.uint8)
    row = max(1, height // 20)
    for c in range(1, table.num_classes):
        y = (c - 1) * row + 4
        img[y:y + row - 3, 6:6 + row] = table.colors_rgb[c]
        cv2.putText(img, table.names[c], (row + 12, y + row - 5), cv2.FONT_HERSHEY_SIMPLEX, row / 40.0,
                    (0, 0, 0), 1, cv2.LINE_AA)
    return img


def preview_image(image: np.ndarray, labels: np.ndarray, depth: np.ndarray, classes: np.ndarray | None) -> np.ndarray:
    """Rows: [image | BEV of labels], [class image | 3D view], [depth | legend] (uint8 RGB).
    image (H, W, 3), labels (X, Y, Z) 0..19 / 255, depth (H, W) metres (0 = none),
    classes (H, W) 0..19 / 255 or None."""
    from ... import viz

    H = image.shape[0]
    cls = viz.class_image(classes) if classes is not None else np.zeros_like(image)
    rows = [viz.panel([image, viz.bev(labels)], H),
            viz.panel([cls, viz.view3d(labels, size=(H, H), voxel_px=1)], H),
            viz.panel([viz.depth_image(depth), _legend(H)], H)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def render_preview(seed: int, frame: int, frames: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """(picture (H, W, 3) uint8, voxel labels (X, Y, Z)) of `frame` of seed's sequence of
    `frames` frames (default: the default length), rendered in memory. ValueError if the
    frame is outside the sequence."""
    from .default import DEFAULT_FRAMES
    from .sequence import SyntheticSequence
    from .truth import voxel_labels

    seq = SyntheticSequence(seed, frames or DEFAULT_FRAMES)
    if not 0 <= frame < seq.num_frames:
        raise ValueError(f"frame {frame} outside 0..{seq.num_frames - 1}")
    f = seq.render(frame)
    labels = voxel_labels(seq.scene, seq.scene.velo_poses[frame], seq.grid)
    return preview_image(f.image_left, labels, f.depth, f.classes), labels


def read_preview(root: str | Path, sequence: str, frame: int) -> tuple[np.ndarray, np.ndarray]:
    """(picture, voxel labels 0..19 / 255) of a written frame `root/sequences/<sequence>`; the
    depth panel shows its LiDAR scan when there is one. Raises sk.DataFormatError / OSError /
    ValueError for a frame without voxel labels or unreadable files."""
    from ...geometry import camera_from_calib
    from ..dataset import lidar_depth_map

    paths = sk.SequencePaths(Path(root), sequence)
    image = sk.read_image(paths.image(frame, 2))
    vox = sk.read_voxels(paths.voxel_stem(frame))
    if vox.labels is None:
        raise sk.DataFormatError(f"no voxel labels at {paths.voxel_stem(frame)}.label")
    labels = sk.remap_labels(vox.labels, vox.invalid)
    depth = np.zeros(image.shape[:2], np.float32)
    if paths.scan(frame).is_file():
        calib = sk.read_calib(paths.calib)
        cam = camera_from_calib(calib["P2"], calib["Tr"], image.shape[:2])
        depth = lidar_depth_map(sk.read_scan(paths.scan(frame)), cam.K, cam.T_cam_grid, image.shape[:2])
        # Sparse LiDAR depth: widen each point so the picture is readable.
        depth = cv2.dilate(np.where(depth > 0, 1000.0 - depth, 0).astype(np.float32), np.ones((3, 3)))
        depth = np.where(depth > 0, 1000.0 - depth, 0.0).astype(np.float32)
    mask_path = paths.teacher_mask(frame)
    classes = sk.read_teacher_mask(mask_path) if mask_path.is_file() else None
    return preview_image(image, labels, depth, classes), labels
