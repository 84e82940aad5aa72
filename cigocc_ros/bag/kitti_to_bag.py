"""A KITTI odometry / SemanticKITTI sequence folder -> a rosbag2 bag (mcap or sqlite3), written
with `rosbags` alone (no ROS distribution needed); `cigocc kitti-to-bag` is cli/kitti_to_bag.py.

Topics, frames and the TF tree are documented in docs/bags.md; in short (kitti2bag names for
odometry sequences, `image_rect` because KITTI odometry images are already rectified):

- /kitti/camera_{color,gray}_{left,right}/image_rect  sensor_msgs/Image (bgr8 / mono8), or with
  `--compressed jpeg|png` .../image_rect/compressed  sensor_msgs/CompressedImage instead
- /kitti/camera_{color,gray}_{left,right}/camera_info sensor_msgs/CameraInfo
- /kitti/velo/pointcloud  sensor_msgs/PointCloud2 (x, y, z, intensity [, label]) in `velodyne`
- /kitti/odom             nav_msgs/Odometry world -> base_link
- /tf                     world -> base_link per frame (poses.txt)
- /tf_static              base_link -> velodyne, camera_gray_left, ... (calib.txt Tr and P0..P3)
- /kitti/occupancy_gt     cigocc_msgs/SemanticOccupancy, frames with voxels/NNNNNN.label

Every message of frame i carries the stamp start_time + times.txt[i]; the bag's receive time
equals that stamp.
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml
from rosbags.interfaces import Qos
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from tqdm import tqdm

from ..config import COMPRESSED_SUFFIX, GridConfig
from ..data import semantic_kitti as skitti
from ..data.semantic_kitti import DataFormatError
from ..geometry import camera_from_calib, rotation_vector, split_projection, stereo_baseline
from .messages import COMPRESSIONS, VELO_FRAME, MessageBuilder, bag_qos
from .types import OCCUPANCY_TYPE

# ------------------------------------------------------------------------------------------
# Names (documented in docs/bags.md; bag-play / bag-eval and the launch files rely on them)
# ------------------------------------------------------------------------------------------
WORLD_FRAME = "world"  # the velodyne frame of the sequence's first frame (z up)
BASE_FRAME = "base_link"  # the vehicle; coincides with the velodyne frame in KITTI
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
ODOM_TOPIC = "/kitti/odom"
CLOUD_TOPIC = "/kitti/velo/pointcloud"
OCCUPANCY_GT_TOPIC = "/kitti/occupancy_gt"
GT_MODEL_ID = "ground-truth"
CAMERA_FROM_GRID_KEY = "cigocc.camera_from_grid"  # bag metadata: + ".<camera frame>"


@dataclass(frozen=True)
class CameraPair:
    """One rectified stereo pair of a KITTI sequence folder."""

    name: str  # "color" | "gray"
    folders: tuple[str, str]  # (left, right) image folders
    projections: tuple[str, str]  # (left, right) calib.txt keys
    encoding: str  # ROS image encoding

    def frame_id(self, side: str) -> str:
        return f"camera_{self.name}_{side}"

    def image_topic(self, side: str, compressed: str = "") -> str:
        """The image topic; with `compressed` ("jpeg" | "png") its image_transport sub-topic."""
        return f"/kitti/{self.frame_id(side)}/image_rect" + (COMPRESSED_SUFFIX if compressed else "")

    def info_topic(self, side: str) -> str:
        return f"/kitti/{self.frame_id(side)}/camera_info"


CAMERA_PAIRS = {
    "color": CameraPair("color", ("image_2", "image_3"), ("P2", "P3"), "bgr8"),
    "gray": CameraPair("gray", ("image_0", "image_1"), ("P0", "P1"), "mono8"),
}
# TF child frame of each KITTI projection matrix.
PROJECTION_FRAMES = {"P0": "camera_gray_left", "P1": "camera_gray_right",
                     "P2": "camera_color_left", "P3": "camera_color_right"}


# ------------------------------------------------------------------------------------------
# Reading the sequence folder
# ------------------------------------------------------------------------------------------
def _read_times(path: Path) -> np.ndarray:
    """times.txt -> (N,) float64 seconds since the sequence start, checked non-decreasing."""
    times = skitti.read_times(path)
    if times.ndim != 1 or np.any(np.diff(times) < 0):
        raise DataFormatError(f"{path}: expected one non-decreasing time per line")
    return times


def _read_image(path: Path, encoding: str) -> np.ndarray:
    """PNG -> (H, W) uint8 for mono8, (H, W, 3) uint8 BGR for bgr8."""
    image = skitti.read_image(path, rgb=False)
    if encoding == "mono8":
        if image.ndim != 2:
            raise DataFormatError(f"{path}: expected a grayscale image, got {image.shape[2]} channels")
        return image
    if image.ndim == 2:
        raise DataFormatError(f"{path}: expected a colour image, got grayscale")
    return np.ascontiguousarray(image[:, :, ::-1])


@dataclass
class KittiSequence:
    """A validated sequence folder (`paths`) and which of its frames and streams go into the bag."""

    paths: skitti.SequencePaths
    calib: dict[str, np.ndarray]
    times: np.ndarray  # (N,) s
    poses: np.ndarray | None  # (N, 4, 4) cam0 poses, or None without poses.txt
    pairs: list[CameraPair]
    frames: list[int]  # frame indices with a complete stereo pair, in order
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # pair -> (H, W)
    scans: set[int] = field(default_factory=set)  # frames with velodyne/NNNNNN.bin
    scan_labels: set[int] = field(default_factory=set)  # frames with labels/NNNNNN.label
    voxel_frames: set[int] = field(default_factory=set)  # frames with voxels/NNNNNN.label

    @property
    def root(self) -> Path:
        return self.paths.dir

    def image_path(self, pair: CameraPair, side: int, frame: int) -> Path:
        return self.paths.dir / pair.folders[side] / f"{skitti.frame_name(frame)}.png"


def open_sequence(root: str | Path, camera: str = "auto", first: int = 0, last: int | None = None,
                  velodyne: bool = True) -> KittiSequence:
    """Validate a sequence folder and list what a bag of frames [first, last] will hold.

    camera: "color" (image_2/3), "gray" (image_0/1), "both", or "auto" (colour if present,
    else grayscale). Frames are those whose left image exists in every chosen pair; each needs
    its right images and a times.txt line (and a poses.txt line when poses.txt exists).
    """
    paths = skitti.SequencePaths.at(root)
    root = paths.dir
    if not root.is_dir():
        raise FileNotFoundError(f"sequence folder {root} does not exist")
    calib = skitti.read_calib(paths.calib)
    times = _read_times(paths.times)
    poses = skitti.read_poses(paths.poses) if paths.poses.is_file() else None

    present = [k for k, p in CAMERA_PAIRS.items() if paths.frame_indices(p.folders[0], ".png")]
    if camera == "auto":
        names = present[:1]
    elif camera == "both":
        names = present
    elif camera in CAMERA_PAIRS:
        names = [camera] if camera in present else []
    else:
        raise ValueError(f"unknown camera choice '{camera}' (color, gray, both, auto)")
    if not names:
        wanted = [f for k, p in CAMERA_PAIRS.items() if camera in (k, "auto", "both") for f in p.folders]
        raise FileNotFoundError(f"{root}: no PNG images in {', '.join(wanted)}")
    pairs = [CAMERA_PAIRS[n] for n in names]

    frames = sorted(set.intersection(*(paths.frame_indices(p.folders[0], ".png") for p in pairs)))
    frames = [f for f in frames if f >= first and (last is None or f <= last)]
    if not frames:
        raise ValueError(f"{root}: no frames in the range [{first}, {last}]")
    seq = KittiSequence(paths, calib, times, poses, pairs, frames)
    for pair in pairs:
        for side in (0, 1):
            have = paths.frame_indices(pair.folders[side], ".png")
            missing = [f for f in frames if f not in have]
            if missing:
                raise FileNotFoundError(f"missing image {seq.image_path(pair, side, missing[0])} "
                                        f"({len(missing)} frames of {pair.folders[side]} missing)")
        h, w = _read_image(seq.image_path(pair, 0, frames[0]), pair.encoding).shape[:2]
        seq.image_sizes[pair.name] = (h, w)
    if frames[-1] >= len(times):
        raise ValueError(f"{root / 'times.txt'} has {len(times)} lines; frame {frames[-1]} needs one")
    if poses is not None and frames[-1] >= len(poses):
        raise ValueError(f"{root / 'poses.txt'} has {len(poses)} lines; frame {frames[-1]} needs one")
    if velodyne:
        seq.scans = paths.frame_indices("velodyne", ".bin") & set(frames)
        seq.scan_labels = paths.frame_indices("labels", ".label") & seq.scans
    seq.voxel_frames = paths.frame_indices("voxels", ".label") & set(frames)
    return seq


# ------------------------------------------------------------------------------------------
# Geometry helpers (single 4x4 transforms per frame)
# ------------------------------------------------------------------------------------------
def velodyne_poses(cam0_poses: np.ndarray, Tr: np.ndarray) -> np.ndarray:
    """(N, 4, 4) cam0 poses -> poses of the velodyne frame in the first frame's velodyne frame
    (SemanticKITTI's convention: Tr^-1 @ P @ Tr), so `world` has z up."""
    Tr4 = np.eye(4)
    Tr4[:3, :4] = np.asarray(Tr)[:3, :4]
    return np.linalg.inv(Tr4) @ cam0_poses @ Tr4


def camera_in_base(calib: dict[str, np.ndarray], key: str) -> np.ndarray:
    """(4, 4) pose of camera `key` (P0..P3) in the base/velodyne frame."""
    cam = camera_from_calib(calib[key], calib["Tr"][:3], (0, 0))
    return np.linalg.inv(cam.T_cam_grid)


def ros_projections(P_left: np.ndarray, P_right: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """KITTI P of a stereo pair -> ROS CameraInfo P (3, 4) of each: [K | 0] for the left and
    [K | (-fx * baseline, 0, 0)] for the right (ROS wants the pair's own left camera as the
    reference; KITTI's P2/P3 are relative to cam0 instead, image_geometry would misread them)."""
    K_l, _ = split_projection(P_left)
    K_r, _ = split_projection(P_right)
    left = np.zeros((3, 4))
    left[:, :3] = K_l
    right = np.zeros((3, 4))
    right[:, :3] = K_r
    right[0, 3] = -K_r[0, 0] * stereo_baseline(P_left, P_right)
    return left, right


def read_camera_from_grid(bag: str | Path, camera_frame: str) -> np.ndarray:
    """(4, 4) transform grid (velodyne) -> `camera_frame` stored in a kitti-to-bag bag's
    metadata: the node's `camera_from_grid` parameter for that camera."""
    meta_path = Path(bag) / "metadata.yaml"
    try:
        meta = yaml.safe_load(meta_path.read_text())["rosbag2_bagfile_information"]
    except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
        raise ValueError(f"cannot read rosbag2 metadata {meta_path}: {e}") from None
    custom = meta.get("custom_data") or {}
    key = f"{CAMERA_FROM_GRID_KEY}.{camera_frame}"
    if key not in custom:
        raise ValueError(f"bag {bag} has no '{key}' in its metadata (not written by kitti-to-bag?)")
    values = np.array([float(v) for v in custom[key].split()])
    if values.size != 16:
        raise ValueError(f"bag {bag}: '{key}' holds {values.size} numbers, expected 16")
    return values.reshape(4, 4)


def _twist(poses: np.ndarray, times: np.ndarray, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Finite-difference body-frame twist (linear m/s, angular rad/s) of pose i."""
    j, k = (i - 1, i) if i > 0 else (i, i + 1)
    if k >= len(poses) or k >= len(times) or times[k] <= times[j]:
        return np.zeros(3), np.zeros(3)
    dt = times[k] - times[j]
    R = poses[k, :3, :3]
    linear = R.T @ (poses[k, :3, 3] - poses[j, :3, 3]) / dt
    angular = rotation_vector(poses[j, :3, :3].T @ R) / dt
    return linear, angular


# ------------------------------------------------------------------------------------------
# Conversion
# ------------------------------------------------------------------------------------------
STORAGES = {"mcap": StoragePlugin.MCAP, "sqlite3": StoragePlugin.SQLITE3}


def convert(sequence: str | Path, output: str | Path, storage: str = "mcap", camera: str = "auto",
            first: int = 0, last: int | None = None, velodyne: bool = True, start_time: float = 1.0e9,
            grid: GridConfig | None = None, overwrite: bool = False, progress: bool = True,
            legacy_voxel_shift: bool = False, compressed: str = "") -> dict:
    """Write the bag; returns {"bag": path, "frames": n, "topics": {topic: count}, "duration_s": d}.
    `compressed` "jpeg" | "png" writes CompressedImage topics instead of raw images."""
    if storage not in STORAGES:
        raise ValueError(f"unknown storage '{storage}' (mcap, sqlite3)")
    if compressed and compressed not in COMPRESSIONS:
        raise ValueError(f"unknown compression '{compressed}' ({', '.join(COMPRESSIONS)})")
    grid = grid or GridConfig()
    seq = open_sequence(sequence, camera, first, last, velodyne)
    out = Path(output)
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"output bag {out} exists (pass --overwrite to replace it)")
        shutil.rmtree(out) if out.is_dir() else out.unlink()
    out.parent.mkdir(parents=True, exist_ok=True)

    msgs = MessageBuilder(grid)
    start_ns = int(round(start_time * 1e9))
    stamps = {f: start_ns + int(round(seq.times[f] * 1e9)) for f in seq.frames}
    world_poses = velodyne_poses(seq.poses, seq.calib["Tr"]) if seq.poses is not None else None
    counts: dict[str, int] = {}

    with Writer(out, version=9, storage_plugin=STORAGES[storage]) as writer:
        writer.set_custom_data("cigocc.source", str(seq.root.resolve()))
        writer.set_custom_data("cigocc.stamp_origin_s", repr(start_time))
        # Where TF cannot be used (no tf2_ros), the node's `camera_from_grid` parameter can be
        # filled from the bag itself: read_camera_from_grid().
        for key, frame in PROJECTION_FRAMES.items():
            T = np.linalg.inv(camera_in_base(seq.calib, key))
            writer.set_custom_data(f"{CAMERA_FROM_GRID_KEY}.{frame}", " ".join(repr(float(v)) for v in T.reshape(-1)))
        conns: dict[str, object] = {}

        def add(topic: str, msgtype: str, qos: Qos | None = None) -> None:
            conns[topic] = writer.add_connection(topic, msgtype, typestore=msgs.store,
                                                 offered_qos_profiles=[qos or bag_qos()])
            counts[topic] = 0

        def write(topic: str, stamp: int, data: bytes) -> None:
            writer.write(conns[topic], stamp, data)
            counts[topic] += 1

        add(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage", bag_qos(transient_local=True, depth=1))
        if world_poses is not None:
            add(TF_TOPIC, "tf2_msgs/msg/TFMessage", bag_qos(depth=100))
            add(ODOM_TOPIC, "nav_msgs/msg/Odometry")
        if seq.voxel_frames:
            add(OCCUPANCY_GT_TOPIC, OCCUPANCY_TYPE, bag_qos(depth=1))
        if seq.scans:
            add(CLOUD_TOPIC, "sensor_msgs/msg/PointCloud2")
        infos = {}
        for pair in seq.pairs:
            P_l, P_r = ros_projections(seq.calib[pair.projections[0]], seq.calib[pair.projections[1]])
            infos[pair.name] = {"left": P_l, "right": P_r}
            for side in ("right", "left"):
                add(pair.info_topic(side), "sensor_msgs/msg/CameraInfo")
                add(pair.image_topic(side, compressed),
                    "sensor_msgs/msg/CompressedImage" if compressed else "sensor_msgs/msg/Image")

        t0 = stamps[seq.frames[0]]
        statics = [msgs.transform(t0, BASE_FRAME, VELO_FRAME, np.eye(4))]
        statics += [msgs.transform(t0, BASE_FRAME, PROJECTION_FRAMES[k], camera_in_base(seq.calib, k))
                    for k in ("P0", "P1", "P2", "P3")]
        write(TF_STATIC_TOPIC, t0, msgs.tf_message(statics))

        for f in tqdm(seq.frames, desc=f"kitti-to-bag {seq.root.name}", unit="frame", disable=not progress):
            t = stamps[f]
            # Ground truth first: a scorer replaying the bag holds it before the node answers.
            if f in seq.voxel_frames:
                target = skitti.read_voxel_target(seq.paths.voxel_stem(f), tuple(grid.size),
                                                  legacy_voxel_shift).reshape(-1)
                write(OCCUPANCY_GT_TOPIC, t, msgs.occupancy(t, target, GT_MODEL_ID))
            if world_poses is not None:
                write(TF_TOPIC, t, msgs.tf_message([msgs.transform(t, WORLD_FRAME, BASE_FRAME, world_poses[f])]))
                lin, ang = _twist(world_poses, seq.times, f)
                write(ODOM_TOPIC, t, msgs.odometry(t, WORLD_FRAME, BASE_FRAME, world_poses[f], lin, ang))
            if f in seq.scans:
                write(CLOUD_TOPIC, t, msgs.cloud(t, VELO_FRAME, *_read_scan(seq, f)))
            for pair in seq.pairs:
                # Right before left and info before image: a stereo node triggered by the left
                # image already holds the rest of the frame.
                for side, s in (("right", 1), ("left", 0)):
                    path = seq.image_path(pair, s, f)
                    image = _read_image(path, pair.encoding)
                    if image.shape[:2] != seq.image_sizes[pair.name]:
                        raise ValueError(f"{path}: size {image.shape[:2]} differs from the sequence's "
                                         f"{seq.image_sizes[pair.name]}")
                    write(pair.info_topic(side), t, msgs.camera_info(t, pair.frame_id(side),
                                                                     seq.image_sizes[pair.name],
                                                                     infos[pair.name][side]))
                    if compressed:
                        data = msgs.compressed_image(t, pair.frame_id(side), image, pair.encoding, compressed)
                    else:
                        data = msgs.image(t, pair.frame_id(side), image, pair.encoding)
                    write(pair.image_topic(side, compressed), t, data)
    return {"bag": str(out), "storage": storage, "frames": len(seq.frames),
            "cameras": [p.name for p in seq.pairs], "topics": counts,
            "duration_s": (stamps[seq.frames[-1]] - stamps[seq.frames[0]]) / 1e9}


def _read_scan(seq: KittiSequence, f: int) -> tuple[np.ndarray, np.ndarray | None]:
    """(N, 4) float32 x, y, z, reflectance and, when labels/ has the frame, (N,) uint32 raw
    point labels (instance << 16 | semantic, as stored)."""
    points = skitti.read_scan(seq.paths.scan(f))
    if f not in seq.scan_labels:
        return points, None
    semantic, instance = skitti.read_point_labels(seq.paths.point_labels(f), len(points), seq.paths.scan(f))
    return points, (instance.astype(np.uint32) << 16) | semantic
