"""Sim-to-real training augmentation: photometric changes of the image, and geometric ones that
keep the calibration consistent with the pixels.

Photometric (on (H, W, 3) float32 RGB in [0, 1]; strengths in DataConfig, 0 disables each):
exposure (a factor 2**U(-e, e): stops), gamma (image ** exp(U(-g, g))), white balance (per
channel gains in [1 - w, 1 + w]), saturation (the colour's distance from its grey times
U(1 - s, 1 + s)), Gaussian blur (probability `blur_prob`, sigma U(0.3, max)),
Gaussian pixel noise (sigma U(0, noise_std)). Real cameras differ from the synthetic renderer
in exactly these: exposure and response curve, colour cast, focus / motion blur, sensor noise;
so do two real cameras (KITTI's and CamVid's, in the 2D training: Seg2DConfig has the same
fields).

Geometric: a rescale of the whole frame by s in `scale_range` (K's focal lengths and principal
point scaled with it, pixel centres kept: u' = s (u + 0.5) - 0.5), then the model-size crop
window moved by up to `crop_shift` (rows, cols) pixels (K's principal point moved with it).
Every pixel's ray stays the ray of the same scene point, so the voxel targets are unchanged;
per-pixel maps (teacher masks, stereo depth) are resampled with the nearest pixel (depth is a
metric distance, not a disparity, so its values stay). LiDAR depth targets are projected
afterwards with the final K.
"""
from __future__ import annotations

import cv2
import numpy as np

from ..config import DataConfig, Seg2DConfig

Photometric = DataConfig | Seg2DConfig  # both carry the strengths below


def photometric_enabled(data: Photometric) -> bool:
    return any(v > 0 for v in (data.exposure, data.gamma, data.white_balance, data.saturation, data.blur_prob,
                               data.noise_std))


def geometric_enabled(data: DataConfig) -> bool:
    return tuple(data.scale_range) != (1.0, 1.0) or any(data.crop_shift)


def photometric(image: np.ndarray, data: Photometric, rng: np.random.Generator) -> np.ndarray:
    """(H, W, 3) float32 RGB in [0, 1] -> a new image with the enabled photometric changes."""
    img = image.astype(np.float32, copy=True)
    if data.exposure > 0:
        img *= np.float32(2.0 ** rng.uniform(-data.exposure, data.exposure))
    if data.gamma > 0:
        img = np.power(np.clip(img, 0.0, 1.0), np.float32(np.exp(rng.uniform(-data.gamma, data.gamma))))
    if data.white_balance > 0:
        img *= rng.uniform(1 - data.white_balance, 1 + data.white_balance, size=3).astype(np.float32)
    if data.saturation > 0:
        grey = img.mean(axis=2, keepdims=True)
        img = grey + (img - grey) * np.float32(rng.uniform(1 - data.saturation, 1 + data.saturation))
    if data.blur_prob > 0 and rng.random() < data.blur_prob:
        sigma = rng.uniform(0.3, max(data.blur_sigma, 0.3))
        img = cv2.GaussianBlur(img, (0, 0), sigmaX=sigma)
    if data.noise_std > 0:
        img += rng.normal(0.0, rng.uniform(0.0, data.noise_std), size=img.shape).astype(np.float32)
    return np.clip(img, 0.0, 1.0).astype(np.float32)


def rescale(image: np.ndarray, K: np.ndarray, maps: dict[str, np.ndarray], scale: float
            ) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """Resize an (H, W, ...) image by `scale` (bilinear) and (H, W) maps (nearest); returns the
    new image, its K (3, 3) and the maps."""
    H, W = image.shape[:2]
    h, w = max(1, round(H * scale)), max(1, round(W * scale))
    sx, sy = w / W, h / H
    out = cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA if scale < 1 else cv2.INTER_LINEAR)
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 0] *= sx
    K2[0, 2] = sx * (K2[0, 2] + 0.5) - 0.5
    K2[1, 1] *= sy
    K2[1, 2] = sy * (K2[1, 2] + 0.5) - 0.5
    resized = {k: cv2.resize(m, (w, h), interpolation=cv2.INTER_NEAREST) for k, m in maps.items()}
    return out, K2, resized


def draw_geometry(data: DataConfig, rng: np.random.Generator) -> tuple[float, int, int]:
    """(scale, row shift, column shift) of one sample."""
    lo, hi = data.scale_range
    scale = float(rng.uniform(lo, hi)) if hi > lo else float(lo)
    dr = int(rng.integers(-data.crop_shift[0], data.crop_shift[0] + 1)) if data.crop_shift[0] else 0
    dc = int(rng.integers(-data.crop_shift[1], data.crop_shift[1] + 1)) if data.crop_shift[1] else 0
    return scale, dr, dc
