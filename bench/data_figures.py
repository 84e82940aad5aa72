"""Figures of the SemanticKITTI data layer on the real sample frames, quoted in docs/data.md and
docs/conventions.md: the voxel-file z convention, scan projection, stereo vs LiDAR, timings.

    scripts/in-env.sh python bench/data_figures.py [--samples ../shared/kitti_samples]
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from cigocc_ros.config import ExperimentConfig, GridConfig
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.dataset import SemanticKittiDataset, lidar_depth_map
from cigocc_ros.evaluation.ssc_metric import SSCMetric
from cigocc_ros.geometry import camera_from_calib, project, stereo_baseline
from cigocc_ros.stereo import StereoDepth

REPO = Path(__file__).resolve().parent.parent


def timed(fn, repeat: int = 5) -> float:
    fn()
    t0 = time.perf_counter()
    for _ in range(repeat):
        fn()
    return (time.perf_counter() - t0) / repeat * 1000.0


def voxel_convention(seq: sk.SequencePaths) -> None:
    print("== voxel files vs the scan voxelised (voxelizer filters: 2.5-70 m, ego box, raw 0/1 dropped)")
    for frame in ("000000", "000005"):
        pts, sem = sk.read_labelled_scan(seq, frame)
        real = sk.read_voxels(seq.voxel_stem(frame))
        n = int(real.occupancy.sum())
        for z0 in (-2.0, -2.2):
            occ, _ = sk.voxelize_scan(pts, sem, GridConfig(origin=(0.0, -25.6, z0)))
            print(f"  {frame} origin z {z0:+.1f}, file as stored : {int((occ & real.occupancy).sum()):6d} of "
                  f"{n} real voxels ({100 * (occ & real.occupancy).sum() / n:.1f} %), ours {int(occ.sum())}, "
                  f"ours marked invalid {int((occ & real.invalid).sum())}")
        occ, _ = sk.voxelize_scan(pts, sem)
        fixed, fixed_inv = sk.undo_legacy_shift(real.occupancy), sk.undo_legacy_shift(real.invalid)
        print(f"  {frame} origin z -2.0, legacy shift undone: {int((occ & fixed).sum()):6d} of {int(fixed.sum())} "
              f"real voxels, ours {int(occ.sum())}, ours marked invalid {int((occ & fixed_inv).sum())}; "
              f"real layer-0 voxels as stored {int(real.occupancy[:, :, 0].sum())}")


def projection(seq: sk.SequencePaths) -> None:
    print("== labelled scan 000000 projected into the real images")
    calib = sk.read_calib(seq.calib)
    pts, sem = sk.read_labelled_scan(seq, 0)
    for camera in (0, 2):
        img = sk.read_image(seq.image(0, camera), rgb=False)
        H, W = img.shape[:2]
        cam = camera_from_calib(calib[f"P{camera}"], calib["Tr"], (H, W))
        uv, z = project(pts[:, :3], cam.K, cam.T_cam_grid)
        ins = (z > 0) & (uv[:, 0] >= 0) & (uv[:, 0] < W) & (uv[:, 1] >= 0) & (uv[:, 1] < H)
        road = ins & (sem == 40)
        print(f"  image_{camera} ({W}x{H}): {int(ins.sum())} of {len(pts)} points inside, depth "
              f"{z[ins].min():.2f}-{z[ins].max():.2f} m; road points {int(road.sum())}, in lower half "
              f"{100 * np.mean(uv[road, 1] > H / 2):.1f} %, corr(1/z, v) {np.corrcoef(1 / z[road], uv[road, 1])[0, 1]:.4f}")


def stereo(seq: sk.SequencePaths) -> None:
    print("== StereoSGBM depth (image_2/image_3, frame 000000) vs LiDAR depth")
    calib = sk.read_calib(seq.calib)
    left, right = sk.read_image(seq.image(0, 2)), sk.read_image(seq.image(0, 3))
    cam = camera_from_calib(calib["P2"], calib["Tr"], left.shape[:2])
    matcher = StereoDepth(cam.K[0, 0], stereo_baseline(calib["P2"], calib["P3"]))
    depth = matcher(left, right)
    lidar = lidar_depth_map(sk.read_scan(seq.scan(0)), cam.K, cam.T_cam_grid, left.shape[:2])
    for lo, hi in ((0, 20), (20, 40), (40, 80)):
        m = (depth > 0) & (lidar > lo) & (lidar <= hi)
        rel = np.abs(depth[m] - lidar[m]) / lidar[m]
        print(f"  LiDAR {lo}-{hi} m: {int(m.sum())} pixels, median |rel err| {100 * np.median(rel):.2f} %, "
              f"median |err| {np.median(np.abs(depth[m] - lidar[m])):.2f} m")
    print(f"  baseline {stereo_baseline(calib['P2'], calib['P3']):.4f} m, fx {cam.K[0, 0]:.3f}; "
          f"pixels with a stereo depth: {100 * np.mean(depth > 0):.1f} %; "
          f"time {timed(lambda: matcher(left, right), 3):.0f} ms per pair")


def real_root(samples: Path, tmp: str, with_invalid: bool = True) -> str:
    """Sequence 00's real images, calib and scans with voxel targets voxelised from its scans."""
    src, dst = sk.SequencePaths(samples, "00"), sk.SequencePaths(tmp, "00")
    dst.dir.mkdir(parents=True)
    for name in ("calib.txt", "image_2", "image_3", "velodyne"):
        (dst.dir / name).symlink_to(src.dir / name)
    for frame in ("000000", "000005"):
        invalid = sk.undo_legacy_shift(sk.read_voxels(src.voxel_stem(frame)).invalid)
        sk.write_scan_voxels(src, frame, dst, invalid=invalid)
    return tmp


def flip_consistency(samples: Path) -> None:
    print("== LiDAR depth-target pixels back-projected into the target grid (frame 000000)")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExperimentConfig()
        cfg.data = dataclasses.replace(cfg.data, root=real_root(samples, tmp), train_sequences=("00",),
                                       flip_prob=1.0)
        for flip in (False, True):
            item = SemanticKittiDataset(cfg, "train", augment=flip)[0]
            d = item["depth_target"].numpy()
            K, T = item["K"].double().numpy(), item["T_cam_grid"].double().numpy()
            v, u = np.nonzero(d)
            rays = np.linalg.solve(K, np.stack([u, v, np.ones_like(u)]).astype(np.float64))
            pts = ((rays * d[v, u]).T - T[:3, 3]) @ T[:3, :3]
            idx = np.floor((pts - np.asarray(cfg.grid.origin)) / cfg.grid.voxel_size).astype(int)
            ok = np.all((idx >= 0) & (idx < cfg.grid.size), axis=1)
            for name, target in (("target", item["target"].numpy()),
                                 ("target with Y reversed", item["target"].numpy()[:, ::-1])):
                lab = target[tuple(idx[ok].T)]
                print(f"  flip={flip!s:5}: {int(ok.sum())} pixels in the grid, "
                      f"{100 * np.mean((lab > 0) & (lab < 255)):.1f} % in occupied voxels of the {name}")


def timings(samples: Path) -> None:
    print("== timings (ms)")
    rng = np.random.default_rng(0)
    lab = np.where(rng.random((256, 256, 32)) < 0.9, 0, rng.integers(1, 20, (256, 256, 32))).astype(np.uint8)
    print(f"  downsample 1:2 {timed(lambda: sk.downsample_labels(lab, 2)):.1f}, "
          f"1:8 {timed(lambda: sk.downsample_labels(lab, 8)):.1f}")
    metric = SSCMetric()
    pred = rng.integers(0, 20, lab.shape).astype(np.uint8)
    print(f"  SSCMetric.add of one 256x256x32 frame {timed(lambda: metric.add(pred, lab)):.1f}")
    seq = sk.SequencePaths(samples, "00")
    pts, sem = sk.read_labelled_scan(seq, 0)
    print(f"  voxelize_scan of {len(pts)} points {timed(lambda: sk.voxelize_scan(pts, sem)):.1f}")
    with tempfile.TemporaryDirectory() as tmp:
        cfg = ExperimentConfig()
        cfg.data = dataclasses.replace(cfg.data, root=real_root(samples, tmp), train_sequences=("00",))
        ds = SemanticKittiDataset(cfg, "train", augment=True)
        print(f"  dataset item (image, targets 1:1 + 1:2, LiDAR depth, flip/jitter) {timed(lambda: ds[0]):.0f}")
        cfg.data = dataclasses.replace(cfg.data, stereo=True)
        ds = SemanticKittiDataset(cfg, "train", augment=False)
        print(f"  dataset item with stereo depth {timed(lambda: ds[0], 3):.0f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples", default=os.environ.get(
        "CIGOCC_KITTI_SAMPLES", str(REPO.parent / "shared" / "kitti_samples")))
    args = parser.parse_args()
    samples = Path(args.samples)
    seq = sk.SequencePaths(samples, "00")
    voxel_convention(seq)
    projection(seq)
    stereo(seq)
    flip_consistency(samples)
    timings(samples)


if __name__ == "__main__":
    main()
