"""What the pseudo-LiDAR path costs the lite forward on this CPU (issue 21: at most 15 %).

Two lite networks with the same seed, `model.pseudo_lidar` on and off, run the stereo inference
forward (Predictor.predict with the matcher's depth and confidence: crop, forward, labels) on
the same real KITTI frame, interleaved call by call so that other load falls on both alike.
With the path off the stereo depth still enters the depth branch (the external depth
distribution); the difference is the volume's scatter, its pooling into the UNet's input, the
wider stem and the evidence term.

    scripts/in-env.sh python bench/pseudo_lidar_cost.py --iters 10
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from cigocc_ros.config import load_experiment  # noqa: E402
from cigocc_ros.evaluation.real_report import real_frames  # noqa: E402
from cigocc_ros.inference import Predictor  # noqa: E402
from cigocc_ros.model.cigocc import build_model  # noqa: E402
from cigocc_ros.stereo import StereoDepth  # noqa: E402

SEQUENCE = REPO.parent / "shared" / "kitti_samples" / "sequences" / "00"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--sequence", type=Path, default=SEQUENCE)
    args = ap.parse_args()
    fr = real_frames(args.sequence)[0]
    m = StereoDepth(fr.K[0, 0], fr.baseline).match(fr.image, fr.right)
    variants = {"pseudo-LiDAR + free space": ["model.pseudo_lidar=true", "model.stereo_free_space=true"],
                "pseudo-LiDAR": ["model.pseudo_lidar=true"], "off": ["model.pseudo_lidar=false"]}
    preds = {}
    for name, sets in variants.items():
        cfg = load_experiment("lite", sets)
        torch.manual_seed(0)
        preds[name] = Predictor(cfg, build_model(cfg).eval(), "cpu")
    times: dict[str, list[float]] = {name: [] for name in variants}
    for i in range(args.warmup + args.iters):
        for name, p in preds.items():
            t0 = time.perf_counter()
            p.predict(fr.image, fr.K, fr.T_cam_grid, depth=m.depth, depth_conf=m.confidence)
            if i >= args.warmup:
                times[name].append(1000 * (time.perf_counter() - t0))
    med = {name: statistics.median(t) for name, t in times.items()}
    print(f"frame {fr.name}, {torch.get_num_threads()} threads, {args.iters} interleaved calls each")
    for name, t in times.items():
        print(f"stereo predict, {name}: median {med[name]:.0f} ms (min {min(t):.0f})")
    off = med["off"]
    print(f"the path adds {100 * (med['pseudo-LiDAR'] - off) / off:+.1f} % (target <= 15 %)")
    print(f"with free space it adds {100 * (med['pseudo-LiDAR + free space'] - off) / off:+.1f} %")
    return 0


if __name__ == "__main__":
    sys.exit(main())
