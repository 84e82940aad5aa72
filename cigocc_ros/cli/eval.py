"""`cigocc eval`: score a checkpoint (or submission files) on a split with the official SSC
metric; writes the metrics JSON and prints the papers' table with the controls scored on the
same frames below the model (cigocc_ros.evaluation.split, cigocc_ros.evaluation.controls)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..evaluation.controls import control_checks
from ..evaluation.split import evaluate_checkpoint, evaluate_submission
from ..evaluation.ssc_metric import format_rows
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("checkpoint", nargs="?", default="", help="model checkpoint (.safetensors)")
    p.add_argument("--predictions", default="", help="score these submission files "
                   "(<dir>/sequences/XX/predictions/NNNNNN.label) instead of running a model")
    p.add_argument("--config", default="lite", help="config for --predictions (grid, data)")
    p.add_argument("--data", default="", help="dataset root; default: the checkpoint's data.root, "
                   "else the default synthetic dataset")
    p.add_argument("--split", default="val", choices=["train", "val", "test"])
    p.add_argument("--sequences", nargs="+", default=None, help="score these sequences of --data as "
                   "the split (e.g. the real held-out 07 of a make-targets folder)")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)
    p.add_argument("--out", default="", help="metrics JSON path (default: next to the checkpoint)")
    p.add_argument("--submission", default="", help="also write submission .label files here")
    p.add_argument("--input", dest="depth_input", default="auto", choices=["auto", "mono", "stereo"],
                   help="mono: image only; stereo: also the StereoSGBM depth of image_2/image_3 "
                   "(the node's stereo mode); auto: the checkpoint's data.stereo")
    p.add_argument("--no-controls", action="store_true", help="skip the controls (shuffled image, "
                   "flat ground, voxel prior of the training frames) printed beside the model")


def run(args: argparse.Namespace) -> int:
    if bool(args.checkpoint) == bool(args.predictions):
        raise SystemExit("give either a checkpoint or --predictions")
    if args.predictions:
        result = evaluate_submission(args.predictions, args.config, args.split, args.data,
                                     sequences=args.sequences, controls=not args.no_controls)
        default_out = Path(args.predictions) / f"{args.split}.metrics.json"
    else:
        result = evaluate_checkpoint(args.checkpoint, args.split, args.data, args.device,
                                     submission_dir=args.submission or None, sequences=args.sequences,
                                     controls=not args.no_controls, depth_input=args.depth_input)
        default_out = Path(args.checkpoint).with_suffix(f".{args.split}.metrics.json")
    out = Path(args.out) if args.out else default_out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"source": str(args.checkpoint or args.predictions), "data": result.data_root,
                               "split": args.split, "frames": result.frames,
                               **({"input": args.depth_input} if args.checkpoint else {}), **result.metrics,
                               "controls": result.controls}, indent=2))
    print(format_rows([("CIGOcc", result.metrics), *result.controls.items()]))
    for line in control_checks(result.metrics, result.controls):
        print(line)
    print(f"metrics written to {out}")
    return 0
