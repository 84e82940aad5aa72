"""`cigocc bag-repair`: write a whole bag from the readable part of a damaged one (a recording cut
short, a bag without metadata.yaml) so that other tools open it (cigocc_ros.bag.repair)."""
from __future__ import annotations

import argparse
import sys

from ..bag.repair import STORAGES, repair_bag


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("input", help="the damaged bag: a rosbag2 folder, or an .mcap / .db3 file (only read)")
    p.add_argument("output", help="bag folder to create (must not exist)")
    p.add_argument("--storage", choices=sorted(STORAGES), default="",
                   help="storage of the output (default: the input's)")


def run(args: argparse.Namespace) -> int:
    try:
        summary = repair_bag(args.input, args.output, args.storage)
    except KeyboardInterrupt:  # repair_bag has removed its partial output
        print("bag-repair: interrupted", file=sys.stderr)
        return 130
    print(summary.recovery.line())
    total = sum(summary.written.values())
    print(f"wrote {summary.output} ({summary.storage}): {total} messages on {len(summary.written)} topics")
    for topic, n in sorted(summary.written.items()):
        print(f"  {topic}: {n}")
    for topic, why in summary.skipped_topics.items():
        print(f"  {topic}: not written ({why})")
    return 0
