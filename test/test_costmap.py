"""The 2D costmap (cigocc_ros/costmap.py) on synthetic truth: a hand-made street with known cars,
road, sidewalk, a tree crown over the road and a raised road section, seen by a KITTI-like
camera. Lethal cells must be exactly the footprints of the cars in view, free cells the road in
view, and everything outside the frustum or the range unknown."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cigocc_ros.classes import load_class_table
from cigocc_ros.config import GridConfig, NodeConfig
from cigocc_ros.costmap import FREE, LETHAL, UNKNOWN, Costmapper, CostmapSpec, pack_columns
from cigocc_ros.geometry import crop_or_pad, crop_window, in_view

CLS = {n: i for i, n in enumerate(load_class_table().names)}
GRID = GridConfig(size=(100, 80, 16), voxel_size=0.5, origin=(0.0, -20.0, -2.0))
IMAGE = (376, 1241)
MODEL = (370, 1220)
K = np.array([[718.856, 0, 607.19], [0, 718.856, 185.22], [0, 0, 1]])
# KITTI-like velodyne -> camera: camera 0.27 m behind and 0.08 m below the grid origin.
T = np.array([[0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]], dtype=np.float64)
HALF_FOV = np.arctan2(610, 718.856)  # the model's columns: +-610 px around the principal point


def cell_centers():
    x = GRID.origin[0] + (np.arange(GRID.size[0]) + 0.5) * GRID.voxel_size
    y = GRID.origin[1] + (np.arange(GRID.size[1]) + 0.5) * GRID.voxel_size
    return np.meshgrid(x, y, indexing="ij")


def box(x0, x1, y0, y1):
    """(X, Y) bool: columns whose centre lies in [x0, x1) x [y0, y1) (metres)."""
    cx, cy = cell_centers()
    return (cx >= x0) & (cx < x1) & (cy >= y0) & (cy < y1)


def street():
    """Labels (X, Y, Z) and the truth the costmap should find. Voxel k spans z in
    [-2 + 0.5 k, -1.5 + 0.5 k): the road is layer 0 (top at -1.5 m)."""
    labels = np.zeros(GRID.size, np.uint8)
    road = box(0, 50, -6, 6)
    sidewalk = box(0, 50, 6, 9) | box(0, 50, -9, -6)
    labels[road, 0] = CLS["road"]
    labels[sidewalk, 0] = CLS["sidewalk"]
    labels[sidewalk, 1] = CLS["sidewalk"]  # a raised kerb: not drivable, not an obstacle
    cars = {
        "in view": box(10, 14, -3, -1),
        "in view, no road under it": box(20, 24.5, 1, 3),
        "outside the frustum": box(3, 6, 10, 14),
        "beyond the range": box(44, 48, -2, 0),
    }
    for name, fp in cars.items():
        if name == "outside the frustum":
            labels[fp, 0] = CLS["sidewalk"]
        if name == "in view, no road under it":
            labels[fp, 0] = 0  # the car hides the road: the ground comes from the neighbours
        labels[fp, 1:4] = CLS["car"]  # 0.25 .. 1.75 m above the road
    crown = box(30, 32, -2, 2)
    labels[crown, 7:10] = CLS["vegetation"]  # 3.25 m and up: above the band, the road is free
    raised = box(34, 38, -5, -2)
    labels[raised, 0:3] = CLS["road"]  # road surface 1 m higher (top at -0.5 m)
    buried = box(35, 36, -4, -3)
    labels[buried, 1] = CLS["pole"]  # under the raised surface: not an obstacle
    return labels, road, sidewalk, cars, crown, raised, buried


def spec(**changes) -> CostmapSpec:
    cfg = dataclasses.replace(NodeConfig(), costmap_max_range=40.0, **changes)
    return CostmapSpec.from_node_config(cfg, load_class_table())


def costs_of(labels, confidence=None, **changes):
    mapper = Costmapper(GRID)
    return mapper.compute(labels, confidence, spec(**changes), mapper.view(K, T, IMAGE, MODEL))


def clearly_seen(margin=1.0):
    """Columns well inside the horizontal field of view and the range, far enough for the camera
    to see the road (the image's bottom row looks down 14.9 deg: the road from 5.4 m on)."""
    cx, cy = cell_centers()
    r = np.hypot(cx + 0.27, cy)
    return (np.abs(cy) < (cx + 0.27) * np.tan(HALF_FOV) - margin) & (r < 40 - margin) & (cx > 6)


def clearly_unseen(margin=1.0):
    cx, cy = cell_centers()
    r = np.hypot(cx + 0.27, cy)
    return (np.abs(cy) > (cx + 0.27) * np.tan(HALF_FOV) + margin) | (r > 40 + margin)


def test_lethal_is_exactly_the_footprints_of_the_cars_in_view():
    labels, road, sidewalk, cars, *_ = street()
    costs = costs_of(labels)
    assert set(np.unique(costs)) <= {LETHAL, FREE, UNKNOWN}
    in_view = cars["in view"] | cars["in view, no road under it"]
    assert np.array_equal(costs == LETHAL, in_view)
    assert np.all(costs[cars["outside the frustum"]] == UNKNOWN)
    assert np.all(costs[cars["beyond the range"]] == UNKNOWN)


def test_free_is_the_road_in_view_and_unknown_outside():
    labels, road, sidewalk, cars, crown, raised, buried = street()
    costs = costs_of(labels)
    any_car = np.logical_or.reduce(list(cars.values()))
    assert np.all(road[costs == FREE]) and not np.any(any_car & (costs == FREE))
    assert np.all(costs[road & ~any_car & clearly_seen()] == FREE)
    assert np.all(costs[crown] == FREE)  # the tree crown is above the band
    assert np.all(costs[raised & clearly_seen()] == FREE)  # ground is per column
    assert np.all(costs[buried] == FREE)  # the pole is below the raised road's surface
    assert np.all(costs[sidewalk] != FREE) and not np.any(costs[sidewalk] == LETHAL)
    assert np.all(costs[clearly_unseen()] == UNKNOWN)
    # The camera cannot see behind itself: columns behind x = 0 would be unknown; the frustum's
    # apex columns just in front of the camera are unknown too.
    cx, _ = cell_centers()
    assert np.all(costs[cx < 0.5] == UNKNOWN)


def test_band_limits_move_the_lethal_cells():
    labels, road, sidewalk, cars, crown, *_ = street()
    # A band from 2.0 m up sees not the cars (up to 2 m) but the crown (3.25 .. 4.75 m).
    costs = costs_of(labels, costmap_band_bottom=2.0, costmap_band_top=5.0)
    assert np.array_equal(costs == LETHAL, crown)
    assert np.all(costs[cars["in view, no road under it"]] == UNKNOWN)  # no road under it: not free
    assert np.all(costs[cars["in view"]] == FREE)


def test_low_confidence_is_unknown():
    labels, road, sidewalk, cars, *_ = street()
    conf = np.full(GRID.size, 250, np.uint8)
    conf[cars["in view"]] = 40  # 0.16 < 0.3
    unsure_road = box(26, 28, -5, -3)
    conf[unsure_road, 2] = 60  # an uncertain voxel in the band above the road
    costs = costs_of(labels, conf)
    assert np.all(costs[cars["in view"]] == UNKNOWN)
    assert np.all(costs[cars["in view, no road under it"]] == LETHAL)
    assert np.all(costs[unsure_road] == UNKNOWN)
    relaxed = costs_of(labels, conf, costmap_min_confidence=0.0)
    assert np.all(relaxed[cars["in view"]] == LETHAL) and np.all(relaxed[unsure_road] == FREE)


def test_inflation_grows_lethal_cells_only_where_seen():
    labels, road, sidewalk, cars, *_ = street()
    plain = costs_of(labels)
    inflated = costs_of(labels, costmap_inflation_radius=1.0)
    lethal = np.argwhere(plain == LETHAL)
    cells = np.argwhere(inflated == LETHAL)
    # Every inflated cell lies within 1 m (2 cells) of an original lethal cell, and every seen
    # cell within that distance is lethal.
    d = np.sqrt(((cells[:, None, :] - lethal[None, :, :]) ** 2).sum(-1)).min(1) * GRID.voxel_size
    assert d.max() <= 1.0 + 1e-9
    assert np.all(inflated[plain == LETHAL] == LETHAL)
    assert np.all(inflated[clearly_unseen()] == UNKNOWN)
    assert (inflated == LETHAL).sum() > (plain == LETHAL).sum()


def test_ground_fallbacks():
    mapper = Costmapper(GRID)
    view = mapper.view(K, T, IMAGE, MODEL)
    # No drivable ground at all: the band starts at costmap_ground_z. A car standing on z = -1.0
    # (its lowest voxel centre 0.25 m above a ground at -1.5) is lethal with ground_z = -1.5 and
    # not with a ground at 1.0 m (the car is then under the band).
    labels = np.zeros(GRID.size, np.uint8)
    fp = box(12, 14, -1, 1)
    labels[fp, 1:3] = CLS["car"]
    low = mapper.compute(labels, None, spec(costmap_ground_z=-1.5), view)
    high = mapper.compute(labels, None, spec(costmap_ground_z=1.0), view)
    assert np.array_equal(low == LETHAL, fp) and not np.any(high == LETHAL)
    assert not np.any(low == FREE)  # no drivable ground anywhere: nothing is known free


def test_camera_view_is_cached_per_geometry():
    mapper = Costmapper(GRID)
    a = mapper.view(K, T, IMAGE, MODEL)
    assert mapper.view(K.copy(), T.copy(), IMAGE, MODEL) is a
    T2 = T.copy()
    T2[0, 3] = 0.5
    b = mapper.view(K, T2, IMAGE, MODEL)
    assert b is not a and not np.array_equal(a.frustum, b.frustum)
    # Voxels behind the camera and far to the side are outside; straight ahead is inside.
    assert not a.frustum[0, 40].any() and a.frustum[40, 40, :4].all() and not a.frustum[10, 0].any()


def rotation(axis: int, angle: float) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    i, j = (k for k in range(3) if k != axis)
    R = np.eye(3)
    R[i, i] = R[j, j] = c
    R[i, j], R[j, i] = -s, s
    return R


def test_the_frustum_per_column_is_the_projection_of_every_voxel_centre():
    """frustum_columns (an interval of k per column, O(X * Y)) gives exactly the voxels whose
    centres geometry.in_view keeps, for cameras turned every way, inside the grid and behind it,
    cropped and padded images; the unrotated KITTI-like pose has the grid's z axis parallel to
    the image plane (a condition constant along the columns)."""
    grid = GridConfig(size=(60, 50, 40), voxel_size=0.5, origin=(-5.0, -12.5, -6.0))
    axes = [grid.origin[i] + (np.arange(grid.size[i]) + 0.5) * grid.voxel_size for i in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    rng = np.random.default_rng(4)
    poses = [T]
    for _ in range(24):
        pose = T.copy()
        turn = rotation(0, rng.normal(0, 0.4)) @ rotation(1, rng.normal(0, 0.8)) @ rotation(2, rng.normal(0, 0.3))
        pose[:3, :3] = turn @ T[:3, :3]
        pose[:3, 3] = rng.normal(0, 4, 3)
        poses.append(pose)
    for n, pose in enumerate(poses):
        K_n = K if n == 0 else np.array([[rng.uniform(200, 900), 0, rng.uniform(100, 700)],
                                         [0, rng.uniform(200, 900), rng.uniform(50, 300)], [0, 0, 1]])
        image = IMAGE if n % 2 == 0 else (300, 1000)  # padded to the model input
        view = Costmapper(grid).view(K_n, pose, image, MODEL)
        expected = in_view(centres, K_n, pose, crop_window(image, MODEL)).reshape(grid.size)
        assert np.array_equal(view.frustum, expected), f"pose {n}: {np.sum(view.frustum != expected)} voxels differ"
        assert np.array_equal(view.frustum_bits, pack_columns(expected))
    assert 0 < Costmapper(grid).view(K, T, IMAGE, MODEL).frustum.mean() < 1


def test_crop_window_matches_crop_or_pad():
    for image_hw, size in [((376, 1241), (370, 1220)), ((300, 1000), (370, 1220)), ((400, 900), (370, 1220))]:
        H, W = image_hw
        idx = np.arange(H * W, dtype=np.int64).reshape(H, W) + 1
        out, _ = crop_or_pad(idx, np.eye(3), size)
        v0, v1, u0, u1 = crop_window(image_hw, size)
        kept = set(out[out > 0].tolist())
        assert kept == set(idx[v0:v1, u0:u1].ravel().tolist()), (image_hw, size)


def test_spec_errors_name_the_parameter():
    classes = load_class_table()
    with pytest.raises(ValueError, match="costmap_obstacle_classes.*'lorry'"):
        CostmapSpec.from_node_config(NodeConfig(costmap_obstacle_classes=("car", "lorry")), classes)
    with pytest.raises(ValueError, match="costmap_band_bottom"):
        CostmapSpec.from_node_config(NodeConfig(costmap_band_bottom=3.0, costmap_band_top=2.0), classes)
    with pytest.raises(ValueError, match="both obstacle and drivable"):
        CostmapSpec.from_node_config(NodeConfig(costmap_drivable_classes=("road", "car")), classes)


def test_column_bit_helpers():
    from cigocc_ros.costmap import bit_range, highest_bit, pack_columns

    rng = np.random.default_rng(3)
    for Z in (1, 16, 32, 40, 64):
        mask = rng.random((5, 4, Z)) < 0.3
        mask[0, 0] = False
        mask[1, 1, -1] = True
        words = pack_columns(mask)
        for x, y in np.ndindex(5, 4):
            want = sum(1 << k for k in range(Z) if mask[x, y, k])
            assert int(words[x, y]) == want
            assert int(highest_bit(words)[x, y]) == (want.bit_length() - 1 if want else 0)
        lo, hi = rng.integers(0, Z + 1, (2, 5, 4))
        hi = np.maximum(lo, hi)
        r = bit_range(lo, hi)
        assert all(int(r[x, y]) == sum(1 << k for k in range(lo[x, y], hi[x, y])) for x, y in np.ndindex(5, 4))
