"""`cigocc preview`: one frame of a synthetic (or any SemanticKITTI) sequence as a picture
(drawn by cigocc_ros.data.synthetic.preview: `render_preview`, `read_preview`)."""
from __future__ import annotations

import argparse
import sys

from .. import viz
from ..classes import IGNORE_LABEL
from ..data import semantic_kitti as sk
from ..data.synthetic.preview import read_preview, render_preview


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--seed", type=int, default=None, help="render this seed's sequence in memory")
    p.add_argument("--frames", type=int, default=0, help="with --seed: frames of the sequence (default 50)")
    p.add_argument("--root", default="", help="or read a written dataset (sequences/XX/ under it)")
    p.add_argument("--sequence", default="00", help="with --root: the sequence")
    p.add_argument("--frame", type=int, default=0, help="frame index (labelled frames are multiples of 5)")
    p.add_argument("--out", default="preview.png", help="PNG to write")


def run(args: argparse.Namespace) -> int:
    try:
        if args.seed is not None:
            img, labels = render_preview(args.seed, args.frame, args.frames)
        elif args.root:
            img, labels = read_preview(args.root, args.sequence, args.frame)
        else:
            print("give --seed or --root", file=sys.stderr)
            return 2
    except (sk.DataFormatError, OSError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    path = viz.save_png(args.out, img)
    shown = (labels != 0) & (labels != IGNORE_LABEL)
    print(f"wrote {path} ({int(shown.sum())} labelled voxels)")
    return 0
