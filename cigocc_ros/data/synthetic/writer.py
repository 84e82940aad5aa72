"""Writing a synthetic sequence to disk in the SemanticKITTI layout (docs/synthetic.md, "What
is written"), through the data layer's writers.
"""
from __future__ import annotations

import os
from pathlib import Path

from ...classes import load_class_table
from .. import semantic_kitti as sk
from .layout import LAYOUT_FRAMES
from .sequence import SyntheticSequence


def write_sequence(root: str | os.PathLike, sequence: str, seed: int, num_frames: int = LAYOUT_FRAMES,
                   log=None) -> Path:
    """Write `root/sequences/<sequence>/` in the SemanticKITTI layout: calib, poses, times,
    image_2/3, velodyne + labels and teacher_masks for every frame, voxels for every 5th.
    Returns the sequence folder."""
    seq = SyntheticSequence(seed, num_frames)
    paths = sk.SequencePaths(Path(root), sequence)
    paths.dir.mkdir(parents=True, exist_ok=True)
    sk.write_calib(paths.calib, seq.calib)
    sk.write_poses(paths.poses, seq.poses)
    sk.write_times(paths.times, seq.times)
    raw = load_class_table().learning_map_inv
    for i in range(num_frames):
        f = seq.render(i)
        sk.write_image(paths.image(i, 2), f.image_left)
        sk.write_image(paths.image(i, 3), f.image_right)
        sk.write_scan(paths.scan(i), f.points)
        sk.write_point_labels(paths.point_labels(i), raw[f.point_labels], f.point_instances)
        sk.write_teacher_mask(paths.teacher_mask(i), f.classes)
        if log:
            log(f"sequence {sequence}: frame {i + 1}/{num_frames}")
    for i in seq.labelled_frames:
        v = seq.voxels(i)
        sk.write_voxels(paths.voxel_stem(i), v.labels, v.invalid, v.occluded, v.occupancy)
    return paths.dir
