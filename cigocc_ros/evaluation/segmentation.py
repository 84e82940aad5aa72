"""The 2D report: how well a segmenter labels real pixels, beside a location prior.

- CamVid (test split): confusion over its 11 classes (void ignored) of the segmenter's
  SemanticKITTI labels mapped back to CamVid (data/camvid.kitti_to_camvid_lut); mIoU, per-class
  IoU and pixel accuracy. The image is rescaled by `scale` before the network (CamVid's scene
  looks ~1.5x smaller than KITTI's; Seg2DConfig.camvid_eval_scale), scored at label size.
- KITTI (held-out drives): accuracy at the pixels of the labelled LiDAR points
  (data/lidar_pixels.py), per class (= recall) and over the six classes that make most of a
  street (`STREET_CLASSES`) together.
- The location prior: the most frequent training label of each pixel position (CamVid: its
  train split at full resolution; KITTI: the training drives' LiDAR pixels in cells of
  `prior_cell` pixels, positions normalised to the image size); it knows where road and sky
  usually are, and nothing else.
Core module: numpy only besides the predictor passed in.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

import numpy as np

from ..classes import IGNORE_LABEL, NUM_CLASSES, load_class_table
from ..data import semantic_kitti as sk
from ..data.camvid import (
    CAMVID_CLASSES,
    CAMVID_VOID,
    camvid_frames,
    kitti_to_camvid_lut,
    read_camvid_image,
    read_camvid_label,
)
from ..data.lidar_pixels import frame_label_image, labelled_frames

STREET_CLASSES = (9, 11, 13, 15, 17, 1)  # road, sidewalk, building, vegetation, terrain, car
LabelFn = Callable[[np.ndarray], np.ndarray]  # image (H, W, 3) uint8 -> labels (H, W) uint8


class Confusion:
    """Pixel confusion counts (n, n): rows reference, columns prediction; reference 255 skipped."""

    def __init__(self, n: int):
        self.n = n
        self.counts = np.zeros((n, n), dtype=np.int64)

    def add(self, ref: np.ndarray, pred: np.ndarray) -> None:
        ref, pred = np.asarray(ref).ravel(), np.asarray(pred).ravel()
        ok = ref < self.n
        idx = ref[ok].astype(np.int64) * self.n + np.minimum(pred[ok].astype(np.int64), self.n - 1)
        self.counts += np.bincount(idx, minlength=self.n * self.n).reshape(self.n, self.n)

    def iou(self) -> np.ndarray:
        """(n,) IoU per class, NaN for a class neither in the reference nor predicted."""
        tp = np.diag(self.counts).astype(np.float64)
        den = self.counts.sum(0) + self.counts.sum(1) - tp
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(den > 0, tp / den, np.nan)

    def recall(self) -> np.ndarray:
        """(n,) share of each reference class predicted as itself, NaN where absent."""
        tp = np.diag(self.counts).astype(np.float64)
        tot = self.counts.sum(1)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(tot > 0, tp / tot, np.nan)

    def accuracy(self, classes: Iterable[int] | None = None) -> float:
        """Share of reference pixels (of `classes`, default all) predicted right."""
        rows = np.arange(self.n) if classes is None else np.asarray(list(classes))
        tot = self.counts[rows].sum()
        return float(self.counts[rows, rows].sum() / tot) if tot else float("nan")


# --------------------------------------------------------------------------------------------
# Location prior
# --------------------------------------------------------------------------------------------
@dataclass
class LocationPrior:
    """The most frequent label of each cell of a (gh, gw) grid over normalised image positions."""

    labels: np.ndarray  # (gh, gw) uint8

    @classmethod
    def fit(cls, targets: Iterable[np.ndarray], grid: tuple[int, int], n: int) -> LocationPrior:
        """targets: (H, W) label images of any sizes (255 = none), labels < n."""
        gh, gw = grid
        counts = np.zeros((gh * gw, n), dtype=np.int64)
        for t in targets:
            H, W = t.shape
            v, u = np.nonzero(t < n)
            cell = (v * gh // H) * gw + (u * gw // W)
            np.add.at(counts, (cell, t[v, u].astype(np.int64)), 1)
        if not counts.any():
            raise ValueError("no labelled pixel to fit the location prior on")
        overall = int(counts.sum(0).argmax())
        labels = np.where(counts.any(1), counts.argmax(1), overall).astype(np.uint8)
        return cls(labels.reshape(gh, gw))

    def predict(self, hw: tuple[int, int]) -> np.ndarray:
        """(H, W) uint8 labels for an image of size hw."""
        H, W = hw
        gh, gw = self.labels.shape
        return self.labels[(np.arange(H) * gh // H)[:, None], (np.arange(W) * gw // W)[None, :]]


# --------------------------------------------------------------------------------------------
# Scores
# --------------------------------------------------------------------------------------------
def camvid_confusion(label_fn: LabelFn, root: str, split: str = "test", camvid_labels: bool = False) -> Confusion:
    """11-class confusion of `label_fn` on a CamVid split. label_fn returns SemanticKITTI labels
    (mapped to CamVid here), or CamVid ids with `camvid_labels`."""
    lut = kitti_to_camvid_lut()
    conf = Confusion(len(CAMVID_CLASSES))
    for f in camvid_frames(root, split):
        ref = read_camvid_label(f.label)
        pred = label_fn(read_camvid_image(f.image))
        conf.add(np.where(ref == CAMVID_VOID, IGNORE_LABEL, ref), pred if camvid_labels else lut[pred])
    return conf


def kitti_point_confusion(label_fn: LabelFn, root: str, sequences: Iterable[str]) -> tuple[Confusion, list[str]]:
    """20-class confusion of `label_fn` at the LiDAR pixels of the labelled frames of `sequences`
    (root/sequences/XX); returns it with the frames scored."""
    conf = Confusion(NUM_CLASSES)
    names = []
    for seq in sequences:
        paths = sk.SequencePaths(root, seq)
        calib = sk.read_calib(paths.calib, required=("P2", "Tr"))
        for f in labelled_frames(paths):
            image, ref = frame_label_image(paths, f, calib)
            conf.add(ref, label_fn(image))
            names.append(f"{seq}/{f}")
    if not names:
        raise sk.DataFormatError(f"no labelled frame in {root} sequences {list(sequences)}")
    return conf, names


def camvid_prior(root: str) -> LocationPrior:
    """Location prior of CamVid's train split, per pixel (CamVid ids)."""
    frames = camvid_frames(root, "train")
    H, W = read_camvid_label(frames[0].label).shape
    targets = (np.where((lab := read_camvid_label(f.label)) == CAMVID_VOID, IGNORE_LABEL, lab) for f in frames)
    return LocationPrior.fit(targets, (H, W), len(CAMVID_CLASSES))


def kitti_prior(root: str, sequences: Iterable[str], cell: int = 8) -> LocationPrior:
    """Location prior of the training drives' LiDAR pixels in cells of `cell` pixels (KITTI's
    370x1226 frame: 47x154 cells)."""
    targets = []
    for seq in sequences:
        paths = sk.SequencePaths(root, seq)
        calib = sk.read_calib(paths.calib, required=("P2", "Tr"))
        targets += [frame_label_image(paths, f, calib)[1] for f in labelled_frames(paths)]
    H, W = targets[0].shape
    return LocationPrior.fit(targets, (-(-H // cell), -(-W // cell)), NUM_CLASSES)


def summary(camvid: Confusion | None, kitti: Confusion | None) -> dict:
    """The report's figures (percent) of one predictor."""
    out: dict = {}
    if camvid is not None:
        iou = camvid.iou()
        out["camvid"] = {"miou": 100 * float(np.nanmean(iou)), "pixel_accuracy": 100 * camvid.accuracy(),
                         "iou": {n: 100 * float(v) for n, v in zip(CAMVID_CLASSES, iou, strict=True)}}
    if kitti is not None:
        names = load_class_table().names
        rec = kitti.recall()
        out["kitti"] = {"street_accuracy": 100 * kitti.accuracy(STREET_CLASSES),
                        "point_accuracy": 100 * kitti.accuracy(range(1, NUM_CLASSES)),
                        "recall": {names[c]: 100 * float(rec[c]) for c in range(1, NUM_CLASSES)
                                   if not np.isnan(rec[c])}}
    return out


def format_report(rows: dict[str, dict]) -> str:
    """Markdown tables: the headline figures per predictor, then CamVid IoU per class, then the
    KITTI recall of the street classes."""
    names = load_class_table().names
    street = [names[c] for c in STREET_CLASSES]
    head = ["predictor", "CamVid mIoU", "CamVid pixel acc.", "CamVid car IoU", "KITTI street acc.",
            "KITTI all-points acc.", *[f"{n} recall" for n in street]]
    lines = ["| " + " | ".join(head) + " |", "|---" * len(head) + "|"]
    for name, s in rows.items():
        c, k = s.get("camvid"), s.get("kitti")
        vals = ([f"{c['miou']:.1f}", f"{c['pixel_accuracy']:.1f}", f"{c['iou']['car']:.1f}"] if c else ["-"] * 3)
        vals += ([f"{k['street_accuracy']:.1f}", f"{k['point_accuracy']:.1f}"]
                 + [f"{k['recall'].get(n, float('nan')):.1f}" for n in street] if k else ["-"] * (2 + len(street)))
        lines.append("| " + " | ".join([name, *vals]) + " |")
    with_camvid = {n: s["camvid"] for n, s in rows.items() if "camvid" in s}
    if with_camvid:
        lines += ["", "CamVid IoU per class:", "",
                  "| predictor | " + " | ".join(CAMVID_CLASSES) + " |", "|---" * (len(CAMVID_CLASSES) + 1) + "|"]
        lines += [f"| {n} | " + " | ".join(f"{c['iou'][k]:.1f}" for k in CAMVID_CLASSES) + " |"
                  for n, c in with_camvid.items()]
    return "\n".join(lines)
