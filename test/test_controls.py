"""The evaluation controls (cigocc_ros/evaluation/controls.py): flat ground, the per-voxel prior, the
shuffled-image control."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cigocc_ros.classes import IGNORE_LABEL, load_class_table
from cigocc_ros.config import GridConfig
from cigocc_ros.evaluation import controls


def test_road_label_matches_the_class_table():
    assert load_class_table().names[controls.ROAD] == "road"


def test_ground_layers_of_the_kitti_grid():
    grid = GridConfig()  # z from -2.0 in 0.2 m layers
    assert controls.ground_layers(grid).tolist() == [1]  # -1.73 m lies in [-1.8, -1.6]
    assert controls.ground_layers(grid, -1.6).tolist() == [1, 2]  # on a boundary: both cells
    assert controls.ground_layers(grid, -5.0).size == 0
    vol = controls.flat_ground(grid)
    assert vol.shape == (256, 256, 32) and vol.dtype == np.uint8
    assert np.all(vol[:, :, 1] == controls.ROAD) and np.count_nonzero(vol) == 256 * 256


def test_flat_ground_scores_a_flat_world_high_and_a_hill_low():
    size = (16, 16, 8)
    flat = np.zeros(size, np.uint8)
    flat[:, :, 1] = controls.ROAD
    flat[:, :, 5:] = IGNORE_LABEL
    pred = controls.flat_ground_at_layer(size, 1)
    assert controls.score_constant(pred, [flat])["iou"] == pytest.approx(100.0)
    hill = np.zeros(size, np.uint8)
    for x in range(16):  # the ground climbs one layer every 4 voxels
        hill[x, :, 1 + x // 4] = controls.ROAD
    assert controls.score_constant(pred, [hill])["iou"] == pytest.approx(100.0 * 64 / (256 + 256 - 64))
    assert controls.best_ground_layer([hill, flat]) == 1
    with pytest.raises(ValueError, match="no voxel of label"):
        controls.best_ground_layer([np.zeros(size, np.uint8)])
    with pytest.raises(ValueError, match="outside"):
        controls.flat_ground_at_layer(size, 8)


def test_voxel_prior_takes_the_most_common_label_and_ignores_255():
    a = np.array([[[1, 0, 255, 3]]], np.uint8)
    b = np.array([[[1, 2, 255, 4]]], np.uint8)
    c = np.array([[[5, 2, 7, 255]]], np.uint8)
    prior = controls.VoxelPrior.fit([a, b, c], {"root": "x"})
    # voxel 0: 1 twice; voxel 1: 2 twice; voxel 2: only 7 counted; voxel 3: tie 3/4 -> smaller.
    assert prior.labels.tolist() == [[[1, 2, 7, 3]]]
    assert prior.frames == 3
    all_ignored = controls.VoxelPrior.fit([np.full((1, 1, 2), 255, np.uint8)])
    assert all_ignored.labels.tolist() == [[[0, 0]]]
    with pytest.raises(ValueError, match="outside"):
        controls.VoxelPrior.fit([np.array([[[20]]], np.uint8)])
    with pytest.raises(ValueError, match="shape"):
        controls.VoxelPrior.fit([a, np.zeros((1, 1, 3), np.uint8)])
    with pytest.raises(ValueError, match="no targets"):
        controls.VoxelPrior.fit([])


def test_voxel_prior_file_is_small_and_cached(tmp_path):
    rng = np.random.default_rng(0)
    targets = [np.where(rng.random((256, 256, 32)) < 0.97, 0, 9).astype(np.uint8) for _ in range(3)]
    for t in targets:
        t[:, :, 1] = 9
    calls = []

    def fit_on():
        calls.append(1)
        return iter(targets)

    path = tmp_path / "prior.npz"
    src = {"root": "/data", "sequences": ["00"]}
    p1 = controls.load_or_fit_prior(path, fit_on, src)
    assert path.stat().st_size < 1_000_000  # compressed; the raw volume is 2 MB
    p2 = controls.load_or_fit_prior(path, fit_on, src)
    assert len(calls) == 1  # the second call read the file
    np.testing.assert_array_equal(p1.labels, p2.labels)
    assert np.all(p2.labels[:, :, 1] == 9) and p2.source == src and p2.frames == 3
    controls.load_or_fit_prior(path, fit_on, {**src, "sequences": ["01"]})
    assert len(calls) == 2  # another source: refitted
    path.write_text("not a prior")
    with pytest.raises(ValueError, match="cannot read voxel prior"):
        controls.VoxelPrior.load(path)


@pytest.mark.parametrize("n", [2, 3, 10, 97])
def test_derangement_moves_every_frame_and_is_deterministic(n):
    p = controls.derangement(n, seed=3)
    assert sorted(p.tolist()) == list(range(n))
    assert np.all(p != np.arange(n))
    np.testing.assert_array_equal(p, controls.derangement(n, seed=3))
    if n > 3:
        assert not np.array_equal(p, controls.derangement(n, seed=4))


def test_derangement_needs_two_frames():
    with pytest.raises(ValueError, match="at least 2 frames"):
        controls.derangement(1)


class _Frames:
    def __init__(self, n):
        self.items = [{"img": torch.full((3, 2, 2), float(i)), "K": torch.eye(3) * (i + 1),
                       "target": torch.full((2, 2, 2), i), "depth": torch.full((1, 2, 2), 10.0 + i)}
                      for i in range(n)]

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        return self.items[i]

    def frame_info(self, i):
        return ("08", f"{5 * i:06d}")


def test_shuffled_images_swap_only_the_image():
    data = _Frames(4)
    view = controls.ShuffledImages(data, seed=1)
    assert len(view) == 4 and view.frame_info(2) == ("08", "000010")
    for i in range(4):
        j = int(view.perm[i])
        s = view[i]
        assert j != i
        assert torch.equal(s["img"], data[j]["img"]) and torch.equal(s["depth"], data[j]["depth"])
        assert torch.equal(s["K"], data[i]["K"]) and torch.equal(s["target"], data[i]["target"])
        assert torch.equal(data[i]["img"], torch.full((3, 2, 2), float(i)))  # source untouched
    with pytest.raises(ValueError, match="permutation"):
        controls.ShuffledImages(data, perm=np.array([0, 0, 1, 2]))


def test_dataset_target_matches_the_sample(tiny_dataset):
    from tiny_data import tiny_config

    from cigocc_ros.data.dataset import SemanticKittiDataset

    ds = SemanticKittiDataset(tiny_config(tiny_dataset), "train", augment=False)
    for i in range(len(ds)):
        np.testing.assert_array_equal(ds.target(i), ds[i]["target"].numpy())


class _Targets:
    """A dataset stand-in with the attributes image_free_controls reads."""

    def __init__(self, targets, root):
        self.targets, self.root = targets, root
        self.samples = [("00", f"{5 * i:06d}") for i in range(len(targets))]

    def __len__(self):
        return len(self.targets)

    def target(self, i):
        return self.targets[i]


def test_image_free_controls_and_checks(tmp_path):
    grid = GridConfig(size=(8, 8, 4), voxel_size=0.5, origin=(0.0, -2.0, -2.0))  # -1.73 in layer 0
    train = []
    for k in range(3):
        t = np.zeros((8, 8, 4), np.uint8)
        t[:, :, 0] = controls.ROAD
        t[2:4, 2:4, 1:3] = 1  # a car always there
        t[k, 7, 3] = IGNORE_LABEL
        train.append(t)
    val = [train[0].copy(), train[1].copy()]
    val[1][5:7, 5:7, 1] = 13  # a building the prior never saw
    path = tmp_path / "prior.npz"
    out = controls.image_free_controls(_Targets(train, tmp_path), _Targets(val, tmp_path), grid, path)
    assert set(out) == {"flat ground", "voxel prior"} and path.is_file()
    assert out["voxel prior"]["per_class"]["car"] == pytest.approx(100.0)
    assert out["voxel prior"]["per_class"]["building"] == 0.0
    assert out["flat ground"]["per_class"]["road"] == pytest.approx(100.0)
    assert out["flat ground"]["iou"] < out["voxel prior"]["iou"] < 100.0
    assert set(controls.image_free_controls(None, _Targets(val, tmp_path), grid)) == {"flat ground"}

    model = {"iou": 50.0, "miou": 10.0}
    lines = controls.control_checks(model, {"voxel prior": {"iou": 40.0, "miou": 4.0},
                                            "flat ground": {"iou": 45.0, "miou": 1.0},
                                            "shuffled image": {"iou": 30.0, "miou": 6.0}})
    assert lines[0].endswith("met") and "2.50x" in lines[0]
    assert lines[1].endswith("met") and "flat ground" in lines[1]
    assert lines[2].endswith("met") and "40.0 %" in lines[2]
    worse = controls.control_checks({"iou": 42.0, "miou": 6.0}, {"voxel prior": {"iou": 40.0, "miou": 4.0},
                                                                  "flat ground": {"iou": 45.0, "miou": 1.0},
                                                                  "shuffled image": {"iou": 30.0, "miou": 5.0}})
    assert all(line.endswith("MISSED") for line in worse)
