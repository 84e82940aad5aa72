"""`cigocc kitti-to-bag`: a KITTI odometry / SemanticKITTI sequence folder -> a rosbag2 bag
(mcap or sqlite3), written with `rosbags` alone (no ROS distribution needed).

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

import argparse
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np
import yaml
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime
from rosbags.rosbag2 import Writer
from rosbags.rosbag2.enums import StoragePlugin
from tqdm import tqdm

from ..classes import load_class_table
from ..config import GridConfig, load_experiment
from ..data import semantic_kitti as skitti
from ..data.semantic_kitti import DataFormatError
from ..geometry import camera_from_calib, split_projection, stereo_baseline
from .types import OCCUPANCY_TYPE, typestore

# ------------------------------------------------------------------------------------------
# Names (documented in docs/bags.md; bag-play / bag-eval and the launch files rely on them)
# ------------------------------------------------------------------------------------------
WORLD_FRAME = "world"  # the velodyne frame of the sequence's first frame (z up)
BASE_FRAME = "base_link"  # the vehicle; coincides with the velodyne frame in KITTI
VELO_FRAME = "velodyne"  # SemanticKITTI's grid frame
TF_TOPIC = "/tf"
TF_STATIC_TOPIC = "/tf_static"
ODOM_TOPIC = "/kitti/odom"
CLOUD_TOPIC = "/kitti/velo/pointcloud"
OCCUPANCY_GT_TOPIC = "/kitti/occupancy_gt"
GT_MODEL_ID = "ground-truth"
CAMERA_FROM_GRID_KEY = "cigocc.camera_from_grid"  # bag metadata: + ".<camera frame>"
COMPRESSED_SUFFIX = "/compressed"  # image_transport's sub-topic of a compressed image
# CompressedImage formats: compressed_image_transport's "<encoding>; <codec> compressed <encoding>"
# (OpenCV writes colour as BGR) and its default JPEG quality / PNG level.
COMPRESSIONS = {"jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), "png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3])}


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


def _read_voxel_target(stem: Path, grid: GridConfig, legacy_shift: bool = False) -> np.ndarray:
    """voxels/NNNNNN.label [+ .invalid] -> (X*Y*Z,) uint8 labels 0..19, 255 where ignored or
    invalid, in the (x, y, z) C order of SemanticOccupancy.labels. `legacy_shift`: the files
    predate the 2020-08 voxelizer fix (docs/conventions.md), move them back as the Dataset does."""
    raw = skitti.read_voxel_labels(f"{stem}.label", tuple(grid.size))
    invalid_path = Path(f"{stem}.invalid")
    invalid = skitti.read_voxel_mask(invalid_path, tuple(grid.size)) if invalid_path.is_file() else None
    if legacy_shift:
        raw = skitti.undo_legacy_shift(raw)
        invalid = None if invalid is None else skitti.undo_legacy_shift(invalid)
    return skitti.remap_labels(raw, invalid).reshape(-1)


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
    """A validated sequence folder: which frames and streams will go into the bag."""

    root: Path
    calib: dict[str, np.ndarray]
    times: np.ndarray  # (N,) s
    poses: np.ndarray | None  # (N, 4, 4) cam0 poses, or None without poses.txt
    pairs: list[CameraPair]
    frames: list[int]  # frame indices with a complete stereo pair, in order
    image_sizes: dict[str, tuple[int, int]] = field(default_factory=dict)  # pair -> (H, W)
    scans: set[int] = field(default_factory=set)  # frames with velodyne/NNNNNN.bin
    scan_labels: set[int] = field(default_factory=set)  # frames with labels/NNNNNN.label
    voxel_frames: set[int] = field(default_factory=set)  # frames with voxels/NNNNNN.label

    def image_path(self, pair: CameraPair, side: int, frame: int) -> Path:
        return self.root / pair.folders[side] / f"{frame:06d}.png"


def _indices(folder: Path, suffix: str) -> set[int]:
    if not folder.is_dir():
        return set()
    return {int(p.stem) for p in folder.glob(f"*{suffix}") if p.stem.isdigit()}


def open_sequence(root: str | Path, camera: str = "auto", first: int = 0, last: int | None = None,
                  velodyne: bool = True) -> KittiSequence:
    """Validate a sequence folder and list what a bag of frames [first, last] will hold.

    camera: "color" (image_2/3), "gray" (image_0/1), "both", or "auto" (colour if present,
    else grayscale). Frames are those whose left image exists in every chosen pair; each needs
    its right images and a times.txt line (and a poses.txt line when poses.txt exists).
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"sequence folder {root} does not exist")
    calib = skitti.read_calib(root / "calib.txt")
    times = _read_times(root / "times.txt")
    poses = skitti.read_poses(root / "poses.txt") if (root / "poses.txt").is_file() else None

    present = [k for k, p in CAMERA_PAIRS.items() if _indices(root / p.folders[0], ".png")]
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

    frames = sorted(set.intersection(*(_indices(root / p.folders[0], ".png") for p in pairs)))
    frames = [f for f in frames if f >= first and (last is None or f <= last)]
    if not frames:
        raise ValueError(f"{root}: no frames in the range [{first}, {last}]")
    seq = KittiSequence(root, calib, times, poses, pairs, frames)
    for pair in pairs:
        for side in (0, 1):
            have = _indices(root / pair.folders[side], ".png")
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
        seq.scans = _indices(root / "velodyne", ".bin") & set(frames)
        seq.scan_labels = _indices(root / "labels", ".label") & seq.scans
    seq.voxel_frames = _indices(root / "voxels", ".label") & set(frames)
    return seq


# ------------------------------------------------------------------------------------------
# Geometry helpers (single 4x4 transforms per frame)
# ------------------------------------------------------------------------------------------
def _orthonormal(R: np.ndarray) -> np.ndarray:
    # KITTI's Tr and poses are rounded: project onto SO(3) so the quaternion is exact.
    U, _, Vt = np.linalg.svd(R)
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    return R


def quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion (x, y, z, w), w >= 0."""
    m = _orthonormal(np.asarray(R, dtype=np.float64))
    t = np.trace(m)
    # Branch on the largest of w, x, y, z for numerical stability.
    diag = np.array([t, m[0, 0], m[1, 1], m[2, 2]])
    k = int(np.argmax(diag))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def _rotation_vector(R: np.ndarray) -> np.ndarray:
    """Log map of a small rotation (3, 3) -> axis * angle (3,)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    vee = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    return vee if angle < 1e-9 else vee * (angle / np.sin(angle))


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


# ------------------------------------------------------------------------------------------
# Message construction (rosbags dataclasses)
# ------------------------------------------------------------------------------------------
class _Messages:
    """Builds serialized CDR messages of the sequence with the rosbags type store."""

    def __init__(self, grid: GridConfig):
        self.store = typestore()
        self.T = self.store.types
        self.grid = grid
        table = load_class_table()
        self.class_names = list(table.names)
        Color = self.T["std_msgs/msg/ColorRGBA"]
        self.class_colors = [Color(r=float(c[0]) / 255, g=float(c[1]) / 255, b=float(c[2]) / 255, a=1.0)
                             for c in table.colors_rgb]

    def ser(self, msg) -> bytes:
        return self.store.serialize_cdr(msg, msg.__msgtype__)

    def header(self, stamp_ns: int, frame_id: str):
        Time = self.T["builtin_interfaces/msg/Time"]
        return self.T["std_msgs/msg/Header"](stamp=Time(sec=stamp_ns // 10**9, nanosec=stamp_ns % 10**9),
                                             frame_id=frame_id)

    def pose(self, T: np.ndarray):
        q = quaternion_xyzw(T[:3, :3])
        P = self.T["geometry_msgs/msg/Point"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3]))
        Q = self.T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
        return self.T["geometry_msgs/msg/Pose"](position=P, orientation=Q)

    def transform(self, stamp_ns: int, parent: str, child: str, T: np.ndarray):
        q = quaternion_xyzw(T[:3, :3])
        V = self.T["geometry_msgs/msg/Vector3"](x=float(T[0, 3]), y=float(T[1, 3]), z=float(T[2, 3]))
        Q = self.T["geometry_msgs/msg/Quaternion"](x=q[0], y=q[1], z=q[2], w=q[3])
        tf = self.T["geometry_msgs/msg/Transform"](translation=V, rotation=Q)
        return self.T["geometry_msgs/msg/TransformStamped"](header=self.header(stamp_ns, parent),
                                                            child_frame_id=child, transform=tf)

    def tf_message(self, transforms: list) -> bytes:
        return self.ser(self.T["tf2_msgs/msg/TFMessage"](transforms=transforms))

    def image(self, stamp_ns: int, frame_id: str, image: np.ndarray, encoding: str) -> bytes:
        h, w = image.shape[:2]
        data = np.ascontiguousarray(image).reshape(-1)
        msg = self.T["sensor_msgs/msg/Image"](header=self.header(stamp_ns, frame_id), height=h, width=w,
                                              encoding=encoding, is_bigendian=0, step=data.size // h, data=data)
        return self.ser(msg)

    def compressed_image(self, stamp_ns: int, frame_id: str, image: np.ndarray, encoding: str, codec: str) -> bytes:
        """CompressedImage of a bgr8 / mono8 `image` as compressed_image_transport writes it."""
        ext, flags = COMPRESSIONS[codec]
        ok, buf = cv2.imencode(ext, np.ascontiguousarray(image), flags)
        if not ok:
            raise ValueError(f"OpenCV could not {codec}-encode a {image.shape} image")
        msg = self.T["sensor_msgs/msg/CompressedImage"](header=self.header(stamp_ns, frame_id),
                                                        format=f"{encoding}; {codec} compressed {encoding}",
                                                        data=buf.reshape(-1))
        return self.ser(msg)

    def camera_info(self, stamp_ns: int, frame_id: str, size: tuple[int, int], P: np.ndarray) -> bytes:
        roi = self.T["sensor_msgs/msg/RegionOfInterest"](x_offset=0, y_offset=0, height=0, width=0,
                                                         do_rectify=False)
        msg = self.T["sensor_msgs/msg/CameraInfo"](
            header=self.header(stamp_ns, frame_id), height=size[0], width=size[1],
            distortion_model="plumb_bob", d=np.zeros(5), k=P[:, :3].reshape(-1).copy(),
            r=np.eye(3).reshape(-1), p=P.reshape(-1).copy(), binning_x=0, binning_y=0, roi=roi)
        return self.ser(msg)

    def cloud(self, stamp_ns: int, points: np.ndarray, labels: np.ndarray | None) -> bytes:
        """points (N, 4) float32 x, y, z, reflectance in the velodyne frame; labels (N,) uint32."""
        F = self.T["sensor_msgs/msg/PointField"]
        names = ["x", "y", "z", "intensity"] + (["label"] if labels is not None else [])
        dtype = np.dtype([(n, "<f4") for n in names[:4]] + ([("label", "<u4")] if labels is not None else []))
        rec = np.empty(len(points), dtype=dtype)
        for i, n in enumerate(names[:4]):
            rec[n] = points[:, i]
        if labels is not None:
            rec["label"] = labels
        fields = [F(name=n, offset=dtype.fields[n][1], datatype=F.UINT32 if n == "label" else F.FLOAT32, count=1)
                  for n in names]
        msg = self.T["sensor_msgs/msg/PointCloud2"](
            header=self.header(stamp_ns, VELO_FRAME), height=1, width=len(points), fields=fields,
            is_bigendian=False, point_step=dtype.itemsize, row_step=dtype.itemsize * len(points),
            data=rec.view(np.uint8).reshape(-1), is_dense=True)
        return self.ser(msg)

    def odometry(self, stamp_ns: int, T: np.ndarray, linear: np.ndarray, angular: np.ndarray) -> bytes:
        T_ = self.T
        cov = np.zeros(36)
        pose = T_["geometry_msgs/msg/PoseWithCovariance"](pose=self.pose(T), covariance=cov)
        twist = T_["geometry_msgs/msg/Twist"](linear=T_["geometry_msgs/msg/Vector3"](*map(float, linear)),
                                              angular=T_["geometry_msgs/msg/Vector3"](*map(float, angular)))
        msg = T_["nav_msgs/msg/Odometry"](header=self.header(stamp_ns, WORLD_FRAME), child_frame_id=BASE_FRAME,
                                          pose=pose,
                                          twist=T_["geometry_msgs/msg/TwistWithCovariance"](twist=twist,
                                                                                           covariance=cov.copy()))
        return self.ser(msg)

    def occupancy(self, stamp_ns: int, labels: np.ndarray) -> bytes:
        """labels (X*Y*Z,) uint8 in the message's (x, y, z) C order."""
        g = self.grid
        origin = np.eye(4)
        origin[:3, 3] = g.origin
        msg = self.T[OCCUPANCY_TYPE](
            header=self.header(stamp_ns, g.frame_id), origin=self.pose(origin), voxel_size=float(g.voxel_size),
            size_x=g.size[0], size_y=g.size[1], size_z=g.size[2], labels=labels,
            confidence=np.zeros(0, dtype=np.uint8), class_names=self.class_names,
            class_colors=self.class_colors, model_id=GT_MODEL_ID)
        return self.ser(msg)


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
    angular = _rotation_vector(poses[j, :3, :3].T @ R) / dt
    return linear, angular


def _qos(reliable: bool = True, transient_local: bool = False, depth: int = 10) -> Qos:
    zero = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False)


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

    msgs = _Messages(grid)
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
                                                 offered_qos_profiles=[qos or _qos()])
            counts[topic] = 0

        def write(topic: str, stamp: int, data: bytes) -> None:
            writer.write(conns[topic], stamp, data)
            counts[topic] += 1

        add(TF_STATIC_TOPIC, "tf2_msgs/msg/TFMessage", _qos(transient_local=True, depth=1))
        if world_poses is not None:
            add(TF_TOPIC, "tf2_msgs/msg/TFMessage", _qos(depth=100))
            add(ODOM_TOPIC, "nav_msgs/msg/Odometry")
        if seq.voxel_frames:
            add(OCCUPANCY_GT_TOPIC, OCCUPANCY_TYPE, _qos(depth=1))
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
                target = _read_voxel_target(seq.root / "voxels" / f"{f:06d}", grid, legacy_voxel_shift)
                write(OCCUPANCY_GT_TOPIC, t, msgs.occupancy(t, target))
            if world_poses is not None:
                write(TF_TOPIC, t, msgs.tf_message([msgs.transform(t, WORLD_FRAME, BASE_FRAME, world_poses[f])]))
                lin, ang = _twist(world_poses, seq.times, f)
                write(ODOM_TOPIC, t, msgs.odometry(t, world_poses[f], lin, ang))
            if f in seq.scans:
                write(CLOUD_TOPIC, t, msgs.cloud(t, *_read_scan(seq, f)))
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
    points = skitti.read_scan(seq.root / "velodyne" / f"{f:06d}.bin")
    if f not in seq.scan_labels:
        return points, None
    semantic, instance = skitti.read_point_labels(seq.root / "labels" / f"{f:06d}.label", len(points))
    return points, (instance.astype(np.uint32) << 16) | semantic


# ------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------
def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sequence", help="sequence folder (calib.txt, times.txt, image_0..3/, [poses.txt, velodyne/, "
                                    "labels/, voxels/])")
    p.add_argument("output", help="bag folder to create (must not exist unless --overwrite)")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="rosbag2 storage plugin")
    p.add_argument("--camera", choices=["auto", "color", "gray", "both"], default="auto",
                   help="stereo pair(s) to write; auto = colour (image_2/3) if present, else grayscale")
    p.add_argument("--first", type=int, default=0, help="first frame index")
    p.add_argument("--last", type=int, default=None, help="last frame index (inclusive)")
    p.add_argument("--no-velodyne", action="store_true", help="leave the LiDAR scans out")
    p.add_argument("--start-time", type=float, default=1.0e9,
                   help="stamp of times.txt's 0 in seconds since the epoch (KITTI odometry has no absolute "
                        "time; a non-zero origin keeps ROS from reading stamps as 'unset')")
    p.add_argument("--config", default=None,
                   help="experiment config (name or YAML) whose grid the ground truth uses; default GridConfig()")
    p.add_argument("--legacy-voxel-shift", action="store_true",
                   help="voxel files released before 2020-08: undo their one-voxel shift (docs/conventions.md)")
    p.add_argument("--compressed", choices=sorted(COMPRESSIONS), default="",
                   help="write sensor_msgs/CompressedImage on <image topic>/compressed instead of raw images")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    grid = load_experiment(args.config).grid if args.config else GridConfig()
    try:
        summary = convert(args.sequence, args.output, storage=args.storage, camera=args.camera, first=args.first,
                          last=args.last, velodyne=not args.no_velodyne, start_time=args.start_time, grid=grid,
                          overwrite=args.overwrite, progress=not args.quiet,
                          legacy_voxel_shift=args.legacy_voxel_shift, compressed=args.compressed)
    except (OSError, ValueError) as e:
        print(f"kitti-to-bag: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {summary['bag']} ({summary['storage']}): {summary['frames']} frames, "
          f"{summary['duration_s']:.2f} s, cameras {', '.join(summary['cameras'])}")
    for topic, n in summary["topics"].items():
        print(f"  {topic}: {n}")
    return 0
