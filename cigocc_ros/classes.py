"""The SemanticKITTI class table: the 20 training classes, their colours and the raw-id maps.

Read once from `cigocc_ros/semantic-kitti.yaml`, package data beside this module
(PRBonn/semantic-kitti-api, MIT licence; see cigocc_ros/ATTRIBUTION.md). Label 0 is empty
space, 1-19 are the semantic classes; 255 is the ignore value used by the targets and the metric.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import yaml

IGNORE_LABEL = 255
NUM_CLASSES = 20
CLASS_TABLE_FILE = Path(__file__).resolve().with_name("semantic-kitti.yaml")


@dataclass(frozen=True)
class ClassTable:
    names: tuple[str, ...]  # (20,) training-class names, index = label
    colors_rgb: np.ndarray  # (20, 3) uint8, RGB (the yaml stores BGR)
    learning_map: np.ndarray  # (max_raw_id + 1,) uint8: raw SemanticKITTI id -> label, 255 ignored
    learning_map_inv: np.ndarray  # (20,) uint16: label -> raw id (for submission files)
    frequencies: np.ndarray  # (20,) float64, per-class voxel frequencies (class weights)

    @property
    def num_classes(self) -> int:
        return len(self.names)


# Voxel counts per class over SemanticKITTI's training split, as published with MonoScene
# (used by it, VoxFormer and CGFormer for the 1 / ln(f + 0.001) class weights).
SEMANTIC_KITTI_FREQUENCIES = np.array(
    [
        5.41773033e09, 1.57835390e07, 1.25136000e05, 1.18809000e05, 6.46799000e05,
        8.21951000e05, 2.62978000e05, 2.83696000e05, 2.04750000e05, 6.16887030e07,
        4.50296100e06, 4.48836500e07, 2.26992300e06, 5.68402180e07, 1.57196520e07,
        1.58442623e08, 2.06162300e06, 3.69705220e07, 1.15198800e06, 3.34146000e05,
    ],
    dtype=np.float64,
)


def class_weights(frequencies: np.ndarray = SEMANTIC_KITTI_FREQUENCIES) -> np.ndarray:
    """(20,) float32 CE weights 1 / ln(n + 0.001) of the raw voxel counts n (MonoScene's rule:
    rare classes weigh about twice the empty class, not orders of magnitude more)."""
    return (1.0 / np.log(frequencies + 0.001)).astype(np.float32)


@lru_cache(maxsize=4)
def load_class_table(path: str | Path | None = None) -> ClassTable:
    """Parse semantic-kitti.yaml into a ClassTable; errors name the file and the key."""
    path = Path(path) if path else CLASS_TABLE_FILE
    try:
        data = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as e:
        raise ValueError(f"cannot read class table {path}: {e}") from None
    for key in ("labels", "color_map", "learning_map", "learning_map_inv"):
        if key not in data:
            raise ValueError(f"class table {path} has no '{key}'")
    inv = data["learning_map_inv"]
    n = len(inv)
    names = tuple(
        "empty" if i == 0 else str(data["labels"][inv[i]]) for i in range(n)
    )
    colors_bgr = np.array([data["color_map"][inv[i]] for i in range(n)], dtype=np.uint8)
    colors = colors_bgr[:, ::-1].copy()
    colors[0] = (0, 0, 0)
    lmap = np.full(max(data["learning_map"]) + 1, IGNORE_LABEL, dtype=np.uint8)
    for raw, lab in data["learning_map"].items():
        # Raw ids other than 0 mapped to 0 (outlier, other-structure...) carry no class: ignore.
        lmap[raw] = lab if (lab != 0 or raw == 0) else IGNORE_LABEL
    lmap_inv = np.array([inv[i] for i in range(n)], dtype=np.uint16)
    return ClassTable(names, colors, lmap, lmap_inv, SEMANTIC_KITTI_FREQUENCIES.copy())
