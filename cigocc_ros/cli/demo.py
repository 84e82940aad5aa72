"""`cigocc demo`: the main job, end to end, on the embedded default: synthetic sequence -> bag ->
cigocc_node -> scored occupancy and PNGs (cigocc_ros.bag.demo). Given a real KITTI sequence
folder instead, its frames -> bag -> the node (stereo) -> the LiDAR report beside the controls."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..bag.demo import run_demo, run_kitti_demo
from ..evaluation.split import sequence_controls
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("folder", nargs="?", default=None, help="a real KITTI sequence folder with image_2, image_3, "
                   "velodyne, labels (e.g. ../shared/kitti_samples/sequences/07); default: the synthetic demo")
    p.add_argument("--mono", action="store_true", help="with a KITTI folder: run the node on the left camera only")
    p.add_argument("--out", default="outputs/demo", help="where the bag, report and PNGs go")
    p.add_argument("--weights", default="", help="checkpoint; default: the shipped weights")
    p.add_argument("--sequence", default="08", help="sequence of the default dataset to replay")
    p.add_argument("--frames", type=int, default=30, help="replay the first N frames")
    p.add_argument("--renders", type=int, default=3, help="PNG renderings of this many labelled frames")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)
    p.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")


def run(args: argparse.Namespace) -> int:
    if args.folder:
        return run_kitti_demo(Path(args.folder), Path(args.out), Path(args.weights) if args.weights else None,
                              args.device, args.timeout, stereo=not args.mono)
    return run_demo(Path(args.out), Path(args.weights) if args.weights else None, args.sequence, args.frames,
                    args.renders, args.device, args.timeout, controls=sequence_controls)
