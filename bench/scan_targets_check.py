"""Checks of the targets built from labelled scans (cigocc_ros/data/scan_targets.py), quoted in
docs/real-frames.md:

1. against the real SemanticKITTI `.bin` / `.invalid` files of frame 0 of every shared sequence;
2. against the synthetic generator's truth on a synthetic sequence, where every scan is known.

    scripts/in-env.sh python bench/scan_targets_check.py [--samples ../shared/kitti_samples]
"""
from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from cigocc_ros.classes import IGNORE_LABEL, load_class_table
from cigocc_ros.data import scan_targets as st
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data import synthetic as syn

REPO = Path(__file__).resolve().parent.parent


def real_files(samples: Path, num_scans: int) -> None:
    print(f"## Frame 0 of each shared sequence vs its real files ({num_scans} scans at most)")
    print("| seq | scans | .bin ours / real / both | .invalid ours / real / both | invalid IoU | "
          "same valid/invalid | s |")
    print("|---|---|---|---|---|---|---|")
    for seq_dir in sorted((samples / "sequences").iterdir()):
        if not (seq_dir / "voxels" / "000000.invalid").is_file() or not (seq_dir / "poses.txt").is_file():
            continue
        seq = st.LabelledSequence(seq_dir)
        t = st.scan_targets(seq, "000000", num_scans)
        a = st.agreement(t, sk.read_voxels(seq.paths.voxel_stem(0)))
        print(f"| {seq_dir.name} | {len(t.scans)} | {a.bin_ours:,} / {a.bin_real:,} / {a.bin_both:,} | "
              f"{a.invalid_ours:,} / {a.invalid_real:,} / {a.invalid_both:,} | {a.invalid_iou:.3f} | "
              f"{100 * a.invalid_accuracy:.1f} % | {t.seconds:.1f} |")


def synthetic(seed: int, frames: int, num_scans: int) -> None:
    print(f"\n## Synthetic sequence (seed {seed}, {frames} frames) vs the generator's truth")
    seq = syn.SyntheticSequence(seed, frames, image_scale=0.25)
    lut = load_class_table().learning_map_inv
    with tempfile.TemporaryDirectory() as tmp:
        paths = sk.SequencePaths(Path(tmp), "00")
        sk.write_calib(paths.calib, seq.calib)
        sk.write_poses(paths.poses, seq.poses)
        for i in range(frames):
            f = seq.render(i)
            sk.write_scan(paths.scan(i), f.points)
            sk.write_point_labels(paths.point_labels(i), lut[f.point_labels], f.point_instances)
        ls = st.LabelledSequence(paths.dir)
        print("| frame | scans | our occupied voxels | in truth-occupied voxel | within 1 voxel | "
              "same class (of those in truth) | truth surface voxels found | s |")
        print("|---|---|---|---|---|---|---|---|")
        for i in seq.labelled_frames:
            truth = seq.voxels(i)
            t = st.scan_targets(ls, sk.frame_name(i), num_scans)
            ours = sk.remap_labels(t.labels)
            occ = (ours > 0) & (ours != IGNORE_LABEL)
            tocc = (truth.labels > 0) & (truth.labels != IGNORE_LABEL)
            dil = tocc.copy()
            for ax in range(3):
                dil |= np.roll(tocc, 1, ax) | np.roll(tocc, -1, ax)
            both = occ & tocc
            # Truth surface: occupied truth voxels with an empty, observed neighbour.
            empty = (truth.labels == 0) & ~truth.invalid
            near_empty = np.zeros_like(empty)
            for ax in range(3):
                near_empty |= np.roll(empty, 1, ax) | np.roll(empty, -1, ax)
            surface = tocc & near_empty & ~t.invalid
            print(f"| {i} | {len(t.scans)} | {occ.sum():,} | {100 * both.sum() / occ.sum():.1f} % | "
                  f"{100 * (occ & dil).sum() / occ.sum():.1f} % | "
                  f"{100 * (ours[both] == truth.labels[both]).mean():.1f} % | "
                  f"{100 * (surface & occ).sum() / max(surface.sum(), 1):.1f} % | {t.seconds:.1f} |")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--samples", default=str(REPO.parent / "shared" / "kitti_samples"))
    p.add_argument("--scans", type=int, default=st.DEFAULT_SCANS)
    p.add_argument("--seed", type=int, default=1008)
    p.add_argument("--frames", type=int, default=15)
    args = p.parse_args()
    t0 = time.perf_counter()
    real_files(Path(args.samples), args.scans)
    synthetic(args.seed, args.frames, args.scans)
    print(f"\n{time.perf_counter() - t0:.0f} s in all")


if __name__ == "__main__":
    main()
