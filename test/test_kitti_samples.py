"""Real KITTI / SemanticKITTI frames (../shared/kitti_samples or $CIGOCC_KITTI_SAMPLES): the
readers on real files, labelled scans projected into the real images, stereo depth against
LiDAR, the scan voxeliser against the real voxel files, and the Dataset on real frames."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cigocc_ros.config import ExperimentConfig
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.dataset import SemanticKittiDataset, lidar_depth_map
from cigocc_ros.geometry import camera_from_calib, project, stereo_baseline, voxel_centers
from cigocc_ros.stereo import StereoDepth

FRAMES = ("000000", "000005")  # frames with a labelled scan and real voxel files
ROAD, CAR = 40, 10  # raw SemanticKITTI ids


@pytest.fixture(scope="module")
def seq(kitti_samples):
    return sk.SequencePaths(kitti_samples, "00")


def test_readers_on_real_files(seq, kitti_samples):
    calib = sk.read_calib(seq.calib)
    assert calib["P2"][0, 0] == pytest.approx(718.856)
    assert stereo_baseline(calib["P2"], calib["P3"]) == pytest.approx(0.532, abs=0.005)
    assert stereo_baseline(calib["P0"], calib["P1"]) == pytest.approx(0.537, abs=0.005)
    sk.read_calib(sk.SequencePaths(kitti_samples, "08").calib)
    poses, times = sk.read_poses(seq.poses), sk.read_times(seq.times)
    assert poses.shape == (21, 4, 4) and times.shape == (21,)
    np.testing.assert_allclose(poses[0], np.eye(4), atol=1e-6)
    assert np.all(np.diff(times) > 0.09) and np.all(np.diff(times) < 0.12)  # 10 Hz
    assert 0.5 < poses[1, 2, 3] < 1.0  # driving forward (+z of cam0)
    assert sk.read_image(seq.image(0, 0), rgb=False).shape == (376, 1241)
    assert sk.read_image(seq.image(0, 2)).shape == (376, 1241, 3)
    pts = sk.read_scan(seq.scan(0))
    assert pts.shape == (124668, 4)
    sem, _ = sk.read_point_labels(seq.point_labels(0), num_points=len(pts))
    assert {ROAD, CAR} <= set(np.unique(sem).tolist())
    vf = sk.read_voxels(seq.voxel_stem(0))
    assert vf.labels is None and vf.occupancy.sum() == 11677


@pytest.mark.parametrize("camera", [0, 2])
def test_labelled_scan_lands_plausibly_in_the_real_image(seq, camera):
    calib = sk.read_calib(seq.calib)
    for frame in FRAMES:
        image = sk.read_image(seq.image(frame, camera), rgb=False)
        H, W = image.shape[:2]
        cam = camera_from_calib(calib[f"P{camera}"], calib["Tr"], (H, W))
        pts, sem = sk.read_labelled_scan(seq, frame)
        uv, z = project(pts[:, :3], cam.K, cam.T_cam_grid)
        inside = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        assert 15000 < inside.sum() < 25000  # the camera sees the front ~90 degrees of the scan
        assert np.all((z[inside] > 2.0) & (z[inside] < 80.0))
        road = inside & (sem == ROAD)
        assert road.sum() > 4000
        assert np.all(uv[road, 1] > H / 2)  # road below the horizon
        # A flat road: image row grows linearly with 1 / depth (v - cy = fy * h / z).
        assert np.corrcoef(1.0 / z[road], uv[road, 1])[0, 1] > 0.98
        cars = inside & (sem == CAR)
        assert cars.sum() > 1000 and np.median(uv[cars, 1]) > cam.K[1, 2]  # cars stand on the road
        depth = lidar_depth_map(pts, cam.K, cam.T_cam_grid, (H, W))
        assert 15000 < np.count_nonzero(depth) <= inside.sum()


def test_stereo_depth_agrees_with_lidar(seq):
    calib = sk.read_calib(seq.calib)
    left, right = sk.read_image(seq.image(0, 2)), sk.read_image(seq.image(0, 3))
    cam = camera_from_calib(calib["P2"], calib["Tr"], left.shape[:2])
    depth = StereoDepth(cam.K[0, 0], stereo_baseline(calib["P2"], calib["P3"]))(left, right)
    lidar = lidar_depth_map(sk.read_scan(seq.scan(0)), cam.K, cam.T_cam_grid, left.shape[:2])
    both = (depth > 0) & (lidar > 0) & (lidar < 40)
    assert both.sum() > 5000
    rel = np.abs(depth[both] - lidar[both]) / lidar[both]
    assert np.median(rel) < 0.05


def test_voxelised_scans_match_the_real_voxel_files(seq, tmp_path):
    """Our voxels equal the real `.bin` after undoing the legacy one-layer shift; without it
    they disagree, and the real `.invalid` would mark our occupied voxels unobserved."""
    out = sk.SequencePaths(tmp_path, "00")
    for frame in FRAMES:
        written = sk.write_scan_voxels(seq, frame, out)
        ours = sk.read_voxels(out.voxel_stem(frame))
        np.testing.assert_array_equal(ours.occupancy, written.occupancy)
        np.testing.assert_array_equal(ours.labels, written.labels)
        labels, occ = ours.labels, ours.occupancy

        real = sk.read_voxels(seq.voxel_stem(frame))
        fixed = sk.undo_legacy_shift(real.occupancy)
        assert (ours.occupancy & fixed).sum() == fixed.sum()  # every real voxel found
        assert ours.occupancy.sum() - fixed.sum() <= 0.001 * fixed.sum()  # few extra
        assert (ours.occupancy & real.occupancy).sum() < 0.5 * real.occupancy.sum()
        assert not (ours.occupancy & sk.undo_legacy_shift(real.invalid)).any()
        assert (ours.occupancy & real.invalid).sum() > 1000
        assert not real.occupancy[:, :, 0].any()  # the shifted files never fill layer 0
        # Remapped labels of our voxels are classes, never ignore, where a point was labelled.
        assert np.all(sk.remap_labels(labels[occ]) != 0)


def real_root(kitti_samples, tmp_path):
    """A dataset root with the real images, calib and scans of sequence 00, and voxel targets
    made from the labelled scans (the real target labels are not in the samples)."""
    src = sk.SequencePaths(kitti_samples, "00")
    dst = sk.SequencePaths(tmp_path, "00")
    dst.dir.mkdir(parents=True)
    for name in ("calib.txt", "image_2", "image_3", "velodyne"):
        (dst.dir / name).symlink_to(src.dir / name)
    for frame in FRAMES:
        invalid = sk.undo_legacy_shift(sk.read_voxels(src.voxel_stem(frame)).invalid)
        sk.write_scan_voxels(src, frame, dst, invalid=invalid)
    return tmp_path


@pytest.mark.parametrize("flip", [False, True])
def test_dataset_on_real_frames_pairs_targets_with_pixels(kitti_samples, tmp_path, flip):
    cfg = ExperimentConfig()
    cfg.data = dataclasses.replace(cfg.data, root=str(real_root(kitti_samples, tmp_path)),
                                   train_sequences=("00",), flip_prob=1.0 if flip else 0.0)
    ds = SemanticKittiDataset(cfg, "train", augment=flip)
    assert len(ds) == 2
    item = ds[0]
    H, W = cfg.model.image_size
    d = item["depth_target"].numpy()
    assert np.count_nonzero(d) > 15000 and np.all((d[d > 0] > 2) & (d[d > 0] < 80))
    target = item["target"].numpy()
    centres = voxel_centers(cfg.grid.size, cfg.grid.voxel_size, cfg.grid.origin)
    K, T = item["K"].double().numpy(), item["T_cam_grid"].double().numpy()
    for cls, min_count in ((9, 1000), (1, 100)):  # road and car voxels in the image
        uv, z = project(centres[target == cls], K, T)
        ok = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        assert ok.sum() > min_count
        if cls == 9:
            assert np.mean(uv[ok, 1] > H / 2) > 0.98  # road in the lower half
        else:
            assert np.median(uv[ok, 1]) > K[1, 2]  # cars below the horizon row
    # Back-project every depth-target pixel into the grid: it falls in an occupied target voxel
    # (both come from the same scan), through K, T_cam_grid and the target's (X, Y, Z) order.
    v, u = np.nonzero(d)
    rays = np.linalg.solve(K, np.stack([u, v, np.ones_like(u)]).astype(np.float64))
    cam_pts = (rays * d[v, u]).T
    grid_pts = (cam_pts - T[:3, 3]) @ T[:3, :3]  # T^-1 for a rigid T
    idx = np.floor((grid_pts - np.asarray(cfg.grid.origin)) / cfg.grid.voxel_size).astype(int)
    inside = np.all((idx >= 0) & (idx < cfg.grid.size), axis=1)
    assert inside.sum() > 10000
    labels = target[tuple(idx[inside].T)]
    assert np.mean((labels > 0) & (labels < 255)) > 0.9
