"""CamVid (11-class split, `../shared/camvid/README.md`): reading, and the one map between its
classes and SemanticKITTI's training classes.

CamVid labels are coarser than SemanticKITTI's: its "car" folds car, truck and other vehicles,
its "tree" all vegetation, and it has no terrain class (grass is vegetation or void there). So a
CamVid class maps to a SET of SemanticKITTI classes (`CAMVID_TO_KITTI`): in training a CamVid
pixel supervises the probability of its set (model/losses.set_cross_entropy), and the KITTI
frames' LiDAR labels decide between the members. For scoring on CamVid, a SemanticKITTI label
maps back to the CamVid class whose set holds it (`kitti_to_camvid_lut`). Sky is SemanticKITTI
label 0 ("empty": nothing occupied along the ray), CamVid's void is ignored.

File layout: `<root>/<split>/images/<stem>.jpg` (480x360 RGB) and `<root>/<split>/labels/<stem>.png`
(uint8 class id per pixel, 0..10, 11 = void).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from ..classes import IGNORE_LABEL, NUM_CLASSES
from .semantic_kitti import DataFormatError

CAMVID_CLASSES = ("sky", "building", "pole", "road", "pavement", "tree", "sign", "fence", "car",
                  "pedestrian", "bicyclist")
CAMVID_VOID = 11
SPLITS = ("train", "val", "test")

# CamVid id -> the SemanticKITTI training labels it covers (cigocc_ros/semantic-kitti.yaml's learning
# map: 1 car, 2 bicycle, 3 motorcycle, 4 truck, 5 other-vehicle, 6 person, 7 bicyclist,
# 8 motorcyclist, 9 road, 10 parking, 11 sidewalk, 12 other-ground, 13 building, 14 fence,
# 15 vegetation, 16 trunk, 17 terrain, 18 pole, 19 traffic-sign). The first member is the
# nearest single class (the README's column). Every label 0..19 is in exactly one set.
CAMVID_TO_KITTI: tuple[tuple[int, ...], ...] = (
    (0,),  # sky: nothing there
    (13,),  # building (walls, bridges, tunnels)
    (18,),  # pole (column / pole)
    (9, 10),  # road (lane markings and road shoulders; parking areas are road-like surfaces)
    (11, 12),  # pavement (sidewalk; kerbs and other walkable ground)
    (15, 16, 17),  # tree (CamVid's tree + misc vegetation: leaves, trunks, grass verges)
    (19,),  # sign / symbol
    (14,),  # fence
    (1, 4, 5),  # car (CamVid's car, SUV / pickup, truck / bus, other moving vehicles)
    (6,),  # pedestrian
    (7, 2, 3, 8),  # bicyclist (bicycles and motorcycles, ridden or not)
)


def camvid_set_matrix() -> np.ndarray:
    """(11, 20) bool: row k marks the SemanticKITTI labels of CamVid class k."""
    m = np.zeros((len(CAMVID_CLASSES), NUM_CLASSES), dtype=bool)
    for k, members in enumerate(CAMVID_TO_KITTI):
        m[k, list(members)] = True
    return m


def kitti_to_camvid_lut() -> np.ndarray:
    """(256,) uint8: SemanticKITTI label -> the CamVid class whose set holds it; 255 -> void."""
    lut = np.full(256, CAMVID_VOID, dtype=np.uint8)
    for k, members in enumerate(CAMVID_TO_KITTI):
        lut[list(members)] = k
    return lut


def camvid_nearest_lut() -> np.ndarray:
    """(256,) uint8: CamVid id -> its nearest single SemanticKITTI label (void -> 255)."""
    lut = np.full(256, IGNORE_LABEL, dtype=np.uint8)
    for k, members in enumerate(CAMVID_TO_KITTI):
        lut[k] = members[0]
    return lut


@dataclass(frozen=True)
class CamVidFrame:
    name: str  # the file stem, e.g. "0001TP_006690"
    image: Path
    label: Path


def camvid_frames(root: str | Path, split: str) -> list[CamVidFrame]:
    """The frames of one split, sorted by name. Raises DataFormatError when the folder or a
    frame's label is missing."""
    if split not in SPLITS:
        raise ValueError(f"CamVid split must be one of {SPLITS}, got {split!r}")
    folder = Path(root) / split
    images = sorted((folder / "images").glob("*.jpg")) + sorted((folder / "images").glob("*.png"))
    if not images:
        raise DataFormatError(f"no CamVid images in {folder / 'images'}")
    out = []
    for img in sorted(images):
        lab = folder / "labels" / f"{img.stem}.png"
        if not lab.is_file():
            raise DataFormatError(f"{img}: no label file {lab}")
        out.append(CamVidFrame(img.stem, img, lab))
    return out


def read_camvid_label(path: str | Path) -> np.ndarray:
    """(H, W) uint8 CamVid ids 0..11 of a label PNG; raises DataFormatError on anything else."""
    lab = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if lab is None or lab.dtype != np.uint8 or lab.ndim != 2:
        raise DataFormatError(f"{path}: a CamVid label must be a single-channel 8-bit PNG")
    if int(lab.max()) > CAMVID_VOID:
        raise DataFormatError(f"{path}: class id {int(lab.max())} is not 0..{CAMVID_VOID}")
    return lab


def read_camvid_image(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 RGB."""
    img = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if img is None:
        raise DataFormatError(f"{path}: not a readable image")
    return cv2.cvtColor(img, cv2.COLOR_BGR2RGB)
