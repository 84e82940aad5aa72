"""The node's pieces that need no DDS: newest-frame queue and worker, camera_info checks,
diagnostics status."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest
from diagnostic_msgs.msg import DiagnosticStatus
from sensor_msgs.msg import CameraInfo, Image

from cigocc_ros.ros import frame_input as fi
from cigocc_ros.ros.diagnostics import NodeStats, build_status
from cigocc_ros.ros.worker import FrameQueue, Worker

KITTI_P0 = [718.856, 0.0, 607.1928, 0.0, 0.0, 718.856, 185.2157, 0.0, 0.0, 0.0, 1.0, 0.0]
KITTI_P1 = [718.856, 0.0, 607.1928, -386.1448, 0.0, 718.856, 185.2157, 0.0, 0.0, 0.0, 1.0, 0.0]


def info(p=KITTI_P0, w=1241, h=376):
    return CameraInfo(width=w, height=h, p=[float(v) for v in p], k=[float(v) for v in np.reshape(p, (3, 4))[:, :3].ravel()])


def test_queue_keeps_newest_and_counts_drops():
    q = FrameQueue(2)
    assert q.put(1) is None and q.put(2) is None
    assert q.put(3) == 1 and q.put(4) == 2
    assert q.dropped == 2 and q.accepted == 4 and len(q) == 2
    assert q.get(0) == 3 and q.get(0) == 4 and q.get(0.01) is None
    with pytest.raises(ValueError):
        FrameQueue(0)


def test_worker_survives_errors_and_never_blocks_the_producer():
    q = FrameQueue(1)
    done, errors = [], []
    gate = threading.Event()

    def process(item):
        gate.wait(2)
        if item == "bad":
            raise ValueError("bad frame")
        done.append(item)

    w = Worker(q, process, lambda item, e: errors.append((item, str(e))))
    w.start()
    q.put("bad")
    time.sleep(0.05)  # the worker is now blocked inside process("bad")
    t0 = time.perf_counter()
    for k in range(100):  # a flood while the worker is busy: put() returns at once
        q.put(k)
    assert time.perf_counter() - t0 < 0.05
    gate.set()
    deadline = time.time() + 2
    while not done and time.time() < deadline:
        time.sleep(0.01)
    w.stop()
    assert errors == [("bad", "bad frame")]
    assert done == [99]  # only the newest frame of the flood was processed
    assert q.dropped == 99 and not w.alive


def test_intrinsics_from_projection_and_checks():
    K = fi.intrinsics(info(), "left/camera_info")
    assert K[0, 0] == pytest.approx(718.856) and K[1, 2] == pytest.approx(185.2157)
    bad = info()
    bad.p[0] = float("nan")
    with pytest.raises(fi.FrameError, match="NaN") as e:
        fi.intrinsics(bad, "left/camera_info")
    assert e.value.kind == "camera_info_nan"
    bad_k = info()
    bad_k.k[4] = float("inf")  # P is fine but K is not: still refused
    with pytest.raises(fi.FrameError, match=r"NaN or inf \(K = "):
        fi.intrinsics(bad_k, "left/camera_info")
    zero = CameraInfo(width=10, height=10)
    with pytest.raises(fi.FrameError, match="no usable intrinsics"):
        fi.intrinsics(zero, "left/camera_info")
    only_k = CameraInfo(width=10, height=10, k=[500.0, 0.0, 5.0, 0.0, 500.0, 5.0, 0.0, 0.0, 1.0])
    assert fi.intrinsics(only_k, "x")[0, 0] == 500.0  # P unset: K is used


def test_size_check_names_both_topics():
    img = Image(width=1241, height=375)
    with pytest.raises(fi.FrameError, match="1241x375 but right/camera_info says 1241x376"):
        fi.check_size(img, info(), "right/image", "right/camera_info")
    with pytest.raises(fi.FrameError, match="no image size"):
        fi.check_size(img, info(w=0, h=0), "left/image", "left/camera_info")


def test_baseline_from_projections():
    assert fi.baseline(info(KITTI_P0), info(KITTI_P1), "r") == pytest.approx(386.1448 / 718.856)
    with pytest.raises(fi.FrameError, match="baseline"):
        fi.baseline(info(KITTI_P0), info(KITTI_P0), "right/camera_info")
    assert fi.matrix_from_parameter(()) is None
    assert fi.matrix_from_parameter(tuple(np.eye(4).ravel())).shape == (4, 4)


def test_diagnostics_warn_on_stall_and_latency():
    stats = NodeStats()
    snap = stats.snapshot()
    snap["seconds_since_input"] = 5.0
    st = build_status(snap, 0, "n", "cpu", stall_timeout=2.0, max_latency=1.0)
    assert st.level == DiagnosticStatus.WARN and "no paired frame yet" in st.message
    for _ in range(10):
        stats.frame_in()
        stats.frame_out(latency_s=0.2, forward_s=0.1)
    st = build_status(stats.snapshot(), 3, "n", "cpu", stall_timeout=2.0, max_latency=1.0)
    values = {kv.key: kv.value for kv in st.values}
    assert st.level == DiagnosticStatus.OK, st.message
    assert values["frames_dropped"] == "3" and values["latency_p50_ms"] == "200.0" and values["device"] == "cpu"
    st = build_status(stats.snapshot(), 3, "n", "cpu", stall_timeout=2.0, max_latency=0.1)
    assert st.level == DiagnosticStatus.WARN and "latency p95" in st.message
    snap = stats.snapshot()
    snap["seconds_since_input"] = 3.0
    assert "input stalled" in build_status(snap, 0, "n", "cpu", 2.0, 1.0).message


def test_compressed_frames_are_decoded_and_size_checked():
    import array

    import cv2
    from sensor_msgs.msg import CompressedImage

    rgb = np.random.default_rng(0).integers(0, 256, (376, 1241, 3), dtype=np.uint8)
    ok, buf = cv2.imencode(".png", np.ascontiguousarray(rgb[:, :, ::-1]))
    msg = CompressedImage(format="bgr8; png compressed bgr8")
    msg.data = array.array("B", buf.tobytes())
    assert np.array_equal(fi.to_rgb(msg, info(), "left/image/compressed", "left/camera_info"), rgb)
    with pytest.raises(fi.FrameError, match="left/image/compressed: image is 1241x376 but left/camera_info says 1241x370"):
        fi.to_rgb(msg, info(h=370), "left/image/compressed", "left/camera_info")
    msg.data = array.array("B", b"\x89PNG\r\n\x1a\n" + bytes(100))
    with pytest.raises(fi.FrameError, match="left/image/compressed: cannot decode") as e:
        fi.to_rgb(msg, info(), "left/image/compressed", "left/camera_info")
    assert e.value.kind == "image_decode"
