"""`cigocc infer` with stereo input (a sequence folder's image_3, or --right files) on real
shared frames, and its one-line errors (exit code 2)."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
from model_fixtures import tiny_checkpoint

from cigocc_ros import cli
from cigocc_ros.data import semantic_kitti as sk

GRID = (32, 32, 8)


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return tiny_checkpoint(tmp_path_factory.mktemp("w") / "tiny.safetensors")


def _infer(*args) -> int:
    return cli.main(["infer", *map(str, args), "--device", "cpu", "--no-render"])


def test_stereo_from_a_sequence_folder_and_from_files(kitti_samples, tiny_weights, tmp_path, capsys):
    seq = kitti_samples / "sequences" / "10"
    assert _infer(seq, "--weights", tiny_weights, "--every", "5", "--out", tmp_path / "mono") == 0
    assert _infer(seq, "--stereo", "--weights", tiny_weights, "--every", "5", "--out", tmp_path / "st") == 0
    assert "(stereo)" in capsys.readouterr().out
    mono = sk.read_voxel_labels(tmp_path / "mono" / "000000.label", GRID)
    stereo = sk.read_voxel_labels(tmp_path / "st" / "000000.label", GRID)
    assert not np.array_equal(mono, stereo)  # the depth input reached the network
    assert _infer(seq / "image_2" / "000000.png", "--right", seq / "image_3" / "000000.png",
                  "--calib", seq / "calib.txt", "--weights", tiny_weights, "--out", tmp_path / "files") == 0
    np.testing.assert_array_equal(sk.read_voxel_labels(tmp_path / "files" / "000000.label", GRID), stereo)


def test_user_mistakes_end_in_one_line_and_exit_2(kitti_samples, tiny_weights, tmp_path, capsys):
    src = kitti_samples / "sequences" / "10"
    seq = tmp_path / "10"
    shutil.copytree(src, seq, ignore=shutil.ignore_patterns("velodyne", "labels", "voxels"))
    calib = sk.read_calib(seq / "calib.txt")
    no_tr = tmp_path / "no_tr.txt"
    sk.write_calib(no_tr, {k: v for k, v in calib.items() if k != "Tr"})
    small = tmp_path / "small.png"
    sk.write_image(small, sk.read_image(src / "image_3" / "000000.png")[:200])
    left = src / "image_2" / "000000.png"
    cases = [
        ([left, "--calib", no_tr], "Tr"),
        ([left, "--right", left, "--calib", no_tr], "Tr"),
        ([tmp_path / "nope.png", "--calib", seq / "calib.txt"], "nope.png"),
        ([left, "--right", small, "--calib", seq / "calib.txt"], "right image"),
        ([left, "--right", left, left, "--calib", seq / "calib.txt"], "--right"),
        ([left], "--calib"),
        ([seq, "--weights", tmp_path / "missing.safetensors"], "missing.safetensors"),
    ]
    (seq / "image_3" / "000004.png").unlink()
    cases.append(([seq, "--stereo"], "000004.png"))
    for args, needle in cases:
        extra = [] if "--weights" in map(str, args) else ["--weights", tiny_weights]
        assert _infer(*args, *extra, "--out", tmp_path / "o") == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and err[0].startswith("error:") and needle in err[0], (args, err)
