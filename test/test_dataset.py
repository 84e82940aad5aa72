"""The SemanticKITTI Dataset on a small tree written with the package's writers: sample keys,
targets, LiDAR depth targets, teacher masks, stereo depth, flip consistency and collate."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch

from cigocc_ros.config import ConfigError, ExperimentConfig, GridConfig
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.dataset import SemanticKittiDataset, collate, lidar_depth_map
from cigocc_ros.geometry import camera_from_calib, project
from cigocc_ros.stereo import StereoDepth

H, W = 60, 200
FX = 50.0
BASELINE = 0.5
GRID = GridConfig(size=(32, 32, 4), voxel_size=1.6, origin=(0.0, -25.6, -2.0))
# Velodyne (x fwd, y left, z up) -> camera (x right, y down, z fwd); camera depth = x - 0.3.
TR = np.array([[0.0, -1.0, 0.0, 0.0], [0.0, 0.0, -1.0, 0.0], [1.0, 0.0, 0.0, -0.3]])


def projection(tx: float) -> np.ndarray:
    K = np.array([[FX, 0, 99.5], [0, FX, 29.5], [0, 0, 1.0]])
    return K @ np.hstack([np.eye(3), [[tx], [0.0], [0.0]]])  # P[0, 3] = fx * tx


def textured(rng, h=H, w=W) -> np.ndarray:
    return np.repeat(rng.integers(0, 256, (h, w, 1), dtype=np.uint8), 3, axis=2)


@pytest.fixture()
def root(tmp_path):
    """sequences/00 (train: frames 0 and 5, frame 5 without scan or mask) and 08 (val)."""
    rng = np.random.default_rng(0)
    for seq in ("00", "08"):
        p = sk.SequencePaths(tmp_path, seq)
        sk.write_calib(p.calib, {"P0": projection(0), "P1": projection(-BASELINE),
                                 "P2": projection(0.0), "P3": projection(-BASELINE), "Tr": TR})
        for f in (0, 5):
            left = textured(rng)
            sk.write_image(p.image(f, 2), left)
            # Right image: the left shifted 8 px (every pixel at disparity 8).
            right = np.zeros_like(left)
            right[:, :-8] = left[:, 8:]
            sk.write_image(p.image(f, 3), right)
            labels = np.zeros(GRID.size, np.uint8)
            labels[10, 5:9, 1] = 1  # a car on the right-hand side (y < 0)
            labels[:, :, 0] = 9  # road
            invalid = np.zeros(GRID.size, bool)
            invalid[31] = True
            sk.write_voxels(p.voxel_stem(f), labels, invalid=invalid)
        pts = np.array([[10.0, 0.0, 0.0, 0], [20.0, 0.0, 0.0, 0], [10.0, 2.0, -1.0, 0], [-5.0, 0, 0, 0]])
        sk.write_scan(p.scan(0), pts)
        mask = np.full((H, W), 255, np.uint8)
        mask[40:, :100] = 9
        sk.write_teacher_mask(p.teacher_mask(0), mask)
    return tmp_path


def config(root, **data) -> ExperimentConfig:
    cfg = ExperimentConfig(grid=GRID)
    cfg.model.image_size = (56, 204)  # crops 4 rows at the top, pads 2 columns each side
    cfg.data = dataclasses.replace(cfg.data, **{"root": str(root), "train_sequences": ("00", "01"),
                                                "color_jitter": 0.0, **data})
    return cfg


def test_sample_keys_shapes_and_targets(root):
    ds = SemanticKittiDataset(config(root), "train", augment=False)
    assert ds.samples == [("00", "000000"), ("00", "000005")] and ds.missing_sequences == ["01"]
    item = ds[0]
    assert item["img"].shape == (3, 56, 204) and item["img"].dtype == torch.float32
    assert 0 <= item["img"].min() and item["img"].max() <= 1
    assert item["target"].shape == GRID.size and item["target"].dtype == torch.int64
    assert item["target_2"].shape == (16, 16, 2)
    t = item["target"].numpy()
    assert (t[31] == 255).all() and t[10, 6, 1] == 1 and t[0, 0, 0] == 9
    np.testing.assert_array_equal(item["target_2"].numpy(), sk.downsample_labels(t.astype(np.uint8), 2))
    K = item["K"].numpy()
    np.testing.assert_allclose(K[:2, 2], [99.5 + 2, 29.5 - 4])  # crop / pad moved the centre
    assert "depth_target" in item and "teacher" in item and "depth" not in item
    assert set(ds[1]) == {"img", "K", "T_cam_grid", "index", "target", "target_2"}


def test_coarse_target_follows_the_model_scale(root):
    cfg = config(root)
    cfg.model.coarse_downsample = 4
    item = SemanticKittiDataset(cfg, "train", augment=False)[0]
    assert item["target_2"].shape == (16, 16, 2) and item["target_4"].shape == (8, 8, 1)
    np.testing.assert_array_equal(item["target_4"].numpy(),
                                  sk.downsample_labels(item["target"].numpy().astype(np.uint8), 4))


def test_legacy_voxel_files_are_shifted_back(root):
    plain = SemanticKittiDataset(config(root), "train", augment=False)[0]["target"].numpy()
    seq = sk.SequencePaths(root, "00")
    vf = sk.read_voxels(seq.voxel_stem(0), GRID.size)
    legacy = np.zeros_like(vf.labels)  # written one flat index late, as before 2020-08
    legacy.reshape(-1)[1:] = vf.labels.reshape(-1)[:-1]
    legacy_inv = np.zeros_like(vf.invalid)
    legacy_inv.reshape(-1)[1:] = vf.invalid.reshape(-1)[:-1]
    sk.write_voxels(seq.voxel_stem(0), legacy, invalid=legacy_inv, raw=True)
    assert not np.array_equal(SemanticKittiDataset(config(root), "train", augment=False)[0]["target"].numpy(), plain)
    fixed = SemanticKittiDataset(config(root, legacy_voxel_shift=True), "train", augment=False)[0]["target"].numpy()
    # The last voxel was pushed past the end of the legacy file: only it is lost.
    np.testing.assert_array_equal(fixed.reshape(-1)[:-1], plain.reshape(-1)[:-1])


def test_depth_target_is_the_nearest_lidar_point(root):
    item = SemanticKittiDataset(config(root), "train", augment=False)[0]
    d = item["depth_target"].numpy()
    # (10, 0, 0) and (20, 0, 0) both hit the principal ray: the nearer one (9.7 m) wins.
    u, v = int(np.floor(99.5 + 2 + 0.5)), int(np.floor(29.5 - 4 + 0.5))
    assert d[v, u] == pytest.approx(9.7, abs=1e-5)
    # (10, 2, -1): 2 m left, 1 m down at 9.7 m depth.
    u2, v2 = int(np.floor(101.5 - FX * 2 / 9.7 + 0.5)), int(np.floor(25.5 + FX * 1 / 9.7 + 0.5))
    assert d[v2, u2] == pytest.approx(9.7, abs=1e-5)
    assert np.count_nonzero(d) == 2  # the point behind the camera is dropped


def test_lidar_depth_map_keeps_nearest_of_many():
    rng = np.random.default_rng(1)
    cam = camera_from_calib(projection(0), TR, (H, W))
    pts = np.column_stack([rng.uniform(2, 40, 2000), rng.uniform(-10, 10, 2000), rng.uniform(-2, 2, 2000)])
    d = lidar_depth_map(pts, cam.K, cam.T_cam_grid, (H, W))
    uv, z = project(pts, cam.K, cam.T_cam_grid)
    px = np.floor(uv + 0.5).astype(int)
    ok = (px[:, 0] >= 0) & (px[:, 0] < W) & (px[:, 1] >= 0) & (px[:, 1] < H) & (z > 0)
    ref = np.full((H, W), np.inf)
    np.minimum.at(ref, (px[ok, 1], px[ok, 0]), z[ok])
    ref[np.isinf(ref)] = 0
    np.testing.assert_allclose(d, ref, rtol=1e-6)


def test_teacher_mask_cropped_and_padded_with_ignore(root):
    item = SemanticKittiDataset(config(root), "train", augment=False)[0]
    t = item["teacher"].numpy()
    assert t.shape == (56, 204) and t.dtype == np.int64
    assert (t[:, :2] == 255).all() and (t[:, -2:] == 255).all()  # padded columns
    assert (t[36:, 2:102] == 9).all() and (t[:36] == 255).all()  # rows 40.. of the image


def test_flip_keeps_image_calibration_and_targets_consistent(root):
    plain = SemanticKittiDataset(config(root), "train", augment=False)[0]
    flipped = SemanticKittiDataset(config(root, flip_prob=1.0), "train", augment=True)[0]
    torch.testing.assert_close(flipped["img"], plain["img"].flip(-1))
    torch.testing.assert_close(flipped["depth_target"], plain["depth_target"].flip(-1))
    torch.testing.assert_close(flipped["teacher"], plain["teacher"].flip(-1))
    torch.testing.assert_close(flipped["target"], plain["target"].flip(1))
    torch.testing.assert_close(flipped["target_2"], plain["target_2"].flip(1))
    # Every voxel centre projects to mirrored pixels at the same depth: what the image shows at a
    # voxel is unchanged by the flip, so image features and targets stay paired.
    X, Y, Z = GRID.size
    ijk = np.stack(np.meshgrid(*[np.arange(n) for n in GRID.size], indexing="ij"), -1).reshape(-1, 3)
    centres = np.asarray(GRID.origin) + (ijk + 0.5) * GRID.voxel_size
    mirrored_ijk = ijk * [1, -1, 1] + [0, Y - 1, 0]
    mirrored = np.asarray(GRID.origin) + (mirrored_ijk + 0.5) * GRID.voxel_size
    uv, z = project(centres, plain["K"].double().numpy(), plain["T_cam_grid"].double().numpy())
    uv_f, z_f = project(mirrored, flipped["K"].double().numpy(), flipped["T_cam_grid"].double().numpy())
    front = z > 0.5
    np.testing.assert_allclose(z_f[front], z[front], atol=1e-4)
    np.testing.assert_allclose(uv_f[front, 0], (204 - 1) - uv[front, 0], atol=1e-3)
    np.testing.assert_allclose(uv_f[front, 1], uv[front, 1], atol=1e-3)
    R = flipped["T_cam_grid"].double().numpy()[:3, :3]
    np.testing.assert_allclose(R @ R.T, np.eye(3), atol=1e-6)
    assert np.linalg.det(R) == pytest.approx(1.0, abs=1e-6)  # still a rotation


def test_colour_jitter_changes_only_the_image(root):
    torch.manual_seed(0)
    plain = SemanticKittiDataset(config(root), "train", augment=False)[0]
    jit = SemanticKittiDataset(config(root, color_jitter=0.4, flip_prob=0.0), "train", augment=True)[0]
    assert not torch.equal(jit["img"], plain["img"])
    assert 0 <= jit["img"].min() and jit["img"].max() <= 1
    torch.testing.assert_close(jit["K"], plain["K"])
    torch.testing.assert_close(jit["target"], plain["target"])


def test_stereo_mode_gives_metric_depth(root):
    item = SemanticKittiDataset(config(root, stereo=True), "train", augment=False)[0]
    d = item["depth"]
    assert d.shape == (1, 56, 204)
    valid = d[0][d[0] > 0]
    assert valid.numel() > 0.3 * 56 * 204
    # Constant disparity 8 px: depth = fx * baseline / 8 everywhere it matched.
    assert torch.median(valid).item() == pytest.approx(FX * BASELINE / 8, rel=1e-3)


def test_stereo_depth_direct():
    rng = np.random.default_rng(2)
    left = textured(rng, 80, 160)
    right = np.zeros_like(left)
    right[:, :-12] = left[:, 12:]
    depth = StereoDepth(FX, BASELINE)(left, right)
    inner = depth[10:-10, 140:150]  # columns beyond num_disparities (128) can be matched
    assert np.median(inner[inner > 0]) == pytest.approx(FX * BASELINE / 12, rel=1e-3)
    assert (depth >= 0).all()
    with pytest.raises(ValueError, match="baseline"):
        StereoDepth(FX, 0.0)


def test_collate_fills_optional_keys(root):
    ds = SemanticKittiDataset(config(root), "train", augment=False)
    batch = collate([ds[0], ds[1]])
    assert batch["img"].shape == (2, 3, 56, 204) and batch["target"].shape == (2, *GRID.size)
    assert batch["depth_target"].shape == (2, 56, 204) and not batch["depth_target"][1].any()
    assert (batch["teacher"][1] == 255).all()
    torch.testing.assert_close(batch["index"], torch.tensor([0, 1]))
    with pytest.raises(KeyError, match="'extra' is missing"):
        collate([{**ds[0], "extra": torch.zeros(1)}, ds[1]])
    loader = torch.utils.data.DataLoader(ds, batch_size=2, collate_fn=collate)
    assert next(iter(loader))["T_cam_grid"].shape == (2, 4, 4)


def test_splits_and_errors(root, tmp_path_factory):
    assert len(SemanticKittiDataset(config(root), "val")) == 2
    cfg = config(root, test_sequences=("08",))
    test = SemanticKittiDataset(cfg, "test")
    assert [f for _, f in test.samples] == ["000000", "000005"]
    assert "target" in test[0]  # labels present are still read
    empty = tmp_path_factory.mktemp("empty")
    with pytest.raises(FileNotFoundError, match="no train frames"):
        SemanticKittiDataset(config(empty), "train")
    (empty / "sequences" / "00").mkdir(parents=True)
    with pytest.raises(sk.DataFormatError, match="voxels: no NNNNNN.label"):
        SemanticKittiDataset(config(empty), "train")
    with pytest.raises(ConfigError, match="data.root is empty"):
        SemanticKittiDataset(config(""), "train")
    bad_grid = config(root)
    bad_grid.grid = GridConfig(size=(32, 32, 4), voxel_size=1.6, origin=(0.0, -20.0, -2.0))
    with pytest.raises(ConfigError, match="mirrors the grid's y axis"):
        SemanticKittiDataset(bad_grid, "train")
    with pytest.raises(ConfigError, match="data.camera"):
        SemanticKittiDataset(config(root, camera="middle"), "train")


def test_right_camera_uses_p3(root):
    left = SemanticKittiDataset(config(root), "train", augment=False)[0]
    right = SemanticKittiDataset(config(root, camera="right"), "train", augment=False)[0]
    # P3 carries -fx * b in its 4th column: the right camera sits b metres to the +x of cam0.
    dt = right["T_cam_grid"][:3, 3] - left["T_cam_grid"][:3, 3]
    torch.testing.assert_close(dt, torch.tensor([-BASELINE, 0.0, 0.0]))
