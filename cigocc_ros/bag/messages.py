"""Messages of the bag tools, both ways: building serialized CDR messages for a bag writer
(MessageBuilder, bag_qos), and reading what a replay sees without deserializing it all
(cdr_header_stamp, decode_occupancy, ros_message_class). The type store is types.py."""
from __future__ import annotations

import importlib
import struct
from dataclasses import dataclass

import cv2
import numpy as np
from rosbags.interfaces import Qos, QosDurability, QosHistory, QosLiveliness, QosReliability, QosTime

from ..classes import load_class_table
from ..config import GridConfig
from ..geometry import quaternion_xyzw
from .types import OCCUPANCY_TYPE, typestore

# CompressedImage formats: compressed_image_transport's "<encoding>; <codec> compressed <encoding>"
# (OpenCV writes colour as BGR) and its default JPEG quality / PNG level.
COMPRESSIONS = {"jpeg": (".jpg", [cv2.IMWRITE_JPEG_QUALITY, 95]), "png": (".png", [cv2.IMWRITE_PNG_COMPRESSION, 3])}

VELO_FRAME = "velodyne"  # SemanticKITTI's grid frame


class MessageBuilder:
    """Serialized CDR messages (rosbags dataclasses of the Kilted type store + SemanticOccupancy)
    for a bag writer; frame ids and stamps are the caller's."""

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

    def cloud(self, stamp_ns: int, frame_id: str, points: np.ndarray, labels: np.ndarray | None) -> bytes:
        """points (N, 4) float32 x, y, z, reflectance in `frame_id`; labels (N,) uint32."""
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
            header=self.header(stamp_ns, frame_id), height=1, width=len(points), fields=fields,
            is_bigendian=False, point_step=dtype.itemsize, row_step=dtype.itemsize * len(points),
            data=rec.view(np.uint8).reshape(-1), is_dense=True)
        return self.ser(msg)

    def odometry(self, stamp_ns: int, parent: str, child: str, T: np.ndarray, linear: np.ndarray,
                 angular: np.ndarray) -> bytes:
        """Pose T (4, 4) of `child` in `parent`, body-frame twist (m/s, rad/s)."""
        T_ = self.T
        cov = np.zeros(36)
        pose = T_["geometry_msgs/msg/PoseWithCovariance"](pose=self.pose(T), covariance=cov)
        twist = T_["geometry_msgs/msg/Twist"](linear=T_["geometry_msgs/msg/Vector3"](*map(float, linear)),
                                              angular=T_["geometry_msgs/msg/Vector3"](*map(float, angular)))
        msg = T_["nav_msgs/msg/Odometry"](header=self.header(stamp_ns, parent), child_frame_id=child,
                                          pose=pose,
                                          twist=T_["geometry_msgs/msg/TwistWithCovariance"](twist=twist,
                                                                                           covariance=cov.copy()))
        return self.ser(msg)

    def occupancy(self, stamp_ns: int, labels: np.ndarray, model_id: str) -> bytes:
        """labels (X*Y*Z,) uint8 in the message's (x, y, z) C order, on the builder's grid."""
        g = self.grid
        origin = np.eye(4)
        origin[:3, 3] = g.origin
        msg = self.T[OCCUPANCY_TYPE](
            header=self.header(stamp_ns, g.frame_id), origin=self.pose(origin), voxel_size=float(g.voxel_size),
            size_x=g.size[0], size_y=g.size[1], size_z=g.size[2], labels=labels,
            confidence=np.zeros(0, dtype=np.uint8), class_names=self.class_names,
            class_colors=self.class_colors, model_id=model_id)
        return self.ser(msg)


def bag_qos(reliable: bool = True, transient_local: bool = False, depth: int = 10) -> Qos:
    """The offered QoS recorded for a bag connection (what a replay re-offers)."""
    zero = QosTime(sec=0, nsec=0)
    return Qos(history=QosHistory.KEEP_LAST, depth=depth,
               reliability=QosReliability.RELIABLE if reliable else QosReliability.BEST_EFFORT,
               durability=QosDurability.TRANSIENT_LOCAL if transient_local else QosDurability.VOLATILE,
               deadline=zero, lifespan=zero, liveliness=QosLiveliness.AUTOMATIC,
               liveliness_lease_duration=zero, avoid_ros_namespace_conventions=False)


def cdr_header_stamp(raw: bytes | memoryview) -> int:
    """Header stamp (ns) of a CDR-serialized message whose first field is std_msgs/Header."""
    if len(raw) < 12:
        raise ValueError(f"CDR message of {len(raw)} bytes is too short to hold a header stamp")
    # Byte 1 of the encapsulation header: 1 = little-endian CDR, 0 = big-endian.
    endian = "<" if raw[1] & 1 else ">"
    sec, nanosec = struct.unpack_from(endian + "iI", raw, 4)
    return sec * 1_000_000_000 + nanosec


def ros_message_class(msgtype: str):
    """'pkg/msg/Name' -> the rclpy message class (ImportError if its package is not installed)."""
    pkg, kind, name = msgtype.split("/")
    module = importlib.import_module(f"{pkg}.{kind}")
    try:
        return getattr(module, name)
    except AttributeError:
        raise ImportError(f"{pkg}.{kind} has no message {name}") from None


@dataclass
class OccupancyGrid:
    """The parts of a SemanticOccupancy message a scorer needs."""

    stamp: int  # header stamp, ns
    labels: np.ndarray  # (X*Y*Z,) uint8
    size: tuple[int, int, int]
    frame_id: str
    confidence: np.ndarray | None = None  # (X*Y*Z,) uint8 when the node publishes it


def decode_occupancy(raw: bytes) -> OccupancyGrid:
    """CDR SemanticOccupancy -> its stamp (ns), flat labels, (X, Y, Z) size and frame id."""
    msg = typestore().deserialize_cdr(raw, OCCUPANCY_TYPE)
    size = (int(msg.size_x), int(msg.size_y), int(msg.size_z))
    labels = np.asarray(msg.labels, dtype=np.uint8)
    if labels.size != size[0] * size[1] * size[2]:
        raise ValueError(f"SemanticOccupancy at stamp {msg.header.stamp.sec}.{msg.header.stamp.nanosec:09d} has "
                         f"{labels.size} labels for a {size} grid")
    conf = np.asarray(msg.confidence, dtype=np.uint8)
    return OccupancyGrid(msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec, labels, size, msg.header.frame_id,
                         conf if conf.size == labels.size else None)
