"""`cigocc train-seg`: train the image encoder + segmentation branch on real labelled pixels
(CamVid, the KITTI frames' LiDAR labels; cigocc_ros.training.seg_trainer, docs/training.md).
Its checkpoint starts `cigocc train --init` and serves `cigocc segment --weights`."""
from __future__ import annotations

import argparse
import sys

from ..config import ConfigError, load_experiment
from ..data.semantic_kitti import DataFormatError
from ..model.checkpoint import CheckpointError
from ..training.seg_trainer import train_segmenter
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", default="lite", help="config name (cigocc_ros/experiments/<name>.yaml) or path: its model "
                   "section builds the encoder and segmentation branch, its seg2d section the training")
    p.add_argument("--camvid", default=None, metavar="DIR", help="CamVid folder (train/ val/ test/); "
                   "sets seg2d.camvid_root")
    p.add_argument("--kitti", default=None, metavar="DIR", help="KITTI folder with sequences/XX/ (image_2, "
                   "velodyne, labels, calib.txt); sets seg2d.kitti_root")
    p.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                   help="override a config value, e.g. --set seg2d.train.steps=500 (repeatable)")
    p.add_argument("--out", default="runs/seg2d", help="run folder")
    p.add_argument("--resume", action="store_true", help="continue the run in --out exactly")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    overrides = list(args.overrides)
    if args.camvid is not None:
        overrides.append(f"seg2d.camvid_root={args.camvid}")
    if args.kitti is not None:
        overrides.append(f"seg2d.kitti_root={args.kitti}")
    try:
        cfg = load_experiment(args.config, overrides)
        train_segmenter(cfg, args.out, device=args.device, resume=args.resume)
    except (ConfigError, DataFormatError, CheckpointError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0
