"""Recall of stage 2's proposals by distance: of the coarse voxels that are occupied and in
view, which share did the model propose (cross-attend to the image), under 15 m, 15-30 m and
beyond 30 m (horizontal distance of the voxel centre from the grid frame's origin)?

A coarse voxel is occupied when any grid voxel inside it has a class (1-19); it is in view
when its centre projects into the input image in front of the camera (the model's own test,
CIGOcc.in_view). Proposed = the model's "proposal" output (top max_queries scores above
model.proposal_threshold). `--score` and `--rings` re-run the same weights with other
proposal scores and per-distance quotas (model.proposal_score / proposal_rings shape no tensor).

    scripts/in-env.sh python bench/proposal_recall.py                      # shipped weights, held-out frames
    scripts/in-env.sh python bench/proposal_recall.py runs/x/last.safetensors --score mass density occupancy
    scripts/in-env.sh python bench/proposal_recall.py --data data/synthetic-v5 --rings 0 4 8 16
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

BANDS = ((0.0, 15.0), (15.0, 30.0), (30.0, float("inf")))


def band_name(lo: float, hi: float) -> str:
    return f"> {lo:g} m" if hi == float("inf") else f"{lo:g}-{hi:g} m"


def coarse_occupied(target: torch.Tensor, ds: int) -> torch.Tensor:
    """(X, Y, Z) labels (0 empty, 1-19, 255 ignored) -> (X/ds, Y/ds, Z/ds) bool: any class inside."""
    occ = ((target > 0) & (target < 255)).float()[None, None]
    return torch.nn.functional.max_pool3d(occ, ds)[0, 0] > 0


def with_proposals(cfg, **changes):
    """`cfg` with model fields replaced (proposal_score, proposal_rings, max_queries,
    proposal_threshold: none shapes a tensor, so one loaded model runs with any of them)."""
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, **changes))


def add_split_arguments(ap: argparse.ArgumentParser) -> None:
    """The weights / data / split / input / threads / out arguments both proposal benches take."""
    ap.add_argument("weights", nargs="?", default="", help="checkpoint (default: the shipped weights)")
    ap.add_argument("--data", default="", help="dataset root (default: the default synthetic dataset)")
    ap.add_argument("--split", default="val", choices=["train", "val", "test"])
    ap.add_argument("--stereo", action="store_true", help="feed the stereo depth (data.stereo)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", default="", help="also write the result as JSON here")


def load_split(args: argparse.Namespace):
    """(weights path, model in eval mode, cfg, dataset root, dataset) for add_split_arguments' args."""
    from cigocc_ros.data.dataset import SemanticKittiDataset, dataset_root
    from cigocc_ros.inference import default_weights
    from cigocc_ros.model.checkpoint import load_checkpoint

    torch.set_num_threads(args.threads)
    weights = args.weights or str(default_weights())
    model, _ = load_checkpoint(weights)
    model.eval()
    cfg, root = dataset_root(model.cfg, args.data)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, stereo=args.stereo))
    return weights, model, cfg, root, SemanticKittiDataset(cfg, args.split, augment=False)


def variant_name(score: str, rings: int) -> str:
    return score if rings == 0 else f"{score}, {rings} rings"


@torch.inference_mode()
def recall_by_band(model, dataset, variants: list[tuple[str, int]], frames: int | None = None) -> dict:
    """variants: (model.proposal_score, model.proposal_rings) pairs ->
    {name: {band: {"occupied": n, "proposed": n, "recall": r, "in_view": n, "chance": c},
    "proposals_per_frame": mean}}. "chance" is the share of the band's in-view voxels that were
    proposed: the recall a score that knows nothing about occupancy would get with that quota."""
    from cigocc_ros.data.dataset import collate

    model.eval()
    ds = model.cfg.model.coarse_downsample
    dist = model.voxel_xyz[:, :2].norm(dim=1)  # (N,) horizontal distance of coarse centres
    base_cfg = model.cfg
    totals = {v: {"hit": np.zeros(len(BANDS)), "occ": np.zeros(len(BANDS)), "view": np.zeros(len(BANDS)),
                  "view_prop": np.zeros(len(BANDS)), "prop": 0.0} for v in variants}
    n = len(dataset) if frames is None else min(frames, len(dataset))
    for i in range(n):
        sample = dataset[i]
        batch = collate([sample])
        occ = coarse_occupied(sample["target"], ds).flatten()
        _, _, visible = model.in_view(batch["K"], batch["T_cam_grid"], tuple(batch["img"].shape[-2:]))
        want = occ & visible[0]
        for v in variants:
            model.cfg = with_proposals(base_cfg, proposal_score=v[0], proposal_rings=v[1])
            prop = model(batch, inference=True)["proposal"][0].flatten() > 0
            t = totals[v]
            t["prop"] += float(prop.sum()) / n
            for b, (lo, hi) in enumerate(BANDS):
                in_band = want & (dist >= lo) & (dist < hi)
                t["occ"][b] += float(in_band.sum())
                t["hit"][b] += float((in_band & prop).sum())
                view = visible[0] & (dist >= lo) & (dist < hi)
                t["view"][b] += float(view.sum())
                t["view_prop"][b] += float((view & prop).sum())
    model.cfg = base_cfg
    out = {}
    for v, t in totals.items():
        s = variant_name(*v)
        out[s] = {band_name(*BANDS[b]): {"occupied": int(t["occ"][b]), "proposed": int(t["hit"][b]),
                                         "recall": round(t["hit"][b] / max(t["occ"][b], 1), 3),
                                         "in_view": int(t["view"][b]),
                                         "chance": round(t["view_prop"][b] / max(t["view"][b], 1), 3)}
                  for b in range(len(BANDS))}
        out[s]["proposals_per_frame"] = round(t["prop"], 1)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_split_arguments(ap)
    ap.add_argument("--frames", type=int, default=None, help="first N frames of the split (default: all)")
    ap.add_argument("--score", nargs="+", default=None, help="proposal scores to compare "
                    "(default: the checkpoint's model.proposal_score)")
    ap.add_argument("--rings", nargs="+", type=int, default=None, help="model.proposal_rings values to "
                    "compare (default: the checkpoint's)")
    ap.add_argument("--queries", type=int, default=None, help="model.max_queries (default: the checkpoint's)")
    ap.add_argument("--threshold", type=float, default=None, help="model.proposal_threshold (default: the "
                    "checkpoint's)")
    args = ap.parse_args(argv)
    weights, model, cfg, root, dataset = load_split(args)
    if args.queries is not None:
        model.cfg = with_proposals(model.cfg, max_queries=args.queries)
    if args.threshold is not None:
        model.cfg = with_proposals(model.cfg, proposal_threshold=args.threshold)
    scores = args.score or [model.cfg.model.proposal_score]
    rings = args.rings if args.rings is not None else [model.cfg.model.proposal_rings]
    res = recall_by_band(model, dataset, [(s, r) for s in scores for r in rings], args.frames)
    frames = len(dataset) if args.frames is None else min(args.frames, len(dataset))
    print(f"# {weights} on {root} {args.split} ({frames} frames, {'stereo' if args.stereo else 'mono'}), "
          f"max_queries {model.cfg.model.max_queries}, threshold {model.cfg.model.proposal_threshold}")
    print("recall of occupied in-view coarse voxels per band; in brackets: their number, and the chance "
          "recall (the share of the band's in-view voxels proposed)")
    print("| score | " + " | ".join(f"recall {band_name(*b)}" for b in BANDS) + " | proposals / frame |")
    print("|---|" + "---:|" * (len(BANDS) + 1))
    for s, r in res.items():
        cells = [f"{r[band_name(*b)]['recall']:.2f} ({r[band_name(*b)]['occupied']}; {r[band_name(*b)]['chance']:.2f})"
                 for b in BANDS]
        print(f"| {s} | " + " | ".join(cells) + f" | {r['proposals_per_frame']:.0f} |")
    if args.out:
        Path(args.out).write_text(json.dumps({"weights": weights, "data": root, "split": args.split,
                                              "frames": frames, "stereo": args.stereo, "results": res}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
