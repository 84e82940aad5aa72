"""`cigocc preview`: one frame of a synthetic (or any SemanticKITTI) sequence as a picture for
people: the image beside a bird's-eye view of its voxel labels, the class image (teacher mask)
beside a 3D view, the depth beside a legend, in the SemanticKITTI palette."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import cv2
import numpy as np

from ..classes import IGNORE_LABEL, load_class_table


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="render this seed's sequence in memory")
    p.add_argument("--frames", type=int, default=0, help="with --seed: frames of the sequence (default 50)")
    p.add_argument("--root", default="", help="or read a written dataset (sequences/XX/ under it)")
    p.add_argument("--sequence", default="00", help="with --root: the sequence")
    p.add_argument("--frame", type=int, default=0, help="frame index (labelled frames are multiples of 5)")
    p.add_argument("--out", default="preview.png", help="PNG to write")


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
    from .. import viz

    H = image.shape[0]
    cls = viz.class_image(classes) if classes is not None else np.zeros_like(image)
    rows = [viz.panel([image, viz.bev(labels)], H),
            viz.panel([cls, viz.view3d(labels, size=(H, H), voxel_px=1)], H),
            viz.panel([viz.depth_image(depth), _legend(H)], H)]
    width = max(r.shape[1] for r in rows)
    rows = [np.pad(r, ((0, 0), (0, width - r.shape[1]), (0, 0)), constant_values=255) for r in rows]
    return np.concatenate(rows, axis=0)


def run(args: argparse.Namespace) -> int:
    from .. import viz
    from . import semantic_kitti as sk

    if args.seed is not None:
        from . import synthetic as syn

        seq = syn.SyntheticSequence(args.seed, args.frames or syn.DEFAULT_FRAMES)
        if not 0 <= args.frame < seq.num_frames:
            print(f"--frame {args.frame} outside 0..{seq.num_frames - 1}", file=sys.stderr)
            return 2
        f = seq.render(args.frame)
        labels = syn.voxel_labels(seq.scene, seq.scene.velo_poses[args.frame], seq.grid)
        img = preview_image(f.image_left, labels, f.depth, f.classes)
    elif args.root:
        from ..geometry import camera_from_calib
        from .dataset import lidar_depth_map

        paths = sk.SequencePaths(Path(args.root), args.sequence)
        try:
            image = sk.read_image(paths.image(args.frame, 2))
            vox = sk.read_voxels(paths.voxel_stem(args.frame))
            if vox.labels is None:
                raise sk.DataFormatError(f"no voxel labels at {paths.voxel_stem(args.frame)}.label")
            labels = sk.remap_labels(vox.labels, vox.invalid)
            depth = np.zeros(image.shape[:2], np.float32)
            if paths.scan(args.frame).is_file():
                calib = sk.read_calib(paths.calib)
                cam = camera_from_calib(calib["P2"], calib["Tr"], image.shape[:2])
                depth = lidar_depth_map(sk.read_scan(paths.scan(args.frame)), cam.K, cam.T_cam_grid, image.shape[:2])
                # Sparse LiDAR depth: widen each point so the picture is readable.
                depth = cv2.dilate(np.where(depth > 0, 1000.0 - depth, 0).astype(np.float32), np.ones((3, 3)))
                depth = np.where(depth > 0, 1000.0 - depth, 0.0).astype(np.float32)
            mask_path = paths.teacher_mask(args.frame)
            classes = sk.read_teacher_mask(mask_path) if mask_path.is_file() else None
        except (sk.DataFormatError, OSError, ValueError) as e:
            print(f"preview: {e}", file=sys.stderr)
            return 2
        img = preview_image(image, labels, depth, classes)
    else:
        print("give --seed or --root", file=sys.stderr)
        return 2
    path = viz.save_png(args.out, img)
    shown = (labels != 0) & (labels != IGNORE_LABEL)
    print(f"wrote {path} ({int(shown.sum())} labelled voxels)")
    return 0
