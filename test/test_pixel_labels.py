"""Real labelled pixels for the 2D training: the CamVid class map, LiDAR labels projected into
real KITTI images (with the occlusion filter), the label-set loss and the location prior."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from cigocc_ros.classes import IGNORE_LABEL, NUM_CLASSES, load_class_table
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.camvid import (
    CAMVID_CLASSES,
    CAMVID_TO_KITTI,
    camvid_frames,
    camvid_set_matrix,
    kitti_to_camvid_lut,
    read_camvid_label,
)
from cigocc_ros.data.lidar_pixels import frame_label_image, lidar_label_image
from cigocc_ros.data.pixel_dataset import CAMVID_ROW0, LABEL_SETS, camvid_rows
from cigocc_ros.evaluation.segmentation import Confusion, LocationPrior
from cigocc_ros.model.losses import set_cross_entropy


def test_every_semantic_kitti_label_is_in_exactly_one_camvid_set():
    m = camvid_set_matrix()
    assert m.shape == (len(CAMVID_CLASSES), NUM_CLASSES)
    np.testing.assert_array_equal(m.sum(0), np.ones(NUM_CLASSES))
    lut = kitti_to_camvid_lut()
    names = load_class_table().names
    for k, members in enumerate(CAMVID_TO_KITTI):
        assert all(lut[c] == k for c in members)
    assert CAMVID_CLASSES[lut[names.index("car")]] == "car"
    assert CAMVID_CLASSES[lut[names.index("terrain")]] == "tree"
    assert CAMVID_CLASSES[lut[0]] == "sky"
    assert lut[IGNORE_LABEL] == 11


def test_camvid_labels_become_set_rows(camvid):
    frame = camvid_frames(camvid, "test")[0]
    lab = read_camvid_label(frame.label)
    assert lab.shape == (360, 480)
    rows = camvid_rows(lab)
    np.testing.assert_array_equal(rows[lab == 11], IGNORE_LABEL)
    np.testing.assert_array_equal(rows[lab == 8], CAMVID_ROW0 + 8)
    assert LABEL_SETS[CAMVID_ROW0 + 8, 1] and LABEL_SETS[CAMVID_ROW0 + 8, 4] and not LABEL_SETS[CAMVID_ROW0 + 8, 9]


def test_lidar_labels_land_on_the_real_image(kitti_samples):
    paths = sk.SequencePaths(kitti_samples, "00")
    image, lab = frame_label_image(paths, "000000")
    assert lab.shape == image.shape[:2]
    counts = np.bincount(lab[lab != IGNORE_LABEL], minlength=NUM_CLASSES)
    names = load_class_table().names
    # Frame 0 of sequence 00: a street with parked cars, sidewalks, buildings and trees.
    for c in ("road", "car", "sidewalk", "building", "vegetation"):
        assert counts[names.index(c)] > 300, c
    assert 0.03 < (lab != IGNORE_LABEL).mean() < 0.15
    # The LiDAR sees nothing above ~2 degrees up: the top rows (sky, tree tops) have no label.
    assert (lab[:60] == IGNORE_LABEL).all()
    # Road labels are in the lower half of the image, where the road is.
    v = np.nonzero(lab == names.index("road"))[0]
    assert np.median(v) > image.shape[0] * 0.7


def test_a_point_hidden_behind_a_nearer_one_gives_no_label():
    K = np.array([[100.0, 0, 50], [0, 100, 50], [0, 0, 1]])
    T = np.eye(4)  # grid frame = camera frame: z is depth
    # A car point at 5 m, and a road point at 20 m two pixels beside it (seen by the LiDAR
    # around the car's edge, hidden from the camera); a lone building point far from both.
    pts = np.array([[0.0, 0.0, 5.0], [0.4, 0.0, 20.0], [-2.0, -2.0, 30.0]])  # u = 50, 52, 43
    raw = np.array([10, 40, 50], dtype=np.uint32)  # car, road, building (raw SemanticKITTI ids)
    lab = lidar_label_image(pts, raw, K, T, (100, 100))
    lmap = load_class_table().learning_map
    assert lab[50, 50] == lmap[10]
    assert lab[50, 52] == IGNORE_LABEL  # hidden
    u, v = round(-2.0 / 30 * 100 + 50), round(-2.0 / 30 * 100 + 50)
    assert lab[v, u] == lmap[50]


def test_set_cross_entropy_is_plain_cross_entropy_for_one_class_sets_and_sums_sets():
    torch.manual_seed(0)
    logits = torch.randn(2, NUM_CLASSES, 3, 4)
    target = torch.randint(1, NUM_CLASSES, (2, 3, 4))
    target[0, 0, 0] = IGNORE_LABEL
    sets = torch.from_numpy(LABEL_SETS)
    plain = torch.stack([F.cross_entropy(logits[i:i + 1], target[i:i + 1], ignore_index=IGNORE_LABEL)
                         for i in range(2)]).mean()
    torch.testing.assert_close(set_cross_entropy(logits, target, sets), plain)
    car_set = torch.full((1, 1, 1), CAMVID_ROW0 + 8)
    lg = logits[:1, :, :1, :1]
    p = lg.softmax(1)[0, :, 0, 0]
    expected = -torch.log(p[1] + p[4] + p[5])
    torch.testing.assert_close(set_cross_entropy(lg, car_set, sets), expected)
    # A frame with one labelled pixel weighs as much as a frame with many.
    w = set_cross_entropy(logits, target, sets)
    sparse = target.clone()
    sparse[1] = IGNORE_LABEL
    sparse[1, 2, 3] = target[1, 2, 3]
    one = F.cross_entropy(logits[1:2, :, 2:3, 3:4], target[1:2, 2:3, 3:4])
    first = F.cross_entropy(logits[:1], target[:1], ignore_index=IGNORE_LABEL)
    torch.testing.assert_close(set_cross_entropy(logits, sparse, sets), (first + one) / 2)
    assert w.isfinite()


def test_confusion_and_location_prior():
    c = Confusion(3)
    c.add(np.array([0, 0, 1, 2, 255]), np.array([0, 1, 1, 1, 0]))
    np.testing.assert_allclose(c.iou(), [1 / 2, 1 / 3, 0.0])
    assert c.accuracy() == pytest.approx(2 / 4)
    assert c.accuracy([1]) == 1.0
    top = np.full((4, 6), 2, np.uint8)
    top[2:] = 1
    other = top.copy()
    other[3, 5] = 0
    prior = LocationPrior.fit([top, top, other], (4, 6), 3)
    np.testing.assert_array_equal(prior.predict((4, 6)), top)
    np.testing.assert_array_equal(prior.predict((8, 12))[::2, ::2], top)
