"""`cigocc bag-play`: replay a rosbag2 bag into a live ROS 2 graph (cigocc_ros.bag.play)."""
from __future__ import annotations

import argparse

from ..bag.play import BagPlayer
from ..bag.session import RosSession, run_guarded
from .play_args import add_play_arguments, options_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_play_arguments(p)


def run(args: argparse.Namespace) -> int:
    opts = options_from_args(args)

    def work() -> int:
        with RosSession("cigocc_bag_play", opts.shm_segment_mb) as session:
            stats = BagPlayer(args.bag, session, opts).play()
        total = sum(stats.published.values())
        print(f"{'interrupted after' if stats.interrupted else 'replayed'} {total} messages, "
              f"{stats.bag_duration_s:.2f} s of bag in {stats.wall_duration_s:.2f} s"
              + (f", {stats.pace_timeouts} pace timeouts" if opts.pace_topic else ""))
        for topic, n in sorted(stats.published.items()):
            print(f"  {topic}: {n}")
        for topic, why in stats.skipped_topics.items():
            print(f"  {topic}: not replayed ({why})")
        return 130 if stats.interrupted else 0

    return run_guarded("bag-play", work)
