"""`cigocc make-masks`: offline SAM / Grounded-SAM teacher masks for sequence folders
(cigocc_ros.data.teacher_masks; the optional packages and checkpoints are the user's)."""
from __future__ import annotations

import argparse

from ..data.teacher_masks import SamTeacher, open_sequence, write_teacher_masks
from ..device import resolve_device
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("sequences", nargs="+", help="sequence folders (…/sequences/XX)")
    p.add_argument("--sam-checkpoint", required=True, help="SAM checkpoint file (e.g. sam_vit_h_4b8939.pth)")
    p.add_argument("--sam-model", default="vit_h", choices=["vit_h", "vit_l", "vit_b"])
    p.add_argument("--grounding-dino-config", default="", help="Grounding DINO config (.py) for Grounded-SAM")
    p.add_argument("--grounding-dino-checkpoint", default="", help="Grounding DINO weights")
    p.add_argument("--points-per-side", type=int, default=32, help="SAM automatic-mask point grid")
    p.add_argument("--every", type=int, default=5, help="every n-th frame (labelled frames: 5)")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)
    p.add_argument("--camera", default="auto", choices=["auto", "image_2", "image_0"])


def run(args: argparse.Namespace) -> int:
    for seq in args.sequences:  # a bad sequence is said before minutes of loading SAM
        open_sequence(seq, args.camera)
    # Errors (MissingDependency, DataFormatError, ...) are one line of cli/main.py.
    teacher = SamTeacher(args.sam_checkpoint, args.sam_model, str(resolve_device(args.device)),
                         args.points_per_side, args.grounding_dino_config, args.grounding_dino_checkpoint)
    for seq in args.sequences:
        write_teacher_masks(teacher, seq, args.camera, args.every)
    return 0
