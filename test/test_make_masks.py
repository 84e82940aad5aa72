"""Teacher masks: LiDAR voting over SAM masks, and the SAM path end to end (random SAM weights:
the pipeline is real, only the checkpoint is not a trained one, since none can be downloaded)."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from cigocc_ros.classes import IGNORE_LABEL
from cigocc_ros.data import semantic_kitti as sk
from cigocc_ros.data.teacher_masks import (
    MissingDependency,
    SamTeacher,
    label_masks_by_votes,
    masks_to_class_image,
    paint_masks,
)


def test_votes_label_masks_and_small_masks_stay_on_top():
    H, W = 20, 30
    big = np.zeros((H, W), bool)
    big[:, :20] = True  # a building
    small = np.zeros((H, W), bool)
    small[5:8, 5:8] = True  # a sign on it
    lonely = np.zeros((H, W), bool)
    lonely[:, 25:] = True  # no points fall in it
    owner = paint_masks([big, small, lonely], (H, W))
    assert owner[6, 6] == 1 and owner[0, 0] == 0 and owner[0, 27] == 2 and owner[0, 22] == -1
    uv = np.array([[1, 1], [2, 15], [10, 10], [15, 15], [6, 6], [6.5, 6.5], [7, 5], [22, 3], [1, 2]], float)
    lab = np.array([13, 13, 13, 14, 19, 19, 13, 9, 255], np.uint8)
    classes = label_masks_by_votes(owner, 3, uv, lab, min_points=2)
    assert classes.tolist() == [13, 19, IGNORE_LABEL]
    img = masks_to_class_image(owner, classes)
    assert img[0, 0] == 13 and img[6, 6] == 19 and img[0, 27] == IGNORE_LABEL and img[0, 22] == IGNORE_LABEL
    # A mask whose majority is too weak stays undecided.
    tie = label_masks_by_votes(owner, 3, uv[[4, 6]], np.array([19, 13], np.uint8), min_points=2, min_share=0.6)
    assert tie[1] == IGNORE_LABEL


def test_missing_checkpoint_is_named(tmp_path):
    with pytest.raises(MissingDependency, match="nope.pth"):
        SamTeacher(str(tmp_path / "nope.pth"), "vit_b")


def test_a_cut_checkpoint_is_one_error_line(tmp_path, capsys):
    """SAM's loader (torch.load) on a checkpoint cut short: one line naming it, exit 2."""
    from tiny_kitti import write_tiny_sequence

    from cigocc_ros.cli.main import main

    seq = write_tiny_sequence(tmp_path / "seq", frames=1, labelled=())
    whole, ckpt = tmp_path / "whole.pth", tmp_path / "cut.pth"
    torch.save({"w": torch.zeros(50_000)}, whole)
    ckpt.write_bytes(whole.read_bytes()[:100_000])
    assert main(["make-masks", str(seq), "--sam-checkpoint", str(ckpt), "--sam-model", "vit_b", "--device", "cpu"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {ckpt}: not a readable SAM vit_b checkpoint") and err.count("\n") == 1, err


@pytest.mark.slow
def test_make_masks_command_writes_teacher_masks(tmp_path, kitti_samples):
    from segment_anything import sam_model_registry

    from cigocc_ros.cli import main

    # A real sequence layout: real grayscale frame 0, real calib, real labelled scan.
    src = kitti_samples / "sequences" / "00"
    seq = tmp_path / "sequences" / "00"
    sk.write_calib(seq / "calib.txt", sk.read_calib(src / "calib.txt"))
    sk.write_image(seq / "image_0" / "000000.png", sk.read_image(src / "image_0" / "000000.png"))
    sk.write_scan(seq / "velodyne" / "000000.bin", sk.read_scan(src / "velodyne" / "000000.bin"))
    sem, inst = sk.read_point_labels(src / "labels" / "000000.label")
    sk.write_point_labels(seq / "labels" / "000000.label", sem, inst)
    torch.manual_seed(0)
    ckpt = tmp_path / "sam_vit_b_random.pth"
    torch.save(sam_model_registry["vit_b"](checkpoint=None).state_dict(), ckpt)

    rc = main(["make-masks", str(seq), "--sam-checkpoint", str(ckpt), "--sam-model", "vit_b",
               "--points-per-side", "2", "--every", "1", "--device", "cpu"])
    assert rc == 0
    mask = sk.read_teacher_mask(seq / "teacher_masks" / "000000.png")
    assert mask.shape == (376, 1241) and mask.dtype == np.uint8
    assert set(np.unique(mask).tolist()) <= set(range(20)) | {IGNORE_LABEL}
