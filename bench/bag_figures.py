"""Figures quoted in docs/bags.md: kitti-to-bag speed and bag sizes for the real KITTI sample
sequence (both stereo pairs, scans) and a synthetic labelled one, and bag-play timing accuracy.

    scripts/in-env.sh python bench/bag_figures.py [--samples ../shared/kitti_samples]

bag-play runs in this process with nobody subscribed: it measures the player's own pacing and
publishing cost, not DDS delivery (test/test_bag_play.py covers delivery).
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "test"))

from tiny_kitti import write_tiny_sequence  # noqa: E402

from cigocc_ros.bag import kitti_to_bag as k2b  # noqa: E402
from cigocc_ros.bag.play import BagPlayer, PlayOptions, RosSession  # noqa: E402


def _size_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--samples", default=os.environ.get("CIGOCC_KITTI_SAMPLES", str(REPO.parent / "shared" / "kitti_samples")))
    args = p.parse_args()
    real = Path(args.samples) / "sequences" / "00"
    os.environ.setdefault("ROS_DOMAIN_ID", "97")
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
    return 0


if __name__ == "__main__":
    sys.exit(main())
