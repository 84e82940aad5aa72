"""kitti-to-bag: the real grayscale KITTI sequence and a tiny labelled sequence converted to
mcap and sqlite3 bags, read back with rosbags' AnyReader and checked message by message."""
from __future__ import annotations

import json
import os
from pathlib import Path

import cv2
import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from tiny_kitti import write_tiny_sequence

from cigocc_ros.bag import kitti_to_bag as k2b
from cigocc_ros.bag.types import OCCUPANCY_TYPE, typestore
from cigocc_ros.classes import load_class_table
from cigocc_ros.cli import main as cli_main
from cigocc_ros.config import GridConfig
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.geometry import camera_from_calib, quaternion_xyzw

START = 1.0e9


def _stamp(msg) -> int:
    return msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec


def _expected_stamps(times: np.ndarray, frames) -> list[int]:
    return [int(START * 1e9) + int(round(times[f] * 1e9)) for f in frames]


def _read_bag(path: Path) -> dict[str, list]:
    """topic -> [(log time, message)] in bag order."""
    out: dict[str, list] = {}
    with AnyReader([path], default_typestore=typestore()) as reader:
        for conn, t, raw in reader.messages():
            out.setdefault(conn.topic, []).append((t, reader.deserialize(raw, conn.msgtype)))
        types = {t: i.msgtype for t, i in reader.topics.items()}
    out["__types__"] = types
    return out


def _matrix(tf) -> np.ndarray:
    x, y, z, w = tf.rotation.x, tf.rotation.y, tf.rotation.z, tf.rotation.w
    R = np.array([[1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
                  [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
                  [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)]])
    T = np.eye(4)
    T[:3, :3] = R
    T[:3, 3] = [tf.translation.x, tf.translation.y, tf.translation.z]
    return T


def _tr4(calib: dict) -> np.ndarray:
    """Tr as 4x4 whichever shape the reader returns."""
    T = np.eye(4)
    T[:3, :4] = np.asarray(calib["Tr"])[:3, :4]
    return T


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_real_grayscale_sequence(tmp_path, storage, kitti_samples):
    seq = kitti_samples / "sequences" / "00"
    out = tmp_path / f"real_{storage}"
    summary = k2b.convert(seq, out, storage=storage, camera="gray", progress=False)
    bag = _read_bag(out)
    calib = sk.read_calib(seq / "calib.txt")
    times = sk.read_times(seq / "times.txt")
    frames = sorted(int(p.stem) for p in (seq / "image_0").glob("*.png"))
    scans = sorted(int(p.stem) for p in (seq / "velodyne").glob("*.bin"))
    stamps = _expected_stamps(times, frames)
    assert summary["frames"] == len(frames) == 11

    types = bag["__types__"]
    assert types["/kitti/camera_gray_left/image_rect"] == "sensor_msgs/msg/Image"
    assert types["/kitti/camera_gray_left/camera_info"] == "sensor_msgs/msg/CameraInfo"
    assert types["/tf"] == types["/tf_static"] == "tf2_msgs/msg/TFMessage"
    assert types["/kitti/odom"] == "nav_msgs/msg/Odometry"
    assert types["/kitti/velo/pointcloud"] == "sensor_msgs/msg/PointCloud2"
    assert "/kitti/occupancy_gt" not in types  # the real sample has no voxels/*.label
    assert not any("color" in t for t in types)

    for side, key, folder in (("left", "P0", "image_0"), ("right", "P1", "image_1")):
        images = bag[f"/kitti/camera_gray_{side}/image_rect"]
        infos = bag[f"/kitti/camera_gray_{side}/camera_info"]
        assert [t for t, _ in images] == [_stamp(m) for _, m in images] == stamps
        assert [_stamp(m) for _, m in infos] == stamps
        for f, (_, img) in zip(frames, images, strict=True):
            png = cv2.imread(str(seq / folder / f"{f:06d}.png"), cv2.IMREAD_GRAYSCALE)
            assert (img.encoding, img.height, img.width, img.step) == ("mono8", *png.shape, png.shape[1])
            assert img.header.frame_id == f"camera_gray_{side}"
            np.testing.assert_array_equal(np.asarray(img.data), png.reshape(-1))
        info = infos[0][1]
        # KITTI's P0/P1 already follow ROS's stereo convention: CameraInfo carries them as they are.
        np.testing.assert_allclose(info.k.reshape(3, 3), calib[key][:, :3], rtol=0, atol=1e-9)
        np.testing.assert_allclose(info.p.reshape(3, 4), calib[key], rtol=0, atol=1e-6)
        np.testing.assert_array_equal(info.r.reshape(3, 3), np.eye(3))
        assert info.distortion_model == "plumb_bob" and not np.any(info.d)
        assert (info.height, info.width) == (376, 1241)

    clouds = bag["/kitti/velo/pointcloud"]
    assert [_stamp(m) for _, m in clouds] == _expected_stamps(times, scans)
    cloud = clouds[0][1]
    pts = sk.read_scan(seq / "velodyne" / "000000.bin")
    rec = np.frombuffer(np.asarray(cloud.data).tobytes(),
                        dtype=[("x", "<f4"), ("y", "<f4"), ("z", "<f4"), ("intensity", "<f4"), ("label", "<u4")])
    assert [f.name for f in cloud.fields] == ["x", "y", "z", "intensity", "label"]
    assert cloud.width == len(pts) == 124668 and cloud.header.frame_id == "velodyne"
    np.testing.assert_array_equal(np.column_stack([rec["x"], rec["y"], rec["z"], rec["intensity"]]), pts)
    np.testing.assert_array_equal(rec["label"], np.fromfile(seq / "labels" / "000000.label", dtype="<u4"))

    # TF: the static tree puts each camera where calib.txt says (T_base_cam @ T_cam_velo = I).
    (t_static, static), = bag["/tf_static"]
    assert t_static == stamps[0]
    by_child = {tr.child_frame_id: tr for tr in static.transforms}
    assert set(by_child) == {"velodyne", "camera_gray_left", "camera_gray_right", "camera_color_left",
                             "camera_color_right"}
    assert all(tr.header.frame_id == "base_link" for tr in static.transforms)
    np.testing.assert_allclose(_matrix(by_child["camera_gray_left"].transform) @ _tr4(calib), np.eye(4), atol=1e-4)
    # The same transform, for nodes without TF, in the bag's metadata.
    cam = camera_from_calib(calib["P2"], _tr4(calib)[:3], (376, 1241))
    np.testing.assert_allclose(k2b.read_camera_from_grid(out, "camera_color_left"), cam.T_cam_grid, atol=1e-12)
    with pytest.raises(ValueError, match="camera_nowhere"):
        k2b.read_camera_from_grid(out, "camera_nowhere")
    right = np.linalg.inv(_matrix(by_child["camera_gray_right"].transform)) @ _matrix(
        by_child["camera_gray_left"].transform)
    np.testing.assert_allclose(right[:3, 3], [-386.1448 / 718.856, 0, 0], atol=1e-6)

    # Odometry and /tf: poses.txt expressed in the velodyne frame of frame 0.
    poses = sk.read_poses(seq / "poses.txt")
    odom = bag["/kitti/odom"]
    tfs = bag["/tf"]
    assert [_stamp(m) for _, m in odom] == [_stamp(m.transforms[0]) for _, m in tfs] == stamps
    Tr = _tr4(calib)
    for f, (_, o), (_, tf) in zip(frames, odom, tfs, strict=True):
        want = np.linalg.inv(Tr) @ poses[f] @ Tr
        got = _matrix(tf.transforms[0].transform)
        np.testing.assert_allclose(got, want, atol=2e-4)
        p = o.pose.pose.position
        np.testing.assert_allclose([p.x, p.y, p.z], want[:3, 3], atol=1e-9)
        assert (o.header.frame_id, o.child_frame_id) == ("world", "base_link")
    assert odom[5][1].twist.twist.linear.x > 5.0  # the car drives forward (x) at ~7 m/s


@pytest.mark.parametrize("storage", ["mcap", "sqlite3"])
def test_tiny_labelled_sequence(tmp_path, storage):
    seq = write_tiny_sequence(tmp_path / "seq", frames=8, labelled=(0, 5))
    out = tmp_path / f"tiny_{storage}"
    k2b.convert(seq, out, storage=storage, camera="both", velodyne=False, progress=False)
    bag = _read_bag(out)
    times = sk.read_times(seq / "times.txt")
    stamps = _expected_stamps(times, range(8))
    assert "/kitti/velo/pointcloud" not in bag
    expected_counts = {"/tf_static": 1, "/tf": 8, "/kitti/odom": 8, "/kitti/occupancy_gt": 2}
    for cam in ("color", "gray"):
        for side in ("left", "right"):
            expected_counts[f"/kitti/camera_{cam}_{side}/image_rect"] = 8
            expected_counts[f"/kitti/camera_{cam}_{side}/camera_info"] = 8
    assert {t: len(v) for t, v in bag.items() if t != "__types__"} == expected_counts
    assert bag["__types__"]["/kitti/occupancy_gt"] == OCCUPANCY_TYPE

    # Colour images: bgr8, bytes = the PNG as OpenCV decodes it (BGR).
    for side, folder in (("left", "image_2"), ("right", "image_3")):
        for f, (t, img) in enumerate(bag[f"/kitti/camera_color_{side}/image_rect"]):
            assert t == _stamp(img) == stamps[f]
            png = cv2.imread(str(seq / folder / f"{f:06d}.png"), cv2.IMREAD_COLOR)
            assert (img.encoding, img.step) == ("bgr8", png.shape[1] * 3)
            np.testing.assert_array_equal(np.asarray(img.data), png.reshape(-1))
    # Colour CameraInfo: ROS's pair convention ([K|0], [K|(-fx*B, 0, 0)]), B from P2/P3.
    calib = sk.read_calib(seq / "calib.txt")
    left = bag["/kitti/camera_color_left/camera_info"][0][1]
    right = bag["/kitti/camera_color_right/camera_info"][0][1]
    np.testing.assert_allclose(left.k.reshape(3, 3), calib["P2"][:, :3])
    np.testing.assert_allclose(left.p.reshape(3, 4)[:, 3], 0)
    fx = calib["P3"][0, 0]

    def tx(P):  # x of the camera's offset from cam0: K^-1 P[:, 3]
        return (P[0, 3] - P[0, 2] * P[2, 3]) / P[0, 0]

    baseline = tx(calib["P2"]) - tx(calib["P3"])
    assert 0.53 < baseline < 0.54  # KITTI's colour pair
    np.testing.assert_allclose(right.p.reshape(3, 4)[0, 3], -fx * baseline, rtol=1e-9)
    np.testing.assert_allclose(right.p.reshape(3, 4)[1:, 3], 0)
    np.testing.assert_allclose(right.p.reshape(3, 4)[:, :3], calib["P3"][:, :3])

    # Ground truth: the voxel labels remapped (learning_map), invalid voxels 255.
    grid = GridConfig()
    table = load_class_table()
    gts = bag["/kitti/occupancy_gt"]
    assert [t for t, _ in gts] == [_stamp(m) for _, m in gts] == [stamps[0], stamps[5]]
    for f, (_, gt) in zip((0, 5), gts, strict=True):
        raw = sk.read_voxel_labels(seq / "voxels" / f"{f:06d}.label")
        invalid = sk.read_voxel_mask(seq / "voxels" / f"{f:06d}.invalid")
        want = table.learning_map[raw]
        want[invalid] = 255
        labels = np.asarray(gt.labels)
        np.testing.assert_array_equal(labels, want.reshape(-1))
        assert set(np.unique(labels)) <= set(range(20)) | {255}
        assert (gt.size_x, gt.size_y, gt.size_z) == grid.size
        assert np.isclose(gt.voxel_size, grid.voxel_size) and gt.header.frame_id == grid.frame_id
        o = gt.origin
        np.testing.assert_allclose([o.position.x, o.position.y, o.position.z], grid.origin)
        assert (o.orientation.x, o.orientation.y, o.orientation.z, o.orientation.w) == (0, 0, 0, 1)
        assert list(gt.class_names) == list(table.names) and len(gt.class_colors) == 20
        assert len(gt.confidence) == 0 and gt.model_id == "ground-truth"
    # Pre-2020 voxel files: every value moves one flat index back, as the Dataset reads them.
    legacy = tmp_path / f"legacy_{storage}"
    k2b.convert(seq, legacy, storage=storage, camera="gray", velodyne=False, progress=False, legacy_voxel_shift=True)
    shifted = np.asarray(_read_bag(legacy)["/kitti/occupancy_gt"][0][1].labels)
    np.testing.assert_array_equal(shifted[:-1], np.asarray(gts[0][1].labels)[1:])
    # The same bytes decode with the rosidl-generated class that the node uses.
    from cigocc_msgs.msg import SemanticOccupancy
    from rclpy.serialization import deserialize_message

    with AnyReader([out]) as reader:
        conn = next(c for c in reader.connections if c.topic == "/kitti/occupancy_gt")
        _, _, raw = next(reader.messages(connections=[conn]))
    msg = deserialize_message(bytes(raw), SemanticOccupancy)
    np.testing.assert_array_equal(np.asarray(msg.labels, dtype=np.uint8), np.asarray(gts[0][1].labels))
    assert msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec == stamps[0]


def test_message_hash_matches_the_generated_package():
    """The type hash rosbags writes for SemanticOccupancy is the one rosidl generated, so ROS's
    own tools accept the bag's connection as the installed message."""
    for prefix in os.environ.get("AMENT_PREFIX_PATH", "").split(os.pathsep):
        path = Path(prefix) / "share" / "cigocc_msgs" / "msg" / "SemanticOccupancy.json"
        if path.is_file():
            want = json.loads(path.read_text())["type_hashes"][0]["hash_string"]
            assert typestore().hash_rihs01(OCCUPANCY_TYPE) == want
            return
    pytest.fail("cigocc_msgs is not built (no share/cigocc_msgs/msg/SemanticOccupancy.json on AMENT_PREFIX_PATH)")


def test_quaternion_round_trip():
    rng = np.random.default_rng(1)
    for _ in range(50):
        A = np.linalg.qr(rng.normal(size=(3, 3)))[0]
        A *= np.sign(np.linalg.det(A))
        q = quaternion_xyzw(A)
        tf = type("T", (), {})()
        tf.rotation = type("Q", (), dict(zip("xyzw", q, strict=True)))()
        tf.translation = type("V", (), {"x": 0, "y": 0, "z": 0})()
        np.testing.assert_allclose(_matrix(tf)[:3, :3], A, atol=1e-12)


def test_clear_errors(tmp_path, capsys):
    seq = write_tiny_sequence(tmp_path / "seq", frames=3, labelled=(1,), size=(16, 32), grid=(256, 256, 32))
    out = tmp_path / "bag"
    k2b.convert(seq, out, progress=False)
    with pytest.raises(FileExistsError, match="exists"):
        k2b.convert(seq, out, progress=False)
    k2b.convert(seq, out, overwrite=True, progress=False)

    (seq / "image_3" / "000002.png").unlink()
    with pytest.raises(FileNotFoundError, match=r"image_3/000002\.png"):
        k2b.convert(seq, tmp_path / "b1", progress=False)
    # The CLI turns the same error into a message and exit status 2.
    assert cli_main(["kitti-to-bag", str(seq), str(tmp_path / "b2"), "--quiet"]) == 2
    assert "image_3/000002.png" in capsys.readouterr().err
    assert k2b.convert(seq, tmp_path / "b3", camera="gray", progress=False)["frames"] == 3

    (seq / "image_0" / "000001.png").write_bytes(b"\x89PNG not really")
    with pytest.raises(ValueError, match=r"image_0/000001\.png"):
        k2b.convert(seq, tmp_path / "b4", camera="gray", progress=False)
    sk.write_image(seq / "image_0" / "000001.png", np.zeros((16, 32), np.uint8))

    label = seq / "voxels" / "000001.label"
    label.write_bytes(label.read_bytes()[:1000])
    with pytest.raises(ValueError, match=r"voxels/000001\.label"):
        k2b.convert(seq, tmp_path / "b5", camera="gray", progress=False)
    label.unlink()

    (seq / "times.txt").write_text("0.0\n0.1\n")
    with pytest.raises(ValueError, match="times.txt"):
        k2b.convert(seq, tmp_path / "b6", camera="gray", progress=False)
    (seq / "calib.txt").write_text("P0: 1 2 3\n")
    with pytest.raises(ValueError, match="calib.txt"):
        k2b.convert(seq, tmp_path / "b7", camera="gray", progress=False)
    with pytest.raises(FileNotFoundError, match="does not exist"):
        k2b.convert(tmp_path / "nowhere", tmp_path / "b8", progress=False)


@pytest.mark.parametrize("codec", ["png", "jpeg"])
def test_compressed_images(tmp_path, codec):
    """--compressed writes CompressedImage on <image topic>/compressed (no raw images), in
    compressed_image_transport's format; the node's decoder returns the source pixels (PNG
    exactly, JPEG closely)."""
    from cigocc_ros.ros.image_conversion import compressed_to_rgb

    seq = write_tiny_sequence(tmp_path / "seq", frames=3, labelled=(), size=(48, 96))
    out = tmp_path / "bag"
    assert cli_main(["kitti-to-bag", str(seq), str(out), "--camera", "both", "--compressed", codec,
                     "--no-velodyne", "--quiet"]) == 0
    bag = _read_bag(out)
    types = bag.pop("__types__")
    for pair, encoding in (("color", "bgr8"), ("gray", "mono8")):
        for side, folder in (("left", 2 if pair == "color" else 0), ("right", 3 if pair == "color" else 1)):
            topic = f"/kitti/camera_{pair}_{side}/image_rect"
            assert topic not in types
            assert types[topic + "/compressed"] == "sensor_msgs/msg/CompressedImage"
            msgs = bag[topic + "/compressed"]
            assert len(msgs) == 3
            for f, (t, msg) in enumerate(msgs):
                assert msg.format == f"{encoding}; {codec} compressed {encoding}"
                assert msg.header.frame_id == f"camera_{pair}_{side}" and _stamp(msg) == t
                want = sk.read_image(seq / f"image_{folder}" / f"{f:06d}.png", rgb=True)
                want = np.repeat(want[:, :, None], 3, axis=2) if want.ndim == 2 else want
                got = compressed_to_rgb(msg)
                if codec == "jpeg":  # lossy: the source through OpenCV's JPEG at quality 95
                    bgr = np.ascontiguousarray(want[:, :, ::-1])
                    ok, buf = cv2.imencode(".jpg", bgr if pair == "color" else bgr[:, :, 0].copy(),
                                           [cv2.IMWRITE_JPEG_QUALITY, 95])
                    want = cv2.imdecode(buf, cv2.IMREAD_COLOR)[:, :, ::-1]
                assert np.array_equal(got, want)
    with pytest.raises(ValueError, match="unknown compression 'webp'"):
        k2b.convert(seq, tmp_path / "b2", compressed="webp", progress=False)
