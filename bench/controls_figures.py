"""What a dataset's truth looks like to a predictor that never sees an image: the figures of
docs/synthetic.md ("Is the ground flat?") and of the controls every evaluation prints.

    scripts/in-env.sh python bench/controls_figures.py [--data data/synthetic-v5] [--config lite]

Per split (the config's train / val sequences under --data): the share of each class among
the scored voxels (labelled, not invalid), how the scored ground voxels (road, parking,
sidewalk, other-ground, terrain) and all scored occupied voxels spread over the grid's z
layers; then, on the val split, the image-free controls: flat ground at KITTI's LiDAR height,
flat ground at the layer that holds the most road in the train split, and the per-voxel prior
of the train split (cigocc_ros/evaluation/controls.py).
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cigocc_ros.classes import IGNORE_LABEL, load_class_table  # noqa: E402
from cigocc_ros.config import load_experiment  # noqa: E402
from cigocc_ros.data.dataset import SemanticKittiDataset  # noqa: E402
from cigocc_ros.evaluation import controls  # noqa: E402
from cigocc_ros.evaluation.ssc_metric import format_rows  # noqa: E402

GROUND = (9, 10, 11, 12, 17)


def split_figures(name: str, targets: list[np.ndarray], nz: int) -> None:
    names = load_class_table().names
    counts = np.zeros(20, np.int64)
    ground = np.zeros(nz, np.int64)
    occupied = np.zeros(nz, np.int64)
    for t in targets:
        scored = t != IGNORE_LABEL
        counts += np.bincount(t[scored], minlength=20)
        ground += np.bincount(np.nonzero(np.isin(t, GROUND))[2], minlength=nz)
        occupied += np.bincount(np.nonzero(scored & (t > 0))[2], minlength=nz)
    share = counts / counts.sum()
    print(f"\n{name}: {len(targets)} frames; class shares of scored voxels:")
    print("  " + ", ".join(f"{names[c]} {share[c]:.2e}" for c in np.argsort(-share)))
    print(f"  scored ground voxels per z layer (%): {np.round(100 * ground / ground.sum(), 1).tolist()}")
    print(f"  scored occupied voxels per z layer (%): {np.round(100 * occupied / occupied.sum(), 1).tolist()}")
    print(f"  largest layer share: ground {ground.max() / ground.sum():.3f} (layer {ground.argmax()}), "
          f"occupied {occupied.max() / occupied.sum():.3f} (layer {occupied.argmax()})")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--data", default=str(REPO / "data" / "synthetic-v5"))
    ap.add_argument("--config", default="lite")
    args = ap.parse_args()
    from cigocc_ros.data.synthetic import DEFAULT_SPLIT

    cfg = load_experiment(args.config, [f"data.root={args.data}",
                                        f"data.train_sequences={list(DEFAULT_SPLIT['train'])}",
                                        f"data.val_sequences={list(DEFAULT_SPLIT['val'])}"])
    train = SemanticKittiDataset(cfg, "train", augment=False)
    val = SemanticKittiDataset(cfg, "val", augment=False)
    train_t = [train.target(i) for i in range(len(train))]
    val_t = [val.target(i) for i in range(len(val))]
    nz = cfg.grid.size[2]
    split_figures("train", train_t, nz)
    split_figures("val", val_t, nz)

    layer = controls.best_ground_layer(train_t)
    rows = {
        "flat ground (KITTI height)": controls.score_constant(controls.flat_ground(cfg.grid), val_t),
        f"flat ground (layer {layer})": controls.score_constant(
            controls.flat_ground_at_layer(tuple(cfg.grid.size), layer), val_t),
        "voxel prior (train)": controls.score_constant(controls.VoxelPrior.fit(train_t).predict(), val_t),
    }
    print(f"\nimage-free controls on val ({len(val_t)} frames), percent:")
    print(format_rows(list(rows.items())))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
