"""The SemanticKITTI semantic-scene-completion metric, as semantic-kitti-api's
`evaluate_completion.py` computes it.

One confusion matrix (rows = prediction, columns = ground truth, 20 x 20) is accumulated over
every frame of a split; voxels whose ground truth is 255 or whose `invalid` bit is set are
dropped first. From it:
- per-class IoU = tp / (tp + fp + fn + 1e-15) and mIoU = mean over classes 1..19;
- completion (scene) IoU, precision and recall of occupied (any class 1..19) vs empty (0):
  IoU = sum(C[1:, 1:]) / (sum(C) - C[0, 0]), precision = sum(C[1:, 1:]) / (sum(C[1:, :]) + eps),
  recall = sum(C[1:, 1:]) / (sum(C[:, 1:]) + eps), eps = float32 machine epsilon.
The same float operations in the same order make the figures identical to the official ones.
"""
from __future__ import annotations

import numpy as np

from ..classes import IGNORE_LABEL, NUM_CLASSES, load_class_table

EPS = np.finfo(np.float32).eps

# Column order of the results tables of MonoScene, VoxFormer, CGFormer and CIGOcc.
PAPER_ORDER = (
    "road", "sidewalk", "parking", "other-ground", "building", "car", "truck", "bicycle",
    "motorcycle", "other-vehicle", "vegetation", "trunk", "terrain", "person", "bicyclist",
    "motorcyclist", "fence", "pole", "traffic-sign",
)


class SSCMetric:
    """Accumulates the SSC confusion matrix over a split; `compute()` gives the figures."""

    def __init__(self, num_classes: int = NUM_CLASSES):
        self.num_classes = num_classes
        self.reset()

    def reset(self) -> None:
        self.conf = np.zeros((self.num_classes, self.num_classes), dtype=np.int64)

    def add(self, pred: np.ndarray, target: np.ndarray, invalid: np.ndarray | None = None) -> None:
        """Add one frame or a batch: pred labels 0..C-1 and target labels 0..C-1 / 255 of the
        same shape ((X, Y, Z) or (B, X, Y, Z)); optional `invalid` (same shape, bool/0-1)."""
        pred = _as_numpy(pred).reshape(-1)
        target = _as_numpy(target).reshape(-1)
        if pred.shape != target.shape:
            raise ValueError(f"prediction has {pred.size} voxels, target {target.size}")
        keep = target != IGNORE_LABEL
        if invalid is not None:
            inv = _as_numpy(invalid).reshape(-1)
            if inv.shape != target.shape:
                raise ValueError(f"invalid mask has {inv.size} voxels, target {target.size}")
            keep &= inv != 1
        p = pred[keep].astype(np.int64)
        t = target[keep].astype(np.int64)
        n = self.num_classes
        for name, arr in (("prediction", p), ("target", t)):
            if arr.size and (arr.min() < 0 or arr.max() >= n):
                raise ValueError(f"{name} labels must be 0..{n - 1} (255 only in the target)")
        self.conf += np.bincount(p * n + t, minlength=n * n).reshape(n, n)

    def compute(self) -> dict:
        """{'iou', 'precision', 'recall', 'miou': float, 'iou_per_class': (C,) float64} in [0, 1]."""
        conf = self.conf
        tp = np.diag(conf)
        fp = conf.sum(axis=1) - tp
        fn = conf.sum(axis=0) - tp
        iou_per_class = tp / (tp + fp + fn + 1e-15)
        occ = np.sum(conf[1:, 1:])
        return {
            "iou": float(occ / (np.sum(conf) - conf[0, 0])) if np.sum(conf) - conf[0, 0] else 0.0,
            "precision": float(occ / (np.sum(conf[1:, :]) + EPS)),
            "recall": float(occ / (np.sum(conf[:, 1:]) + EPS)),
            "miou": float(iou_per_class[1:].mean()),
            "iou_per_class": iou_per_class,
        }

    def summary(self) -> dict:
        """JSON-able figures in percent: iou, precision, recall, miou, per_class {name: IoU}."""
        r = self.compute()
        names = load_class_table().names
        out = {k: 100.0 * r[k] for k in ("iou", "precision", "recall", "miou")}
        out["per_class"] = {names[i]: 100.0 * float(r["iou_per_class"][i]) for i in range(1, self.num_classes)}
        return out

    def table(self, method: str = "CIGOcc (ours)") -> str:
        """The papers' results table (percent): IoU, mIoU, then the 19 classes in paper order."""
        return format_table(self.summary(), method)


def format_table(summary: dict, method: str = "CIGOcc (ours)") -> str:
    """The papers' table from SSCMetric.summary() (percent): precision, recall, IoU, mIoU, then
    the 19 classes in the papers' order."""
    return format_rows([(method, summary)])


def format_rows(rows: list[tuple[str, dict]]) -> str:
    """The papers' table with one row per (method, SSCMetric.summary()) pair, columns aligned
    (the model beside its controls)."""
    cols = ["Method", "Prec.", "Rec.", "IoU", "mIoU", *PAPER_ORDER]
    table = [[method, *(f"{summary[k]:.2f}" for k in ("precision", "recall", "iou", "miou")),
              *(f"{summary['per_class'][c]:.2f}" for c in PAPER_ORDER)] for method, summary in rows]
    widths = [max(len(c), *(len(r[i]) for r in table)) for i, c in enumerate(cols)]

    def line(xs: list[str]) -> str:
        return "| " + " | ".join(x.rjust(w) for x, w in zip(xs, widths, strict=True)) + " |"

    rule = "|" + "|".join("-" * (w + 1) + ":" for w in widths) + "|"
    return "\n".join([line(cols), rule, *(line(r) for r in table)])


def _as_numpy(x) -> np.ndarray:
    if hasattr(x, "detach"):  # torch tensor, without importing torch here
        x = x.detach().cpu().numpy()
    return np.asarray(x)
