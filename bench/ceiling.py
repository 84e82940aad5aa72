"""The representable ceiling of each config's occupancy head: the best IoU / mIoU its output
form can reach. Each held-out frame's labels are downsampled to the head's native resolution
by the benchmark's majority rule (perfect coarse labels), turned into one-hot logits (ignored
blocks as empty), upsampled to the grid exactly as the model does (inference.upsampled_argmax,
the argmax of OccupancyHead.upsample) and scored with the official metric.

    scripts/in-env.sh python bench/ceiling.py                      # lite and full, default synthetic val
    scripts/in-env.sh python bench/ceiling.py --config lite --set "model.head_subdivide=[1, 1, 1]"
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))


def ceiling(cfg, dataset, frames: int | None = None) -> dict:
    """SSCMetric summary of perfect native-resolution labels upsampled like the model's head."""
    import torch.nn.functional as F

    from cigocc_ros.config import head_factors
    from cigocc_ros.data.semantic_kitti import downsample_labels
    from cigocc_ros.inference import upsampled_argmax
    from cigocc_ros.metrics import SSCMetric

    factors = head_factors(cfg)
    n_cls = cfg.model.num_classes
    metric = SSCMetric(n_cls)
    n = len(dataset) if frames is None else min(frames, len(dataset))
    for i in range(n):
        target = dataset[i]["target"].numpy()
        coarse = torch.from_numpy(downsample_labels(target, factors).astype("int64"))
        coarse[coarse == 255] = 0
        logits = F.one_hot(coarse, n_cls).permute(3, 0, 1, 2)[None].float()
        pred = upsampled_argmax(logits, factors)[0].numpy()
        metric.add(pred, target)
    return metric.summary()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=["lite", "full"])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--data", default="", help="dataset root (default: the default synthetic dataset)")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(2)
    from cigocc_ros.config import head_factors, load_experiment
    from cigocc_ros.data.dataset import SemanticKittiDataset, dataset_root

    rows = {}
    for name in args.config:
        cfg, root = dataset_root(load_experiment(name, args.set), args.data)
        dataset = SemanticKittiDataset(cfg, args.split, augment=False)
        m = ceiling(cfg, dataset, args.frames)
        rows[name] = {"head_subdivide": cfg.model.head_subdivide, "native_factors": head_factors(cfg), "iou": m["iou"],
                      "miou": m["miou"], "data": root, "frames": len(dataset) if args.frames is None else args.frames}
        print(f"{name}: head_subdivide {tuple(cfg.model.head_subdivide)}, native 1:{head_factors(cfg)} -> ceiling IoU {m['iou']:.2f} "
              f"mIoU {m['miou']:.2f} ({root}, {args.split})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
