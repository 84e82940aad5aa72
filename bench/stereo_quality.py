"""The stereo matcher against LiDAR depth on the shared real KITTI frames (issue 21): for each
matcher setting, at the pixels of the visible labelled-scan points (data/lidar_pixels.py,
occlusion-filtered), the end-point error in disparity pixels (EPE, on pixels where both have a
value), D1 (share of those off by > 3 px and > 5 %), density (share of LiDAR pixels with a
stereo value) and the matching time; then the EPE per confidence fifth of the chosen matcher.
Drives are pooled in two groups: the ones settings were chosen on (every shared drive but the
held-out one) and the held-out drive, reported, never tuned on.

    scripts/in-env.sh python bench/stereo_quality.py [--samples ../shared/kitti_samples] [--held-out 07]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import time
from pathlib import Path

import numpy as np

from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.lidar_pixels import labelled_frames, lidar_depth_image
from cigocc_ros.geometry import camera_from_calib, stereo_baseline
from cigocc_ros.stereo import StereoDepth, StereoParams

REPO = Path(__file__).resolve().parent.parent
BEFORE = StereoParams(mode="sgbm", lr_max_diff=0.0, pad_border=False)  # the matcher before issue 21
SETTINGS = {
    "before: SGBM 5-path, no LR check, unpadded": BEFORE,
    "3-way": dataclasses.replace(BEFORE, mode="3way"),
    "3-way + LR check 1 px": dataclasses.replace(BEFORE, mode="3way", lr_max_diff=1.0),
    "after (default): 3-way + LR 1 px + padded border": StereoParams(),
}


def frames_of(root: Path, sequences: list[str]):
    """(left, right, fx, baseline, LiDAR disparity (H, W), 0 = none) per labelled frame."""
    for seq in sequences:
        paths = sk.SequencePaths(root, seq)
        calib = sk.read_calib(paths.calib, required=("P2", "P3", "Tr"))
        for f in labelled_frames(paths):
            left, right = sk.read_image(paths.image(f, 2)), sk.read_image(paths.image(f, 3))
            cam = camera_from_calib(calib["P2"], calib["Tr"], left.shape[:2])
            b = stereo_baseline(calib["P2"], calib["P3"])
            z = lidar_depth_image(sk.read_scan(paths.scan(f)), cam.K, cam.T_cam_grid, left.shape[:2])
            gt = np.where(z > 0, cam.K[0, 0] * b / np.maximum(z, 1e-3), 0.0).astype(np.float32)
            yield left, right, cam.K[0, 0], b, gt


def score(frames, params: StereoParams) -> dict:
    err, ref, conf = [], [], []
    n_ref = n_val = 0
    seconds = 0.0
    for left, right, fx, b, gt in frames:
        t0 = time.perf_counter()
        res = StereoDepth(fx, b, params).match(left, right)
        seconds += time.perf_counter() - t0
        g = gt > 0
        v = g & (res.disparity > 0)
        n_ref += int(g.sum())
        n_val += int(v.sum())
        err.append(np.abs(res.disparity[v] - gt[v]))
        ref.append(gt[v])
        conf.append(res.confidence[v])
    e, r, c = np.concatenate(err), np.concatenate(ref), np.concatenate(conf)
    bad = (e > 3) & (e > 0.05 * r)
    return {"epe": float(e.mean()), "d1": 100 * float(bad.mean()), "density": 100 * n_val / n_ref,
            "ms": 1000 * seconds / len(frames), "err": e, "bad": bad, "conf": c}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", default=os.environ.get("CIGOCC_KITTI_SAMPLES", REPO.parent / "shared" / "kitti_samples"))
    ap.add_argument("--held-out", default="07")
    args = ap.parse_args()
    root = Path(args.samples)
    seqs = sorted(p.name for p in (root / "sequences").iterdir() if labelled_frames(sk.SequencePaths(root, p.name)))
    groups = {f"tuning drives ({', '.join(s for s in seqs if s != args.held_out)})": [s for s in seqs if s != args.held_out],
              f"held-out drive {args.held_out}": [args.held_out]}
    for name, group in groups.items():
        frames = list(frames_of(root, group))
        print(f"\n== {name}: {len(frames)} frames")
        print("| matcher | EPE px | D1 % | density % | ms / pair |\n|---|---|---|---|---|")
        for label, params in SETTINGS.items():
            s = score(frames, params)
            print(f"| {label} | {s['epe']:.2f} | {s['d1']:.2f} | {s['density']:.1f} | {s['ms']:.0f} |")
        qs = np.quantile(s["conf"], np.linspace(0, 1, 6))
        cells = []
        for lo, hi in zip(qs[:-1], qs[1:], strict=True):
            m = (s["conf"] >= lo) & (s["conf"] <= hi)
            cells.append(f"[{lo:.2f}, {hi:.2f}]: EPE {s['err'][m].mean():.2f}, D1 {100 * s['bad'][m].mean():.1f} %")
        print("confidence fifths of the default matcher: " + "; ".join(cells))


if __name__ == "__main__":
    main()
