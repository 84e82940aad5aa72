"""cigocc_msgs/SemanticOccupancy with every field set crosses from one OS process to another
over real DDS and arrives intact."""
from __future__ import annotations

import subprocess
import time

import numpy as np
import rclpy
from cigocc_msgs.msg import SemanticOccupancy
from rclpy.qos import QoSDurabilityPolicy, QoSProfile, QoSReliabilityPolicy
from std_msgs.msg import ColorRGBA

from cigocc_ros.child_process import die_with_parent

LISTENER = r"""
import sys, numpy as np, rclpy
from rclpy.qos import QoSProfile, QoSReliabilityPolicy, QoSDurabilityPolicy
from cigocc_msgs.msg import SemanticOccupancy
rclpy.init()
node = rclpy.create_node("roundtrip_listener")
got = []
qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                 durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
node.create_subscription(SemanticOccupancy, "occupancy", got.append, qos)
print("ready", flush=True)
end = node.get_clock().now().nanoseconds + 60e9
while not got and node.get_clock().now().nanoseconds < end:
    rclpy.spin_once(node, timeout_sec=0.1)
if not got:
    sys.exit("no message")
m = got[0]
np.savez(sys.argv[1], labels=np.asarray(m.labels, dtype=np.uint8), confidence=np.asarray(m.confidence, dtype=np.uint8),
         sizes=np.array([m.size_x, m.size_y, m.size_z]), voxel_size=m.voxel_size,
         stamp=np.array([m.header.stamp.sec, m.header.stamp.nanosec]), frame_id=m.header.frame_id,
         origin=np.array([m.origin.position.x, m.origin.position.y, m.origin.position.z,
                          m.origin.orientation.x, m.origin.orientation.y, m.origin.orientation.z, m.origin.orientation.w]),
         class_names=np.array(list(m.class_names)),
         colors=np.array([[c.r, c.g, c.b, c.a] for c in m.class_colors]), model_id=m.model_id)
"""


def _message(rng: np.random.Generator) -> SemanticOccupancy:
    m = SemanticOccupancy()
    m.header.stamp.sec, m.header.stamp.nanosec = 1234, 567_000_000
    m.header.frame_id = "velodyne"
    m.origin.position.x, m.origin.position.y, m.origin.position.z = 0.0, -25.6, -2.0
    m.origin.orientation.z, m.origin.orientation.w = np.sin(0.1), np.cos(0.1)
    m.voxel_size = 0.2
    m.size_x, m.size_y, m.size_z = 256, 256, 32
    n = 256 * 256 * 32
    m.labels = rng.integers(0, 20, n, dtype=np.uint8)
    m.confidence = rng.integers(0, 256, n, dtype=np.uint8)
    m.class_names = [f"class{i}" for i in range(20)]
    m.class_colors = [ColorRGBA(r=i / 20, g=0.5, b=1 - i / 20, a=1.0) for i in range(20)]
    m.model_id = "lite@deadbeef"
    return m


def test_semantic_occupancy_crosses_processes(tmp_path, ros_env, python_exe):
    out = tmp_path / "received.npz"
    listener = subprocess.Popen(die_with_parent([python_exe, "-c", LISTENER, str(out)]), env=ros_env,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert listener.stdout.readline().strip() == "ready", listener.stderr.read()
        sent = _message(np.random.default_rng(0))
        ctx = rclpy.Context()
        rclpy.init(context=ctx)
        try:
            node = rclpy.create_node("roundtrip_talker", context=ctx)
            qos = QoSProfile(depth=1, reliability=QoSReliabilityPolicy.RELIABLE,
                             durability=QoSDurabilityPolicy.TRANSIENT_LOCAL)
            pub = node.create_publisher(SemanticOccupancy, "occupancy", qos)
            pub.publish(sent)
            deadline = time.monotonic() + 60
            while listener.poll() is None and time.monotonic() < deadline:
                time.sleep(0.1)
            node.destroy_node()
        finally:
            rclpy.shutdown(context=ctx)
        assert listener.wait(timeout=10) == 0, listener.stderr.read()
    finally:
        if listener.poll() is None:
            listener.kill()
    got = np.load(out)
    np.testing.assert_array_equal(got["labels"], np.asarray(sent.labels, dtype=np.uint8))
    np.testing.assert_array_equal(got["confidence"], np.asarray(sent.confidence, dtype=np.uint8))
    assert got["labels"].size == 256 * 256 * 32
    assert got["sizes"].tolist() == [256, 256, 32]
    assert np.isclose(got["voxel_size"], 0.2)
    assert got["stamp"].tolist() == [1234, 567_000_000]
    assert str(got["frame_id"]) == "velodyne"
    np.testing.assert_allclose(got["origin"], [0.0, -25.6, -2.0, 0, 0, np.sin(0.1), np.cos(0.1)], atol=1e-12)
    assert got["class_names"].tolist() == [f"class{i}" for i in range(20)]
    np.testing.assert_allclose(got["colors"][:, 0], np.arange(20) / 20, atol=1e-6)
    assert str(got["model_id"]) == "lite@deadbeef"


def test_label_constants_are_documented_values():
    assert SemanticOccupancy.LABEL_FREE == 0
    assert SemanticOccupancy.LABEL_UNKNOWN == 255
