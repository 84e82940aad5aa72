"""What a new camera geometry costs the costmap (not a test): `Costmapper.view` of a 256x256x32
grid (2.1 M voxels, the lite and full configs' grid) seen by KITTI's colour camera, each time
with a camera <- grid transform a little different, as a TF that moves against the grid frame
gives every frame; beside it, projecting every voxel centre (geometry.in_view, how the view was
built before), on the same geometries, and whether the two agree.

    scripts/in-env.sh python bench/costmap_view.py                 # 20 geometries
    scripts/in-env.sh python bench/costmap_view.py --budget-ms 20  # exit 1 above it (median)

Prints the median and max milliseconds per geometry. The node rebuilds the view only when K,
the transform or an image size changes (docs/node.md, "Costmap").
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

# KITTI sequence 00: the colour camera's P2 and velodyne -> cam0 Tr; camera <- grid = T(P2) Tr.
P2 = np.array([[718.856, 0.0, 607.1928, 45.38225], [0.0, 718.856, 185.2157, -0.1130887],
               [0.0, 0.0, 1.0, 0.003779761]])
TR = np.array([[4.276802e-04, -9.999672e-01, -8.084492e-03, -1.198460e-02],
               [-7.210627e-03, 8.081198e-03, -9.999413e-01, -5.403985e-02],
               [9.999739e-01, 4.859486e-04, -7.206934e-03, -2.921969e-01]])
IMAGE_HW, MODEL_HW = (376, 1241), (370, 1220)


def geometries(n: int, seed: int = 0) -> list[np.ndarray]:
    """`n` camera <- grid transforms: KITTI's, then each moved by up to 2 cm and 0.2 degrees."""
    from cigocc_ros.geometry import camera_from_calib, orthonormalize

    base = camera_from_calib(P2, TR, IMAGE_HW).T_cam_grid
    rng = np.random.default_rng(seed)
    out = [base]
    for _ in range(n - 1):
        T = base.copy()
        T[:3, :3] = orthonormalize(np.eye(3) + np.radians(0.2) * rng.uniform(-1, 1, (3, 3))) @ base[:3, :3]
        T[:3, 3] += rng.uniform(-0.02, 0.02, 3)
        out.append(T)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--geometries", type=int, default=20)
    ap.add_argument("--reference", type=int, default=3, help="geometries also projected voxel by voxel (slow)")
    ap.add_argument("--budget-ms", type=float, default=0.0, help="exit 1 when the median view takes longer")
    args = ap.parse_args(argv)

    from cigocc_ros.config import GridConfig
    from cigocc_ros.costmap import Costmapper, pack_columns
    from cigocc_ros.geometry import crop_window, in_view

    grid = GridConfig()
    K = P2[:, :3]
    mapper = Costmapper(grid)
    views, ms = [], []
    for T in geometries(args.geometries):
        t0 = time.perf_counter()
        views.append(mapper.view(K, T, IMAGE_HW, MODEL_HW))
        ms.append((time.perf_counter() - t0) * 1e3)
    axes = [grid.origin[i] + (np.arange(grid.size[i]) + 0.5) * grid.voxel_size for i in range(3)]
    centres = np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).reshape(-1, 3)
    ref_ms, mismatched = [], 0
    for T, view in list(zip(geometries(args.geometries), views, strict=True))[: args.reference]:
        t0 = time.perf_counter()
        every = in_view(centres, K, T, crop_window(IMAGE_HW, MODEL_HW)).reshape(grid.size)
        ref_ms.append((time.perf_counter() - t0) * 1e3)
        mismatched += int(np.unpackbits((pack_columns(every) ^ view.frustum_bits).view(np.uint8)).sum())
    median = statistics.median(ms)
    print(f"grid {tuple(grid.size)} ({np.prod(grid.size) / 1e6:.1f} M voxels), image {IMAGE_HW[1]}x{IMAGE_HW[0]} "
          f"-> model {MODEL_HW[1]}x{MODEL_HW[0]}")
    print(f"Costmapper.view per new geometry: median {median:.1f} ms, max {max(ms):.1f} ms "
          f"({len(ms)} geometries)")
    if ref_ms:
        print(f"projecting every voxel centre (geometry.in_view): median {statistics.median(ref_ms):.0f} ms "
              f"({len(ref_ms)} geometries); voxels that differ: {mismatched}")
    if args.budget_ms and median > args.budget_ms:
        print(f"over budget: median {median:.1f} ms > {args.budget_ms:g} ms")
        return 1
    return 1 if mismatched else 0


if __name__ == "__main__":
    sys.exit(main())
