"""Voxel training targets from labelled LiDAR scans: SemanticKITTI's recipe.

For frame f of a sequence with `velodyne/`, `labels/`, `poses.txt` and `calib.txt` (with Tr):
1. the frame's scan plus the next `num_scans - 1` labelled scans of the sequence (whatever
   frames exist: the shared samples hold every second frame) are moved into frame f's
   velodyne frame with  T_f<-j = Tr^-1 · pose_f^-1 · pose_j · Tr  (poses map cam0 of frame j
   to cam0 of frame 0; Tr maps velodyne -> cam0). Points of moving-object classes (raw ids
   252-259) are taken from frame f's own scan only: elsewhere they would smear a trail;
2. every scan is filtered in its own frame as the voxelizer does (2.5-70 m, the ego vehicle,
   raw labels 0 unlabelled and 1 outlier dropped), then all points are voxelised on the grid
   with the majority label per voxel (semantic_kitti.voxelize_scan);
3. visibility, SemanticKITTI's rule (jbehley/voxelizer `occludedBy`: a line from the voxel to
   a sensor position through the aggregated occupancy): `.occluded` = occupied, or not in line
   of sight of frame f's sensor; `.invalid` = not occupied and in line of sight of none of the
   aggregated scans' sensor positions (ray_march.line_of_sight);
4. `.bin` = frame f's own scan voxelised (the network's LiDAR input in the format).

All volumes are (X, Y, Z) on the grid of GridConfig (docs/conventions.md) in the current
(post-2020-08) layout. `write_targets` writes them through semantic_kitti's writers
into `out_root/sequences/XX/voxels/`, next to links to the sequence's inputs, so the Dataset
and `cigocc eval` read the folder like a SemanticKITTI sequence.
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import GridConfig
from ..errors import CigoccError
from . import semantic_kitti as sk
from .ray_march import line_of_sight

MOVING_RAW = tuple(range(252, 260))  # moving-car ... moving-other-vehicle
DEFAULT_SCANS = 10
# Inputs the output folder links to (so the Dataset finds images, calib and scans there).
LINKED = ("calib.txt", "poses.txt", "times.txt", "image_2", "image_3", "image_0", "image_1",
          "velodyne", "labels")


class TargetError(CigoccError, ValueError):
    """A sequence that cannot give targets (missing poses, Tr, scans); one clear line."""


@dataclass
class ScanTargets:
    """Targets of one frame, (X, Y, Z) arrays in the frame's grid."""

    labels: np.ndarray  # uint16 raw SemanticKITTI ids (0 = empty)
    invalid: np.ndarray  # bool
    occluded: np.ndarray  # bool
    occupancy: np.ndarray  # bool: the frame's own scan voxelised (`.bin`)
    scans: tuple[str, ...]  # frames whose scans were aggregated
    seconds: float


class LabelledSequence:
    """A sequence folder's labelled scans with poses and Tr; errors name what is missing."""

    def __init__(self, seq_dir: str | os.PathLike):
        self.dir = Path(seq_dir)
        if not self.dir.is_dir():
            raise TargetError(f"sequence folder not found: {self.dir}")
        self.paths = sk.SequencePaths(self.dir.parent.parent, self.dir.name)
        if not (self.dir / "poses.txt").is_file():
            raise TargetError(f"{self.dir}: no poses.txt: targets need the poses to aggregate scans")
        try:
            self.Tr = np.eye(4)
            self.Tr[:3] = sk.read_calib(self.dir / "calib.txt", required=("Tr",))["Tr"]
            self.poses = sk.read_poses(self.dir / "poses.txt")
        except sk.DataFormatError as e:
            raise TargetError(str(e)) from None
        scans = set(self.paths.frames("velodyne", ".bin"))
        self.frames = [f for f in self.paths.frames("labels", ".label") if f in scans]
        if not self.frames:
            raise TargetError(f"{self.dir}: no frame has both velodyne/NNNNNN.bin and labels/NNNNNN.label")
        last = int(self.frames[-1])
        if last >= len(self.poses):
            raise TargetError(f"{self.dir / 'poses.txt'}: {len(self.poses)} poses, but scan {self.frames[-1]} "
                              "needs one per frame")
        self._Tr_inv = np.linalg.inv(self.Tr)

    def velo_to_velo(self, target: str, source: str) -> np.ndarray:
        """(4, 4) mapping velodyne points of frame `source` into the velodyne frame of `target`."""
        pt, ps = self.poses[int(target)], self.poses[int(source)]
        return self._Tr_inv @ np.linalg.inv(pt) @ ps @ self.Tr

    def window(self, frame: str, num_scans: int) -> list[str]:
        """The frame and the next num_scans - 1 labelled frames."""
        if frame not in self.frames:
            raise TargetError(f"{self.dir}: frame {frame} has no labelled scan")
        i = self.frames.index(frame)
        return self.frames[i:i + num_scans]


def _filtered(points: np.ndarray, labels: np.ndarray, min_range: float = 2.5, max_range: float = 70.0
              ) -> tuple[np.ndarray, np.ndarray]:
    """A scan's points and raw labels kept by the voxelizer's filters, in its own frame."""
    xyz = points[:, :3]
    r = np.linalg.norm(xyz, axis=1)
    keep = (r >= min_range) & (r <= max_range)
    keep &= ~((xyz[:, 0] > -2.0) & (xyz[:, 0] < 3.0) & (np.abs(xyz[:, 1]) < 2.0))
    keep &= labels > 1  # 0 unlabelled, 1 outlier
    return xyz[keep], labels[keep]


def aggregate_scans(seq: LabelledSequence, frame: str, num_scans: int = DEFAULT_SCANS
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[str]]:
    """Points (N, 3) float32 and raw labels (N,) uint16 of the window's scans in frame's velodyne
    frame, the sensor positions (S, 3) there, and the frames used."""
    pts, labs, origins = [], [], []
    used = seq.window(frame, num_scans)
    for j in used:
        p, lab = sk.read_labelled_scan(seq.paths, j)
        p, lab = _filtered(p, lab)
        if j != frame:
            keep = ~np.isin(lab, MOVING_RAW)
            p, lab = p[keep], lab[keep]
        T = seq.velo_to_velo(frame, j)
        pts.append((p.astype(np.float64) @ T[:3, :3].T + T[:3, 3]).astype(np.float32))
        labs.append(lab)
        origins.append(T[:3, 3])
    return np.concatenate(pts), np.concatenate(labs), np.array(origins), used


def visibility(occupied: np.ndarray, origins: np.ndarray, grid: GridConfig) -> tuple[np.ndarray, np.ndarray]:
    """(invalid, occluded) of an aggregated occupancy seen from sensor positions origins (S, 3),
    the first being the frame's own sensor (SemanticKITTI's rule, module docstring)."""
    seen_here = line_of_sight(occupied, origins[0], grid)
    seen_any = seen_here.copy()
    for o in origins[1:]:
        seen_any |= line_of_sight(occupied, o, grid)
    return ~seen_any & ~occupied, ~seen_here | occupied


def scan_targets(seq: LabelledSequence, frame: str, num_scans: int = DEFAULT_SCANS,
                 grid: GridConfig | None = None) -> ScanTargets:
    """The targets of one frame (module docstring)."""
    t0 = time.perf_counter()
    grid = grid or GridConfig()
    pts, labs, origins, used = aggregate_scans(seq, frame, num_scans)
    occupied, labels = sk.voxelize_scan(pts, labs, grid, min_range=0.0, max_range=np.inf, hide_ego=False,
                                        ignore_raw=())
    invalid, occluded = visibility(occupied, origins, grid)
    own, own_lab = sk.read_labelled_scan(seq.paths, frame)
    occupancy, _ = sk.voxelize_scan(own, own_lab, grid)
    return ScanTargets(labels, invalid, occluded, occupancy, tuple(used), time.perf_counter() - t0)


def link_inputs(seq_dir: Path, out_dir: Path) -> None:
    """Symlink the sequence's inputs (LINKED) into out_dir, replacing stale links."""
    out_dir.mkdir(parents=True, exist_ok=True)
    for name in LINKED:
        src = seq_dir / name
        dst = out_dir / name
        if not src.exists():
            continue
        if dst.is_symlink():
            dst.unlink()
        elif dst.exists():
            continue  # a real file or folder the user put there: leave it
        # Relative links: the output folder stays valid when it moves together with the inputs.
        dst.symlink_to(os.path.relpath(src.resolve(), out_dir.resolve()), target_is_directory=src.is_dir())


def _write_frame(seq_dir: str, out_root: str, frame: str, num_scans: int, grid: GridConfig | None) -> tuple[str, str]:
    seq = LabelledSequence(seq_dir)
    out = sk.SequencePaths(Path(out_root), seq.dir.name)
    t = scan_targets(seq, frame, num_scans, grid)
    sk.write_voxels(out.voxel_stem(frame), t.labels, invalid=t.invalid, occluded=t.occluded,
                    occupancy=t.occupancy, raw=True)
    return frame, (f"{seq.dir.name}/{frame}: {len(t.scans)} scans, {int((t.labels > 0).sum())} occupied, "
                   f"{int(t.invalid.sum())} invalid voxels ({t.seconds:.1f} s)")


def write_targets(seq_dirs: list[str | os.PathLike], out_root: str | os.PathLike, num_scans: int = DEFAULT_SCANS,
                  frames: list[str] | None = None, grid: GridConfig | None = None, log=print,
                  jobs: int = 1) -> list[tuple[str, str]]:
    """Targets for every labelled frame (or `frames`) of each sequence folder, written to
    `out_root/sequences/<name>/voxels/NNNNNN.{label,invalid,occluded,bin}` with links to the
    inputs; `jobs` frames at a time in worker processes. Every sequence and frame is checked
    before any work. Returns the (sequence, frame) pairs written."""
    work = []
    for seq_dir in seq_dirs:
        seq = LabelledSequence(seq_dir)
        out = sk.SequencePaths(Path(out_root), seq.dir.name)
        if out.dir.resolve() == seq.dir.resolve():
            raise TargetError(f"--out would overwrite {seq.dir}'s own files: choose another folder")
        todo = frames or seq.frames
        for f in todo:
            seq.window(f, 1)  # every frame named must have a labelled scan
        work += [(seq, out, f) for f in todo]
    for seq, out, _ in work:
        link_inputs(seq.dir, out.dir)
    args = [(str(seq.dir), str(out_root), f, num_scans, grid) for seq, _, f in work]
    if jobs > 1 and len(args) > 1:
        from multiprocessing import get_context

        with get_context("spawn").Pool(min(jobs, len(args))) as pool:
            lines = [line for _, line in pool.imap(_star_write_frame, args)]
            for line in lines:
                log(line)
    else:
        for a in args:
            log(_write_frame(*a)[1])
    return [(seq.dir.name, f) for seq, _, f in work]


def _star_write_frame(args: tuple) -> tuple[str, str]:
    return _write_frame(*args)


@dataclass
class Agreement:
    """How targets agree with a real frame's `.bin` / `.invalid` files (counts of voxels)."""

    bin_real: int
    bin_ours: int
    bin_both: int
    invalid_real: int
    invalid_ours: int
    invalid_both: int
    voxels: int

    @property
    def bin_iou(self) -> float:
        return self.bin_both / max(self.bin_real + self.bin_ours - self.bin_both, 1)

    @property
    def invalid_iou(self) -> float:
        return self.invalid_both / max(self.invalid_real + self.invalid_ours - self.invalid_both, 1)

    @property
    def invalid_accuracy(self) -> float:
        """Share of all voxels on which both say the same (valid or invalid)."""
        diff = self.invalid_real + self.invalid_ours - 2 * self.invalid_both
        return 1.0 - diff / self.voxels


def agreement(targets: ScanTargets, real: sk.VoxelFrame, legacy_shift: bool = True) -> Agreement:
    """Compare targets with real voxel files (`legacy_shift`: the files predate the 2020-08 fix
    and sit one flat index late, docs/conventions.md)."""
    fix = sk.undo_legacy_shift if legacy_shift else (lambda v: v)
    rb, ri = fix(real.occupancy), fix(real.invalid)
    return Agreement(int(rb.sum()), int(targets.occupancy.sum()), int((rb & targets.occupancy).sum()),
                     int(ri.sum()), int(targets.invalid.sum()), int((ri & targets.invalid).sum()), rb.size)
