"""Camera geometry shared by the data layer, the model and the node.

Frames: the *grid* frame is SemanticKITTI's velodyne frame (x forward, y left, z up); the
*camera* frame is the rectified optical frame of the left colour camera (x right, y down,
z forward). `T_cam_grid` (4, 4) maps grid-frame points into the camera frame, so a point X
projects to pixel (u, v) = (K @ (T_cam_grid @ [X; 1])[:3]) / z.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class CameraModel:
    """Intrinsics K (3, 3) and extrinsics T_cam_grid (4, 4) of one image of size (H, W)."""

    K: np.ndarray
    T_cam_grid: np.ndarray
    image_size: tuple[int, int]  # (H, W)


def split_projection(P: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rectified 3x4 projection P = K [I | t] -> (K (3, 3), T (4, 4) from the reference
    rectified camera (cam0) to this camera). KITTI's P2/P3 carry the stereo offset in P[:, 3]."""
    P = np.asarray(P, dtype=np.float64).reshape(3, 4)
    K = P[:, :3].copy()
    T = np.eye(4)
    T[:3, 3] = np.linalg.solve(K, P[:, 3])
    return K, T


def camera_from_calib(P: np.ndarray, Tr: np.ndarray, image_size: tuple[int, int]) -> CameraModel:
    """CameraModel of the camera with rectified projection P (3x4), given Tr (velodyne -> cam0)."""
    K, T_cam_cam0 = split_projection(P)
    Tr4 = np.eye(4)
    Tr4[:3, :4] = np.asarray(Tr, dtype=np.float64).reshape(3, 4)
    return CameraModel(K, T_cam_cam0 @ Tr4, tuple(image_size))


def stereo_baseline(P_left: np.ndarray, P_right: np.ndarray) -> float:
    """Baseline in metres between two rectified cameras from their 3x4 projections."""
    _, T_l = split_projection(P_left)
    _, T_r = split_projection(P_right)
    return float(abs(T_l[0, 3] - T_r[0, 3]))


def crop_or_pad(image: np.ndarray, K: np.ndarray, size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Fit an (H, W, ...) image to `size` = (h, w) without resampling.

    Rows: keep the bottom h rows (the road and the objects on it; the sky carries no voxels),
    or pad zeros at the top. Columns: keep / pad symmetrically about the centre. Returns the new
    image and the K (3, 3) that keeps every pixel's ray unchanged.
    """
    H, W = image.shape[:2]
    h, w = size
    top = H - h  # > 0 crops rows from the top, < 0 pads
    left = (W - w) // 2
    out = np.zeros((h, w) + image.shape[2:], dtype=image.dtype)
    src_r0, dst_r0 = max(top, 0), max(-top, 0)
    src_c0, dst_c0 = max(left, 0), max(-left, 0)
    nr = min(H - src_r0, h - dst_r0)
    nc = min(W - src_c0, w - dst_c0)
    out[dst_r0:dst_r0 + nr, dst_c0:dst_c0 + nc] = image[src_r0:src_r0 + nr, src_c0:src_c0 + nc]
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 2] -= left
    K2[1, 2] -= top
    return out, K2


RIGID_TOLERANCE = 1e-3


def rigid_transform_error(T: np.ndarray, tol: float = RIGID_TOLERANCE) -> str | None:
    """Why (4, 4) `T` is not a rigid transform (rotation + translation), or None when it is.

    The 3x3 block must be a proper rotation: orthonormal (max |R^T R - I| <= tol) with
    det(R) = +1 (within tol; -1 is a reflection, e.g. a swapped axis), all finite, last row
    0 0 0 1. `tol` absorbs matrices typed with 4-6 significant digits (KITTI's calib: ~1e-6).
    """
    T = np.asarray(T, dtype=np.float64)
    if T.shape != (4, 4):
        return f"must be 4x4, got shape {T.shape}"
    if not np.all(np.isfinite(T)):
        return "holds NaN or inf"
    if not np.allclose(T[3], (0.0, 0.0, 0.0, 1.0), rtol=0.0, atol=tol):
        return f"last row must be 0 0 0 1, got {T[3].tolist()}"
    R = T[:3, :3]
    ortho = float(np.abs(R.T @ R - np.eye(3)).max())
    if ortho > tol:
        return f"rotation block is not orthonormal (max |R^T R - I| = {ortho:.3g} > {tol:g})"
    det = float(np.linalg.det(R))
    if abs(det - 1.0) > tol:
        return f"rotation block has determinant {det:.4g}, not +1 (a reflection)"
    return None


def project(points: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Project (N, 3) grid-frame points -> ((N, 2) pixel uv, (N,) camera depth z)."""
    pts = np.asarray(points, dtype=np.float64)
    cam = pts @ T_cam_grid[:3, :3].T + T_cam_grid[:3, 3]
    z = cam[:, 2]
    with np.errstate(divide="ignore", invalid="ignore"):
        uv = (cam @ np.asarray(K, dtype=np.float64).T)[:, :2] / z[:, None]
    return uv, z


def voxel_centers(size: tuple[int, int, int], voxel_size: float, origin: tuple[float, float, float]) -> np.ndarray:
    """(X, Y, Z, 3) float32 centres of every voxel of the grid, in the grid frame."""
    axes = [origin[i] + (np.arange(size[i], dtype=np.float32) + 0.5) * voxel_size for i in range(3)]
    return np.stack(np.meshgrid(*axes, indexing="ij"), axis=-1).astype(np.float32)


def flip_horizontal(image: np.ndarray, K: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mirror an (H, W, ...) image left-right and return (image, K, F).

    F (4, 4) mirrors the camera frame (x -> -x); with it a flipped sample stays consistent:
    use T_cam_grid' = F @ T_cam_grid @ M where M mirrors the grid's y axis (y -> -y), which
    the caller applies to the targets by flipping their Y axis. The principal point moves to
    W - 1 - cx.
    """
    W = image.shape[1]
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 2] = (W - 1) - K2[0, 2]
    F = np.diag([-1.0, 1.0, 1.0, 1.0])
    return image[:, ::-1].copy(), K2, F
