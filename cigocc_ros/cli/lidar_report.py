"""`cigocc lidar-report`: quality on real frames against their labelled LiDAR scans, the model
beside a flat ground slab, stereo depth with a height rule and stereo with the segmentation
branch's classes (cigocc_ros/evaluation/real_report.py,
docs/real-frames.md). Writes report.json, report.md and a PNG per frame."""
from __future__ import annotations

import argparse
from pathlib import Path

from ..config import GridConfig
from ..evaluation.real_report import real_frames, run_report, write_report
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sequences", nargs="+", help="sequence folders with image_2, velodyne, labels, calib "
                   "(e.g. ../shared/kitti_samples/sequences/07)")
    p.add_argument("--weights", default="", help="checkpoint (.safetensors); default: the shipped weights")
    p.add_argument("--no-model", action="store_true", help="only the trivial predictors")
    p.add_argument("--seg-weights", default="", help="checkpoint whose segmentation branch labels the stereo "
                   "+ segmentation control; default: --weights (the model's own)")
    p.add_argument("--stereo", action="store_true", help="also run the model in stereo mode (image_3)")
    p.add_argument("--frames", nargs="*", default=None, help="only these frames")
    p.add_argument("--out", default="outputs/lidar-report", help="folder for report.json, report.md, PNGs")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    from ..inference import Predictor, default_weights
    from ..segmentation_inference import SegmentationPredictor

    # Bad inputs (DataFormatError, CheckpointError, DeviceError) are one error line of cli/main.py.
    frames = [f for s in args.sequences for f in real_frames(Path(s), args.frames)]
    predictor = None
    if not args.no_model:
        predictor = Predictor.from_checkpoint(args.weights or default_weights(), device=args.device)
    segmenter = SegmentationPredictor.load(args.seg_weights or args.weights or default_weights(), args.device)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    grid = predictor.cfg.grid if predictor else GridConfig()
    reports = run_report(frames, predictor, args.stereo, grid, out, segmenter=segmenter)
    weights = "" if args.no_model else str(args.weights or "shipped")
    print(write_report(out, reports, frames, args.sequences, weights))
    print(f"report and {len(frames)} PNG(s) in {out}")
    return 0
