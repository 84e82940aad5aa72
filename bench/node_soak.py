"""Soak of cigocc_node (a benchmark, not a test): real KITTI colour frames published at the camera
rate for a long time; reports, per time slice, the node's RSS and the latency percentiles
(image stamp -> SemanticOccupancy received here, wall clock) so that growth or drift shows.

    scripts/in-env.sh python bench/node_soak.py                       # 10 min at 10 Hz, shipped weights, CPU
    scripts/in-env.sh python bench/node_soak.py --minutes 3 --slice 30 --device cuda

The node drops frames it cannot keep up with (queue_size 1, newest frame wins): on a CPU that
is slower than the camera, outputs/s is the node's pace and latency stays bounded; growth of
RSS or latency over the slices is what this looks for. Frames cycle through the KITTI samples.
"""
from __future__ import annotations

import argparse
import array
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))
from node_bench import DDS_ENV, DEFAULT_KITTI, load_frames  # noqa: E402


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=10.0)
    p.add_argument("--rate", type=float, default=10.0, help="camera rate, Hz (KITTI: 10)")
    p.add_argument("--slice", type=float, default=60.0, help="seconds per reported slice")
    p.add_argument("--weights", default="", help="checkpoint; empty = the shipped weights")
    p.add_argument("--device", default="cpu")
    p.add_argument("--frames", type=int, default=10, help="KITTI frames to cycle through")
    p.add_argument("--kitti", type=Path, default=DEFAULT_KITTI)
    args = p.parse_args()

    import rclpy
    from cigocc_msgs.msg import SemanticOccupancy
    from rclpy.executors import SingleThreadedExecutor
    from rclpy.node import Node
    from rclpy.qos import QoSProfile, ReliabilityPolicy
    from sensor_msgs.msg import CameraInfo, Image

    frames, P, T, _ = load_frames(args.kitti, args.frames)
    domain = random.Random(time.time_ns()).randint(1, 200)
    env = dict(os.environ, ROS_DOMAIN_ID=str(domain), **DDS_ENV)
    os.environ.update(DDS_ENV)
    cft = "[" + ",".join(repr(float(v)) for v in np.asarray(T).ravel()) + "]"
    log_path = Path(tempfile.gettempdir()) / "cigocc_node_soak.log"
    proc = subprocess.Popen([sys.executable, "-m", "cigocc_ros.ros.main", "--ros-args", "-p", f"weights:={args.weights}"
                             if args.weights else "weights:=''", "-p", f"device:={args.device}",
                             "-p", f"camera_from_grid:={cft}", "-p", "max_latency:=1000.0"],
                            env=env, stdout=open(log_path, "w"), stderr=subprocess.STDOUT, cwd=REPO)
    ctx = rclpy.Context()
    rclpy.init(context=ctx, domain_id=domain, args=[])
    node = Node("soak_feeder", context=ctx)
    qos = QoSProfile(depth=2, reliability=ReliabilityPolicy.RELIABLE)
    pub_img = node.create_publisher(Image, "left/image", qos)
    pub_info = node.create_publisher(CameraInfo, "left/camera_info", qos)
    lock = threading.Lock()
    outputs: list[tuple[float, float]] = []  # (monotonic received, latency s)

    def on_occ(msg):
        stamp = msg.header.stamp.sec * 10**9 + msg.header.stamp.nanosec
        with lock:
            outputs.append((time.monotonic(), (time.time_ns() - stamp) / 1e9))

    node.create_subscription(SemanticOccupancy, "/cigocc_node/occupancy", on_occ, qos)
    ex = SingleThreadedExecutor(context=ctx)
    ex.add_node(node)
    threading.Thread(target=ex.spin, daemon=True).start()
    h, w = frames[0].shape[:2]
    msgs = []
    for bgr in frames:
        info = CameraInfo(height=h, width=w, k=[float(v) for v in P[:, :3].ravel()],
                          p=[float(v) for v in P.ravel()], distortion_model="plumb_bob")
        img = Image(height=h, width=w, encoding="bgr8", step=w * 3)
        img.data = array.array("B", bgr.tobytes())
        msgs.append((info, img))
    rows = []
    try:
        deadline = time.time() + 300
        while "listening on" not in log_path.read_text():
            if proc.poll() is not None or time.time() > deadline:
                raise SystemExit(f"node did not start: see {log_path}")
            time.sleep(0.2)
        time.sleep(1.0)
        rss0 = rss_mb(proc.pid)
        print(f"node up, RSS {rss0:.0f} MB; {args.minutes:g} min at {args.rate:g} Hz, slices of {args.slice:g} s",
              flush=True)
        print("| t (s) | sent | outputs | RSS (MB) | latency p50 / p95 / max (ms) |")
        print("| --- | --- | --- | --- | --- |", flush=True)
        t_start = time.monotonic()
        end = t_start + args.minutes * 60
        next_slice = t_start + args.slice
        sent = sent_slice = 0
        while True:
            now = time.monotonic()
            if now >= next_slice or now >= end:
                with lock:
                    lat = [v for t, v in outputs if next_slice - args.slice <= t < next_slice]
                q = np.percentile(np.asarray(lat) * 1e3, [50, 95, 100]) if lat else [float("nan")] * 3
                row = (next_slice - t_start, sent_slice, len(lat), rss_mb(proc.pid), *q)
                rows.append(row)
                print(f"| {row[0]:.0f} | {row[1]} | {row[2]} | {row[3]:.0f} | {q[0]:.0f} / {q[1]:.0f} / {q[2]:.0f} |",
                      flush=True)
                sent_slice = 0
                next_slice += args.slice
                if now >= end:
                    break
            info, img = msgs[sent % len(msgs)]
            stamp = time.time_ns()
            for m in (info, img):
                m.header.stamp.sec, m.header.stamp.nanosec = divmod(stamp, 10**9)
                m.header.frame_id = "camera_color_left"
            pub_info.publish(info)
            pub_img.publish(img)
            sent += 1
            sent_slice += 1
            time.sleep(max(0.0, t_start + sent / args.rate - time.monotonic()))
        if proc.poll() is not None:
            raise SystemExit(f"the node died (exit {proc.returncode}): see {log_path}")
        rss = [r[3] for r in rows]
        p95 = [r[5] for r in rows if np.isfinite(r[5])]
        print(f"\nRSS: {rss[0]:.0f} MB after the first slice, {rss[-1]:.0f} MB at the end "
              f"(growth {rss[-1] - rss[0]:+.0f} MB; {rss0:.0f} MB before the first frame); "
              f"latency p95 first / last slice {p95[0]:.0f} / {p95[-1]:.0f} ms" if p95 else "no outputs")
        return 0
    finally:
        ex.shutdown()
        node.destroy_node()
        rclpy.shutdown(context=ctx)
        if proc.poll() is None:
            proc.terminate()
            proc.wait(30)


if __name__ == "__main__":
    sys.exit(main())
