"""`cigocc segment IMAGES... --out DIR`: per-pixel SemanticKITTI labels of images, from the
encoder and segmentation branch of a checkpoint (a `cigocc train-seg` run's, or a full model's;
default: the shipped weights).

For each input, `DIR/<stem>.png`: uint8, the input's size, one training label per pixel
(0 = nothing there: sky or unlabelled; 1-19 as in cigocc_ros/semantic-kitti.yaml's learning map),
and `DIR/<stem>_overlay.png`: the image with the labels' colours blended in. A bad input (not
an image, missing) or bad weights: one `error:` line naming it, exit code 2 (the outputs of the
inputs before it stay written).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from tqdm import tqdm

from .. import viz
from ..data import semantic_kitti as sk
from ..model.checkpoint import CheckpointError
from ..resources import ResourceNotFound
from ..segmentation_inference import SegmentationPredictor
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG; colour or grayscale)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--weights", default="", help="checkpoint (.safetensors): a train-seg run's or a full "
                   "model's; default: the shipped weights")
    p.add_argument("--scale", type=float, default=1.0, help="run the network on the image rescaled by this "
                   "(the labels keep the input's size); KITTI-like cameras: 1")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    if not args.scale > 0:
        print(f"error: --scale must be > 0, got {args.scale}", file=sys.stderr)
        return 2
    files = [Path(f) for f in args.images]
    stems = [f.stem for f in files]
    dup = next((s for s in stems if stems.count(s) > 1), None)
    if dup is not None:
        print(f"error: two inputs have the stem {dup!r}: their outputs would overwrite each other", file=sys.stderr)
        return 2
    try:
        predictor = SegmentationPredictor.load(args.weights, args.device)
        out = Path(args.out)
        # delay: no bar before the first images are done, so an input that fails at once (a
        # cut image) leaves just its error line.
        for f in tqdm(files, desc="segment", dynamic_ncols=True, delay=2.0):
            image = sk.read_image(f)  # grayscale is repeated to three channels
            labels = predictor.labels(image, args.scale)
            sk.write_image(out / f"{f.stem}.png", labels)
            viz.save_png(out / f"{f.stem}_overlay.png", viz.overlay(image, labels))
    except (sk.DataFormatError, CheckpointError, ResourceNotFound) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {len(files)} label images and overlays to {out}")
    return 0
