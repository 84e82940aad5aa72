"""The stereo matcher (cigocc_ros/stereo.py): padded border, left-right check, confidence."""
from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from cigocc_ros.stereo import StereoDepth, StereoParams

FX, BASELINE = 700.0, 0.5


def pair(shift: int, h: int = 96, w: int = 320, seed: int = 0):
    """A textured left image and its right view: left pixel x is right pixel x - shift."""
    rng = np.random.default_rng(seed)
    base = np.repeat(np.kron(rng.integers(0, 256, (h // 2, (w + shift) // 2 + 1)), np.ones((2, 2)))[:, :w + shift, None],
                     3, axis=2).astype(np.uint8)
    return base[:, :w].copy(), base[:, shift:shift + w].copy()


def test_padded_border_is_matched_and_unpadded_is_not():
    left, right = pair(10)
    padded = StereoDepth(FX, BASELINE).match(left, right)
    plain = StereoDepth(FX, BASELINE, StereoParams(pad_border=False)).match(left, right)
    border = (slice(8, -8), slice(20, 120))  # inside the first num_disparities (128) columns
    assert (plain.disparity[border] == 0).all()
    d = padded.disparity[border]
    assert (d > 0).mean() > 0.9
    assert np.median(d[d > 0]) == pytest.approx(10, abs=0.1)
    assert np.median(padded.depth[border][d > 0]) == pytest.approx(FX * BASELINE / 10, rel=0.01)


def test_left_right_check_refuses_what_the_right_camera_cannot_see():
    left, right = pair(12, seed=1)
    rng = np.random.default_rng(5)
    left[30:70, 200:240] = rng.integers(0, 256, (40, 40, 1))  # texture only the left camera sees
    checked = StereoDepth(FX, BASELINE).match(left, right)
    unchecked = StereoDepth(FX, BASELINE, StereoParams(lr_max_diff=0.0)).match(left, right)
    hidden = (slice(34, 66), slice(204, 236))
    assert (checked.disparity[hidden] > 0).mean() < 0.5 * max((unchecked.disparity[hidden] > 0).mean(), 0.2)
    # Where both see the same texture the check keeps nearly everything.
    seen = (slice(10, -10), slice(140, 190))
    assert (checked.disparity[seen] > 0).mean() > 0.9


def test_confidence_is_zero_without_depth_and_in_unit_range():
    left, right = pair(16, seed=2)
    res = StereoDepth(FX, BASELINE).match(left, right)
    assert res.confidence.dtype == np.float32 and res.confidence.shape == left.shape[:2]
    assert (res.confidence[res.depth == 0] == 0).all()
    assert res.confidence.min() >= 0 and res.confidence.max() <= 1
    assert np.median(res.confidence[res.depth > 0]) > 0.8  # a clean shift: confident
    assert (res.depth > 0).any()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="mode"):
        StereoDepth(FX, BASELINE, dataclasses.replace(StereoParams(), mode="fast"))
    with pytest.raises(ValueError, match="baseline"):
        StereoDepth(FX, -0.1)
