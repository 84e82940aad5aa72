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
import json
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from proposal_recall import add_split_arguments, load_split, with_proposals  # noqa: E402  (bench/ is on sys.path)


def parse_setting(text: str) -> tuple[int, int, float]:
    try:
        q, r, t = text.split(":")
        return int(q), int(r), float(t)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not max_queries:rings:threshold (e.g. 8192:8:0)") from None


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_arguments(ap)
    ap.add_argument("--settings", nargs="+", type=parse_setting, default=[(4096, 0, 0.1)],
                    metavar="Q:R:T", help="max_queries:proposal_rings:proposal_threshold")
    args = ap.parse_args(argv)
    from cigocc_ros.data.dataset import collate
    from cigocc_ros.evaluation.split import evaluate_model

    weights, model, cfg, root, dataset = load_split(args)
    base = model.cfg
    batch = collate([dataset[0]])
    rows = []
    print(f"# {weights} on {root} {args.split} ({len(dataset)} frames, {'stereo' if args.stereo else 'mono'})")
    print("| max_queries | threshold | rings | IoU | mIoU | forward (median of 5) |\n|---:|---:|---:|---:|---:|---:|")
    for q, r, t in args.settings:
        model.cfg = with_proposals(base, max_queries=q, proposal_rings=r, proposal_threshold=t)
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
