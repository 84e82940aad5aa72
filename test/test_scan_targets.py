"""Targets from labelled scans (cigocc_ros/data/scan_targets.py, `cigocc make-targets`): the
ray marcher's line of sight and free space on hand-made grids, the targets of real shared
frames against their real `.bin` / `.invalid` files, and the clear errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from cigocc_ros import cli
from cigocc_ros.config import GridConfig
from cigocc_ros.data import scan_targets as st
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.ray_march import free_space, line_of_sight

GRID = GridConfig()


def _centre(i, j, k):
    return np.asarray(GRID.origin) + (np.array([i, j, k]) + 0.5) * GRID.voxel_size


def test_line_of_sight_stops_at_the_first_occupied_voxel():
    occ = np.zeros(GRID.size, dtype=bool)
    occ[50, 100:156, 5:20] = True  # a wall across the view at x = 10 m
    seen = line_of_sight(occ, np.array([0.0, 0.0, 0.0]), GRID)
    assert seen[20, 128, 10] and seen[49, 128, 10]  # in front of the wall
    assert seen[50, 128, 10]  # the wall's own face is seen
    assert not seen[80:, 120:136, 10:14].any()  # its shadow
    assert seen[80, 20, 10]  # beside the shadow
    assert line_of_sight(np.zeros(GRID.size, bool), np.zeros(3), GRID).all()


def test_free_space_is_the_ray_before_its_hit():
    hit = _centre(100, 128, 10)
    free = free_space(np.array([0.0, 0.0, 0.0]), hit[None], GRID)
    assert not free[100, 128, 10]  # the hit voxel itself
    assert free[60, 128, 10] and free[99, 128, 10]
    assert free.sum() < 110  # one voxel line, not a volume
    assert not free[:, :127].any() and not free[:, 130:].any()


@pytest.fixture(scope="module")
def seq04(kitti_samples):
    return st.LabelledSequence(kitti_samples / "sequences" / "04")


@pytest.fixture(scope="module")
def targets04(seq04):
    return st.scan_targets(seq04, "000000")


def test_targets_agree_with_the_real_files(seq04, targets04):
    """Frame 0 of sequence 04 (5 scans 0.2 s apart): the `.bin` equals the real one, and the
    `.invalid` agrees within the tolerance docs/real-frames.md gives (fewer viewpoints than
    SemanticKITTI's own aggregation, so more voxels are never seen)."""
    assert targets04.scans == ("000000", "000002", "000004", "000006", "000008")
    real = sk.read_voxels(seq04.paths.voxel_stem(0))
    a = st.agreement(targets04, real)
    assert a.bin_iou > 0.999
    assert a.invalid_accuracy > 0.85
    assert a.invalid_both / a.invalid_real > 0.65  # most voxels the real file cannot see, we cannot either
    # Upper layers are mostly seen (as in the real file); a ray-free mask would mark them invalid.
    assert targets04.invalid[:, :, 24:].mean() < 0.05
    occupied = targets04.labels > 0
    assert not (targets04.invalid & occupied).any()
    assert targets04.occluded[occupied].all()


def test_targets_aggregate_more_than_the_frames_scan(targets04):
    occupied = targets04.labels > 0
    assert occupied.sum() > 1.8 * targets04.occupancy.sum()
    lmap = sk.remap_labels(targets04.labels)
    road, car = 9, 1
    assert (lmap == road).sum() > 10_000 and (lmap == car).sum() > 100


def test_moving_objects_come_only_from_the_frame_scan(seq04):
    pts, labs, origins, used = st.aggregate_scans(seq04, "000000", 5)
    own, own_lab = sk.read_labelled_scan(seq04.paths, "000000")
    n_moving = np.isin(labs, st.MOVING_RAW).sum()
    assert n_moving == np.isin(st._filtered(own, own_lab)[1], st.MOVING_RAW).sum()
    assert len(origins) == 5 and np.allclose(origins[0], 0.0)
    assert origins[-1][0] > 1.0  # the car drove forward


def test_clear_errors(kitti_samples, tmp_path, capsys):
    seq = tmp_path / "sequences" / "04"
    shutil.copytree(kitti_samples / "sequences" / "04", seq, ignore=shutil.ignore_patterns("image_*"))
    (seq / "poses.txt").unlink()
    with pytest.raises(st.TargetError, match="no poses.txt"):
        st.LabelledSequence(seq)
    shutil.copy(kitti_samples / "sequences" / "04" / "poses.txt", seq / "poses.txt")
    calib = sk.read_calib(seq / "calib.txt")
    sk.write_calib(seq / "calib.txt", {k: v for k, v in calib.items() if k != "Tr"})
    assert cli.main(["make-targets", str(seq), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Tr" in err[0]
    assert cli.main(["make-targets", str(tmp_path / "nope"), "--out", str(tmp_path / "out")]) == 2


def test_command_writes_a_sequence_the_dataset_reads(kitti_samples, tmp_path):
    import dataclasses

    from cigocc_ros.config import ExperimentConfig
    from cigocc_ros.data.dataset import SemanticKittiDataset

    src = kitti_samples / "sequences" / "09"
    assert cli.main(["make-targets", str(src), "--out", str(tmp_path), "--frames", "8"]) == 0
    written = sk.read_voxels(tmp_path / "sequences" / "09" / "voxels" / "000008")
    assert written.labels is not None and written.invalid is not None and written.occluded is not None
    cfg = ExperimentConfig()
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=str(tmp_path), train_sequences=("09",)))
    item = SemanticKittiDataset(cfg, "train", augment=False)[0]
    assert item["img"].shape[1:] == tuple(cfg.model.image_size)
    target = item["target"].numpy()
    assert ((target > 0) & (target < 255)).sum() == (sk.remap_labels(written.labels, written.invalid)
                                                     .astype(np.int64) % 255 > 0).sum()


def test_eval_scores_predictions_on_the_written_targets(kitti_samples, tmp_path):
    """`cigocc eval --sequences` reads a make-targets folder: the targets themselves score 100."""
    import json

    src = kitti_samples / "sequences" / "10"
    root = tmp_path / "real"
    assert cli.main(["make-targets", str(src), "--out", str(root), "--frames", "8"]) == 0
    vox = sk.read_voxels(root / "sequences" / "10" / "voxels" / "000008")
    pred = sk.remap_labels(vox.labels)
    pred[pred == 255] = 0
    sk.write_prediction(tmp_path / "pred" / "sequences" / "10" / "predictions" / "000008.label", pred)
    out = tmp_path / "m.json"
    assert cli.main(["eval", "--predictions", str(tmp_path / "pred"), "--data", str(root), "--split", "val",
                     "--sequences", "10", "--out", str(out)]) == 0
    m = json.loads(out.read_text())
    assert m["frames"] == 1 and m["iou"] == pytest.approx(100.0) and m["miou"] > 0


def test_targets_match_the_synthetic_truth(tmp_path):
    """On a synthetic sequence every scan and the exact voxel labels are known: the voxels the
    aggregated scans fill lie in (or next to) truth-occupied voxels, with the truth's class."""
    from cigocc_ros.classes import load_class_table
    from cigocc_ros.data import synthetic as syn

    seq = syn.SyntheticSequence(7, 6, image_scale=0.2)
    frames = [seq.render(i) for i in range(6)]
    truth = seq.voxels(0)
    lut = load_class_table().learning_map_inv
    paths = sk.SequencePaths(tmp_path, "00")
    sk.write_calib(paths.calib, seq.calib)
    sk.write_poses(paths.poses, seq.poses)
    for i, f in enumerate(frames):
        sk.write_scan(paths.scan(i), f.points)
        sk.write_point_labels(paths.point_labels(i), lut[f.point_labels])
    t = st.scan_targets(st.LabelledSequence(paths.dir), "000000", 3)
    ours = sk.remap_labels(t.labels)
    occ = (ours > 0) & (ours != 255)
    tocc = (truth.labels > 0) & (truth.labels != 255)
    near = tocc.copy()
    for ax in range(3):
        near |= np.roll(tocc, 1, ax) | np.roll(tocc, -1, ax)
    assert occ.sum() > 10_000
    assert (occ & tocc).sum() / occ.sum() > 0.95 and (occ & near).sum() / occ.sum() > 0.995
    both = occ & tocc
    assert (ours[both] == truth.labels[both]).mean() > 0.97
    assert np.array_equal(t.occupancy, truth.occupancy)  # `.bin`: the frame's scan voxelised
