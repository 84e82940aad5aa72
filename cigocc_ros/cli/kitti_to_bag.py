"""`cigocc kitti-to-bag`: a KITTI / SemanticKITTI sequence folder -> a rosbag2 bag
(cigocc_ros.bag.kitti_to_bag; topics and frames in docs/bags.md)."""
from __future__ import annotations

import argparse
import sys

from ..bag.kitti_to_bag import STORAGES, convert
from ..bag.messages import COMPRESSIONS
from ..config import GridConfig, load_experiment


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sequence", help="sequence folder (calib.txt, times.txt, image_0..3/, [poses.txt, velodyne/, "
                                    "labels/, voxels/])")
    p.add_argument("output", help="bag folder to create (must not exist unless --overwrite)")
    p.add_argument("--storage", choices=sorted(STORAGES), default="mcap", help="rosbag2 storage plugin")
    p.add_argument("--camera", choices=["auto", "color", "gray", "both"], default="auto",
                   help="stereo pair(s) to write; auto = colour (image_2/3) if present, else grayscale")
    p.add_argument("--first", type=int, default=0, help="first frame index")
    p.add_argument("--last", type=int, default=None, help="last frame index (inclusive)")
    p.add_argument("--no-velodyne", action="store_true", help="leave the LiDAR scans out")
    p.add_argument("--start-time", type=float, default=1.0e9,
                   help="stamp of times.txt's 0 in seconds since the epoch (KITTI odometry has no absolute "
                        "time; a non-zero origin keeps ROS from reading stamps as 'unset')")
    p.add_argument("--config", default=None,
                   help="experiment config (name or YAML) whose grid the ground truth uses; default GridConfig()")
    p.add_argument("--legacy-voxel-shift", action="store_true",
                   help="voxel files released before 2020-08: undo their one-voxel shift (docs/conventions.md)")
    p.add_argument("--compressed", choices=sorted(COMPRESSIONS), default="",
                   help="write sensor_msgs/CompressedImage on <image topic>/compressed instead of raw images")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output bag")
    p.add_argument("--quiet", action="store_true", help="no progress bar")


def run(args: argparse.Namespace) -> int:
    grid = load_experiment(args.config).grid if args.config else GridConfig()
    try:
        summary = convert(args.sequence, args.output, storage=args.storage, camera=args.camera, first=args.first,
                          last=args.last, velodyne=not args.no_velodyne, start_time=args.start_time, grid=grid,
                          overwrite=args.overwrite, progress=not args.quiet,
                          legacy_voxel_shift=args.legacy_voxel_shift, compressed=args.compressed)
    except (OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {summary['bag']} ({summary['storage']}): {summary['frames']} frames, "
          f"{summary['duration_s']:.2f} s, cameras {', '.join(summary['cameras'])}")
    for topic, n in summary["topics"].items():
        print(f"  {topic}: {n}")
    return 0
