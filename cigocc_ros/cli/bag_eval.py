"""`cigocc bag-eval`: replay a bag through a running node and score its occupancy output against
the bag's ground truth (cigocc_ros.bag.score)."""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..bag.kitti_to_bag import OCCUPANCY_GT_TOPIC
from ..bag.score import DEFAULT_OUTPUT_TOPIC, EvalReport, score_replay
from ..bag.session import run_guarded
from .play_args import add_play_arguments, options_from_args


def add_arguments(p: argparse.ArgumentParser) -> None:
    add_play_arguments(p)
    p.add_argument("--output-topic", default=DEFAULT_OUTPUT_TOPIC, help="the node's SemanticOccupancy topic")
    p.add_argument("--gt-topic", default=OCCUPANCY_GT_TOPIC, help="the bag's ground-truth SemanticOccupancy topic")
    p.add_argument("--no-pace", action="store_true",
                   help="replay at --rate without waiting for the node (frames it drops count as missing)")
    p.add_argument("--drain-timeout", type=float, default=10.0,
                   help="seconds to wait for the node's last outputs after the replay ends")
    p.add_argument("--json", default="", help="write the report here as JSON")


def _print_report(r: EvalReport) -> None:
    print(f"frames: {r.frames_scored} scored of {r.frames_expected} with ground truth; "
          f"outputs {r.outputs_received} (for {r.outputs_for_triggers} of {r.triggers} input frames)")
    if r.latency_ms:
        lat = r.latency_ms
        print(f"latency ms: mean {lat['mean']:.1f}, median {lat['median']:.1f}, p90 {lat['p90']:.1f}, "
              f"max {lat['max']:.1f}")
    if r.metrics:
        m = r.metrics
        print(f"IoU {100 * m['iou']:.2f}  mIoU {100 * m['miou']:.2f}  precision {100 * m['precision']:.2f}  "
              f"recall {100 * m['recall']:.2f}")
    for text in r.mismatches[:5]:
        print(f"not scored: {text}")
    if r.pace_timeouts:
        print(f"{r.pace_timeouts} input frames timed out waiting for the node")


def run(args: argparse.Namespace) -> int:
    opt = options_from_args(args)
    if not args.no_pace and not opt.pace_topic:
        opt.pace_topic = args.output_topic

    def work() -> int:
        report = score_replay(args.bag, args.output_topic, opt, args.gt_topic, args.drain_timeout)
        _print_report(report)
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(report.to_json(), indent=2) + "\n")
            print(f"wrote {args.json}")
        if report.interrupted:
            return 130
        return 0 if report.frames_scored else 1

    return run_guarded("bag-eval", work)
