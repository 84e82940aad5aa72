"""The torch Dataset over SemanticKITTI-layout folders, yielding the data contract's samples.

One sample is one frame `root/sequences/XX/…/NNNNNN` (docs/data.md): the input colour image
bottom-cropped / padded to `model.image_size`, its K and T_cam_grid, the SSC targets at full
and 1:2 resolution, LiDAR depth targets, teacher masks and stereo depth when available.
Training augmentation (horizontal flip, colour jitter) keeps image, calibration and targets
consistent. `collate` batches samples whose optional keys differ.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from ..classes import IGNORE_LABEL
from ..config import ConfigError, ExperimentConfig, ssc_train_factors, target_key
from ..geometry import camera_from_calib, crop_or_pad, flip_horizontal, stereo_baseline
from ..stereo import StereoDepth
from . import augment
from . import semantic_kitti as sk
from .lidar_pixels import lidar_depth_image
from .synthetic import DEFAULT_SPLIT, default_dataset

SPLITS = ("train", "val", "test")
# Values a batch gets for an optional key that some of its samples lack ("no value").
COLLATE_FILL = {"depth_target": 0.0, "depth": 0.0, "depth_conf": 0.0, "teacher": IGNORE_LABEL,
                "target": IGNORE_LABEL, "target_2": IGNORE_LABEL}


def dataset_root(cfg: ExperimentConfig, data_arg: str = "") -> tuple[ExperimentConfig, str]:
    """The dataset folder a command uses, and `cfg` pointing at it: `data_arg` when given, else
    cfg.data.root, else the default synthetic dataset (generated on first use, with its split)."""
    if data_arg:
        return dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, root=data_arg)), data_arg
    root = cfg.data.root
    if root:
        if not Path(root).is_dir():
            # A checkpoint stores the data.root of the machine it was trained on.
            raise FileNotFoundError(f"data.root {root} does not exist here: pass --data <folder with sequences/>")
        return cfg, root
    root = str(default_dataset())
    data = dataclasses.replace(cfg.data, root=root, train_sequences=DEFAULT_SPLIT["train"],
                               val_sequences=DEFAULT_SPLIT["val"])
    return dataclasses.replace(cfg, data=data), root


def lidar_depth_map(points: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
                    size: tuple[int, int]) -> np.ndarray:
    """Sparse depth image from LiDAR points.

    points: (N, >=3) in the grid (velodyne) frame; K (3, 3) and T_cam_grid (4, 4) of an image
    of `size` (H, W). Returns (H, W) float32 camera-frame depth z in metres of the nearest
    point falling in each pixel (rounded to the nearest pixel centre), 0 where none. No
    occlusion filter (lidar_pixels.lidar_depth_image has one): the depth branch's targets.
    """
    return lidar_depth_image(points, K, T_cam_grid, size, occlusion_window=1, min_depth=0.0)


def color_jitter(image: np.ndarray, strength: float, rng: np.random.Generator) -> np.ndarray:
    """Random brightness, contrast and saturation factors in [1 - s, 1 + s] on an (H, W, 3)
    float32 RGB image in [0, 1]; returns a new image clipped to [0, 1]."""
    if strength <= 0:
        return image
    b, c, s = rng.uniform(1 - strength, 1 + strength, size=3)
    img = image * b
    img = (img - img.mean()) * c + img.mean()
    gray = img @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
    img = (img - gray[..., None]) * s + gray[..., None]
    return np.clip(img, 0.0, 1.0).astype(np.float32)


class SemanticKittiDataset(Dataset):
    """Frames of `cfg.data.root` for `split` ('train' | 'val' | 'test').

    Samples: for train/val the frames with `voxels/NNNNNN.label`; for test the frames with
    `voxels/NNNNNN.invalid` (the hidden test set's files) and an image, or every image when
    a sequence has no voxel files. Sequences of the split that are not on disk are skipped
    (listed in `missing_sequences`); a split with no frame at all is an error.
    Items are dicts of tensors (data contract, without the batch dimension):
    img (3, H, W), K (3, 3), T_cam_grid (4, 4), index (); when available target (X, Y, Z) and
    target_2 (X/2, Y/2, Z/2) int64 (and target_d at d = model.coarse_downsample if not 2, and
    the main losses' training resolution, config.target_key(config.ssc_train_factors(cfg))),
    depth_target (H, W) float32, teacher (H, W) int64, depth (1, H, W) float32 (data.stereo;
    in training absent from a data.stereo_drop share of the samples).
    """

    def __init__(self, cfg: ExperimentConfig, split: str = "train", augment: bool | None = None,
                 root: str | Path | None = None):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
        self.cfg = cfg
        self.split = split
        self.augment = (split == "train") if augment is None else augment
        self.root = Path(root or cfg.data.root)
        if not str(root or cfg.data.root):
            raise ConfigError("data.root is empty: set it to a folder holding sequences/XX/")
        if cfg.data.camera not in ("left", "right"):
            raise ConfigError(f"data.camera must be 'left' or 'right', got {cfg.data.camera!r}")
        if cfg.data.stereo and cfg.data.camera != "left":
            raise ConfigError("data.stereo computes depth for the left camera: set data.camera: left")
        g = cfg.grid
        if self.augment and cfg.data.flip_prob > 0 and not np.isclose(
                g.origin[1], -0.5 * g.size[1] * g.voxel_size):
            raise ConfigError("data.flip_prob > 0 mirrors the grid's y axis: grid.origin y must be "
                              f"-size_y * voxel_size / 2, got {g.origin[1]}")
        self.camera_index = 2 if cfg.data.camera == "left" else 3
        # The contract's target_2, plus the stage-1 volume's scale when the model uses another
        # and the main losses' training resolution (config.ssc_train_factors).
        ds = cfg.model.coarse_downsample
        factors = {(2, 2, 2), (ds, ds, ds), ssc_train_factors(cfg)} - {(1, 1, 1)}
        self.target_keys = {target_key(f): f for f in sorted(factors)}
        sequences = {"train": cfg.data.train_sequences, "val": cfg.data.val_sequences,
                     "test": cfg.data.test_sequences}[split]
        self.missing_sequences: list[str] = []
        self.samples: list[tuple[str, str]] = []
        self._calib: dict[str, dict[str, np.ndarray]] = {}
        for seq in sequences:
            paths = sk.SequencePaths(self.root, seq)
            if not paths.dir.is_dir():
                self.missing_sequences.append(seq)
                continue
            frames = self._frames(paths)
            self._calib[seq] = sk.read_calib(paths.calib)
            self.samples += [(seq, f) for f in frames]
        if not self.samples:
            raise FileNotFoundError(
                f"no {split} frames under {self.root}/sequences/ (looked for {', '.join(sequences)})")
        self._stereo: dict[str, StereoDepth] = {}
        self._cache: dict[tuple, object] = {}

    def _frames(self, paths: sk.SequencePaths) -> list[str]:
        labelled = paths.frames("voxels", ".label")
        if self.split != "test":
            if not labelled:
                raise sk.DataFormatError(f"{paths.dir / 'voxels'}: no NNNNNN.label voxel targets "
                                         f"for the {self.split} split")
            return labelled
        images = paths.frames(f"image_{self.camera_index}", ".png")
        with_voxels = set(paths.frames("voxels", ".invalid"))
        return [f for f in images if f in with_voxels] if with_voxels else images

    def __len__(self) -> int:
        return len(self.samples)

    def frame_info(self, index: int) -> tuple[str, str]:
        """(sequence, 6-digit frame) of sample `index`."""
        return self.samples[index]

    def target(self, index: int) -> np.ndarray | None:
        """(X, Y, Z) uint8 SSC target (labels 0..19, 255 ignored) of sample `index` straight
        from its voxel files, without image or augmentation; None if it has no labels."""
        seq, frame = self.samples[index]
        stem = sk.SequencePaths(self.root, seq).voxel_stem(frame)
        if not Path(f"{stem}.label").is_file():
            return None
        return sk.read_voxel_target(stem, tuple(self.cfg.grid.size), self.cfg.data.legacy_voxel_shift)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        seq, frame = self.samples[index]
        paths = sk.SequencePaths(self.root, seq)
        calib = self._calib[seq]
        data = self.cfg.data
        out_size = tuple(self.cfg.model.image_size)

        image = sk.read_image(paths.image(frame, self.camera_index))
        H, W = image.shape[:2]
        cam = camera_from_calib(calib[f"P{self.camera_index}"], calib["Tr"], (H, W))
        T = cam.T_cam_grid
        rng = np.random.default_rng(int(torch.randint(0, 2**31 - 1, (1,)).item())) if self.augment else None
        arrays: dict[str, np.ndarray] = {}

        # Per-pixel maps at the full image size, cropped (and rescaled) with the image below.
        maps: dict[str, np.ndarray] = {"in_image": np.ones((H, W), dtype=np.uint8)}
        mask_path = paths.teacher_mask(frame, data.teacher_masks)
        if mask_path.is_file():
            mask = sk.read_teacher_mask(mask_path)
            if mask.shape != (H, W):
                raise sk.DataFormatError(f"{mask_path}: teacher mask is {mask.shape}, image is {(H, W)}")
            maps["teacher"] = mask
        if data.stereo and not (rng is not None and data.stereo_drop > 0 and rng.random() < data.stereo_drop):
            res = self._cached(("stereo", seq, frame), lambda: self._stereo_for(seq, cam.K[0, 0]).match(
                image, sk.read_image(paths.image(frame, 3))))
            maps["depth"], maps["depth_conf"] = res.depth, res.confidence
        K_full, shift = cam.K, (0, 0)
        if rng is not None and augment.geometric_enabled(data):
            scale, dr, dc = augment.draw_geometry(data, rng)
            shift = (dr, dc)
            if scale != 1.0:
                image, K_full, maps = augment.rescale(image, K_full, maps, scale)
        img, K = crop_or_pad(image, K_full, out_size, shift)
        maps = {key: crop_or_pad(m, K_full, out_size, shift)[0] for key, m in maps.items()}
        if "teacher" in maps:
            maps["teacher"][maps["in_image"] == 0] = IGNORE_LABEL
            arrays["teacher"] = maps["teacher"]
        for key in ("depth", "depth_conf"):
            if key in maps:
                arrays[key] = maps[key]

        arrays.update(self._cached(("targets", seq, frame), lambda: self._targets(index)))
        scan_path = paths.scan(frame)
        if data.depth_targets and scan_path.is_file():
            arrays["depth_target"] = lidar_depth_map(sk.read_scan(scan_path), K, T, out_size)

        rgb = img.astype(np.float32) / 255.0
        if rng is not None:
            if rng.random() < data.flip_prob:
                rgb, K, F = flip_horizontal(rgb, K)
                T = F @ T @ np.diag([1.0, -1.0, 1.0, 1.0])  # mirror the grid's y with the image
                # (X, Y, Z) volumes flip their Y axis, (H, W) maps their columns: both axis 1.
                arrays = {key: a[:, ::-1] for key, a in arrays.items()}
            rgb = color_jitter(rgb, data.color_jitter, rng)
            if augment.photometric_enabled(data):
                rgb = augment.photometric(rgb, data, rng)

        item = {
            "img": torch.from_numpy(np.ascontiguousarray(rgb.transpose(2, 0, 1))),
            "K": torch.from_numpy(K.astype(np.float32)),
            "T_cam_grid": torch.from_numpy(T.astype(np.float32)),
            "index": torch.tensor(index, dtype=torch.int64),
        }
        for key in ("target", *self.target_keys, "teacher"):
            if key in arrays:
                item[key] = torch.from_numpy(np.ascontiguousarray(arrays[key]).astype(np.int64))
        if "depth_target" in arrays:
            item["depth_target"] = torch.from_numpy(np.ascontiguousarray(arrays["depth_target"]))
        for key in ("depth", "depth_conf"):
            if key in arrays:
                item[key] = torch.from_numpy(np.ascontiguousarray(arrays[key], dtype=np.float32))[None]
        return item

    def _targets(self, index: int) -> dict[str, np.ndarray]:
        """{target, target_d...} (X, Y, Z) uint8 of sample `index`; {} without labels."""
        target = self.target(index)
        if target is None:
            return {}
        return {"target": target, **{key: sk.downsample_labels(target, f) for key, f in self.target_keys.items()}}

    def _cached(self, key: tuple, make):
        """make() once per key with data.cache (the arrays are never modified in place:
        augmentation makes new ones), else every time."""
        if not self.cfg.data.cache:
            return make()
        if key not in self._cache:
            self._cache[key] = make()
        return self._cache[key]

    def _stereo_for(self, seq: str, fx: float) -> StereoDepth:
        if seq not in self._stereo:
            calib = self._calib[seq]
            self._stereo[seq] = StereoDepth(fx, stereo_baseline(calib["P2"], calib["P3"]))
        return self._stereo[seq]


def collate(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    """Stack samples into a batch (B, ...). An optional key (COLLATE_FILL) missing from some
    samples is filled with its "no value" (0 depth, 255 labels); any other key must be in all."""
    keys = set().union(*(it.keys() for it in items))
    batch: dict[str, torch.Tensor] = {}
    for key in sorted(keys):
        present = [it[key] for it in items if key in it]
        if len(present) < len(items):
            fill = IGNORE_LABEL if key.startswith("target_") else COLLATE_FILL.get(key)
            if fill is None:
                raise KeyError(f"collate: '{key}' is missing from {len(items) - len(present)} of "
                               f"{len(items)} samples")
            like = present[0]
            present = [it[key] if key in it else torch.full_like(like, fill) for it in items]
        batch[key] = torch.stack(present)
    return batch
