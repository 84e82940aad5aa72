"""`cigocc seg-report`: the 2D segmentation report (cigocc_ros/evaluation/segmentation.py):
CamVid test mIoU / pixel accuracy over its 11 classes and, on held-out KITTI drives, accuracy at
the labelled LiDAR points per class, for a checkpoint's segmentation branch and for the
location prior, side by side. Writes report.md and report.json into --out."""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..config import ConfigError
from ..data import semantic_kitti as sk
from ..evaluation import segmentation as ev
from ..model.checkpoint import CheckpointError, read_metadata
from ..resources import ResourceNotFound, shipped_weights_file
from ..segmentation_inference import SegmentationPredictor
from .args import DEVICE_HELP, device_name


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default="", help="checkpoint (train-seg run or full model); default: shipped")
    p.add_argument("--camvid", default="", metavar="DIR", help="CamVid folder: score its test split")
    p.add_argument("--camvid-split", default="test", choices=["train", "val", "test"])
    p.add_argument("--camvid-scale", type=float, default=None, help="rescale CamVid images by this before "
                   "the network (default: the checkpoint's seg2d.camvid_eval_scale)")
    p.add_argument("--kitti", default="", metavar="DIR", help="KITTI folder with sequences/XX/")
    p.add_argument("--held-out", nargs="+", default=["07"], metavar="SEQ", help="KITTI drives to score")
    p.add_argument("--prior-sequences", nargs="+", default=None, metavar="SEQ",
                   help="KITTI drives the location prior is fitted on (default: the checkpoint's "
                   "seg2d.kitti_train_sequences, less the held-out ones)")
    p.add_argument("--out", default="outputs/seg-report", help="output folder")
    p.add_argument("--device", default="auto", type=device_name, help=DEVICE_HELP)


def run(args: argparse.Namespace) -> int:
    if not args.camvid and not args.kitti:
        print("error: give --camvid and/or --kitti", file=sys.stderr)
        return 2
    try:
        weights = Path(args.weights) if args.weights else shipped_weights_file()
        cfg, _ = read_metadata(weights)
        pred = SegmentationPredictor.load(weights, args.device)
        scale = args.camvid_scale if args.camvid_scale is not None else cfg.seg2d.camvid_eval_scale
        prior_seqs = args.prior_sequences or [s for s in cfg.seg2d.kitti_train_sequences if s not in args.held_out]
        leak = sorted(set(prior_seqs) & set(args.held_out))
        if leak:
            raise ConfigError(f"--prior-sequences {leak} are also held out")
        model_name, prior_name = f"segmentation branch ({weights.name})", "location prior"
        cam = {}
        if args.camvid:
            cam[model_name] = ev.camvid_confusion(lambda im: pred.labels(im, scale), args.camvid, args.camvid_split)
            lp = ev.camvid_prior(args.camvid)
            cam[prior_name] = ev.camvid_confusion(lambda im: lp.predict(im.shape[:2]), args.camvid,
                                                  args.camvid_split, camvid_labels=True)
        kit, frames = {}, []
        if args.kitti:
            kit[model_name], frames = ev.kitti_point_confusion(pred.labels, args.kitti, args.held_out)
            kp = ev.kitti_prior(args.kitti, prior_seqs)
            kit[prior_name], _ = ev.kitti_point_confusion(lambda im: kp.predict(im.shape[:2]), args.kitti,
                                                          args.held_out)
    except (sk.DataFormatError, CheckpointError, ResourceNotFound, ConfigError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    rows = {n: ev.summary(cam.get(n), kit.get(n)) for n in (model_name, prior_name)}
    table = ev.format_report(rows)
    head = (f"weights: {weights}" + (f"; CamVid {args.camvid_split} at scale {scale:g}" if args.camvid else "")
            + (f"; KITTI {', '.join(args.held_out)} ({len(frames)} frames; prior fitted on "
               f"{', '.join(prior_seqs)})" if args.kitti else ""))
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "report.md").write_text(f"{head}\n\n{table}\n")
    (out / "report.json").write_text(json.dumps({"weights": str(weights), "camvid_split": args.camvid_split,
                                                 "camvid_scale": scale, "held_out": args.held_out,
                                                 "prior_sequences": prior_seqs, "frames": frames,
                                                 "rows": rows}, indent=2))
    print(head + "\n\n" + table)
    return 0
