"""Figures quoted in docs/bags.md: kitti-to-bag speed and bag sizes for the real KITTI sample
sequence (both stereo pairs, scans) and a synthetic labelled one, and bag-play timing accuracy.

    scripts/in-env.sh python bench/bag_figures.py [--samples ../shared/kitti_samples]

bag-play runs in this process with nobody subscribed: it measures the player's own pacing and
publishing cost, not DDS delivery (test/test_bag_play.py covers delivery).
"""
from __future__ import annotations

import argparse
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))

from tiny_kitti import write_tiny_sequence  # noqa: E402

from cigocc_ros.bag import kitti_to_bag as k2b  # noqa: E402
from cigocc_ros.bag.play import BagPlayer, PlayOptions  # noqa: E402
from cigocc_ros.bag.session import RosSession  # noqa: E402


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default=os.environ.get("CIGOCC_KITTI_SAMPLES", str(REPO.parent / "shared" / "kitti_samples")))
    args = p.parse_args()
    real = Path(args.samples) / "sequences" / "00"
    os.environ.setdefault("ROS_DOMAIN_ID", str(random.randint(101, 200)))
    os.environ.setdefault("ROS_AUTOMATIC_DISCOVERY_RANGE", "LOCALHOST")
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        synthetic = write_tiny_sequence(tmp / "synthetic", frames=20, labelled=(0, 5, 10, 15), size=(376, 1241))
        print("kitti-to-bag")
        for name, seq, camera in (("real 00 (colour+gray, scans)", real, "both"),
                                  ("synthetic (colour+gray, scans, 4 ground truths)", synthetic, "both")):
            for storage in ("mcap", "sqlite3"):
                out = tmp / f"{seq.name}_{storage}"
                t0 = time.perf_counter()
                summary = k2b.convert(seq, out, storage=storage, camera=camera, progress=False)
                dt = time.perf_counter() - t0
                print(f"  {name:48s} {storage:7s} {summary['frames']:3d} frames  {dt:6.2f} s  "
                      f"{summary['frames'] / dt:6.1f} frames/s  {_size_mb(out):7.1f} MiB")
        print("bag-play (no subscriber), synthetic mcap bag")
        bag = tmp / "synthetic_mcap"
        for rate in (1.0, 4.0, 1000.0):
            with RosSession("bag_figures_play") as session:
                stats = BagPlayer(bag, session, PlayOptions(rate=rate)).play()
            n = sum(stats.published.values())
            print(f"  rate {rate:7.1f}: {stats.bag_duration_s:.3f} s of bag in {stats.wall_duration_s:.3f} s wall "
                  f"(ideal {stats.bag_duration_s / rate:.3f} s), {n} messages, "
                  f"{n / max(stats.wall_duration_s, 1e-9):.0f} msg/s")
        print("bag-play to a best-effort subscriber process, real 00 colour left images (1.4 MB), rate 1")
        real_bag = tmp / "00_mcap"
        for depth in (2, 20):
            for segment_mb in (0, 64):
                counts = [_best_effort_delivery(real_bag, segment_mb, depth) for _ in range(3)]
                label = "Fast DDS default (0.5 MiB)" if segment_mb == 0 else f"{segment_mb} MiB"
                print(f"  subscriber keep-last {depth:2d}, player segment {label:26s}: received "
                      f"{', '.join(f'{c}/10' for c in counts)}")
    return 0


_SUBSCRIBER = r"""
import sys, time, rclpy
from rclpy.qos import QoSProfile, ReliabilityPolicy, HistoryPolicy
from sensor_msgs.msg import Image
rclpy.init()
node = rclpy.create_node("bag_figures_subscriber")
got = []
node.create_subscription(Image, sys.argv[1], got.append,
                         QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=int(sys.argv[3]),
                                    reliability=ReliabilityPolicy.BEST_EFFORT))
print("ready", flush=True)
end = time.monotonic() + float(sys.argv[2])
while time.monotonic() < end:
    rclpy.spin_once(node, timeout_sec=0.05)
print(len(got), flush=True)
"""


def _best_effort_delivery(bag: Path, segment_mb: int, depth: int) -> int:
    import subprocess

    topic = "/kitti/camera_color_left/image_rect"
    sub = subprocess.Popen([sys.executable, "-c", _SUBSCRIBER, topic, "6", str(depth)], stdout=subprocess.PIPE,
                           text=True)
    assert sub.stdout.readline().strip() == "ready"
    # A fresh player process each time: Fast DDS reads its XML profiles once per process.
    subprocess.run([sys.executable, "-m", "cigocc_ros.cli", "bag-play", str(bag), "--topics", topic,
                    "--wait-subscribers", "5", "--shm-segment-mb", str(segment_mb)],
                   check=True, capture_output=True, cwd=REPO)
    return int(sub.communicate(timeout=30)[0].strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(main())
