"""cigocc_node in its own OS process, fed over real DDS (per-run random ROS_DOMAIN_ID).

The model is the `lite` architecture with random weights, shrunk (image 128x384, grid
128x128x16 of 0.4 m) so a forward pass takes ~0.1 s on this 2-core CPU; the node never knows:
it reads everything from the checkpoint. Covered: the three outputs (stamps, frames, sizes),
stereo pairing (checked through the stereo depth of a known disparity), the real grayscale KITTI
frames in mono and stereo, a 30 Hz flood (bounded memory, flat latency, counted drops), every bad
input (the node logs, skips and keeps running), time jumps (a far-future stamp, stamps and /clock
stepping back, one stale frame between good ones), use_sim_time, start-up refusals (one line, exit 1, no traceback) and SIGINT /
SIGTERM during start-up.
"""
from __future__ import annotations

import array
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import rclpy
from cigocc_msgs.msg import SemanticOccupancy
from diagnostic_msgs.msg import DiagnosticArray, DiagnosticStatus
from rclpy.executors import SingleThreadedExecutor
from rclpy.node import Node
from rclpy.qos import QoSProfile, ReliabilityPolicy
from rosgraph_msgs.msg import Clock
from sensor_msgs.msg import CameraInfo, Image, PointCloud2
from visualization_msgs.msg import Marker, MarkerArray

from cigocc_ros.child_process import die_with_parent

REPO = Path(__file__).resolve().parent.parent
KITTI = Path(os.environ.get("CIGOCC_KITTI_SAMPLES", REPO.parent / "shared" / "kitti_samples")) / "sequences" / "00"
GRID = (128, 128, 16)
IMAGE = (128, 384)  # model.image_size (H, W)
OVERRIDES = [f"model.image_size=[{IMAGE[0]},{IMAGE[1]}]", f"grid.size=[{GRID[0]},{GRID[1]},{GRID[2]}]",
             "grid.voxel_size=0.4"]
FX, BASELINE = 300.0, 0.5
DOMAIN = random.Random(os.getpid() ^ time.time_ns()).randint(1, 200)
STARTUP_TIMEOUT = 90.0

pytestmark = pytest.mark.timeout(300)


# ------------------------------------------------------------------------------------------ set-up
def kitti_calib():
    from cigocc_ros.data.semantic_kitti import read_calib

    return read_calib(KITTI / "calib.txt")


def camera_from_grid() -> list[float]:
    """KITTI sequence 00's Tr (velodyne -> cam0) when the samples exist, else a KITTI-like pose."""
    if (KITTI / "calib.txt").exists():
        T = np.eye(4)
        T[:3, :4] = kitti_calib()["Tr"]
    else:
        T = np.array([[0, -1, 0, 0], [0, 0, -1, -0.08], [1, 0, 0, -0.27], [0, 0, 0, 1]], dtype=np.float64)
    return [float(v) for v in T.ravel()]


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory):
    import torch

    from cigocc_ros.config import load_experiment
    from cigocc_ros.model.checkpoint import save_checkpoint
    from cigocc_ros.model.cigocc import build_model

    torch.manual_seed(0)
    cfg = load_experiment("lite", OVERRIDES)
    path = tmp_path_factory.mktemp("weights") / "lite_small.safetensors"
    save_checkpoint(path, build_model(cfg), cfg)
    return path


DDS_ENV = {"ROS_AUTOMATIC_DISCOVERY_RANGE": "LOCALHOST"}


def node_env() -> dict:
    env = dict(os.environ)
    env.update(DDS_ENV, ROS_DOMAIN_ID=str(DOMAIN), PYTHONUNBUFFERED="1", RCUTILS_LOGGING_BUFFERED_STREAM="0",
               OMP_NUM_THREADS="1")
    return env


def start_node(log: Path, params: dict, ns: str = "", env: dict | None = None,
               remaps: dict | None = None, stderr: Path | None = None) -> subprocess.Popen:
    args = [sys.executable, "-m", "cigocc_ros.ros.main", "--ros-args"] + (["-r", f"__ns:={ns}"] if ns else [])
    for k, v in (remaps or {}).items():
        args += ["-r", f"{k}:={v}"]
    for k, v in params.items():
        if isinstance(v, bool):
            v = str(v).lower()
        elif isinstance(v, (list, tuple)):
            v = "[" + ",".join(repr(float(x)) for x in v) + "]"
        elif v == "":
            v = "''"  # rcl cannot parse an empty override; YAML's empty string
        args += ["-p", f"{k}:={v}"]
    err = open(stderr, "w") if stderr else subprocess.STDOUT
    return subprocess.Popen(die_with_parent(args), env=node_env() | (env or {}), stdout=open(log, "w"), stderr=err,
                            cwd=REPO)


def stop_node(proc: subprocess.Popen) -> int | None:
    """SIGTERM (as ros2 launch sends on Ctrl-C), SIGKILL after 10 s; the exit status."""
    if proc.poll() is None:
        proc.terminate()
        try:
            return proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
            return None
    return proc.returncode


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def stamp_of(msg) -> int:
    return msg.header.stamp.sec * 1_000_000_000 + msg.header.stamp.nanosec


class Feeder:
    """The test side: camera publishers, output subscribers, an executor on its own thread."""

    def __init__(self, context, stereo: bool, ns: str = "", outputs=("occupancy", "cloud", "markers")) -> None:
        self.ns = ns
        self.node = Node(f"feeder{ns.replace('/', '_')}", context=context)
        qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
        self.pub = {t: self.node.create_publisher(Image if "image" in t else CameraInfo, f"{ns}/{t}", qos)
                    for t in ("left/image", "left/camera_info") + (("right/image", "right/camera_info") if stereo else ())}
        self.clock_pub = self.node.create_publisher(Clock, "/clock", 10)
        self.lock = threading.Lock()
        self.got: dict[str, list] = {"occupancy": [], "cloud": [], "markers": [], "diag": [], "depth": []}
        self.arrival: dict[int, float] = {}  # occupancy stamp -> wall time received
        out = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
        self.subs = {
            "occupancy": self.node.create_subscription(
                SemanticOccupancy, f"{ns}/cigocc_node/occupancy", self._on("occupancy"), out),
            "cloud": self.node.create_subscription(PointCloud2, f"{ns}/cigocc_node/cloud", self._on("cloud"), out),
            "markers": self.node.create_subscription(
                MarkerArray, f"{ns}/cigocc_node/markers", self._on("markers"), out),
        }
        for key in set(self.subs) - set(outputs):
            self.node.destroy_subscription(self.subs.pop(key))
        self.node.create_subscription(DiagnosticArray, "/diagnostics", self._on("diag"), 10)
        if stereo:
            self.node.create_subscription(Image, f"{ns}/cigocc_node/stereo_depth", self._on("depth"), out)
        self.executor = SingleThreadedExecutor(context=context)
        self.executor.add_node(self.node)
        self.thread = threading.Thread(target=self.executor.spin, daemon=True)
        self.thread.start()

    def _on(self, key):
        def cb(msg):
            if key == "diag" and not msg.status[0].name.startswith(f"{self.ns}/cigocc_node:"):
                return  # the other node's diagnostics
            with self.lock:
                if key == "occupancy":
                    self.arrival[stamp_of(msg)] = time.time()
                self.got[key].append(msg)
        return cb

    def wait_ready(self, proc: subprocess.Popen, log: Path) -> None:
        deadline = time.time() + STARTUP_TIMEOUT
        while time.time() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"node exited with {proc.returncode}:\n{log.read_text()}")
            if (self.node.count_subscribers(f"{self.ns}/left/image") >= 1
                    and self.node.count_publishers(f"{self.ns}/cigocc_node/occupancy") >= 1
                    and self.node.count_publishers(f"{self.ns}/cigocc_node/cloud") >= 1):
                time.sleep(1.0)  # let both sides finish matching their endpoints
                return
            time.sleep(0.2)
        raise AssertionError(f"node not ready after {STARTUP_TIMEOUT} s:\n{log.read_text()}")

    def messages(self, key) -> list:
        with self.lock:
            return list(self.got[key])

    def wait_for(self, key, pred, timeout=30.0):
        deadline = time.time() + timeout
        while time.time() < deadline:
            for m in self.messages(key):
                if pred(m):
                    return m
            time.sleep(0.02)
        return None

    def send(self, topic: str, msg) -> None:
        self.pub[topic].publish(msg)

    def close(self):
        self.executor.shutdown()
        self.thread.join(5)
        self.node.destroy_node()


def make_image(pixels: np.ndarray, encoding: str, stamp_ns: int, frame_id: str) -> Image:
    h, w = pixels.shape[:2]
    msg = Image(height=h, width=w, encoding=encoding, is_bigendian=0, step=pixels.nbytes // h)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    msg.data = array.array("B", np.ascontiguousarray(pixels).tobytes())
    return msg


def make_info(P: np.ndarray, size_hw, stamp_ns: int, frame_id: str) -> CameraInfo:
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    msg = CameraInfo(height=int(size_hw[0]), width=int(size_hw[1]), distortion_model="plumb_bob",
                     k=[float(v) for v in P[:, :3].ravel()], p=[float(v) for v in P.ravel()],
                     r=[1.0, 0, 0, 0, 1.0, 0, 0, 0, 1.0], d=[0.0] * 5)
    msg.header.stamp.sec, msg.header.stamp.nanosec = divmod(stamp_ns, 1_000_000_000)
    msg.header.frame_id = frame_id
    return msg


def synthetic_P(tx: float = 0.0) -> np.ndarray:
    return np.array([[FX, 0, IMAGE[1] / 2, tx], [0, FX, IMAGE[0] / 2, 0], [0, 0, 1, 0]], dtype=np.float64)


def texture(seed: int) -> np.ndarray:
    """(H, W + 32) uint8 blocky texture that stereo matching locks onto."""
    rng = np.random.default_rng(seed)
    coarse = rng.integers(0, 256, (IMAGE[0] // 4 + 1, (IMAGE[1] + 32) // 4 + 1), dtype=np.uint8)
    return np.kron(coarse, np.ones((4, 4), np.uint8))[: IMAGE[0], : IMAGE[1] + 32]


class Clock_:
    """Strictly increasing wall-time stamps at least `gap` apart (a camera's frame period: more
    than the sync slop, so consecutive frames never pair with each other's camera_info)."""

    last = 0

    @classmethod
    def next(cls, gap: int = 100_000_000) -> int:
        cls.last = max(cls.last + gap, time.time_ns())
        return cls.last


def send_mono(f: Feeder, stamp: int, rgb: np.ndarray | None = None, encoding="rgb8", info_size=None, P=None,
              frame_id="camera_left") -> None:
    rgb = texture(stamp % 1000)[:, : IMAGE[1], None].repeat(3, 2) if rgb is None else rgb
    f.send("left/camera_info", make_info(synthetic_P() if P is None else P, info_size or rgb.shape[:2], stamp, frame_id))
    f.send("left/image", make_image(rgb, encoding, stamp, frame_id))


def wait_output(f: Feeder, stamp: int, timeout=30.0):
    return f.wait_for("occupancy", lambda m: stamp_of(m) == stamp, timeout)


def good_roundtrip(f: Feeder, tries=3):
    """A valid frame in, its occupancy out (re-sent with a new stamp if best effort lost it)."""
    for _ in range(tries):
        stamp = Clock_.next()
        send_mono(f, stamp)
        occ = wait_output(f, stamp, timeout=20.0)
        if occ is not None:
            return stamp, occ
    raise AssertionError("no occupancy output for a valid frame")


def diag_values(msg) -> dict:
    return {kv.key: kv.value for kv in msg.status[0].values}


# ------------------------------------------------------------------------------------------ mono
@pytest.fixture(scope="module")
def context():
    saved = {k: os.environ.get(k) for k in DDS_ENV}
    os.environ.update(DDS_ENV)  # read when this process's DDS participant is created
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=DOMAIN, args=[])
    yield ctx
    rclpy.shutdown(context=ctx)
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def mono(checkpoint, context, tmp_path_factory):
    log = tmp_path_factory.mktemp("mono") / "node.log"
    proc = start_node(log, {
        "weights": str(checkpoint), "device": "cpu", "camera_from_grid": camera_from_grid(),
        "marker_max_rate": 100.0, "marker_max_range": 1000.0, "log_throttle": 0.0,
        "input_stall_timeout": 1.5, "diagnostics_period": 0.5, "publish_segmentation": True,
    })
    f = Feeder(context, stereo=False)
    try:
        f.wait_ready(proc, log)
        yield f, proc, log
    finally:
        f.close()
        rc = stop_node(proc)
    assert rc == 0, f"SIGTERM: node exited with {rc}:\n{log.read_text()[-2000:]}"


def test_mono_outputs_have_right_stamps_frames_and_sizes(mono):
    f, proc, log = mono
    stamp, occ = good_roundtrip(f)
    assert occ.header.frame_id == "velodyne"
    assert (occ.size_x, occ.size_y, occ.size_z) == GRID and occ.voxel_size == pytest.approx(0.4)
    assert len(occ.labels) == np.prod(GRID) and len(occ.confidence) == len(occ.labels)
    assert len(occ.class_names) == 20 and occ.model_id.startswith("lite@")
    labels = np.frombuffer(bytes(occ.labels), np.uint8).reshape(GRID)
    occupied = int(((labels != 0) & (labels != 255)).sum())
    cloud = f.wait_for("cloud", lambda m: stamp_of(m) == stamp, 10)
    assert cloud is not None and cloud.header.frame_id == "velodyne"
    assert cloud.width == occupied and cloud.point_step == 16
    markers = f.wait_for("markers", lambda m: m.markers and stamp_of(m.markers[0]) == stamp, 10)
    assert markers is not None
    assert markers.markers[0].action == Marker.DELETEALL
    assert all(m.header.frame_id == "camera_left" for m in markers.markers)
    assert sum(len(m.points) for m in markers.markers[1:]) == occupied
    ids = [m.id for m in markers.markers[1:]]
    assert ids == sorted(set(np.unique(labels)) - {0, 255})
    assert proc.poll() is None


def test_costmap_has_the_image_stamp_and_the_grid_frame(mono):
    from nav_msgs.msg import OccupancyGrid

    f, proc, log = mono
    got = []
    sub = f.node.create_subscription(OccupancyGrid, "/cigocc_node/costmap", got.append,
                                     QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE))
    try:
        deadline = time.time() + 10
        while f.node.count_publishers("/cigocc_node/costmap") < 1 and time.time() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)  # the node publishes the costmap only once it sees a subscriber
        stamp, occ = good_roundtrip(f)
        deadline = time.time() + 10
        while not any(stamp_of(m) == stamp for m in got) and time.time() < deadline:
            time.sleep(0.05)
        cm = next((m for m in got if stamp_of(m) == stamp), None)
        assert cm is not None, log.read_text()[-2000:]
    finally:
        f.node.destroy_subscription(sub)
    assert cm.header.frame_id == "velodyne" == occ.header.frame_id
    assert (cm.info.width, cm.info.height) == GRID[:2] and cm.info.resolution == pytest.approx(0.4)
    assert (cm.info.origin.position.x, cm.info.origin.position.y) == pytest.approx((occ.origin.position.x,
                                                                                    occ.origin.position.y))
    data = np.array(cm.data, np.int8)
    assert data.size == GRID[0] * GRID[1] and set(np.unique(data)) <= {-1, 0, 100}
    # The synthetic camera sees +-32.6 deg around x: columns far to the side are unknown.
    costs = data.reshape(GRID[1], GRID[0]).T  # (X, Y)
    x = (np.arange(GRID[0]) + 0.5) * 0.4
    y = -25.6 + (np.arange(GRID[1]) + 0.5) * 0.4
    side = np.abs(y)[None, :] > x[:, None] * np.tan(np.radians(40)) + 1.0
    assert np.all(costs[side] == -1)


def test_segmentation_has_the_camera_stamp_frame_and_size(mono):
    from cigocc_ros.classes import load_class_table

    f, proc, log = mono
    got: dict[str, list] = {"seg": [], "color": []}
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    subs = [f.node.create_subscription(Image, "/cigocc_node/segmentation", got["seg"].append, qos),
            f.node.create_subscription(Image, "/cigocc_node/segmentation/color", got["color"].append, qos)]
    try:
        # The node computes the segmentation only once it sees a subscriber: frames until it does.
        for _ in range(15):
            stamp, occ = good_roundtrip(f)
            deadline = time.time() + 3
            while time.time() < deadline and not all(any(stamp_of(m) == stamp for m in v) for v in got.values()):
                time.sleep(0.05)
            seg = next((m for m in got["seg"] if stamp_of(m) == stamp), None)
            color = next((m for m in got["color"] if stamp_of(m) == stamp), None)
            if seg is not None and color is not None:
                break
        assert seg is not None and color is not None, log.read_text()[-2000:]
    finally:
        for sub in subs:
            f.node.destroy_subscription(sub)
    assert seg.header.frame_id == color.header.frame_id == "camera_left"
    assert (seg.height, seg.width, seg.encoding, seg.step) == (*IMAGE, "mono8", IMAGE[1])
    assert (color.height, color.width, color.encoding, color.step) == (*IMAGE, "rgb8", 3 * IMAGE[1])
    labels = np.frombuffer(bytes(seg.data), np.uint8).reshape(IMAGE)
    assert labels.max() < 20
    rgb = np.frombuffer(bytes(color.data), np.uint8).reshape(*IMAGE, 3)
    np.testing.assert_array_equal(rgb, load_class_table().colors_rgb[labels])


def test_real_kitti_grayscale_frames_mono(mono, kitti_samples):  # the fixture fails when they are missing
    import cv2

    f, proc, log = mono
    P0 = kitti_calib()["P0"]
    for k in range(4):
        gray = cv2.imread(str(KITTI / "image_0" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
        for _ in range(3):
            stamp = Clock_.next()
            f.send("left/camera_info", make_info(P0, gray.shape, stamp, "camera_gray_left"))
            f.send("left/image", make_image(gray, "mono8", stamp, "camera_gray_left"))
            occ = wait_output(f, stamp, timeout=20)
            if occ is not None:
                break
        assert occ is not None, f"no output for KITTI frame {k}:\n{log.read_text()[-2000:]}"
        assert (occ.size_x, occ.size_y, occ.size_z) == GRID


def expect_log(log: Path, text: str, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        time.sleep(0.05)
    raise AssertionError(f"'{text}' not logged:\n{log.read_text()[-3000:]}")


def test_bad_inputs_are_logged_skipped_and_survived(mono):
    f, proc, log = mono
    good_roundtrip(f)
    rgb = texture(1)[:, : IMAGE[1], None].repeat(3, 2)

    def expect(text, timeout=15.0):
        expect_log(log, text, timeout)

    send_mono(f, Clock_.next(), rgb=rgb[:, :, 0].copy(), encoding="bayer_rggb8")
    expect("unsupported image encoding 'bayer_rggb8'")
    send_mono(f, Clock_.next(), rgb=rgb, info_size=(IMAGE[0], IMAGE[1] + 16))
    expect(f"but /left/camera_info says {IMAGE[1] + 16}x{IMAGE[0]}")
    nan_P = synthetic_P()
    nan_P[0, 0] = np.nan
    send_mono(f, Clock_.next(), rgb=rgb, P=nan_P)
    expect("camera_info P/K holds NaN")
    lonely = Clock_.next()  # an image whose camera_info never comes
    f.send("left/image", make_image(rgb, "rgb8", lonely, "camera_left"))
    stamp, _ = good_roundtrip(f)
    expect(f"/left/image: message stamped {lonely / 1e9:.6f} s not used: no partner within the sync slop")
    send_mono(f, stamp - 500_000_000)  # older than the last frame
    expect(f"message stamped {(stamp - 500_000_000) / 1e9:.6f} s not used: stamp is not newer")
    send_mono(f, stamp)  # the same stamp again
    expect(f"message stamped {stamp / 1e9:.6f} s not used: stamp is not newer")
    # A 53x37 image: with the rig's camera_info its principal point lies outside the image; with
    # a matching one it is still far smaller than the model input (padding would make the grid).
    tiny = rgb[:37, :53].copy()
    tiny_stamp = Clock_.next()
    send_mono(f, tiny_stamp, rgb=tiny)
    expect("a 53x37 image cannot match /left/camera_info: its principal point (192, 64) lies outside")
    tiny_P = synthetic_P()
    tiny_P[0, 2], tiny_P[1, 2] = 26.5, 18.5
    send_mono(f, Clock_.next(), rgb=tiny, P=tiny_P)
    expect(f"a 53x37 image is far smaller than the model input {IMAGE[1]}x{IMAGE[0]}")
    assert wait_output(f, tiny_stamp, timeout=1.0) is None
    # still alive and still producing
    good_roundtrip(f)
    assert proc.poll() is None
    diag = f.wait_for("diag", lambda m: int(diag_values(m)["frames_skipped"]) >= 3, 10)
    assert diag is not None


def test_diagnostics_report_and_warn_on_stall(mono):
    f, proc, log = mono
    good_roundtrip(f)
    ok = f.wait_for("diag", lambda m: m.status[0].level == DiagnosticStatus.OK
                    and int(diag_values(m)["frames_out"]) > 0, 10)
    assert ok is not None
    values = diag_values(ok)
    assert values["device"] == "cpu" and float(values["latency_p50_ms"]) > 0
    for key in ("input_rate_hz", "latency_p95_ms", "frames_dropped"):
        assert key in values
    t0 = time.time()
    stalled = f.wait_for("diag", lambda m: "input stalled" in m.status[0].message
                         and stamp_of(m) > t0 * 1e9, 10)
    assert stalled is not None and stalled.status[0].level == DiagnosticStatus.WARN


def test_flood_keeps_memory_bounded_latency_flat_and_counts_drops(mono):
    f, proc, log = mono
    # A planner's view: occupancy only. (rclpy turns every marker cube into a Python object:
    # deserialising the markers of a random model would make this process the bottleneck.)
    for key in ("markers", "cloud"):
        f.node.destroy_subscription(f.subs.pop(key))
    good_roundtrip(f)
    sent = []
    rss = []
    t_start = time.time()
    while time.time() - t_start < 4.0:  # 30 Hz for 4 s
        stamp = Clock_.next(gap=33_000_000)
        send_mono(f, stamp)
        sent.append(stamp)
        if len(sent) % 20 == 0:
            rss.append(rss_mb(proc.pid))
        time.sleep(max(0.0, t_start + len(sent) / 30.0 - time.time()))
    # The newest frame is never dropped (the queue drops the oldest): the flood is over once its
    # output is in. Waiting for that event, not for a fixed time, leaves no output in flight.
    assert wait_output(f, sent[-1], timeout=60.0) is not None, "the last frame of the flood never came out"
    with f.lock:
        lat = [(s, f.arrival[s] - s / 1e9) for s in sent if s in f.arrival]
    assert 3 <= len(lat) < len(sent), f"{len(lat)} outputs for {len(sent)} frames"
    with f.lock:
        arrivals = sorted(f.arrival[s] for s, _ in lat)
    # Flat = bounded by the node's own pace, whatever CPU this shared box gives it: a frame waits
    # at most for the one in progress, so latency stays within a few processing intervals.
    # A queue that grew would make later latencies climb far past that (60+ frames per second
    # of processing are arriving).
    interval = float(np.median(np.diff(arrivals))) if len(arrivals) > 2 else 1.0
    bound = 3 * interval + 1.0
    lats = [v for _, v in lat]
    assert max(lats) < bound, f"latency up to {max(lats):.2f} s > {bound:.2f} s (interval {interval:.2f} s): {lats}"
    assert lat[-1][0] == sent[-1], "the last output is not of the newest frame"
    assert max(rss[1:]) - rss[1] < 80, f"RSS grew {rss}"
    diag = f.wait_for("diag", lambda m: int(diag_values(m)["frames_dropped"]) > 0, 5)
    assert diag is not None, "drops not counted in diagnostics"
    v = diag_values(diag)
    assert int(v["frames_out"]) < int(v["frames_in"])
    assert proc.poll() is None


def test_a_far_future_stamp_is_refused_and_does_not_wedge_the_node(mono):
    """One frame stamped 1000 s ahead: refused with a warning (max_stamp_ahead), never
    published, and current frames go on (before: published, then every frame refused)."""
    f, proc, log = mono
    good_roundtrip(f)
    future = time.time_ns() + 1000 * 1_000_000_000
    send_mono(f, future)
    expect_log(log, f"message stamped {future / 1e9:.6f} s refused: ")
    assert "ahead of the node's clock (max_stamp_ahead 2 s)" in log.read_text()
    good_roundtrip(f)
    assert wait_output(f, future, timeout=0.5) is None
    assert proc.poll() is None


def test_stamps_stepping_back_30s_for_three_frames_start_a_new_timeline(mono):
    """A camera clock that steps 30 s back and stays there (a bag that loops, no /clock): the
    first two frames are dropped as stale stamps, the third starts the new timeline (logged once)
    and it goes on at once; then back to the present, a forward step, which needs nothing."""
    f, proc, log = mono
    good_roundtrip(f)
    base = Clock_.next() - 30 * 1_000_000_000
    stamps = [base + k * 100_000_000 for k in range(5)]
    for stamp in stamps[:2]:
        send_mono(f, stamp)
        expect_log(log, f"message stamped {stamp / 1e9:.6f} s not used: stamp far older than the newest on its topic")
    outs = []
    for stamp in stamps[2:]:
        send_mono(f, stamp)
        outs.append(wait_output(f, stamp, timeout=20.0))
    assert all(o is not None for o in outs), log.read_text()[-3000:]
    assert all(wait_output(f, stamp, timeout=0.1) is None for stamp in stamps[:2])  # published in order: never
    text = log.read_text()
    assert text.count("stamps jumped back") == 1 and "pairing and stamp guard reset" in text
    assert "3 consecutive frames continue from it (a new timeline) or /clock jumps" in text
    good_roundtrip(f)
    diag = f.wait_for("diag", lambda m: int(diag_values(m)["time_jumps"]) >= 1, 5)
    assert diag is not None


def test_one_frame_stamped_a_year_back_between_good_frames_is_dropped(mono):
    """A camera clock broken for one frame: that frame is dropped with a warning and the stream
    goes on (before: it reset the pairing and was published as if the stream had jumped back)."""
    f, proc, log = mono
    good_roundtrip(f)
    stale = Clock_.last - 365 * 86400 * 1_000_000_000
    send_mono(f, stale)
    expect_log(log, f"message stamped {stale / 1e9:.6f} s not used: stamp far older than the newest on its topic")
    good_roundtrip(f)
    assert wait_output(f, stale, timeout=0.1) is None
    assert "jumped back 31536000" not in log.read_text()
    assert proc.poll() is None


# ------------------------------------------------------------------------------------------ stereo
@pytest.fixture(scope="module")
def stereo(checkpoint, context, tmp_path_factory):
    log = tmp_path_factory.mktemp("stereo") / "node.log"
    proc = start_node(log, {
        "weights": str(checkpoint), "device": "cpu", "stereo": True, "camera_from_grid": camera_from_grid(),
        "stereo_num_disparities": 32, "sync_slop": 0.02, "log_throttle": 0.0, "use_sim_time": True,
        "diagnostics_period": 0.5,
    }, ns="/stereo")
    f = Feeder(context, stereo=True, ns="/stereo", outputs=("occupancy",))
    stop_clock = threading.Event()
    # Every stamp sent to this node is at or after `first_stamp` (Clock_.next never goes below
    # the wall clock), and the node's clock never reads more than `clock_max`, the newest value
    # published: latencies lie within those two events, whatever the load.
    f.first_stamp, f.clock_max = time.time_ns(), 0

    def clock():  # sim time = 10 s after the newest stamp sent or the wall clock, whichever is later
        while not stop_clock.is_set():  # (a frame stamped "now" is never ahead of the node's clock)
            now = max(Clock_.last, time.time_ns()) + 10_000_000_000
            f.clock_max = max(f.clock_max, now)
            f.clock_pub.publish(Clock(clock=rclpy.time.Time(nanoseconds=now).to_msg()))
            time.sleep(0.05)

    threading.Thread(target=clock, daemon=True).start()
    try:
        f.wait_ready(proc, log)
        yield f, proc, log
    finally:
        stop_clock.set()
        f.close()
        stop_node(proc)


def send_stereo(f, stamp, left, right, P_left, P_right, frame="camera_left", encoding="mono8", right_stamp=None):
    rs = stamp if right_stamp is None else right_stamp
    f.send("right/camera_info", make_info(P_right, right.shape[:2], rs, frame.replace("left", "right")))
    f.send("right/image", make_image(right, encoding, rs, frame.replace("left", "right")))
    f.send("left/camera_info", make_info(P_left, left.shape[:2], stamp, frame))
    f.send("left/image", make_image(left, encoding, stamp, frame))


def good_stereo_roundtrip(f, log, seed: int, tries: int = 3) -> int:
    """A valid stereo frame in (8 px of disparity), its occupancy out; its stamp. Re-sent with a
    new stamp when it was lost or came before the node's /clock caught up with it."""
    tex = texture(seed)
    left, right = np.ascontiguousarray(tex[:, :IMAGE[1]]), np.ascontiguousarray(tex[:, 8:IMAGE[1] + 8])
    for _ in range(tries):
        stamp = Clock_.next()
        send_stereo(f, stamp, left, right, synthetic_P(), synthetic_P(-FX * BASELINE))
        if wait_output(f, stamp, 20) is not None:
            return stamp
    raise AssertionError(f"no stereo output for a valid frame:\n{log.read_text()[-3000:]}")


def test_stereo_pairs_the_right_frames_and_honours_sim_time(stereo):
    """Right images shifted by 8 px (depth fx*B/8) at the left stamp, decoys shifted by 16 px
    30 ms before and after: the stereo depth the node publishes tells which right frame it paired."""
    f, proc, log = stereo
    tex = texture(7)
    left = np.ascontiguousarray(tex[:, :IMAGE[1]])
    right_ok = np.ascontiguousarray(tex[:, 8:IMAGE[1] + 8])
    decoy = np.ascontiguousarray(tex[:, 16:IMAGE[1] + 16])
    P_l, P_r = synthetic_P(), synthetic_P(-FX * BASELINE)
    depth = None
    for _ in range(3):
        stamp = Clock_.next()
        f.send("right/image", make_image(decoy, "mono8", stamp - 30_000_000, "camera_right"))
        f.send("right/camera_info", make_info(P_r, decoy.shape, stamp - 30_000_000, "camera_right"))
        send_stereo(f, stamp, left, right_ok, P_l, P_r)
        Clock_.next()
        f.send("right/image", make_image(decoy, "mono8", stamp + 30_000_000, "camera_right"))
        depth = f.wait_for("depth", lambda m, s=stamp: stamp_of(m) == s, 20)
        if depth is not None:
            break
    assert depth is not None, log.read_text()[-3000:]
    d = np.frombuffer(bytes(depth.data), "<f4").reshape(depth.height, depth.width)
    valid = d[:, 40:] > 0  # SGBM leaves the left border (num_disparities) empty
    assert valid.mean() > 0.5
    assert np.median(d[:, 40:][valid]) == pytest.approx(FX * BASELINE / 8, rel=0.05)
    occ = wait_output(f, stamp, 20)
    assert occ is not None and (occ.size_x, occ.size_y, occ.size_z) == GRID
    # use_sim_time: latency is measured against /clock (stamp + 10 s), not the wall clock
    diag = f.wait_for("diag", lambda m: int(diag_values(m)["frames_out"]) > 0, 10)
    assert diag is not None
    # Wall-clock latency would be the processing time (well under 9 s); /clock latency is at
    # least the 10 s lead less a clock period, and at most the newest /clock published by the
    # time the diagnostics arrived less the oldest stamp sent (events, not a time window).
    p50 = float(diag_values(diag)["latency_p50_ms"])
    assert 9_000 < p50 <= (f.clock_max - f.first_stamp) / 1e6, (p50, f.clock_max, f.first_stamp)


def test_clock_restart_under_sim_time_resets_and_goes_on(stereo):
    """/clock stepping back (a bag replayed again): the node logs it once and keeps pairing."""
    f, proc, log = stereo
    # The node's /clock subscription is best effort (ClockQoS) and a replayed bag publishes
    # /clock continuously: so does the test, until the node has seen the step back.
    back = Clock(clock=rclpy.time.Time(nanoseconds=max(Clock_.last, time.time_ns()) - 60_000_000_000).to_msg())
    deadline = time.time() + 15.0
    while "the ROS clock (/clock) jumped back" not in log.read_text() and time.time() < deadline:
        f.clock_pub.publish(back)
        time.sleep(0.2)
    expect_log(log, "the ROS clock (/clock) jumped back", timeout=1.0)
    assert log.read_text().count("the ROS clock (/clock) jumped back") == 1, "one step back, one report"
    good_stereo_roundtrip(f, log, seed=9)
    assert proc.poll() is None


def test_a_zero_baseline_is_refused_per_frame_and_shown_in_diagnostics(stereo):
    """A right camera_info whose P[0, 3] equals the left one's (KITTI colour P2 / P3, whose other
    columns leave 0.96 mm): the frame is skipped with a warning naming the baseline, /diagnostics
    shows it, the next good frame goes out (before: published as if mono, no warning)."""
    f, proc, log = stereo
    P_l = np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, -0.1130887], [0, 0, 1, 0.003779761]])
    P_r = np.array([[718.856, 0, 607.1928, 45.38225], [0, 718.856, 185.2157, 2.369057], [0, 0, 1, 0.004915215]])
    image = np.ascontiguousarray(np.tile(texture(11), (3, 4))[:376, :1241])
    good_stereo_roundtrip(f, log, seed=12)  # the node's /clock is up to date
    bad = Clock_.next()
    send_stereo(f, bad, image, image, P_l, P_r)
    expect_log(log, "/stereo/right/camera_info: stereo baseline 0.000959")
    diag = f.wait_for("diag", lambda m: "stereo baseline 0.000959" in diag_values(m)["last_problem"], 10)
    assert diag is not None and int(diag_values(diag)["frames_skipped"]) >= 1
    good_stereo_roundtrip(f, log, seed=13)
    assert wait_output(f, bad, timeout=0.1) is None  # the worker takes frames in order: it was not published
    assert proc.poll() is None


def test_real_kitti_grayscale_frames_stereo(stereo, kitti_samples):
    import cv2

    f, proc, log = stereo
    calib = kitti_calib()
    for k in range(3):
        left = cv2.imread(str(KITTI / "image_0" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
        right = cv2.imread(str(KITTI / "image_1" / f"{k:06d}.png"), cv2.IMREAD_UNCHANGED)
        for _ in range(3):
            stamp = Clock_.next()
            send_stereo(f, stamp, left, right, calib["P0"], calib["P1"], frame="camera_gray_left")
            occ = wait_output(f, stamp, 30)
            if occ is not None:
                break
        assert occ is not None, f"no stereo output for KITTI frame {k}:\n{log.read_text()[-2000:]}\n{[diag_values(m) for m in f.messages('diag')[-1:]]}"
        depth = f.wait_for("depth", lambda m, s=stamp: stamp_of(m) == s, 5)
        d = np.frombuffer(bytes(depth.data), "<f4").reshape(depth.height, depth.width)
        assert d.shape == left.shape and (d > 0).mean() > 0.3
        assert 3.0 < np.median(d[d > 0]) < 60.0  # a street scene seen from a car
    assert proc.poll() is None


# ------------------------------------------------------------------------------------------ start-up
def test_refusals_exit_1_with_one_line_and_no_traceback(tmp_path, checkpoint):
    """Missing, corrupt, truncated and non-safetensors weights, a bad device and a
    camera_from_grid that is no rotation: one FATAL line naming the cause, exit status 1, and
    nothing else on stderr (before: an AttributeError traceback from destroy_node)."""
    import torch

    corrupt = tmp_path / "corrupt.safetensors"
    corrupt.write_bytes(os.urandom(4096))
    truncated = tmp_path / "truncated.safetensors"
    data = checkpoint.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    pickle = tmp_path / "model.pt"
    torch.save({"state_dict": {"w": torch.zeros(3)}}, pickle)
    zero_rotation = [0.0] * 12 + [0.0, 0.0, 0.0, 1.0]
    cases = {
        "missing": ({"weights": str(tmp_path / "nope.safetensors")}, str(tmp_path / "nope.safetensors")),
        "corrupt": ({"weights": str(corrupt)}, str(corrupt)),
        "truncated": ({"weights": str(truncated)}, str(truncated)),
        "pickle": ({"weights": str(pickle)}, str(pickle)),
        "tpu": ({"weights": str(checkpoint), "device": "tpu"}, "device must be "),
        "rotation": ({"weights": str(checkpoint), "camera_from_grid": zero_rotation},
                     "camera_from_grid is not a rigid transform: rotation block is not orthonormal"),
    }
    not_shipped = tmp_path / "not_shipped.safetensors"  # weights:="" falls back to the shipped file
    procs = {name: start_node(tmp_path / f"{name}.log", {"device": "cpu"} | params, stderr=tmp_path / f"{name}.err")
             for name, (params, _) in cases.items()}
    procs["shipped"] = start_node(tmp_path / "shipped.log", {"weights": "", "device": "cpu"},
                                  env={"CIGOCC_WEIGHTS": str(not_shipped)}, stderr=tmp_path / "shipped.err")
    cases["shipped"] = ({}, str(not_shipped))
    for name, proc in procs.items():
        rc = proc.wait(STARTUP_TIMEOUT)
        out, err = (tmp_path / f"{name}.log").read_text(), (tmp_path / f"{name}.err").read_text()
        assert rc == 1, f"{name}: {rc}\n{out}\n{err}"
        fatal = [ln for ln in err.splitlines() if "refusing to start" in ln]
        assert len(fatal) == 1 and "[FATAL]" in fatal[0], f"{name}: {err}"
        assert cases[name][1] in fatal[0], f"{name}: {fatal[0]}"
        assert "Traceback" not in out + err and "Error" not in err.replace(fatal[0], ""), f"{name}: {err}"


def wait_for_log_line(proc: subprocess.Popen, log: Path, text: str, timeout: float = STARTUP_TIMEOUT) -> None:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if text in log.read_text():
            return
        if proc.poll() is not None:
            raise AssertionError(f"node exited ({proc.returncode}) before '{text}':\n{log.read_text()}")
        time.sleep(0.02)
    raise AssertionError(f"'{text}' not logged:\n{log.read_text()}")


@pytest.mark.parametrize("sig, stage", [(signal.SIGINT, "warm-up"), (signal.SIGTERM, "loading"),
                                        (signal.SIGINT, "loading")],
                         ids=["SIGINT-warm-up", "SIGTERM-loading", "SIGINT-loading"])
def test_signals_during_start_up_stop_promptly_and_cleanly(tmp_path, sig, stage):
    """SIGINT / SIGTERM while the weights load or during the warm-up forward: exit 0 within
    seconds, no traceback, start-up not finished (before: SIGINT gave KeyboardInterrupt and
    exit -2; SIGTERM waited for loading and warm-up to end). $CIGOCC_STARTUP_HOLD keeps the
    node in the stage until the signal: the signal never races the stage's end."""
    log = tmp_path / "node.log"
    proc = start_node(log, {"weights": "", "device": "cpu"}, env={"CIGOCC_STARTUP_HOLD": stage})
    try:
        wait_for_log_line(proc, log, f"start-up held at {stage}")
        t0 = time.monotonic()
        proc.send_signal(sig)
        rc = proc.wait(20)
        took = time.monotonic() - t0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text()
    assert rc == 0, f"exit {rc}:\n{text}"
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text
    assert "listening on" not in text and "loaded " not in text, f"start-up finished first:\n{text}"
    assert ("warming up" in text) == (stage == "warm-up"), text
    assert took < 10.0, f"{took:.1f} s to stop"


def imported(err: str, module: str) -> bool:
    """Whether Python's import-time log (PYTHONPROFILEIMPORTTIME) says `module` finished importing."""
    return re.search(rf"^import time:.*\|\s+{re.escape(module)}$", err, re.MULTILINE) is not None


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_signals_during_the_imports_stop_cleanly(tmp_path, sig):
    """SIGINT / SIGTERM while Python imports the node's modules (the first ~0.5 s): exit 0, no
    traceback (before: SIGTERM killed the process, -15, and SIGINT raised KeyboardInterrupt with
    a traceback). The signal goes out when the import-time log says rclpy is in and the node's
    own modules are still to come; a try in which the imports won the race is repeated."""
    for _ in range(3):
        log, err = tmp_path / "node.log", tmp_path / "node.err"
        proc = start_node(log, {"device": "cpu"}, env={"PYTHONPROFILEIMPORTTIME": "1"}, stderr=err)
        try:
            deadline = time.time() + STARTUP_TIMEOUT
            while not imported(err.read_text(), "rclpy") and proc.poll() is None and time.time() < deadline:
                time.sleep(0.005)
            proc.send_signal(sig)
            rc = proc.wait(20)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        text = log.read_text() + err.read_text()
        if not imported(text, "cigocc_ros.ros.node"):
            break
    else:
        raise AssertionError("the node's imports finished before the signal in 3 tries")
    assert rc == 0, f"exit {rc}:\n{text[-3000:]}"
    assert "Traceback" not in text and "KeyboardInterrupt" not in text, text[-3000:]
    assert "loading " not in text


# ------------------------------------------------------------------------------------------ compressed
def test_compressed_bag_replays_through_the_node(checkpoint, context, tmp_path, monkeypatch):
    """A kitti-to-bag --compressed png bag replayed (paced) into a node with
    left_transport=compressed: one output per frame; the 3D outputs carry 255 exactly outside
    the camera frustum (unknown_outside_frustum); a corrupt payload is logged and skipped."""
    from cigocc_msgs.msg import SemanticOccupancy as Occ
    from rclpy.serialization import deserialize_message
    from sensor_msgs.msg import CompressedImage
    from tiny_kitti import write_tiny_sequence

    from cigocc_ros.bag import kitti_to_bag as k2b
    from cigocc_ros.bag.demo import wait_until_listening
    from cigocc_ros.bag.play import BagPlayer, PlayOptions, RosSession

    seq = write_tiny_sequence(tmp_path / "seq", frames=4, labelled=(), size=IMAGE, scaled_calib=True)
    bag = tmp_path / "bag"
    k2b.convert(seq, bag, camera="gray", velodyne=False, compressed="png", progress=False)
    cams = k2b.CAMERA_PAIRS["gray"]
    T = k2b.read_camera_from_grid(bag, cams.frame_id("left"))
    calib = k2b.skitti.read_calib(seq / "calib.txt")
    P_left = k2b.ros_projections(calib["P0"], calib["P1"])[0]  # what the bag's camera_info holds
    log = tmp_path / "node.log"
    proc = start_node(log, {"weights": str(checkpoint), "device": "cpu", "camera_from_grid": [float(x) for x in T.ravel()],
                            "left_transport": "compressed", "unknown_outside_frustum": True, "log_throttle": 0.0},
                      remaps={"left/image": cams.image_topic("left"), "left/camera_info": cams.info_topic("left")})
    monkeypatch.setenv("ROS_DOMAIN_ID", str(DOMAIN))
    outputs = []
    try:
        wait_until_listening(proc, log, STARTUP_TIMEOUT)
        assert f"listening on {cams.image_topic('left', 'png')}, {cams.info_topic('left')}" in log.read_text()
        opts = PlayOptions(pace_topic="/cigocc_node/occupancy", pace_timeout=60.0, wait_subscribers=30.0,
                           topics=(cams.image_topic("left", "png"), cams.info_topic("left")))
        with RosSession("compressed_replay_test") as session:
            stats = BagPlayer(bag, session, opts, on_output=lambda raw, wall: outputs.append(raw)).play()
            end = time.monotonic() + 30
            while len(outputs) < stats.triggers and time.monotonic() < end:
                time.sleep(0.1)
            assert stats.triggers == 4 and stats.pace_timeouts == 0 and len(outputs) == 4, log.read_text()[-2000:]
            # A corrupt payload (a PNG signature and nothing else) with its camera_info, later stamped.
            info_pub = session.node.create_publisher(CameraInfo, cams.info_topic("left"), 10)
            img_pub = session.node.create_publisher(CompressedImage, cams.image_topic("left", "png"), 10)
            time.sleep(1.0)
            # stamped now: newer than the bag's frames (start_time 1e9 s), not in the future
            info = make_info(P_left, IMAGE, time.time_ns() // 10**9 * 10**9, cams.frame_id("left"))
            bad = CompressedImage(header=info.header, format="mono8; png compressed mono8")
            bad.data = array.array("B", b"\x89PNG\r\n\x1a\n" + bytes(64))
            deadline = time.time() + 15
            while "cannot decode the compressed image" not in log.read_text() and time.time() < deadline:
                info_pub.publish(info)
                img_pub.publish(bad)
                time.sleep(0.5)
                info.header.stamp.sec += 1  # a new frame each time (bad shares this header)
        text = log.read_text()
        assert f"{cams.image_topic('left', 'png')}: cannot decode the compressed image" in text, text[-2000:]
        assert "frame skipped" in text and proc.poll() is None
    finally:
        rc = stop_node(proc)
    assert rc == 0 and "Traceback" not in log.read_text()

    # unknown_outside_frustum: 255 exactly where a voxel centre does not project into the image.
    occ = deserialize_message(outputs[-1], Occ)
    labels = np.frombuffer(bytes(occ.labels), np.uint8).reshape(GRID)
    conf = np.frombuffer(bytes(occ.confidence), np.uint8).reshape(GRID)
    K = P_left[:, :3]
    axes = [occ.origin.position.x, occ.origin.position.y, occ.origin.position.z]
    c = np.stack(np.meshgrid(*[axes[i] + (np.arange(GRID[i]) + 0.5) * 0.4 for i in range(3)], indexing="ij"), -1)
    cam = c.reshape(-1, 3) @ T[:3, :3].T + T[:3, 3]
    with np.errstate(divide="ignore", invalid="ignore"):
        u = K[0, 0] * cam[:, 0] / cam[:, 2] + K[0, 2]
        v = K[1, 1] * cam[:, 1] / cam[:, 2] + K[1, 2]
    inside = ((cam[:, 2] > 1e-3) & (u >= 0) & (u < IMAGE[1]) & (v >= 0) & (v < IMAGE[0])).reshape(GRID)
    assert 0 < inside.sum() < inside.size
    assert np.all(labels[~inside] == 255) and np.all(conf[~inside] == 0)
    assert not np.any(labels[inside] == 255)


# ------------------------------------------------------------------------------------------ onnxruntime
@pytest.mark.slow
def test_onnxruntime_backend_publishes_what_torch_predicts(checkpoint, context, tmp_path):
    """backend:=onnxruntime with the checkpoint's `cigocc export`: the node starts, says which
    backend runs, and its labels for a frame agree with the torch Predictor's on >= 99.9 %."""
    from cigocc_ros.inference import Predictor
    from cigocc_ros.model.checkpoint import load_checkpoint
    from cigocc_ros.onnx_export import export_onnx

    onnx = export_onnx(load_checkpoint(checkpoint)[0], tmp_path / "lite_small.onnx")
    log = tmp_path / "node.log"
    proc = start_node(log, {"weights": str(onnx), "backend": "onnxruntime", "device": "cpu",
                            "camera_from_grid": camera_from_grid()}, ns="/onnx")
    f = Feeder(context, stereo=False, ns="/onnx", outputs=("occupancy",))
    try:
        f.wait_ready(proc, log)
        assert "on cpu (onnxruntime)" in log.read_text()
        stamp = Clock_.next()
        rgb = texture(7)[:, : IMAGE[1], None].repeat(3, 2)
        send_mono(f, stamp, rgb)
        occ = wait_output(f, stamp, timeout=60.0)
        assert occ is not None, log.read_text()[-2000:]
    finally:
        f.close()
        rc = stop_node(proc)
    assert rc == 0 and "Traceback" not in log.read_text()
    labels = np.frombuffer(bytes(occ.labels), np.uint8).reshape(GRID)
    T = np.array(camera_from_grid()).reshape(4, 4)
    ref = Predictor.from_checkpoint(checkpoint, device="cpu").predict(rgb, synthetic_P()[:, :3], T).labels
    assert (labels == ref).mean() >= 0.999
