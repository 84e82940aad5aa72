"""`cigocc`: the command table. A command's module (cigocc_ros/cli/<module>.py, providing
`add_arguments(parser)` and `run(args) -> exit status`) is imported only when that command is
chosen, so `cigocc --help` and a mistyped command answer without importing torch or rclpy.
main() turns a bad input into one `error:` line and exit status 2 (cigocc_ros/errors.py).
"""
from __future__ import annotations

import argparse
import importlib
import sys

from ..errors import CigoccError

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module under cigocc_ros.cli, one-line help)
    "demo": ("demo", "the main job: synthetic data -> bag -> node -> scored occupancy + PNGs"),
    "train": ("train", "train CIGOcc (one process, or DDP under torchrun)"),
    "train-seg": ("train_seg", "train the image encoder + segmentation branch on real labelled pixels"),
    "segment": ("segment", "per-pixel SemanticKITTI labels of images (PNG ids + colour overlay)"),
    "seg-report": ("seg_report", "2D segmentation quality: CamVid test and KITTI LiDAR pixels, beside a location prior"),
    "eval": ("eval", "score a checkpoint on a split with the official SSC metric"),
    "make-targets": ("make_targets", "voxel targets from labelled LiDAR scans (SemanticKITTI's recipe)"),
    "lidar-report": ("lidar_report", "quality on real frames against their labelled LiDAR scans, beside trivial predictors"),
    "infer": ("infer", "predict occupancy for images or a sequence; write labels and PNGs"),
    "export": ("export", "export a checkpoint to ONNX (for ONNX Runtime / TensorRT)"),
    "make-masks": ("make_masks", "teacher masks from SAM / Grounded-SAM (optional deps)"),
    "kitti-to-bag": ("kitti_to_bag", "convert a KITTI / SemanticKITTI sequence folder to a rosbag2 bag"),
    "bag-play": ("bag_play", "replay a rosbag2 bag into a live ROS 2 graph (rate or paced, /clock)"),
    "bag-eval": ("bag_eval", "replay a bag through the node and score its occupancy output"),
    "bag-repair": ("bag_repair", "write a whole bag from the readable part of a cut or damaged one"),
    "synth": ("synth", "write synthetic SemanticKITTI sequences (--default: the default dataset)"),
    "preview": ("preview", "picture of a frame: image, BEV of its voxel labels, classes, depth"),
}


def table_parser() -> argparse.ArgumentParser:
    """The top-level parser: command names and their help, no command module imported."""
    parser = argparse.ArgumentParser(prog="cigocc", description="CIGOcc semantic occupancy tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (_, help_text) in COMMANDS.items():
        sub.add_parser(name, help=help_text, add_help=False)
    return parser


def command_parser(name: str):
    """(parser, module) of one command; imports that command's module."""
    module_name, help_text = COMMANDS[name]
    module = importlib.import_module(f"{__package__}.{module_name}")
    parser = argparse.ArgumentParser(prog=f"cigocc {name}", description=help_text)
    module.add_arguments(parser)
    return parser, module


def report_error(e: BaseException) -> int:
    """Print a bad input as the one line `error: <file>: <problem>` on stderr; exit status 2."""
    if isinstance(e, OSError) and e.filename is not None and e.strerror:
        text = f"{e.filename}: {e.strerror}"
    else:
        text = str(e) or type(e).__name__
    print("error: " + "; ".join(line.strip() for line in text.strip().splitlines()), file=sys.stderr)
    return 2


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in COMMANDS:
        table_parser().parse_args(argv)  # prints help or the error and exits
        return 2
    parser, module = command_parser(argv[0])
    args = parser.parse_args(argv[1:])
    try:
        return int(module.run(args) or 0)
    except (CigoccError, OSError) as e:
        # The project's own errors (bad images, bags, scans, calibrations, checkpoints,
        # configs) and files that cannot be opened; any other exception is a bug and keeps
        # its traceback.
        return report_error(e)

