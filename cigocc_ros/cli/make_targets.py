"""`cigocc make-targets`: voxel training targets from labelled LiDAR scans (SemanticKITTI's
recipe, cigocc_ros/data/scan_targets.py) for sequence folders with velodyne/, labels/,
poses.txt and calib.txt (Tr). Writes `<out>/sequences/XX/voxels/NNNNNN.{label,invalid,
occluded,bin}` plus links to the sequence's inputs, a folder the Dataset reads directly."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ..data.scan_targets import DEFAULT_SCANS, TargetError, write_targets
from ..data.semantic_kitti import DataFormatError, frame_name

DEFAULT_OUT = "data/kitti-scan-targets-v1"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sequences", nargs="+", help="sequence folders (…/sequences/XX)")
    p.add_argument("--out", default=DEFAULT_OUT, help="output root (gets sequences/XX/)")
    p.add_argument("--scans", type=int, default=DEFAULT_SCANS, help="scans aggregated per frame: the "
                   "frame's and the following labelled ones")
    p.add_argument("--frames", nargs="*", default=None, help="only these frames (e.g. 0 2 or 000004)")
    p.add_argument("--jobs", type=int, default=1, help="frames computed in parallel processes")


def run(args: argparse.Namespace) -> int:
    if args.scans < 1:
        print("error: --scans must be at least 1", file=sys.stderr)
        return 2
    frames = [frame_name(f) for f in args.frames] if args.frames else None
    try:
        write_targets([Path(s) for s in args.sequences], Path(args.out), args.scans, frames, jobs=args.jobs)
    except (TargetError, DataFormatError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"targets written under {Path(args.out) / 'sequences'}")
    return 0
