"""How many camera frames arrive between two processes, per Fast DDS transport and reliability.

Why the node's inputs are reliable (docs/node.md, "DDS and large images"): a publisher process
sends `--sets` sets of {right CameraInfo, right image, left CameraInfo, left image} 1 s apart;
a subscriber process (keep last 2) counts what arrives. Not a test: it prints a table.

    scripts/in-env.sh python bench/dds_large_images.py [--encoding bgr8] [--sets 10]
"""
from __future__ import annotations

import argparse
import array
import json
import os
import random
import subprocess
import sys
import time

TOPICS = ["right/camera_info", "right/image", "left/camera_info", "left/image"]


def subscriber(reliable: bool, seconds: float) -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import HistoryPolicy, QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = Node("dds_probe_sub")
    rel = ReliabilityPolicy.RELIABLE if reliable else ReliabilityPolicy.BEST_EFFORT
    qos = QoSProfile(history=HistoryPolicy.KEEP_LAST, depth=2, reliability=rel)
    counts = dict.fromkeys(TOPICS, 0)
    for t in TOPICS:
        node.create_subscription(Image if "image" in t else CameraInfo, t,
                                 lambda m, t=t: counts.__setitem__(t, counts[t] + 1), qos)
    end = time.time() + seconds
    while time.time() < end:
        rclpy.spin_once(node, timeout_sec=0.1)
    print(json.dumps(counts), flush=True)


def publisher(encoding: str, sets: int) -> None:
    import rclpy
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    rclpy.init()
    node = Node("dds_probe_pub")
    qos = QoSProfile(depth=10, reliability=ReliabilityPolicy.RELIABLE)
    pubs = {t: node.create_publisher(Image if "image" in t else CameraInfo, t, qos) for t in TOPICS}
    while any(node.count_subscribers(t) < 1 for t in TOPICS):
        time.sleep(0.1)
    time.sleep(1.0)
    channels = {"mono8": 1, "rgb8": 3, "bgr8": 3}[encoding]
    img = Image(height=376, width=1241, encoding=encoding, step=1241 * channels)
    img.data = array.array("B", bytes(376 * 1241 * channels))
    for _ in range(sets):
        for t in TOPICS:
            pubs[t].publish(img if "image" in t else CameraInfo(width=1241, height=376))
        time.sleep(1.0)
    time.sleep(2.0)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--encoding", default="bgr8", choices=["mono8", "rgb8", "bgr8"])
    p.add_argument("--sets", type=int, default=10)
    p.add_argument("--transports", default="DEFAULT,SHM,UDPv4,LARGE_DATA")
    p.add_argument("--role", choices=["sub", "pub"], help=argparse.SUPPRESS)
    p.add_argument("--reliable", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.role == "sub":
        subscriber(args.reliable, args.sets + 15.0)
        return 0
    if args.role == "pub":
        publisher(args.encoding, args.sets)
        return 0
    print(f"# {args.sets} sets of 1241x376 {args.encoding} images + CameraInfo, publisher reliable, "
          f"subscriber keep last 2; received per topic")
    for transport in args.transports.split(","):
        for reliable in (False, True):
            env = dict(os.environ, ROS_DOMAIN_ID=str(random.randint(1, 200)), FASTDDS_BUILTIN_TRANSPORTS=transport,
                       ROS_AUTOMATIC_DISCOVERY_RANGE="LOCALHOST")
            me = [sys.executable, __file__, "--encoding", args.encoding, "--sets", str(args.sets)]
            sub = subprocess.Popen(me + ["--role", "sub"] + (["--reliable"] if reliable else []), env=env,
                                   stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)
            subprocess.run(me + ["--role", "pub"], env=env, timeout=args.sets + 60, check=True)
            counts = json.loads(sub.communicate(timeout=60)[0].strip().splitlines()[-1])
            row = ", ".join(f"{t} {n}/{args.sets}" for t, n in counts.items())
            print(f"{transport:>10} {'reliable' if reliable else 'best effort':>11}: {row}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
