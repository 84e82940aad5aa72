"""`cigocc`: the command-line entry point. Each sub-command lives in the module that does its
job; this file only maps names to modules so `cigocc --help` stays fast (no torch import).

A module listed here provides `add_arguments(parser)` and `run(args) -> int`.
"""
from __future__ import annotations

import argparse
import importlib
import sys

COMMANDS: dict[str, tuple[str, str]] = {
    # name: (module, one-line help)
    "demo": ("cigocc_ros.demo", "the main job: synthetic data -> bag -> node -> scored occupancy + PNGs"),
    "train": ("cigocc_ros.train", "train CIGOcc (one process, or DDP under torchrun)"),
    "eval": ("cigocc_ros.evaluate", "score a checkpoint on a split with the official SSC metric"),
    "infer": ("cigocc_ros.infer", "predict occupancy for images or a sequence; write labels and PNGs"),
    "export": ("cigocc_ros.export", "export a checkpoint to ONNX (for ONNX Runtime / TensorRT)"),
    "make-masks": ("cigocc_ros.make_masks", "teacher masks from SAM / Grounded-SAM (optional deps)"),
    "kitti-to-bag": ("cigocc_ros.bag.kitti_to_bag", "convert a KITTI / SemanticKITTI sequence folder to a rosbag2 bag"),
    "bag-play": ("cigocc_ros.bag.play", "replay a rosbag2 bag into a live ROS 2 graph (rate or paced, /clock)"),
    "bag-eval": ("cigocc_ros.bag.evaluate", "replay a bag through the node and score its occupancy output"),
    "synth": ("cigocc_ros.data.synthetic_cli", "write synthetic SemanticKITTI sequences (--default: the default dataset)"),
    "preview": ("cigocc_ros.data.synthetic_preview", "picture of a frame: image, BEV of its voxel labels, classes, depth"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="cigocc", description="CIGOcc semantic occupancy tools")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        importlib.import_module(module).add_arguments(p)
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    # Only import the module of the command being run (torch, rclpy...); --help imports all.
    if argv and argv[0] in COMMANDS and not any(a in ("-h", "--help") for a in argv[:1]):
        module_name, help_text = COMMANDS[argv[0]]
        module = importlib.import_module(module_name)
        p = argparse.ArgumentParser(prog=f"cigocc {argv[0]}", description=help_text)
        module.add_arguments(p)
        args = p.parse_args(argv[1:])
        return int(module.run(args) or 0)
    args = build_parser().parse_args(argv)
    return int(importlib.import_module(args._module).run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
