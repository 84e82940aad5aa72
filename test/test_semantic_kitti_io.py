"""Round trips of every SemanticKITTI file format, the errors for bad files, remapping,
the benchmark downsampling rule and the scan voxeliser, on fixtures written here."""
from __future__ import annotations

import numpy as np
import pytest

from cigocc_ros.classes import load_class_table
from cigocc_ros.config import GridConfig
from cigocc_ros.data import semantic_kitti as sk

SMALL = (16, 8, 8)


def test_calib_round_trip_and_errors(tmp_path):
    rng = np.random.default_rng(0)
    calib = {k: rng.normal(size=(3, 4)) for k in ("P0", "P1", "P2", "P3", "Tr")}
    sk.write_calib(tmp_path / "calib.txt", calib)
    back = sk.read_calib(tmp_path / "calib.txt")
    assert set(back) == set(calib)
    for k in calib:
        np.testing.assert_allclose(back[k], calib[k], rtol=1e-11)
    # A 4x4 Tr is accepted by the writer and read back as its 3x4 top.
    sk.write_calib(tmp_path / "c4.txt", {**calib, "Tr": np.vstack([calib["Tr"], [0, 0, 0, 1]])})
    np.testing.assert_allclose(sk.read_calib(tmp_path / "c4.txt")["Tr"], calib["Tr"], rtol=1e-11)

    del calib["Tr"]
    sk.write_calib(tmp_path / "no_tr.txt", calib)
    with pytest.raises(sk.DataFormatError, match=r"no_tr\.txt: missing calibration key\(s\) Tr"):
        sk.read_calib(tmp_path / "no_tr.txt")
    (tmp_path / "short.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(sk.DataFormatError, match=r"short\.txt:1: 'P0' has 3 values"):
        sk.read_calib(tmp_path / "short.txt")
    with pytest.raises(sk.DataFormatError, match="calibration file not found"):
        sk.read_calib(tmp_path / "absent.txt")


def test_poses_and_times_round_trip(tmp_path):
    rng = np.random.default_rng(1)
    poses = np.tile(np.eye(4), (5, 1, 1))
    poses[:, :3, :] = rng.normal(size=(5, 3, 4))
    sk.write_poses(tmp_path / "poses.txt", poses)
    np.testing.assert_allclose(sk.read_poses(tmp_path / "poses.txt"), poses, rtol=1e-8)
    times = np.cumsum(rng.uniform(0.09, 0.11, 5))
    sk.write_times(tmp_path / "times.txt", times)
    np.testing.assert_allclose(sk.read_times(tmp_path / "times.txt"), times, rtol=1e-6)
    (tmp_path / "bad_poses.txt").write_text("1 0 0 0 0 1 0 0 0 0 1\n")
    with pytest.raises(sk.DataFormatError, match=r"bad_poses\.txt: line 1"):
        sk.read_poses(tmp_path / "bad_poses.txt")


def test_images_round_trip(tmp_path):
    rng = np.random.default_rng(2)
    rgb = rng.integers(0, 256, (12, 20, 3), dtype=np.uint8)
    gray = rng.integers(0, 256, (12, 20), dtype=np.uint8)
    sk.write_image(tmp_path / "image_2" / "000000.png", rgb)
    sk.write_image(tmp_path / "image_0" / "000000.png", gray)
    np.testing.assert_array_equal(sk.read_image(tmp_path / "image_2" / "000000.png"), rgb)
    np.testing.assert_array_equal(sk.read_image(tmp_path / "image_0" / "000000.png", rgb=False), gray)
    np.testing.assert_array_equal(sk.read_image(tmp_path / "image_0" / "000000.png"),
                                  np.repeat(gray[:, :, None], 3, axis=2))
    (tmp_path / "broken.png").write_bytes(b"not a png")
    with pytest.raises(sk.DataFormatError, match=r"broken\.png: not a readable image"):
        sk.read_image(tmp_path / "broken.png")


def test_scan_and_point_labels_round_trip(tmp_path):
    rng = np.random.default_rng(3)
    pts = rng.normal(size=(100, 4)).astype(np.float32)
    sem = rng.integers(0, 260, 100).astype(np.uint16)
    inst = rng.integers(0, 65535, 100).astype(np.uint16)
    sk.write_scan(tmp_path / "velodyne" / "000000.bin", pts)
    sk.write_point_labels(tmp_path / "labels" / "000000.label", sem, inst)
    np.testing.assert_array_equal(sk.read_scan(tmp_path / "velodyne" / "000000.bin"), pts)
    s, i = sk.read_point_labels(tmp_path / "labels" / "000000.label", num_points=100)
    np.testing.assert_array_equal(s, sem)
    np.testing.assert_array_equal(i, inst)
    raw = np.fromfile(tmp_path / "labels" / "000000.label", np.uint32)
    np.testing.assert_array_equal(raw & 0xFFFF, sem)  # class in the low 16 bits
    with pytest.raises(sk.DataFormatError, match=r"000000\.label: per-point label file has 400 bytes, expected 404"):
        sk.read_point_labels(tmp_path / "labels" / "000000.label", num_points=101)
    (tmp_path / "odd.bin").write_bytes(b"\0" * 20)
    with pytest.raises(sk.DataFormatError, match=r"odd\.bin: 20 bytes is not a whole number"):
        sk.read_scan(tmp_path / "odd.bin")


def test_voxel_files_round_trip(tmp_path):
    rng = np.random.default_rng(4)
    labels = rng.integers(0, 20, SMALL).astype(np.uint8)
    labels[0, 0, :3] = 255
    invalid, occluded, occ = (rng.random(SMALL) < p for p in (0.3, 0.2, 0.1))
    stem = tmp_path / "voxels" / "000005"
    sk.write_voxels(stem, labels, invalid=invalid, occluded=occluded, occupancy=occ)
    vf = sk.read_voxels(stem, SMALL)
    np.testing.assert_array_equal(vf.invalid, invalid)
    np.testing.assert_array_equal(vf.occluded, occluded)
    np.testing.assert_array_equal(vf.occupancy, occ)
    assert vf.labels.dtype == np.uint16
    np.testing.assert_array_equal(vf.labels[labels != 255], load_class_table().learning_map_inv[labels[labels != 255]])
    np.testing.assert_array_equal(sk.remap_labels(vf.labels), labels)  # 255 survives the raw detour
    remapped = sk.remap_labels(vf.labels, vf.invalid)
    np.testing.assert_array_equal(remapped, np.where(invalid, 255, labels))
    # Raw ids written as given.
    raw = rng.choice([0, 10, 40, 44, 52, 99, 252], size=SMALL).astype(np.uint16)
    sk.write_voxels(tmp_path / "raw", raw, raw=True)
    np.testing.assert_array_equal(sk.read_voxel_labels(tmp_path / "raw.label", SMALL), raw)


def test_bit_packing_is_msb_first_c_order(tmp_path):
    mask = np.zeros(SMALL, dtype=bool)
    mask[0, 0, 0] = True  # flat index 0 -> bit 7 of byte 0
    mask[0, 0, 7] = True  # flat index 7 -> bit 0 of byte 0
    mask[0, 1, 1] = True  # flat index 9 -> bit 6 of byte 1
    sk.write_voxel_mask(tmp_path / "m.invalid", mask, SMALL)
    data = np.fromfile(tmp_path / "m.invalid", np.uint8)
    assert data.size == np.prod(SMALL) // 8
    assert data[0] == 0b10000001 and data[1] == 0b01000000 and not data[2:].any()


def test_voxel_size_errors_name_the_file(tmp_path):
    (tmp_path / "000000.invalid").write_bytes(b"\0" * 100)
    with pytest.raises(sk.DataFormatError, match=r"000000\.invalid: bit-packed voxel file has 100 bytes, expected 262144"):
        sk.read_voxel_mask(tmp_path / "000000.invalid")
    (tmp_path / "000000.label").write_bytes(b"\0" * 262144)
    with pytest.raises(sk.DataFormatError, match=r"000000\.label: voxel label file has 262144 bytes, expected 4194304"):
        sk.read_voxel_labels(tmp_path / "000000.label")
    with pytest.raises(sk.DataFormatError, match="no voxel files at"):
        sk.read_voxels(tmp_path / "000001")


def test_prediction_file_holds_raw_ids(tmp_path):
    pred = np.random.default_rng(5).integers(0, 20, SMALL).astype(np.uint8)
    sk.write_prediction(tmp_path / "predictions" / "000000.label", pred)
    raw = sk.read_voxel_labels(tmp_path / "predictions" / "000000.label", SMALL)
    np.testing.assert_array_equal(raw, load_class_table().learning_map_inv[pred])
    np.testing.assert_array_equal(sk.remap_labels(raw), pred)
    with pytest.raises(ValueError, match="labels 0..19"):
        sk.write_prediction(tmp_path / "bad.label", np.full(SMALL, 255, np.uint8))
    with pytest.raises(ValueError, match="labels 0..19"):
        sk.write_prediction(tmp_path / "bad.label", np.full(SMALL, -1, np.int64))
    with pytest.raises(ValueError, match=r"must be 0..19 or 255, got 20"):
        sk.write_voxels(tmp_path / "bad", np.full(SMALL, 20, np.int64))


def test_remap_ignores_unlabelled_structure_and_unknown_ids():
    raw = np.array([0, 1, 10, 52, 99, 252, 40, 259, 300, 65535], dtype=np.uint16)
    out = sk.remap_labels(raw)
    # 0 empty; outlier / other-structure / other-object / unknown ids ignored; moving-car -> car.
    np.testing.assert_array_equal(out, [0, 255, 1, 255, 255, 1, 9, 5, 255, 255])
    wide = np.array([0, 10, 70000, 2**40], dtype=np.int64)  # ids past uint16: unknown
    np.testing.assert_array_equal(sk.remap_labels(wide), [0, 1, 255, 255])
    np.testing.assert_array_equal(sk.remap_labels(raw, invalid=raw == 10), [0, 255, 255, 255, 255, 1, 9, 5, 255, 255])


def downsample_reference(labels: np.ndarray, f: int) -> np.ndarray:
    """The rule written block by block, as the benchmark's preprocessing states it."""
    X, Y, Z = labels.shape
    out = np.zeros((X // f, Y // f, Z // f), np.uint8)
    for i in range(X // f):
        for j in range(Y // f):
            for k in range(Z // f):
                block = labels[i * f:(i + 1) * f, j * f:(j + 1) * f, k * f:(k + 1) * f].reshape(-1)
                n0, n255 = np.sum(block == 0), np.sum(block == 255)
                if n0 + n255 > 0.95 * f**3:
                    out[i, j, k] = 0 if n0 > n255 else 255
                else:
                    cls = block[(block > 0) & (block < 255)]
                    out[i, j, k] = np.argmax(np.bincount(cls))
    return out


@pytest.mark.parametrize("factor", [2, 4, 8])
def test_downsample_matches_the_rule(factor):
    rng = np.random.default_rng(factor)
    shape = (32, 16, 16)
    lab = np.where(rng.random(shape) < 0.85, 0, rng.integers(1, 20, shape)).astype(np.uint8)
    lab[rng.random(shape) < 0.1] = 255
    lab[:8, :8, :8] = 255  # fully ignored blocks
    lab[8:16, :8, :8] = 0  # fully empty blocks
    np.testing.assert_array_equal(sk.downsample_labels(lab, factor), downsample_reference(lab, factor))


def test_downsample_ties_and_thresholds():
    b = np.zeros((2, 2, 2), np.uint8)
    assert sk.downsample_labels(b, 2)[0, 0, 0] == 0
    b.flat[:4] = 255  # 4 empty vs 4 ignored: not more empty -> 255
    assert sk.downsample_labels(b, 2)[0, 0, 0] == 255
    b.flat[0] = 3  # one class voxel: 7/8 empty+ignored is not > 95 % -> the class
    assert sk.downsample_labels(b, 2)[0, 0, 0] == 3
    b.flat[:] = [5, 5, 2, 2, 0, 0, 0, 0]  # tie between 2 and 5 -> the smaller id
    assert sk.downsample_labels(b, 2)[0, 0, 0] == 2


def test_voxelize_scan_indexing_filters_and_majority():
    grid = GridConfig()
    vs, origin = grid.voxel_size, np.array(grid.origin)

    def centre(i, j, k):
        return origin + (np.array([i, j, k]) + 0.5) * vs

    pts = np.array([
        centre(100, 128, 10), centre(100, 128, 10) + 0.05, centre(100, 128, 10) - 0.05,  # 40, 40, 10
        centre(50, 10, 0),  # lowest layer: z in [-2.0, -1.8)
        [2.8, 1.5, -1.0],  # on the ego vehicle (3.3 m away)
        [1.5, 0.0, -2.05],  # below the grid
        [60.0, 0.0, 0.0],  # beyond the grid in x
        centre(200, 200, 20),  # labelled outlier (raw 1) -> dropped
        centre(10, 10, 5), centre(10, 10, 5),  # tie 51 vs 50 -> 50
    ])
    labels = np.array([40, 40, 10, 48, 10, 40, 40, 1, 51, 50], np.uint16)
    occ, lab = sk.voxelize_scan(pts, labels, grid)
    assert occ.sum() == 3
    assert occ[100, 128, 10] and occ[50, 10, 0] and occ[10, 10, 5]
    assert lab[100, 128, 10] == 40 and lab[50, 10, 0] == 48 and lab[10, 10, 5] == 50
    assert lab[~occ].max() == 0


def test_voxelize_then_write_reads_back(tmp_path):
    rng = np.random.default_rng(6)
    pts = np.column_stack([rng.uniform(3, 50, 5000), rng.uniform(-25, 25, 5000), rng.uniform(-1.9, 4.3, 5000)])
    labels = rng.choice([40, 44, 48, 50, 70], 5000).astype(np.uint16)
    occ, lab = sk.voxelize_scan(pts, labels)
    sk.write_voxels(tmp_path / "voxels" / "000000", lab, occupancy=occ, raw=True)
    vf = sk.read_voxels(tmp_path / "voxels" / "000000")
    np.testing.assert_array_equal(vf.occupancy, occ)
    np.testing.assert_array_equal(vf.labels, lab)
    np.testing.assert_array_equal(vf.occupancy, vf.labels > 0)


def test_undo_legacy_shift_moves_one_layer_down():
    vol = np.zeros((4, 4, 8), np.uint8)
    vol[1, 2, 5] = 7
    vol[1, 3, 0] = 9  # written from (1, 2, 7): the top of the previous column wraps over
    back = sk.undo_legacy_shift(vol)
    assert back[1, 2, 4] == 7 and back[1, 2, 7] == 9 and back.sum() == 16


def test_sequence_paths(tmp_path):
    p = sk.SequencePaths(tmp_path, "08")
    assert p.image(5) == tmp_path / "sequences/08/image_2/000005.png"
    assert p.image("7", camera=3) == tmp_path / "sequences/08/image_3/000007.png"
    assert p.voxel_stem(10) == tmp_path / "sequences/08/voxels/000010"
    assert p.teacher_mask(0, "masks") == tmp_path / "sequences/08/masks/000000.png"
    for f in (0, 5, 10):
        sk.write_voxels(p.voxel_stem(f), np.zeros(SMALL, np.uint8))
    assert p.frames() == ["000000", "000005", "000010"]


def test_teacher_mask_round_trip_and_range(tmp_path):
    mask = np.random.default_rng(7).integers(0, 20, (10, 12)).astype(np.uint8)
    mask[0] = 255
    sk.write_teacher_mask(tmp_path / "m.png", mask)
    np.testing.assert_array_equal(sk.read_teacher_mask(tmp_path / "m.png"), mask)
    mask[1, 1] = 40
    sk.write_teacher_mask(tmp_path / "bad.png", mask)
    with pytest.raises(sk.DataFormatError, match=r"bad\.png: class id 40"):
        sk.read_teacher_mask(tmp_path / "bad.png")


def test_one_sequence_folder_type_for_datasets_and_bare_folders(tmp_path):
    in_dataset = sk.SequencePaths(tmp_path, "04")
    bare = sk.SequencePaths.at(tmp_path / "sequences" / "04")
    assert bare.dir == in_dataset.dir and bare.voxel_stem(7) == in_dataset.voxel_stem(7)
    elsewhere = sk.SequencePaths.at(tmp_path / "drive")
    assert elsewhere.calib == tmp_path / "drive" / "calib.txt"
    with pytest.raises(FileNotFoundError, match="image_0"):
        elsewhere.camera_images()
    gray = np.zeros((4, 6), np.uint8)
    for f in (3, 1):
        sk.write_image(elsewhere.image(f, 0), gray)
    key, files = elsewhere.camera_images()
    assert key == "P0" and [p.name for p in files] == ["000001.png", "000003.png"]
    sk.write_image(elsewhere.image(1, 2), np.zeros((4, 6, 3), np.uint8))
    assert elsewhere.camera_images()[0] == "P2"  # colour wins when present
    assert elsewhere.frame_indices("image_0", ".png") == {1, 3}
    with pytest.raises(ValueError, match="image_0..image_3"):
        elsewhere.camera_images("image_9")


def test_voxel_target_reader_applies_invalid_and_the_legacy_shift(tmp_path):
    size = (4, 4, 2)
    lmap = load_class_table().learning_map
    car = int(np.flatnonzero(lmap == 1)[0])  # a raw id of class 1
    raw = np.zeros(size, np.uint16)
    raw[1, 2, 0] = car
    invalid = np.zeros(size, bool)
    invalid[3, 2, 1] = True
    stem = tmp_path / "voxels" / "000000"
    sk.write_voxels(stem, raw, invalid=invalid, raw=True)
    target = sk.read_voxel_target(stem, size)
    assert target.dtype == np.uint8 and target[1, 2, 0] == 1 and target[3, 2, 1] == 255
    assert (target == 0).sum() == target.size - 2
    # A legacy file holds everything one flat index late: reading it with the shift undone
    # gives the current file's target back (the last voxel, pushed off the end, is empty here).
    late = np.zeros_like(raw)
    late.reshape(-1)[1:] = raw.reshape(-1)[:-1]
    late_inv = np.zeros_like(invalid)
    late_inv.reshape(-1)[1:] = invalid.reshape(-1)[:-1]
    sk.write_voxels(stem, late, invalid=late_inv, raw=True)
    assert not np.array_equal(sk.read_voxel_target(stem, size), target)
    np.testing.assert_array_equal(sk.read_voxel_target(stem, size, legacy_shift=True), target)
