"""The node's pieces that need no DDS: newest-frame queue and worker, camera_info checks,
diagnostics status."""
from __future__ import annotations

import threading

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
    inside, gate, finished = threading.Event(), threading.Event(), threading.Event()

    def process(item):
        inside.set()
        assert gate.wait(60), "the test never opened the gate"
        if item == "bad":
            raise ValueError("bad frame")
        done.append(item)
        finished.set()

    w = Worker(q, process, lambda item, e: errors.append((item, str(e))))
    w.start()
    q.put("bad")
    assert inside.wait(30), "the worker never took the item"  # blocked inside process("bad") now
    for k in range(100):  # a flood while the worker is busy: put() returns at once
        q.put(k)
    # The flood went in while the worker was still inside process("bad") (the gate is shut):
    # put() never waited for it. A put() that did would hang here until the test's timeout.
    assert not gate.is_set() and not errors and not done and len(q) == 1
    gate.set()
    assert finished.wait(30), "the newest frame was never processed"
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


# KITTI sequence 00's colour cameras: P[1, 3] and P[2, 3] are not zero.
KITTI_P2 = [718.856, 0.0, 607.1928, 45.38225, 0.0, 718.856, 185.2157, -0.1130887, 0.0, 0.0, 1.0, 0.003779761]
KITTI_P3 = [718.856, 0.0, 607.1928, -337.2877, 0.0, 718.856, 185.2157, 2.369057, 0.0, 0.0, 1.0, 0.004915215]


def test_baseline_from_projections():
    assert fi.baseline(info(KITTI_P0), info(KITTI_P1), "r") == pytest.approx(386.1448 / 718.856)
    assert fi.baseline(info(KITTI_P2), info(KITTI_P3), "r") == pytest.approx(0.5333, abs=1e-4)
    with pytest.raises(fi.FrameError, match="baseline"):
        fi.baseline(info(KITTI_P0), info(KITTI_P0), "right/camera_info")


def with_p03(p, value):
    p = list(p)
    p[3] = value
    return p


@pytest.mark.parametrize("right, shown", [
    # P[0, 3] copied from the left camera: P's other columns leave 0.96 mm, which once passed
    # as a positive baseline and silently emptied the stereo depth (the frame went out as mono).
    (with_p03(KITTI_P3, KITTI_P2[3]), "0.000959"),
    (with_p03(KITTI_P1, 386.1448), "-0.537"),  # the sign of the ROS convention flipped
    (with_p03(KITTI_P1, -718.856 * 2.5), "2.5"),  # P[0, 3] in other units: an absurd rig
    (with_p03(KITTI_P1, float("nan")), "nan"),
])
def test_zero_negative_and_absurd_baselines_are_refused_naming_the_value(right, shown):
    left = KITTI_P2 if right[7] else KITTI_P0
    with pytest.raises(fi.FrameError) as e:
        fi.baseline(info(left), info(right), "/right/camera_info")
    assert e.value.kind == "stereo_baseline"
    assert str(e.value).startswith(f"/right/camera_info: stereo baseline {shown}")
    assert f"outside [{fi.MIN_BASELINE:g}, {fi.MAX_BASELINE:g}] m" in str(e.value)
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


def test_latency_warning_covers_a_time_window_not_the_last_100_frames():
    """One slow frame (5 s) among fast ones: WARN while it is in the last LATENCY_WINDOW_S
    seconds, OK once it is older, however few frames came since (a 100-frame window at 1 Hz
    kept it for 100 s)."""
    now = [1000.0]
    stats = NodeStats(clock=lambda: now[0])
    stats.frame_in()
    stats.frame_out(latency_s=5.0, forward_s=4.0)
    for _ in range(5):
        now[0] += 1.0
        stats.frame_in()
        stats.frame_out(latency_s=0.2, forward_s=0.1)
    snap = stats.snapshot()
    assert snap["latency_p95_ms"] > 2000  # the slow frame is 5 s old: still in the window
    assert build_status(snap, 0, "n", "cpu", 2.0, max_latency=2.0).level == DiagnosticStatus.WARN
    for _ in range(10):  # 10 more frames at 1 Hz: the slow one is now 15 s old
        now[0] += 1.0
        stats.frame_in()
        stats.frame_out(latency_s=0.2, forward_s=0.1)
    snap = stats.snapshot()
    assert snap["latency_p95_ms"] == pytest.approx(200.0)
    assert build_status(snap, 0, "n", "cpu", 2.0, max_latency=2.0).level == DiagnosticStatus.OK
    now[0] += 60.0  # no output for a minute: no latency figure, no latency warning
    snap = stats.snapshot()
    assert np.isnan(snap["latency_p95_ms"]) and "latency" not in build_status(snap, 0, "n", "cpu", 1e9, 2.0).message


def test_images_that_cannot_feed_the_model_are_refused_and_big_crops_warned():
    model_hw = (370, 1220)
    K = fi.intrinsics(info(), "left/camera_info")  # KITTI: cx 607, cy 185
    assert fi.check_image_fits((376, 1241), K, model_hw, "left/image", "left/camera_info") is None
    with pytest.raises(fi.FrameError, match=r"53x37 image cannot match left/camera_info: its principal point") as e:
        fi.check_image_fits((37, 53), K, model_hw, "left/image", "left/camera_info")
    assert e.value.kind == "intrinsics_size"
    small_K = np.array([[50.0, 0, 26.5], [0, 50.0, 18.5], [0, 0, 1]])  # a consistent 53x37 camera
    with pytest.raises(fi.FrameError, match=r"far smaller than the model input 1220x370: 96% .* zero padding") as e:
        fi.check_image_fits((37, 53), small_K, model_hw, "left/image", "left/camera_info")
    assert e.value.kind == "image_too_small"
    half_K = np.array([[300.0, 0, 320.0], [0, 300.0, 150.0], [0, 0, 1]])
    warning = fi.check_image_fits((300, 640), half_K, model_hw, "left/image", "left/camera_info")
    assert warning is not None and "640x300 images are padded to the model input 1220x370 (48%" in warning
    big = fi.check_image_fits((1080, 1920), np.array([[1e3, 0, 960], [0, 1e3, 540], [0, 0, 1]]),
                              model_hw, "left/image", "left/camera_info")
    assert big is not None and "cropped" in big


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
