"""SSCMetric against the official semantic-kitti-api implementation (iouEval from PyPI, and the
completion figures of its evaluate_completion.py) on random and structured volumes."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from auxiliary.np_ioueval import iouEval

from cigocc_ros.evaluation.ssc_metric import PAPER_ORDER, SSCMetric


def official(frames: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> dict:
    """evaluate_completion.py's loop and final figures, with the official iouEval."""
    evaluator = iouEval(20, [])
    for pred, target, invalid in frames:
        mask = np.ones_like(target, dtype=bool)
        mask[target == 255] = False
        mask[invalid == 1] = False
        evaluator.addBatch(pred[mask], target[mask])
    _, class_jaccard = evaluator.getIoU()
    conf = evaluator.get_confusion()
    eps = np.finfo(np.float32).eps
    return {
        "conf": conf,
        "iou_per_class": class_jaccard,
        "miou": class_jaccard[1:].mean(),
        "precision": np.sum(conf[1:, 1:]) / (np.sum(conf[1:, :]) + eps),
        "recall": np.sum(conf[1:, 1:]) / (np.sum(conf[:, 1:]) + eps),
        "iou": (np.sum(conf[1:, 1:])) / (np.sum(conf) - conf[0, 0]),
    }


def ours(frames) -> tuple[SSCMetric, dict]:
    metric = SSCMetric()
    for pred, target, invalid in frames:
        metric.add(pred, target, invalid)
    return metric, metric.compute()


def assert_identical(mine: dict, ref: dict, metric: SSCMetric) -> None:
    np.testing.assert_array_equal(metric.conf, ref["conf"])
    np.testing.assert_array_equal(mine["iou_per_class"], ref["iou_per_class"])
    for key in ("miou", "precision", "recall", "iou"):
        assert mine[key] == float(ref[key]), key  # the same float, to the last digit


def random_frames(rng: np.random.Generator, n: int, shape=(64, 64, 8)):
    frames = []
    for _ in range(n):
        # Empty-heavy like real scenes: most voxels 0, some classes, ignore and invalid.
        target = np.where(rng.random(shape) < 0.7, 0, rng.integers(1, 20, shape)).astype(np.uint8)
        target[rng.random(shape) < 0.1] = 255
        pred = np.where(rng.random(shape) < 0.5, target, rng.integers(0, 20, shape)).astype(np.uint8)
        pred[pred == 255] = 0
        invalid = (rng.random(shape) < 0.2).astype(np.uint8)
        frames.append((pred, target, invalid))
    return frames


def structured_frame(shift: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """A full-size scene: road plane, sidewalk, a building wall, cars, poles, vegetation; the
    prediction is the scene shifted by `shift` voxels along x with one class confused."""
    X, Y, Z = 256, 256, 32
    t = np.zeros((X, Y, Z), dtype=np.uint8)
    t[:, 96:160, 8] = 9  # road
    t[:, 80:96, 9] = 11  # sidewalk
    t[:, 160:176, 9] = 11
    t[:, 60:64, 9:25] = 13  # building
    for x0 in range(20, 240, 40):
        t[x0:x0 + 20, 100:108, 9:16] = 1  # cars
        t[x0 + 5, 170, 10:24] = 18  # poles
    t[:, 176:200, 9:20] = 15  # vegetation
    t[:, 200:256, :] = 255  # unknown beyond
    invalid = np.zeros_like(t)
    invalid[:, :, :8] = 1  # under the road, never observed
    pred = np.roll(np.where(t == 255, 0, t), shift, axis=0)
    pred[pred == 15] = 17  # vegetation predicted as terrain
    return pred, t, invalid


def test_random_volumes_equal_official():
    frames = random_frames(np.random.default_rng(0), 5)
    metric, mine = ours(frames)
    assert_identical(mine, official(frames), metric)
    assert 0 < mine["miou"] < 1 and 0 < mine["iou"] < 1


def test_structured_volumes_equal_official():
    frames = [structured_frame(0), structured_frame(3)]
    metric, mine = ours(frames)
    ref = official(frames)
    assert_identical(mine, ref, metric)
    # Known structure: vegetation never predicted, terrain never present -> both IoU 0.
    assert mine["iou_per_class"][15] == 0 and mine["iou_per_class"][17] == 0
    assert mine["iou_per_class"][9] == 1.0  # road is invariant to the x shift


def test_perfect_prediction_and_ignored_voxels():
    pred, target, invalid = structured_frame(0)
    pred = np.where(target == 255, 7, target).astype(np.uint8)  # garbage where ignored
    pred[invalid == 1] = 5  # and where invalid: neither may count
    pred[pred == 17] = 15
    pred[target == 15] = 15
    metric = SSCMetric()
    metric.add(pred, target, invalid)
    r = metric.compute()
    assert r["iou"] == 1.0 and r["precision"] == pytest.approx(1.0) and r["recall"] == pytest.approx(1.0)
    present = [c for c in range(1, 20) if (target == c).any()]
    np.testing.assert_array_equal(r["iou_per_class"][present], 1.0)


def test_batched_torch_input_accumulates_like_frames():
    frames = random_frames(np.random.default_rng(1), 3, shape=(32, 32, 4))
    batched = SSCMetric()
    batched.add(torch.from_numpy(np.stack([f[0] for f in frames]).astype(np.int64)),
                torch.from_numpy(np.stack([f[1] for f in frames]).astype(np.int64)),
                torch.from_numpy(np.stack([f[2] for f in frames])))
    single, _ = ours(frames)
    np.testing.assert_array_equal(batched.conf, single.conf)


def test_bad_labels_are_rejected():
    metric = SSCMetric()
    target = np.zeros((4, 4, 4), np.uint8)
    with pytest.raises(ValueError, match="prediction labels"):
        metric.add(np.full((4, 4, 4), 255, np.uint8), target)
    with pytest.raises(ValueError, match="voxels"):
        metric.add(np.zeros((4, 4, 2), np.uint8), target)


def test_table_lists_every_class_in_paper_order():
    frames = [structured_frame(2)]
    metric, r = ours(frames)
    text = metric.table("test")
    header, _, row = text.splitlines()
    cols = [c.strip() for c in header.strip("|").split("|")]
    vals = [v.strip() for v in row.strip("|").split("|")]
    assert cols[5:] == list(PAPER_ORDER)
    assert vals[3] == f"{100 * r['iou']:.2f}" and vals[4] == f"{100 * r['miou']:.2f}"
    assert vals[cols.index("road")] == "100.00"
