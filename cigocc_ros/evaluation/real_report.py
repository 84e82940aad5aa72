"""The real-frame report: quality on real frames against their labelled LiDAR scans, with the
two trivial predictors beside the model (no voxel labels needed; figures: evaluation/lidar.py).
`cigocc lidar-report` (cigocc_ros/cli/lidar_report.py) is the command around it.

For every frame of the given sequence folders that has `image_2`, `velodyne` and `labels`
(and `image_3` for stereo), scored inside the image:
- `flat ground slab`: three road layers around the KITTI ground height (controls.flat_ground_at_layer);
- `stereo + height rule`: the node's StereoSGBM depth voxelised, labelled by height
  (controls.stereo_height_rule);
- `stereo + segmentation`: the same points, each with the segmentation branch's 2D class (of the
  model's own weights unless told otherwise), voxelised by majority (controls.stereo_segmentation);
- the model, mono, and with `--stereo` also stereo (StereoSGBM depth as the external depth
  input, exactly the node's stereo path).
`write_report` writes `<out>/report.json` (per frame and averaged), `<out>/report.md` (the
table) and `run_report` a PNG per frame: image | reference (bird's-eye) | prediction | errors (red phantom: predicted occupied
where the rays saw free space; blue missed; green found).
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..config import GridConfig
from ..data import semantic_kitti as sk
from ..geometry import camera_from_calib, stereo_baseline
from . import controls
from .lidar import LidarReference, LidarReport, format_reports, frame_scores, lidar_reference

FLAT, STEREO, STEREO_SEG = "flat ground slab", "stereo + height rule", "stereo + segmentation"
MODEL, MODEL_STEREO = "model (mono)", "model (stereo)"


@dataclass
class RealFrame:
    """One real frame: left (and right) image, camera, scan and its labels."""

    name: str  # "SEQ/NNNNNN"
    image: np.ndarray  # (H, W, 3) uint8 RGB, image_2
    right: np.ndarray  # image_3
    K: np.ndarray
    T_cam_grid: np.ndarray
    baseline: float
    points: np.ndarray
    labels_raw: np.ndarray


def real_frames(seq_dir: Path, frames: list[str] | None = None) -> list[RealFrame]:
    """The scoreable frames of a sequence folder (image_2, image_3 for the stereo predictor,
    velodyne, labels; calib with P2, P3, Tr). Raises DataFormatError naming what is missing."""
    seq_dir = Path(seq_dir)
    if not seq_dir.is_dir():
        raise sk.DataFormatError(f"sequence folder not found: {seq_dir}")
    paths = sk.SequencePaths(seq_dir.parent.parent, seq_dir.name)
    calib = sk.read_calib(paths.calib, required=("P2", "P3", "Tr"))
    have = set(paths.frames("velodyne", ".bin")) & set(paths.frames("labels", ".label")) & \
        set(paths.frames("image_2", ".png")) & set(paths.frames("image_3", ".png"))
    names = [sk.frame_name(f) for f in frames] if frames else sorted(have)
    missing = [f for f in names if f not in have]
    if missing:
        raise sk.DataFormatError(f"{seq_dir}: frame {missing[0]} lacks image_2, image_3, velodyne or labels")
    if not names:
        raise sk.DataFormatError(f"{seq_dir}: no frame with image_2, image_3, velodyne and labels")
    out = []
    for f in names:
        image = sk.read_image(paths.image(f, 2))
        right = sk.read_image(paths.image(f, 3))
        if right.shape != image.shape:
            raise sk.DataFormatError(f"{paths.image(f, 3)}: {right.shape[:2]}, image_2 is {image.shape[:2]}")
        cam = camera_from_calib(calib["P2"], calib["Tr"], image.shape[:2])
        points, labels = sk.read_labelled_scan(paths, f)
        out.append(RealFrame(f"{seq_dir.name}/{f}", image, right, cam.K, cam.T_cam_grid,
                             stereo_baseline(calib["P2"], calib["P3"]), points, labels))
    return out


def flat_slab(grid: GridConfig) -> np.ndarray:
    """Three road layers centred on the KITTI ground height (the issue's 'flat ground slab')."""
    layer = int(controls.ground_layers(grid)[0])
    layers = [k for k in (layer - 1, layer, layer + 1) if 0 <= k < grid.size[2]]
    return np.maximum.reduce([controls.flat_ground_at_layer(tuple(grid.size), k) for k in layers])


def error_bev(pred: np.ndarray, ref: LidarReference, scale: int = 2) -> np.ndarray:
    """(X*scale, Y*scale, 3) RGB bird's-eye error map inside the image: per column red if a
    predicted voxel is in LiDAR free space (phantom), else green if a reference surface voxel
    is predicted (found), else blue if one is missed; grey outside the image; white otherwise."""
    p_occ = (pred > 0) & (pred != 255)
    m = ref.in_image
    phantom = (p_occ & ref.free & m).any(2)
    found = (p_occ & ref.occupied & m).any(2)
    missed = (~p_occ & ref.occupied & m).any(2)
    img = np.full(pred.shape[:2] + (3,), 255, np.uint8)
    img[~m.any(2)] = (215, 215, 215)
    img[missed] = (40, 90, 230)
    img[found] = (40, 170, 60)
    img[phantom] = (220, 40, 40)
    img = img[::-1, ::-1]  # x forward -> up, y left -> left (as viz.bev)
    return np.repeat(np.repeat(img, scale, axis=0), scale, axis=1)


def frame_picture(frame: RealFrame, ref: LidarReference, pred: np.ndarray) -> np.ndarray:
    from .. import viz

    return viz.panel([frame.image, viz.bev(ref.surface), viz.bev(pred), error_bev(pred, ref)],
                     height=frame.image.shape[0])


def run_report(frames: list[RealFrame], predictor=None, stereo: bool = False, grid: GridConfig | None = None,
               out: Path | None = None, log=print, segmenter=None,
               recorded: dict[str, dict[str, np.ndarray]] | None = None) -> list[LidarReport]:
    """Score the trivial predictors and (if given) the model on `frames`; PNGs into `out`.
    `segmenter` (a SegmentationPredictor) adds the stereo + segmentation control; `recorded`
    adds rows of predictions made elsewhere ({row name: {frame name: (X, Y, Z) labels}}, e.g.
    the node's outputs of a replayed bag; a frame without one scores as an empty grid)."""
    from .. import viz
    from ..stereo import StereoDepth

    grid = grid or GridConfig()
    recorded = recorded or {}
    names = ([FLAT, STEREO] + ([STEREO_SEG] if segmenter else []) + ([MODEL] if predictor else [])
             + ([MODEL_STEREO] if predictor and stereo else []) + list(recorded))
    reports = {n: LidarReport(n) for n in names}
    slab = flat_slab(grid)
    for fr in frames:
        ref = lidar_reference(fr.points, fr.labels_raw, fr.K, fr.T_cam_grid, fr.image.shape[:2], grid)
        preds = {FLAT: slab}
        # The node's stereo path: StereoSGBM with the default parameters on the colour pair.
        matched = StereoDepth(fr.K[0, 0], fr.baseline).match(fr.image, fr.right)
        depth = matched.depth
        preds[STEREO] = controls.stereo_height_rule(depth, fr.K, fr.T_cam_grid, grid)
        if segmenter is not None:
            preds[STEREO_SEG] = controls.stereo_segmentation(depth, segmenter.labels(fr.image), fr.K, fr.T_cam_grid,
                                                             grid)
        if predictor is not None:
            preds[MODEL] = predictor.predict(fr.image, fr.K, fr.T_cam_grid).labels
            if stereo:
                preds[MODEL_STEREO] = predictor.predict(fr.image, fr.K, fr.T_cam_grid, depth=depth,
                                                        depth_conf=matched.confidence).labels
        for row, by_frame in recorded.items():
            preds[row] = by_frame.get(fr.name, np.zeros(tuple(grid.size), np.uint8))
        for n, p in preds.items():
            reports[n].add(fr.name, frame_scores(p, ref))
        if out is not None:
            shown = next((preds[n] for n in (*recorded, MODEL_STEREO, MODEL, STEREO) if n in preds), slab)
            viz.save_png(out / f"{fr.name.replace('/', '_')}.png", frame_picture(fr, ref, shown))
        log(f"{fr.name}: " + ", ".join(f"{n} IoU {100 * r.per_frame[-1]['iou_observed']:.1f}"
                                       for n, r in reports.items() if r.frames))
    return [reports[n] for n in names]


def write_report(out: Path, reports: list[LidarReport], frames: list[RealFrame], sources: list[str],
                 weights: str) -> str:
    """report.json and report.md in `out`; returns the Markdown table."""
    table = format_reports(reports)
    (out / "report.json").write_text(json.dumps({"weights": weights, "sequences": sources,
                                                 "frames": [f.name for f in frames],
                                                 "reports": [r.summary() for r in reports]}, indent=2))
    per_frame = ["| frame | " + " | ".join(r.name for r in reports) + " |", "|---" * (len(reports) + 1) + "|"]
    for i, f in enumerate(frames):
        per_frame.append(f"| {f.name} | " + " | ".join(f"{100 * r.per_frame[i]['iou_observed']:.1f}"
                                                       for r in reports) + " |")
    (out / "report.md").write_text(f"{len(frames)} frames of {', '.join(sources)}; weights: {weights}\n\n"
                                   f"{table}\n\nIoU over observed voxels per frame:\n\n" + "\n".join(per_frame) + "\n")
    return table
