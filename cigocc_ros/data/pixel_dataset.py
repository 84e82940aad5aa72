"""Training samples of the 2D training (`cigocc train-seg`): real images with per-pixel labels.

Two sources (Seg2DConfig):
- CamVid's train split, dense labels in its 11 classes (data/camvid.py);
- the labelled KITTI frames of `kitti_train_sequences`, sparse labels from their LiDAR scans in
  SemanticKITTI's 20 classes (data/lidar_pixels.py).
Targets are rows of one label-set table `LABEL_SETS` (R, 20) bool: row l < 20 is the
SemanticKITTI label l alone, row 20 + k is CamVid class k's set. The loss
(model/losses.set_cross_entropy) reads a row as "any of these classes is right".

The KITTI frames are repeated so that they make `kitti_share` of an epoch. Every sample is
rescaled (log-uniform in its source's scale range), cropped to `crop` (padded with "no label"
where the image is smaller), mirrored with `flip_prob` and photometrically changed
(data/augment.photometric). Decoded images and label images stay in memory (about 200 MB).
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import torch

from ..classes import IGNORE_LABEL, NUM_CLASSES
from ..config import ConfigError, Seg2DConfig
from . import augment
from . import semantic_kitti as sk
from .camvid import CAMVID_VOID, camvid_frames, camvid_set_matrix, read_camvid_image, read_camvid_label
from .lidar_pixels import frame_label_image, labelled_frames

CAMVID_ROW0 = NUM_CLASSES
LABEL_SETS = np.concatenate([np.eye(NUM_CLASSES, dtype=bool), camvid_set_matrix()])  # (31, 20)


def camvid_rows(label: np.ndarray) -> np.ndarray:
    """(H, W) CamVid ids -> LABEL_SETS rows (void -> 255)."""
    return np.where(label == CAMVID_VOID, IGNORE_LABEL, label.astype(np.int64) + CAMVID_ROW0).astype(np.uint8)


@dataclass
class PixelSource:
    """Images (H, W, 3) uint8 RGB with targets (H, W) uint8 LABEL_SETS rows (255 = none)."""

    name: str
    frames: list[str]
    images: list[np.ndarray]
    targets: list[np.ndarray]
    scale: tuple[float, float]


def load_camvid(root: str, split: str, scale: tuple[float, float]) -> PixelSource:
    frames = camvid_frames(root, split)
    return PixelSource(f"camvid/{split}", [f.name for f in frames], [read_camvid_image(f.image) for f in frames],
                       [camvid_rows(read_camvid_label(f.label)) for f in frames], tuple(scale))


def load_kitti(root: str, sequences: tuple[str, ...], scale: tuple[float, float]) -> PixelSource:
    """The labelled frames of `sequences` under root/sequences/ (DataFormatError if a sequence
    has none)."""
    names, images, targets = [], [], []
    for seq in sequences:
        paths = sk.SequencePaths(root, seq)
        frames = labelled_frames(paths)
        if not frames:
            raise sk.DataFormatError(f"{paths.dir}: no frame with image_2, velodyne and labels")
        calib = sk.read_calib(paths.calib, required=("P2", "Tr"))
        for f in frames:
            image, labels = frame_label_image(paths, f, calib)
            names.append(f"{seq}/{f}")
            images.append(image)
            targets.append(labels)  # rows 0..19 are the SemanticKITTI labels themselves
    return PixelSource("kitti", names, images, targets, tuple(scale))


def row_weights(sources: list[PixelSource], c: float) -> np.ndarray:
    """(R,) float32 weights 1 / ln(c + f) of each row's pixel share f within its source."""
    w = np.ones(len(LABEL_SETS), dtype=np.float32)
    for src in sources:
        counts = sum(np.bincount(t.ravel(), minlength=256)[: len(LABEL_SETS)] for t in src.targets)
        used = counts > 0
        share = counts / max(counts.sum(), 1)
        w[used] = (1.0 / np.log(c + share[used])).astype(np.float32)
    return w


def augment_sample(image: np.ndarray, target: np.ndarray, scale: tuple[float, float], cfg: Seg2DConfig,
                   rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """One training crop: (image (h, w, 3) float32 in [0, 1], target (h, w) uint8), (h, w) = cfg.crop."""
    lo, hi = scale
    s = float(np.exp(rng.uniform(np.log(lo), np.log(hi)))) if hi > lo else float(lo)
    H, W = image.shape[:2]
    h, w = max(1, round(H * s)), max(1, round(W * s))
    img = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if s < 1 else cv2.INTER_LINEAR)
    tgt = cv2.resize(target, (w, h), interpolation=cv2.INTER_NEAREST)
    ch, cw = cfg.crop
    # Pad to at least the crop (image black, target unlabelled), then a random window.
    ph, pw = max(ch - h, 0), max(cw - w, 0)
    if ph or pw:
        img = cv2.copyMakeBorder(img, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=0)
        tgt = cv2.copyMakeBorder(tgt, 0, ph, 0, pw, cv2.BORDER_CONSTANT, value=IGNORE_LABEL)
    r0 = int(rng.integers(0, img.shape[0] - ch + 1))
    c0 = int(rng.integers(0, img.shape[1] - cw + 1))
    img, tgt = img[r0:r0 + ch, c0:c0 + cw], tgt[r0:r0 + ch, c0:c0 + cw]
    if rng.random() < cfg.flip_prob:
        img, tgt = img[:, ::-1], tgt[:, ::-1]
    out = img.astype(np.float32) / 255.0
    if augment.photometric_enabled(cfg):
        out = augment.photometric(out, cfg, rng)
    return np.ascontiguousarray(out), np.ascontiguousarray(tgt)


class PixelTrainSet:
    """Training samples (module docstring); sample i -> {"img": (3, h, w) float32 in [0, 1],
    "target": (h, w) int64 LABEL_SETS rows, 255 = no label}. Augmentation draws from numpy's
    global RNG, which the trainer seeds per (seed, step, index)."""

    def __init__(self, cfg: Seg2DConfig, log=print):
        self.cfg = cfg
        self.sources: list[PixelSource] = []
        if cfg.camvid_root:
            self.sources.append(load_camvid(cfg.camvid_root, "train", cfg.camvid_scale))
        if cfg.kitti_root and cfg.kitti_train_sequences:
            self.sources.append(load_kitti(cfg.kitti_root, cfg.kitti_train_sequences, cfg.kitti_scale))
        if not self.sources:
            raise ConfigError("seg2d: no training data (set seg2d.camvid_root and/or seg2d.kitti_root)")
        self.index = self._epoch_index()
        self.weights = row_weights(self.sources, cfg.class_weight_c)
        log("2D training data: " + ", ".join(f"{s.name} {len(s.images)} frames" for s in self.sources)
            + f"; an epoch is {len(self.index)} samples")

    def _epoch_index(self) -> list[tuple[int, int]]:
        """(source, frame) pairs of one epoch: KITTI frames repeated to about kitti_share of it."""
        if len(self.sources) == 1:
            return [(0, j) for j in range(len(self.sources[0].images))]
        cam, kit = (len(s.images) for s in self.sources)
        share = min(max(self.cfg.kitti_share, 0.0), 0.95)
        reps = max(1, round(share / (1 - share) * cam / kit))
        return [(0, j) for j in range(cam)] + [(1, j) for _ in range(reps) for j in range(kit)]

    def __len__(self) -> int:
        return len(self.index)

    def __getitem__(self, i: int) -> dict:
        s, j = self.index[i]
        src = self.sources[s]
        rng = np.random.default_rng(np.random.randint(0, 2**31 - 1))
        img, tgt = augment_sample(src.images[j], src.targets[j], src.scale, self.cfg, rng)
        return {"img": torch.from_numpy(img).permute(2, 0, 1), "target": torch.from_numpy(tgt.astype(np.int64))}
