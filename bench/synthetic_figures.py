"""Figures quoted in docs/synthetic.md: time per frame of the synthetic generator (by stage,
one process), the bytes written per frame, and the agreement of renders, LiDAR and voxel truth.

    scripts/in-env.sh python bench/synthetic_figures.py [--seeds 1000 1008] [--frames 20]

Each seed renders `--frames` frames (full size) and the voxel truth of its labelled frames.
Times are wall clock and, for whole frames, this process's CPU time (robust to other load
on the machine); numpy's BLAS is held to one thread so "a frame" means one core.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

for _var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")

import numpy as np  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from cigocc_ros.data import synthetic as syn  # noqa: E402
from cigocc_ros.data.synthetic import make_scene, sensors  # noqa: E402
from cigocc_ros.geometry import project  # noqa: E402


class Clock:
    """Accumulates wall time per stage by wrapping a bound method of an object."""

    def __init__(self) -> None:
        self.total: dict[str, float] = {}

    def wrap(self, obj, name: str, label: str) -> None:
        fn = getattr(obj, name)

        def timed(*a, **k):
            t0 = time.perf_counter()
            try:
                return fn(*a, **k)
            finally:
                self.total[label] = self.total.get(label, 0.0) + time.perf_counter() - t0

        setattr(obj, name, timed)


def agreement(seq: syn.SyntheticSequence, frame: syn.Frame, truth: syn.VoxelTruth) -> tuple[float, float, float]:
    """(render/label agreement of visible labelled voxels, LiDAR points in occupied voxels,
    LiDAR points with their voxel's class)."""
    cam = seq.cameras[0]
    H, W = cam.image_size
    g = seq.grid
    idx = np.argwhere((truth.labels > 0) & ~truth.invalid)
    uv, z = project((idx + 0.5) * g.voxel_size + np.asarray(g.origin), cam.K, cam.T_cam_grid)
    u, r = np.round(uv[:, 0]).astype(int), np.round(uv[:, 1]).astype(int)
    ok = (z > 1.0) & (u >= 0) & (u < W) & (r >= 0) & (r < H)
    idx, u, r, z = idx[ok], u[ok], r[ok], z[ok]
    seen = np.abs(frame.depth[r, u] - z) < 0.3
    render = float((frame.classes[r[seen], u[seen]] == truth.labels[tuple(idx[seen].T)]).mean())
    vi = np.floor((frame.points[:, :3] - np.asarray(g.origin)) / g.voxel_size).astype(int)
    inside = np.all((vi >= 0) & (vi < np.asarray(g.size)), axis=1)
    lab = truth.labels[tuple(vi[inside].T)]
    return render, float((lab > 0).mean()), float((lab == frame.point_labels[inside]).mean())


def class_frequencies(root: Path) -> None:
    """Valid-voxel share of every class over the labelled frames of each split."""
    from cigocc_ros.classes import IGNORE_LABEL, load_class_table
    from cigocc_ros.data import semantic_kitti as sk

    names = load_class_table().names
    for split, seqs in syn.DEFAULT_SPLIT.items():
        hist = np.zeros(256, np.int64)
        frames = 0
        for seq in seqs:
            paths = sk.SequencePaths(root, seq)
            for stem in paths.frames("voxels", ".label"):
                v = sk.read_voxels(paths.voxel_stem(stem))
                hist += np.bincount(sk.remap_labels(v.labels, v.invalid).reshape(-1), minlength=256)
                frames += 1
        valid = hist[:20].sum()
        print(f"{split}: {frames} labelled frames, {hist[IGNORE_LABEL] / hist.sum():.3f} of voxels invalid; "
              "share of valid voxels:")
        print("  " + ", ".join(f"{names[c]} {hist[c] / valid:.2e}" for c in range(20)))


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seeds", nargs="+", type=int, default=[1000, 1008])
    ap.add_argument("--frames", type=int, default=20)
    ap.add_argument("--samples", default=str(REPO.parent / "shared" / "kitti_samples"),
                    help="real KITTI samples, for the invalid / occluded fractions of a real frame")
    ap.add_argument("--dataset", default="", help="also print the class frequencies of a written dataset "
                    "(e.g. data/synthetic), per split of DEFAULT_SPLIT")
    ap.add_argument("--lidar-noise", type=float, default=None,
                    help=f"LiDAR range noise in metres (default {sensors.LIDAR_RANGE_NOISE})")
    args = ap.parse_args()
    if args.lidar_noise is not None:
        sensors.LIDAR_RANGE_NOISE = args.lidar_noise

    if args.dataset:
        class_frequencies(Path(args.dataset))

    real = Path(args.samples) / "sequences" / "00"
    if (real / "voxels" / "000000.invalid").is_file():
        from cigocc_ros.data import semantic_kitti as sk

        v = sk.read_voxels(real / "voxels" / "000000")
        n_pts = len(sk.read_scan(real / "velodyne" / "000000.bin"))
        print(f"real SemanticKITTI 00/000000: invalid {v.invalid.mean():.3f}, occluded {v.occluded.mean():.3f}, "
              f"occupied voxels also occluded {int((v.occupancy & v.occluded).sum())} of "
              f"{int(v.occupancy.sum())}, {n_pts} points")

    for seed in args.seeds:
        t0 = time.perf_counter()
        scene = make_scene(seed, args.frames)
        t_scene = time.perf_counter() - t0
        seq = syn.SyntheticSequence(seed, args.frames)
        clock = Clock()
        clock.wrap(seq, "_render_camera", "cameras (2 images: cast + shade)")
        clock.wrap(seq, "_lidar", "lidar (64 x 2048 rays)")
        clock.wrap(seq._visibility, "add", "observed space (marching)")
        clock.wrap(seq, "_scan_voxels", "labelled frames: scan voxels + occluded")
        frames = []
        t0, c0 = time.perf_counter(), time.process_time()
        for i in range(args.frames):
            frames.append(seq.render(i))
        t_render, c_render = time.perf_counter() - t0, time.process_time() - c0
        t0, c0 = time.perf_counter(), time.process_time()
        truth = {i: seq.voxels(i) for i in seq.labelled_frames}
        t_vox, c_vox = time.perf_counter() - t0, time.process_time() - c0
        with tempfile.TemporaryDirectory() as tmp:
            t0, c0 = time.perf_counter(), time.process_time()
            path = syn.write_sequence(tmp, "00", seed, args.frames)
            t_write, c_write = time.perf_counter() - t0, time.process_time() - c0
            size = sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
        rates = np.array([agreement(seq, frames[i], v) for i, v in truth.items()])
        n = args.frames
        print(f"seed {seed}: load average {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores; "
              f"{len(scene.prims)} solids, {len(scene.roads)} roads, scene {t_scene:.2f} s")
        print(f"  render: {t_render / n:.2f} s a frame wall, {c_render / n:.2f} s CPU, over {n} frames")
        for k, v in clock.total.items():
            print(f"    {k:42s} {v / n:.3f} s a frame")
        print(f"  voxel truth: {t_vox / len(truth):.2f} s wall, {c_vox / len(truth):.2f} s CPU a labelled frame")
        print(f"  write_sequence: {t_write / n:.2f} s wall, {c_write / n:.2f} s CPU a frame "
              "(render + truth + PNG/bin files), "
              f"{size / n / 2**20:.1f} MiB a frame")
        print(f"  points per scan: {np.mean([len(f.points) for f in frames]):.0f}")
        print(f"  render/label agreement {rates[:, 0].min():.3f}-{rates[:, 0].max():.3f}, LiDAR in occupied "
              f"{rates[:, 1].min():.4f}-{rates[:, 1].max():.4f}, LiDAR class = voxel class "
              f"{rates[:, 2].min():.3f}-{rates[:, 2].max():.3f}, invalid "
              f"{np.mean([v.invalid.mean() for v in truth.values()]):.3f}, occluded "
              f"{np.mean([v.occluded.mean() for v in truth.values()]):.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
