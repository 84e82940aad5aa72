"""The SSC figures counted by hand (numpy, voxel by voxel), for tests that check a reported
figure against its inputs rather than only its range."""
from __future__ import annotations

import numpy as np

IGNORE = 255


def ssc_figures(preds, targets, num_classes: int = 20) -> dict:
    """IoU (occupied vs empty) and mIoU (classes 1..num_classes-1), percent, over voxels whose
    target is not 255; a class absent from predictions and targets counts 0 (SSCMetric's rule)."""
    tp = fp = fn = 0
    inter = np.zeros(num_classes, np.int64)
    union = np.zeros(num_classes, np.int64)
    for p, t in zip(preds, targets, strict=True):
        keep = np.asarray(t) != IGNORE
        p, t = np.asarray(p)[keep].astype(np.int64), np.asarray(t)[keep].astype(np.int64)
        tp += np.count_nonzero((p > 0) & (t > 0))
        fp += np.count_nonzero((p > 0) & (t == 0))
        fn += np.count_nonzero((p == 0) & (t > 0))
        for c in range(1, num_classes):
            inter[c] += np.count_nonzero((p == c) & (t == c))
            union[c] += np.count_nonzero((p == c) | (t == c))
    per_class = [inter[c] / union[c] if union[c] else 0.0 for c in range(1, num_classes)]
    return {"iou": 100.0 * tp / (tp + fp + fn), "miou": 100.0 * float(np.mean(per_class))}
