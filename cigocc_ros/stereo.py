"""Metric depth from a rectified stereo pair with OpenCV's semi-global block matching.

depth = fx * baseline / disparity in the LEFT image's pixels and camera frame (metres);
pixels without a valid disparity get 0 (the data contract's "no value"). Used by the
dataset's stereo mode and by the node when `stereo` is on.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class StereoParams:
    """StereoSGBM settings. 128 disparities reach down to fx*b/128 ~ 3 m on KITTI (fx 718,
    b 0.54 m); the near range below that is covered by the monocular depth branch."""

    num_disparities: int = 128  # multiple of 16
    block_size: int = 5  # odd
    uniqueness_ratio: int = 10
    speckle_window: int = 100
    speckle_range: int = 2
    disp12_max_diff: int = 1
    min_depth: float = 0.5
    max_depth: float = 80.0


class StereoDepth:
    """Reusable matcher for pairs of one camera rig: `depth = StereoDepth(fx, b)(left, right)`."""

    def __init__(self, fx: float, baseline: float, params: StereoParams | None = None):
        if fx <= 0 or baseline <= 0:
            raise ValueError(f"stereo needs fx > 0 and baseline > 0, got fx={fx}, baseline={baseline}")
        self.fx = float(fx)
        self.baseline = float(baseline)
        self.params = p = params or StereoParams()
        if p.num_disparities % 16 or p.block_size % 2 == 0:
            raise ValueError("num_disparities must be a multiple of 16 and block_size odd")
        channels = 1
        self._sgbm = cv2.StereoSGBM_create(
            minDisparity=0,
            numDisparities=p.num_disparities,
            blockSize=p.block_size,
            P1=8 * channels * p.block_size**2,
            P2=32 * channels * p.block_size**2,
            disp12MaxDiff=p.disp12_max_diff,
            uniquenessRatio=p.uniqueness_ratio,
            speckleWindowSize=p.speckle_window,
            speckleRange=p.speckle_range,
            mode=cv2.STEREO_SGBM_MODE_SGBM,
        )

    def disparity(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """(H, W) float32 disparity in pixels of the left image; <= 0 where matching failed."""
        lg, rg = _gray(left), _gray(right)
        if lg.shape != rg.shape:
            raise ValueError(f"stereo pair sizes differ: left {lg.shape}, right {rg.shape}")
        return self._sgbm.compute(lg, rg).astype(np.float32) / 16.0  # SGBM returns 1/16 px

    def __call__(self, left: np.ndarray, right: np.ndarray) -> np.ndarray:
        """(H, W) float32 metric depth of the left image, 0 = no value."""
        disp = self.disparity(left, right)
        depth = np.zeros_like(disp)
        ok = disp > 0
        depth[ok] = self.fx * self.baseline / disp[ok]
        depth[(depth < self.params.min_depth) | (depth > self.params.max_depth)] = 0.0
        return depth


def _gray(img: np.ndarray) -> np.ndarray:
    a = np.asarray(img)
    if a.dtype != np.uint8:
        raise ValueError(f"stereo images must be uint8, got {a.dtype}")
    if a.ndim == 3:
        return cv2.cvtColor(a, cv2.COLOR_RGB2GRAY)
    if a.ndim == 2:
        return a
    raise ValueError(f"stereo images must be (H, W) or (H, W, 3), got {a.shape}")
