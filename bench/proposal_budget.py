"""Cost and quality of stage-2 proposal settings on the same weights: for each
max_queries / proposal_rings / proposal_threshold triple, the official metric on a held-out
split and the inference forward time on its first frame (median of 5 after a warm-up).
Those settings shape no tensor, so one checkpoint runs with all of them; the recall they
reach by distance is bench/proposal_recall.py's.

    scripts/in-env.sh python bench/proposal_budget.py --data data/synthetic-v5 \\
        --settings 4096:0:0.1 8192:0:0 8192:8:0 12288:0:0 12288:8:0
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def parse_setting(text: str) -> tuple[int, int, float]:
    try:
        q, r, t = text.split(":")
        return int(q), int(r), float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not max_queries:rings:threshold (e.g. 8192:8:0)") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("weights", nargs="?", default="", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--data", default="", help="dataset root (default: the default synthetic dataset)")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--settings", nargs="+", type=parse_setting, default=[(4096, 0, 0.1)],
                    metavar="Q:R:T", help="max_queries:proposal_rings:proposal_threshold")
    ap.add_argument("--stereo", action="store_true", help="feed the stereo depth (data.stereo)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="also write the result as JSON here")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from cigocc_ros.data.dataset import SemanticKittiDataset, collate, dataset_root
    from cigocc_ros.inference import default_weights
    from cigocc_ros.model.checkpoint import load_checkpoint
    from cigocc_ros.training.evaluation import evaluate_model

    weights = args.weights or str(default_weights())
    model, _ = load_checkpoint(weights)
    base = model.cfg
    cfg, root = dataset_root(base, args.data)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, stereo=args.stereo))
    dataset = SemanticKittiDataset(cfg, args.split, augment=False)
    batch = collate([dataset[0]])
    rows = []
    print(f"# {weights} on {root} {args.split} ({len(dataset)} frames, {'stereo' if args.stereo else 'mono'})")
    print("| max_queries | threshold | rings | IoU | mIoU | forward (median of 5) |\n|---:|---:|---:|---:|---:|---:|")
    for q, r, t in args.settings:
        model.cfg = dataclasses.replace(base, model=dataclasses.replace(
            base.model, max_queries=q, proposal_rings=r, proposal_threshold=t))
        m = evaluate_model(model, dataset, cfg, torch.device("cpu"))
        times = []
        with torch.inference_mode():
            for _ in range(6):
                t0 = time.perf_counter()
                model(batch, inference=True)
                times.append(time.perf_counter() - t0)
        forward_ms = 1000 * sorted(times[1:])[2]
        rows.append({"max_queries": q, "rings": r, "threshold": t, "iou": m["iou"], "miou": m["miou"],
                     "forward_ms": forward_ms})
        print(f"| {q} | {t:g} | {r} | {m['iou']:.2f} | {m['miou']:.2f} | {forward_ms:.0f} ms |", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps({"weights": weights, "data": root, "split": args.split,
                                              "stereo": args.stereo, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
