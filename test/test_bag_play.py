"""bag-play and bag-eval over real DDS, in separate OS processes on a random ROS_DOMAIN_ID:
a subscriber process receives every replayed message byte for byte, in order, with /clock
advancing and the rate factor respected; a paced bag-eval waits for a responder process and
scores its answers; Ctrl-C stops a replay cleanly."""
from __future__ import annotations

import hashlib
import json
import re
import signal
import subprocess
import time

import numpy as np
import pytest
from rosbags.highlevel import AnyReader
from rosbags.rosbag2 import Reader
from tiny_kitti import write_tiny_sequence

from cigocc_ros.bag import kitti_to_bag as k2b
from cigocc_ros.bag.types import OCCUPANCY_TYPE, typestore
from cigocc_ros.child_process import die_with_parent
from cigocc_ros.evaluation.ssc_metric import SSCMetric

pytestmark = pytest.mark.integration

GRAY_LEFT = "/kitti/camera_gray_left/image_rect"
TOPICS = {  # replayed topic -> its rclpy type
    GRAY_LEFT: "sensor_msgs.msg.Image",
    "/kitti/camera_gray_right/image_rect": "sensor_msgs.msg.Image",
    "/kitti/camera_gray_left/camera_info": "sensor_msgs.msg.CameraInfo",
    "/kitti/camera_gray_right/camera_info": "sensor_msgs.msg.CameraInfo",
    "/kitti/odom": "nav_msgs.msg.Odometry",
    "/kitti/velo/pointcloud": "sensor_msgs.msg.PointCloud2",
    "/kitti/occupancy_gt": "cigocc_msgs.msg.SemanticOccupancy",
}

# Records every message of the given topics as (sha256 of the CDR bytes, length, arrival time)
# and every /clock.
SUBSCRIBER = r"""
import hashlib, importlib, json, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
out, expected = sys.argv[1], json.loads(sys.argv[2])
rclpy.init()
node = rclpy.create_node("bag_play_test_subscriber")
got = {t: [] for t in expected}
clock = []
qos = QoSProfile(history=HistoryPolicy.KEEP_ALL, reliability=ReliabilityPolicy.RELIABLE)
for topic, (typ, _) in expected.items():
    mod, name = typ.rsplit(".", 1)
    cls = getattr(importlib.import_module(mod), name)
    node.create_subscription(cls, topic, lambda raw, t=topic: got[t].append((hashlib.sha256(raw).hexdigest(),
                             len(raw), time.monotonic())), qos, raw=True)
from rosgraph_msgs.msg import Clock
node.create_subscription(Clock, "/clock", lambda m: clock.append(m.clock.sec * 10**9 + m.clock.nanosec), qos)
print("ready", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end and any(len(got[t]) < n for t, (_, n) in expected.items()):
    rclpy.spin_once(node, timeout_sec=0.05)
end = time.monotonic() + 0.5  # the last /clock messages
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
json.dump({"got": got, "clock": clock}, open(out, "w"))
"""

# Stands in for the *test's* side of a node (not shipped): answers each left image after DELAY
# seconds with a SemanticOccupancy of the same stamp: the bag's ground truth for frame 0, that
# ground truth with cars turned into road for other labelled frames, all-empty otherwise.
RESPONDER = r"""
import json, sys, time
import numpy as np
import rclpy
from rclpy.qos import QoSProfile
from rosbags.highlevel import AnyReader
from cigocc_ros.bag.types import typestore, OCCUPANCY_TYPE
from cigocc_ros.bag.messages import cdr_header_stamp
from cigocc_msgs.msg import SemanticOccupancy
from sensor_msgs.msg import Image
bag, out, delay, topic = sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]
store = typestore()
T = store.types
gt = {}
with AnyReader([__import__("pathlib").Path(bag)]) as reader:
    conns = [c for c in reader.connections if c.topic == "/kitti/occupancy_gt"]
    for _, _, raw in reader.messages(connections=conns):
        gt[cdr_header_stamp(raw)] = store.deserialize_cdr(bytes(raw), OCCUPANCY_TYPE)
first = min(gt)
template = gt[first]
rclpy.init()
node = rclpy.create_node("bag_eval_test_responder")
pub = node.create_publisher(SemanticOccupancy, topic, QoSProfile(depth=10))
arrivals, pending = [], []
node.create_subscription(Image, "/kitti/camera_gray_left/image_rect",
                         lambda raw: (arrivals.append(time.monotonic()), pending.append(cdr_header_stamp(raw))),
                         QoSProfile(depth=10), raw=True)
print("ready", flush=True)
end = time.monotonic() + 60
while time.monotonic() < end and len(arrivals) < int(sys.argv[5]):
    rclpy.spin_once(node, timeout_sec=0.02)
    while pending:
        stamp = pending.pop(0)
        time.sleep(delay)
        msg = gt.get(stamp, template)
        labels = np.asarray(msg.labels).copy()
        if stamp not in gt:
            labels[:] = 0
        elif stamp != first:
            labels[labels == 1] = 9
        sec, nanosec = divmod(stamp, 10**9)
        header = T["std_msgs/msg/Header"](stamp=T["builtin_interfaces/msg/Time"](sec=sec, nanosec=nanosec),
                                          frame_id=msg.header.frame_id)
        raw = store.serialize_cdr(type(msg)(**{**msg.__dict__, "header": header, "labels": labels}), OCCUPANCY_TYPE)
        pub.publish(bytes(raw))
end = time.monotonic() + 2
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
json.dump({"arrivals": arrivals}, open(out, "w"))
"""


@pytest.fixture(scope="module")
def tiny_bag(tmp_path_factory):
    root = tmp_path_factory.mktemp("bagplay")
    seq = write_tiny_sequence(root / "seq", frames=10, labelled=(0, 5), size=(32, 64))
    k2b.convert(seq, root / "bag", camera="gray", progress=False)
    return root / "bag"


def _bag_messages(bag) -> dict[str, list[bytes]]:
    out: dict[str, list] = {}
    with AnyReader([bag]) as reader:
        for conn, _, raw in reader.messages():
            out.setdefault(conn.topic, []).append(bytes(raw))
        start, end = reader.start_time, reader.end_time - 1  # rosbags' end_time is exclusive
    out["__span__"] = [start, end]
    return out


def _start(cmd, env) -> subprocess.Popen:
    return subprocess.Popen(die_with_parent(cmd), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_ready(proc: subprocess.Popen) -> None:
    line = proc.stdout.readline().strip()
    assert line == "ready", proc.stderr.read()


def _replay_to_subscriber(bag, expected: dict, rate: float, tmp_path, ros_env, python_exe):
    """bag-play `bag` at `rate` into a SUBSCRIBER process waiting for `expected` {topic: (type,
    count)}: (the finished player, what the subscriber recorded)."""
    out = tmp_path / "received.json"
    sub = _start([python_exe, "-c", SUBSCRIBER, str(out), json.dumps(expected)], ros_env)
    try:
        _wait_ready(sub)
        play = subprocess.run([python_exe, "-m", "cigocc_ros.cli", "bag-play", str(bag), "--rate", str(rate),
                               "--wait-subscribers", "30"], env=ros_env, capture_output=True, text=True, timeout=90)
        assert play.returncode == 0, play.stderr
        assert sub.wait(timeout=60) == 0, sub.stderr.read()
    finally:
        if sub.poll() is None:
            sub.kill()
    return play, json.loads(out.read_text())


def test_replay_delivers_every_message_in_order(tiny_bag, tmp_path, ros_env, python_exe):
    bag = _bag_messages(tiny_bag)
    start, end = bag.pop("__span__")
    expected = {t: (typ, len(bag[t])) for t, typ in TOPICS.items()}
    rate = 0.5
    play, got = _replay_to_subscriber(tiny_bag, expected, rate, tmp_path, ros_env, python_exe)
    # tf2_msgs has no Python package here: /tf and /tf_static are reported, not replayed.
    assert "/tf_static: not replayed" in play.stdout and "/tf: not replayed" in play.stdout
    for topic in TOPICS:
        received = got["got"][topic]
        assert len(received) == len(bag[topic]), topic
        for (digest, size, _), sent in zip(received, bag[topic], strict=True):
            # DDS may pad a payload with up to 3 zero bytes after the last field (4-byte
            # alignment on the wire); the message itself must be byte-identical.
            assert 0 <= size - len(sent) <= 3, topic
            assert digest == hashlib.sha256(sent + b"\0" * (size - len(sent))).hexdigest(), topic
    assert len(bag[GRAY_LEFT]) == 10 and len(bag["/kitti/occupancy_gt"]) == 2

    clock = got["clock"]
    assert clock == sorted(clock) and len(clock) > 20  # ~100 Hz over the replay
    assert clock[0] >= start and clock[-1] == end
    # 0.9 s of bag at half speed: the player publishes the last message no earlier than 1.8 s
    # after the first (it waits for each message's time on its schedule). How much later it
    # gets there, and when a subscriber gets to its callbacks, is up to the machine's load:
    # no upper window, the pacing is read from the player's own account of its schedule.
    bag_s, wall_s = map(float, re.search(r"([\d.]+) s of bag in ([\d.]+) s", play.stdout).groups())
    assert bag_s == pytest.approx((end - start) / 1e9, abs=0.006)
    assert wall_s >= bag_s / rate - 0.011, play.stdout  # printed to 2 decimals
    arrivals = [t for _, _, t in got["got"][GRAY_LEFT]]
    assert arrivals == sorted(arrivals)


def _eval_with_responder(bag, tiny_bag, images: int, delay: float, tmp_path, ros_env, python_exe, *extra) -> dict:
    """bag-eval `bag` (paced, --rate 20) against a RESPONDER process that answers the first
    `images` left images after `delay` s from tiny_bag's ground truth: the JSON report."""
    topic = "/test_node/occupancy"
    responder = _start([python_exe, "-c", RESPONDER, str(tiny_bag), str(tmp_path / "responder.json"), str(delay),
                        topic, str(images)], ros_env)
    try:
        _wait_ready(responder)
        report_path = tmp_path / "eval.json"
        ev = subprocess.run([python_exe, "-m", "cigocc_ros.cli", "bag-eval", str(bag), "--output-topic", topic,
                             "--rate", "20", "--pace-timeout", "20", "--json", str(report_path), *extra],
                            env=ros_env, capture_output=True, text=True, timeout=120)
        assert ev.returncode == 0, ev.stdout + ev.stderr
        assert responder.wait(timeout=60) == 0, responder.stderr.read()
    finally:
        if responder.poll() is None:
            responder.kill()
    return json.loads(report_path.read_text())


def test_paced_eval_waits_for_the_node_and_scores_it(tiny_bag, tmp_path, ros_env, python_exe):
    delay = 0.2
    report = _eval_with_responder(tiny_bag, tiny_bag, 10, delay, tmp_path, ros_env, python_exe)
    assert report["frames_expected"] == 2 and report["frames_scored"] == 2 and report["missing_stamps"] == []
    assert report["triggers"] == 10 and report["outputs_for_triggers"] == 10 == report["outputs_received"]
    assert report["pace_timeouts"] == 0 and not report["mismatches"]
    assert delay * 1e3 <= report["latency_ms"]["median"] < delay * 1e3 + 3000
    # Paced: the next image waits for the previous answer, though --rate 20 would send it sooner.
    arrivals = np.array(json.loads((tmp_path / "responder.json").read_text())["arrivals"])
    assert len(arrivals) == 10 and np.all(np.diff(arrivals) >= delay * 0.95), np.diff(arrivals)

    # The same figures from the metric directly: frame 0 perfect, frame 5 with cars as road.
    store = typestore()
    metric = SSCMetric()
    with AnyReader([tiny_bag]) as reader:
        conns = [c for c in reader.connections if c.topic == "/kitti/occupancy_gt"]
        for i, (_, _, raw) in enumerate(reader.messages(connections=conns)):
            gt = np.asarray(store.deserialize_cdr(bytes(raw), OCCUPANCY_TYPE).labels)
            pred = np.where(gt == 255, 0, gt)
            if i == 1:
                pred[pred == 1] = 9
            metric.add(pred, gt)
    want = metric.compute()
    for key in ("iou", "miou", "precision", "recall"):
        assert report["metrics"][key] == pytest.approx(want[key], abs=1e-12), key
    assert report["metrics"]["iou_per_class"]["car"] == pytest.approx(want["iou_per_class"][1])
    assert 0 < report["metrics"]["miou"] < 1


# A best-effort subscriber (the node's input reliability). Its history holds every frame so a
# busy machine cannot overwrite one before it is taken: only the transport can lose a frame.
BEST_EFFORT_SUBSCRIBER = r"""
import json, sys, time
import rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("bag_play_best_effort_subscriber")
got = []
node.create_subscription(Image, "/kitti/camera_color_left/image_rect",
                         lambda m: got.append(m.header.stamp.sec * 10**9 + m.header.stamp.nanosec),
                         QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=20, reliability=ReliabilityPolicy.BEST_EFFORT))
print("ready", flush=True)
end = time.monotonic() + 30
while time.monotonic() < end and len(got) < int(sys.argv[2]):
    rclpy.spin_once(node, timeout_sec=0.05)
json.dump(got, open(sys.argv[1], "w"))
"""


def test_full_size_images_reach_a_best_effort_subscriber(tmp_path, ros_env, python_exe):
    """1241x376 colour frames (1.4 MB) to a best-effort subscriber: with Fast DDS's default
    shared-memory segment about half were lost (bench/bag_figures.py, also with a deep reader
    history); the player's larger segment delivers all."""
    seq = write_tiny_sequence(tmp_path / "seq", frames=8, labelled=(), size=(376, 1241))
    k2b.convert(seq, tmp_path / "bag", camera="color", velodyne=False, progress=False)
    out = tmp_path / "stamps.json"
    sub = _start([python_exe, "-c", BEST_EFFORT_SUBSCRIBER, str(out), "8"], ros_env)
    try:
        _wait_ready(sub)
        play = subprocess.run([python_exe, "-m", "cigocc_ros.cli", "bag-play", str(tmp_path / "bag"),
                               "--topics", "/kitti/camera_color_left/image_rect", "--wait-subscribers", "30"],
                              env=ros_env, capture_output=True, text=True, timeout=90)
        assert play.returncode == 0, play.stderr
        assert sub.wait(timeout=60) == 0, sub.stderr.read()
    finally:
        if sub.poll() is None:
            sub.kill()
    with AnyReader([tmp_path / "bag"]) as reader:
        conns = [c for c in reader.connections if c.topic == "/kitti/camera_color_left/image_rect"]
        want = [t for _, t, _ in reader.messages(connections=conns)]
    assert json.loads(out.read_text()) == want


@pytest.mark.parametrize("sigint_ignored", [False, True], ids=["foreground", "started-ignoring-sigint"])
def test_ctrl_c_stops_a_replay_cleanly(tiny_bag, ros_env, python_exe, sigint_ignored):
    """Also when started with SIGINT ignored, as every `cmd &` of a script is: the player then
    hung in its replay loop (found by a fresh-clone CI run started in the background)."""
    cmd = [python_exe, "-m", "cigocc_ros.cli", "bag-play", str(tiny_bag), "--rate", "0.05"]
    if sigint_ignored:
        cmd = ["bash", "-c", 'trap "" INT; exec "$@"', "bash", *cmd]  # SIG_IGN survives exec
    # PYTHONFAULTHANDLER: should the player hang after Ctrl-C, SIGABRT below makes it print
    # every thread's stack into the failure.
    play = _start(cmd, ros_env | {"PYTHONFAULTHANDLER": "1"})
    seen = []
    while not any(line.startswith("[INFO]") and "replaying" in line for line in seen):
        # The player announces the replay (0.9 s of bag: 18 s at this rate) after its warnings.
        line = play.stderr.readline()
        assert line, "".join(seen) + play.stderr.read()
        seen.append(line)
    time.sleep(1.0)
    assert play.poll() is None, play.stderr.read()
    t0 = time.monotonic()
    play.send_signal(signal.SIGINT)
    # communicate, not wait: a player blocked on a full stdout/stderr pipe could never exit.
    try:
        out, err = play.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        play.send_signal(signal.SIGABRT)
        out, err = play.communicate(timeout=15)
        pytest.fail(f"bag-play did not stop within 15 s of SIGINT; its threads at SIGABRT:\n{err[-6000:]}\n{out[-2000:]}")
    rc = play.returncode
    assert rc == 130, out + err
    assert time.monotonic() - t0 < 10.0
    assert "Traceback" not in err, err
    assert "interrupted" in out + err and "messages" in out  # the summary of what was replayed


def _payload_ends(tiny_bag) -> dict[str, list[int]]:
    """Per topic, the file offset where each message ends, in order: its CDR bytes found in the
    (uncompressed) mcap file. A cut at X keeps exactly the messages ending at or before X."""
    data = next(tiny_bag.glob("*.mcap")).read_bytes()
    ends: dict[str, list[int]] = {}
    with AnyReader([tiny_bag]) as reader:
        for conn, _, raw in reader.messages():
            at = data.find(bytes(raw))
            assert at > 0 and data.find(bytes(raw), at + 1) < 0  # found once: the oracle holds
            ends.setdefault(conn.topic, []).append(at + len(raw))
    return ends


def _cut_bag(tiny_bag, dst, cut: int) -> tuple:
    """A copy of the bag whose mcap file ends at byte `cut`, and the count of each topic's
    messages complete before it."""
    file = next(tiny_bag.glob("*.mcap"))
    dst.mkdir()
    (dst / file.name).write_bytes(file.read_bytes()[:cut])
    (dst / "metadata.yaml").write_text((tiny_bag / "metadata.yaml").read_text())
    return dst, {t: sum(e <= cut for e in ends) for t, ends in _payload_ends(tiny_bag).items()}


def test_a_cut_recording_replays_its_complete_messages(tiny_bag, tmp_path, ros_env, python_exe):
    """The recorder lost power in the middle of the third chunk: every message before the cut
    arrives byte for byte, also those of the cut chunk's first part, and one line says what
    was recovered and where the file ends."""
    reader = Reader(next(tiny_bag.glob("*.mcap")))
    reader.open()
    third = reader.storage.chunks[2]
    cut = third.chunk_start_offset + third.chunk_length // 2
    reader.close()
    cut_bag, counts = _cut_bag(tiny_bag, tmp_path / "cut", cut)
    bag = _bag_messages(tiny_bag)
    bag.pop("__span__")
    expected = {t: (typ, counts[t]) for t, typ in TOPICS.items()}
    assert 5 < counts[GRAY_LEFT] < len(bag[GRAY_LEFT])  # frames 0-4 lie before the third chunk
    play, got = _replay_to_subscriber(cut_bag, expected, 5, tmp_path, ros_env, python_exe)
    got = got["got"]
    for topic in TOPICS:
        assert len(got[topic]) == counts[topic], topic
        for (digest, size, _), sent in zip(got[topic], bag[topic], strict=False):
            assert digest == hashlib.sha256(sent + b"\0" * (size - len(sent))).hexdigest(), topic
    recovered = [line for line in play.stderr.splitlines() if "recovered" in line]
    assert len(recovered) == 1 and f"recovered {sum(counts.values())} complete messages" in recovered[0], play.stderr
    assert f"ends at byte {cut}," in recovered[0] and "Traceback" not in play.stderr


def test_a_cut_recording_is_scored_on_its_complete_frames(tiny_bag, tmp_path, ros_env, python_exe):
    """Cut one byte before the end of frame 5's left image: both ground-truth grids (frames 0
    and 5) survive but only the images of frames 0-4, so frame 0 is scored, 5 is missing."""
    cut = _payload_ends(tiny_bag)[GRAY_LEFT][5] - 1
    cut_bag, counts = _cut_bag(tiny_bag, tmp_path / "cut", cut)
    assert counts["/kitti/occupancy_gt"] == 2 and counts[GRAY_LEFT] == 5
    report = _eval_with_responder(cut_bag, tiny_bag, 5, 0.05, tmp_path, ros_env, python_exe, "--drain-timeout", "2")
    assert report["frames_expected"] == 2 and report["frames_scored"] == 1 and len(report["missing_stamps"]) == 1
    assert report["triggers"] == 5 == report["outputs_for_triggers"]
    assert report["recovered"].startswith(f"recovered {sum(counts.values())} complete messages")
    assert report["metrics"]["iou"] == pytest.approx(1.0)  # frame 0 is answered with its own ground truth


def test_missing_bag_is_a_clear_error(tmp_path, ros_env, python_exe):
    r = subprocess.run([python_exe, "-m", "cigocc_ros.cli", "bag-play", str(tmp_path / "none")], env=ros_env,
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stderr.startswith("error: ") and "does not exist" in r.stderr

