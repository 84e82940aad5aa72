"""The replay arguments `cigocc bag-play` and `cigocc bag-eval` share (not a command itself)."""
from __future__ import annotations

import argparse

from ..bag.play import PlayOptions


def add_play_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("bag", help="rosbag2 folder (mcap or sqlite3)")
    p.add_argument("--rate", type=float, default=1.0, help="replay speed factor (2 = twice as fast)")
    p.add_argument("--topics", nargs="+", default=[], help="replay only these topics")
    p.add_argument("--exclude", nargs="+", default=[], help="topics not to replay")
    p.add_argument("--no-clock", action="store_true", help="do not publish /clock")
    p.add_argument("--clock-hz", type=float, default=100.0, help="/clock rate between messages")
    p.add_argument("--pace-topic", default="",
                   help="paced mode: after each trigger message wait for this output topic (e.g. the node's "
                        "occupancy) to carry a stamp >= the trigger's")
    p.add_argument("--pace-type", default="cigocc_msgs/msg/SemanticOccupancy",
                   help="message type of --pace-topic (it must start with a std_msgs/Header)")
    p.add_argument("--pace-trigger", default="", help="topic whose messages wait for the output "
                                                      "(default: the first left image topic)")
    p.add_argument("--pace-timeout", type=float, default=30.0, help="seconds to wait for each output")
    p.add_argument("--wait-subscribers", type=float, default=0.0,
                   help="before replaying, wait up to this many seconds for every topic to have a subscriber")
    p.add_argument("--best-effort", action="store_true", help="publish best-effort instead of reliable")
    p.add_argument("--start", type=float, default=0.0, help="skip the first START seconds of the bag")
    p.add_argument("--shm-segment-mb", type=int, default=64,
                   help="Fast DDS shared-memory segment of the player (0 = Fast DDS's default 0.5 MB, which "
                        "loses large images to best-effort subscribers); ignored with a profile file of your own")


def options_from_args(args: argparse.Namespace) -> PlayOptions:
    return PlayOptions(rate=args.rate, clock=not args.no_clock, clock_hz=args.clock_hz, topics=tuple(args.topics),
                       exclude=tuple(args.exclude), pace_topic=args.pace_topic, pace_type=args.pace_type,
                       pace_trigger=args.pace_trigger, pace_timeout=args.pace_timeout,
                       wait_subscribers=args.wait_subscribers, best_effort=args.best_effort, start=args.start,
                       shm_segment_mb=args.shm_segment_mb)
