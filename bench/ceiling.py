"""The representable ceiling of each config's occupancy head: the best IoU / mIoU its output
form (native-resolution logits, upsampled to the grid exactly as the model does:
inference.upsampled_argmax, the argmax of OccupancyHead.upsample) can reach, scored with the
official metric on held-out frames. Three ways to choose the native logits of each frame:

- `majority`: the labels downsampled by the benchmark's majority rule, one-hot (ignored blocks
  as empty). A block with one occupied cell of four is occupied, so surfaces dilate.
- `fraction`: log of each class's share of the block's labelled voxels (what a head trained
  with CE on the full grid tends towards); closed form.
- `fitted`: logits fitted to the frame's full-grid labels through the upsampling itself (CE,
  Adam, started from `fraction`). The trilinear interpolation of free logits can place a
  class boundary anywhere inside a dual cell, so this reaches far beyond any one-hot rule. It
  is what a perfect head could output: the ceiling of the output form, found by search (a
  lower bound on the exact maximum).

    scripts/in-env.sh python bench/ceiling.py --data data/synthetic-v5       # lite and full
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


RULES = ("majority", "fraction", "fitted")


def native_logits(target: torch.Tensor, factors: tuple[int, int, int], n_cls: int, rule: str,
                  fit_steps: int = 40) -> torch.Tensor:
    """(X, Y, Z) labels (0..n_cls-1, 255 ignored) -> (1, n_cls, X/fx, Y/fy, Z/fz) float logits
    chosen by `rule` (see the module docstring)."""
    import torch.nn.functional as F

    from cigocc_ros.data.semantic_kitti import downsample_labels

    if rule == "majority":
        coarse = torch.from_numpy(downsample_labels(target.numpy(), factors).astype("int64"))
        coarse[coarse == 255] = 0
        return F.one_hot(coarse, n_cls).permute(3, 0, 1, 2)[None].float()
    valid = target != 255
    onehot = F.one_hot(torch.where(valid, target.long(), 0), n_cls).permute(3, 0, 1, 2).float() * valid
    share = F.avg_pool3d(onehot[None], kernel_size=factors, stride=factors)
    total = share.sum(1, keepdim=True)
    share = torch.where(total > 0, share / total.clamp_min(1e-12), F.one_hot(
        torch.zeros_like(total[:, 0], dtype=torch.long), n_cls).permute(0, 4, 1, 2, 3).float())
    logits = torch.log(share + 1e-2)
    if rule == "fraction":
        return logits
    if rule != "fitted":
        raise ValueError(f"rule must be one of {RULES}, got {rule!r}")
    logits.requires_grad_(True)
    opt = torch.optim.Adam([logits], lr=0.5)
    size = tuple(n * f for n, f in zip(logits.shape[-3:], factors, strict=True))
    goal = target[None].long()
    with torch.enable_grad():
        for _ in range(fit_steps):
            up = F.interpolate(logits, size=size, mode="trilinear", align_corners=False)
            loss = F.cross_entropy(up, goal, ignore_index=255)
            opt.zero_grad()
            loss.backward()
            opt.step()
    return logits.detach()


def ceiling(cfg, dataset, frames: int | None = None, rules: tuple[str, ...] = RULES) -> dict:
    """{rule: SSCMetric summary} of each rule's native logits upsampled like the model's head."""
    from cigocc_ros.config import head_factors
    from cigocc_ros.evaluation.ssc_metric import SSCMetric
    from cigocc_ros.inference import upsampled_argmax

    factors = head_factors(cfg)
    n_cls = cfg.model.num_classes
    metrics = {r: SSCMetric(n_cls) for r in rules}
    n = len(dataset) if frames is None else min(frames, len(dataset))
    for i in range(n):
        target = dataset[i]["target"]
        for r in rules:
            pred = upsampled_argmax(native_logits(target, factors, n_cls, r), factors)[0].numpy()
            metrics[r].add(pred, target.numpy())
    return {r: m.summary() for r, m in metrics.items()}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", nargs="+", default=["lite", "full"])
    ap.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    ap.add_argument("--data", default="", help="dataset root (default: the default synthetic dataset)")
    ap.add_argument("--split", default="val", choices=["train", "val"])
    ap.add_argument("--frames", type=int, default=None)
    ap.add_argument("--rule", nargs="+", default=list(RULES), choices=RULES)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    from cigocc_ros.config import head_factors, load_experiment
    from cigocc_ros.data.dataset import SemanticKittiDataset, dataset_root

    rows = {}
    done: dict[tuple, dict] = {}  # configs with the same native factors share one computation
    for name in args.config:
        cfg, root = dataset_root(load_experiment(name, args.set), args.data)
        dataset = SemanticKittiDataset(cfg, args.split, augment=False)
        factors = head_factors(cfg)
        key = (factors, root, args.split, args.frames, tuple(args.rule))
        if key not in done:
            done[key] = ceiling(cfg, dataset, args.frames, tuple(args.rule))
        m = done[key]
        rows[name] = {"head_subdivide": cfg.model.head_subdivide, "native_factors": factors, "data": root,
                      "frames": len(dataset) if args.frames is None else args.frames,
                      **{r: {"iou": s["iou"], "miou": s["miou"]} for r, s in m.items()}}
        cells = ", ".join(f"{r} {s['iou']:.2f} / {s['miou']:.2f}" for r, s in m.items())
        print(f"{name}: head_subdivide {tuple(cfg.model.head_subdivide)}, native 1:{factors} -> ceiling IoU / mIoU: "
              f"{cells} ({root}, {args.split})", flush=True)
    if args.out:
        Path(args.out).write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
