"""Serialise a visualization_msgs/MarkerArray of CUBE_LISTs straight to CDR bytes with NumPy.

Filling `Marker.points` through rclpy needs one `geometry_msgs/Point` object per cube (a Python
loop over voxels, ~100 ms for 50k cubes); rclpy publishers also accept already-serialised bytes,
so the point arrays are written as raw float64 blocks instead. The layout is ROS 2's (Kilted,
also Jazzy) Marker definition in little-endian XCDR1, the encoding rmw_fastrtps uses;
test_outputs.py checks it by deserialising with rclpy.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CUBE_LIST = 6
ADD = 0
DELETEALL = 3


@dataclass
class MarkerSpec:
    """One marker: `points` (N, 3) float64 in the marker's pose frame, empty for DELETEALL."""

    ns: str
    id: int
    type: int
    action: int
    pose: tuple[float, ...] = (0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 1.0)  # x y z qx qy qz qw
    scale: tuple[float, float, float] = (1.0, 1.0, 1.0)
    color: tuple[float, float, float, float] = (1.0, 1.0, 1.0, 1.0)  # r g b a in [0, 1]
    points: np.ndarray | None = None


class _Writer:
    """Little-endian CDR with alignment relative to the end of the 4-byte encapsulation header."""

    def __init__(self) -> None:
        self.parts: list[bytes] = [b"\x00\x01\x00\x00"]  # CDR_LE
        self.pos = 0

    def _put(self, b: bytes, align: int) -> None:
        pad = (-self.pos) % align
        if pad:
            self.parts.append(b"\x00" * pad)
        self.parts.append(b)
        self.pos += pad + len(b)

    def u32(self, v: int) -> None:
        self._put(int(v).to_bytes(4, "little", signed=False), 4)

    def i32(self, v: int) -> None:
        self._put(int(v).to_bytes(4, "little", signed=True), 4)

    def boolean(self, v: bool) -> None:
        self._put(b"\x01" if v else b"\x00", 1)

    def f64s(self, values) -> None:
        self._put(np.asarray(values, dtype="<f8").tobytes(), 8)

    def f32s(self, values) -> None:
        self._put(np.asarray(values, dtype="<f4").tobytes(), 4)

    def string(self, s: str) -> None:
        b = s.encode("utf-8") + b"\x00"
        self.u32(len(b))
        self._put(b, 1)

    def header(self, sec: int, nanosec: int, frame_id: str) -> None:
        self.i32(sec)
        self.u32(nanosec)
        self.string(frame_id)

    def bytes(self) -> bytes:
        return b"".join(self.parts)


def serialize_marker_array(markers: list[MarkerSpec], sec: int, nanosec: int, frame_id: str) -> bytes:
    """CDR bytes of a MarkerArray whose markers all carry header (sec, nanosec, frame_id)."""
    w = _Writer()
    w.u32(len(markers))
    for m in markers:
        w.header(sec, nanosec, frame_id)
        w.string(m.ns)
        w.i32(m.id)
        w.i32(m.type)
        w.i32(m.action)
        w.f64s(m.pose)
        w.f64s(m.scale)
        w.f32s(m.color)
        w.i32(0)  # lifetime.sec: 0 = forever (the next array's DELETEALL clears it)
        w.u32(0)  # lifetime.nanosec
        w.boolean(False)  # frame_locked
        pts = np.zeros((0, 3)) if m.points is None else m.points
        w.u32(len(pts))
        if len(pts):
            w.f64s(pts)
        w.u32(0)  # colors: one colour per marker
        w.string("")  # texture_resource
        w.header(0, 0, "")  # texture (sensor_msgs/CompressedImage).header
        w.string("")  # texture.format
        w.u32(0)  # texture.data
        w.u32(0)  # uv_coordinates
        w.string("")  # text
        w.string("")  # mesh_resource
        w.string("")  # mesh_file.filename
        w.u32(0)  # mesh_file.data
        w.boolean(False)  # mesh_use_embedded_materials
    return w.bytes()
