"""Training on real frames mixed with synthetic ones: the datasets of a run from its config.

`data.real_root` names a folder written by `cigocc make-targets` (real sequences with voxel
targets from their labelled scans). With it, the training set is the synthetic (or other
`data.root`) training frames plus the real `data.real_train_sequences`, the real frames
repeated so that they make about `data.real_share` of the samples; validation runs on the real
`data.real_val_sequences` when given (a whole held-out sequence, docs/real-frames.md), else on
`data.val_sequences`. Every sample keeps its own augmentation seed (its index), so repeated
real frames get different augmentations.
"""
from __future__ import annotations

import dataclasses

from ..config import ConfigError, ExperimentConfig
from .dataset import SemanticKittiDataset


class MixedDataset:
    """Datasets concatenated, each repeated a whole number of times: sample i is sample
    `i - offset` (mod its length) of one part; "index" is rewritten to i."""

    def __init__(self, parts: list[tuple[SemanticKittiDataset, int]]):
        if not parts or any(r < 1 or len(d) == 0 for d, r in parts):
            raise ValueError("MixedDataset needs non-empty parts repeated at least once")
        self.parts = parts
        self._ends = []
        end = 0
        for d, r in parts:
            end += len(d) * r
            self._ends.append(end)

    def __len__(self) -> int:
        return self._ends[-1]

    def _locate(self, index: int) -> tuple[SemanticKittiDataset, int]:
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} outside 0..{len(self) - 1}")
        start = 0
        for (d, _), end in zip(self.parts, self._ends, strict=True):
            if index < end:
                return d, (index - start) % len(d)
            start = end
        raise AssertionError("unreachable")

    def __getitem__(self, index: int) -> dict:
        d, j = self._locate(index)
        item = d[j]
        item["index"] = item["index"].new_tensor(index)
        return item

    def frame_info(self, index: int) -> tuple[str, str]:
        d, j = self._locate(index)
        return d.frame_info(j)

    def source(self, index: int) -> str:
        """The root folder of sample `index` (tells real from synthetic samples)."""
        return str(self._locate(index)[0].root)


def real_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """cfg reading the real frames: root = data.real_root, splits = the real sequences; the
    targets are make-targets' own (current layout: no legacy shift)."""
    d = cfg.data
    if not d.real_root:
        raise ConfigError("data.real_root is empty: run `cigocc make-targets` and set it to the output folder")
    return dataclasses.replace(cfg, data=dataclasses.replace(
        d, root=d.real_root, train_sequences=d.real_train_sequences, val_sequences=d.real_val_sequences,
        legacy_voxel_shift=False))


def training_sets(cfg: ExperimentConfig, with_val: bool = True):
    """(train set, val set or None) of a run: SemanticKittiDataset over data.root, or a
    MixedDataset with the real frames when data.real_root is set (module docstring)."""
    d = cfg.data
    overlap = set(d.real_train_sequences) & set(d.real_val_sequences)
    if overlap:
        raise ConfigError(f"real sequences {sorted(overlap)} are both in real_train_sequences and "
                          "real_val_sequences: hold the validation sequence out")
    if not 0.0 <= d.real_share <= 1.0:
        raise ConfigError(f"data.real_share must be in [0, 1], got {d.real_share}")
    val = None
    if not d.real_root:
        train = SemanticKittiDataset(cfg, "train")
        if with_val:
            val = SemanticKittiDataset(cfg, "val")
        return train, val
    rcfg = real_config(cfg)
    parts = []
    if d.real_train_sequences:
        real = SemanticKittiDataset(rcfg, "train")
        if d.real_share < 1.0 and d.train_sequences:
            synth = SemanticKittiDataset(cfg, "train")
            repeats = max(1, round(d.real_share / max(1.0 - d.real_share, 1e-9) * len(synth) / len(real)))
            parts = [(synth, 1), (real, repeats)]
        else:
            parts = [(real, 1)]
    elif d.train_sequences:
        parts = [(SemanticKittiDataset(cfg, "train"), 1)]
    else:
        raise ConfigError("no training sequences: set data.train_sequences or data.real_train_sequences")
    if with_val:
        val = SemanticKittiDataset(rcfg, "val", augment=False) if d.real_val_sequences else \
            SemanticKittiDataset(cfg, "val")
    return MixedDataset(parts), val
