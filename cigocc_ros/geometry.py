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
    """Baseline in metres of a rectified pair from its 3x4 projections (KITTI calib.txt P's or
    ROS CameraInfo P's, whose right P[0, 3] = -fx * baseline): positive when the right camera
    is to the right of the left one, as a stereo matcher needs."""
    _, T_l = split_projection(P_left)
    _, T_r = split_projection(P_right)
    return float(T_l[0, 3] - T_r[0, 3])


def orthonormalize(R: np.ndarray) -> np.ndarray:
    """The rotation (3, 3) nearest to R: KITTI's Tr and poses are rounded, and a quaternion
    of a matrix that is not quite a rotation is not quite unit."""
    U, _, Vt = np.linalg.svd(np.asarray(R, dtype=np.float64))
    R = U @ Vt
    if np.linalg.det(R) < 0:
        U[:, -1] *= -1
        R = U @ Vt
    return R


def quaternion_xyzw(R: np.ndarray) -> np.ndarray:
    """(3, 3) rotation -> (4,) unit quaternion (x, y, z, w), w >= 0 (ROS order)."""
    m = orthonormalize(R)
    t = np.trace(m)
    # Branch on the largest of w, x, y, z for numerical stability (Shepperd's method).
    k = int(np.argmax([t, m[0, 0], m[1, 1], m[2, 2]]))
    if k == 0:
        s = 2.0 * np.sqrt(1.0 + t)
        q = [(m[2, 1] - m[1, 2]) / s, (m[0, 2] - m[2, 0]) / s, (m[1, 0] - m[0, 1]) / s, s / 4]
    elif k == 1:
        s = 2.0 * np.sqrt(1.0 + m[0, 0] - m[1, 1] - m[2, 2])
        q = [s / 4, (m[0, 1] + m[1, 0]) / s, (m[0, 2] + m[2, 0]) / s, (m[2, 1] - m[1, 2]) / s]
    elif k == 2:
        s = 2.0 * np.sqrt(1.0 + m[1, 1] - m[0, 0] - m[2, 2])
        q = [(m[0, 1] + m[1, 0]) / s, s / 4, (m[1, 2] + m[2, 1]) / s, (m[0, 2] - m[2, 0]) / s]
    else:
        s = 2.0 * np.sqrt(1.0 + m[2, 2] - m[0, 0] - m[1, 1])
        q = [(m[0, 2] + m[2, 0]) / s, (m[1, 2] + m[2, 1]) / s, s / 4, (m[1, 0] - m[0, 1]) / s]
    q = np.array(q)
    q /= np.linalg.norm(q)
    return q if q[3] >= 0 else -q


def quaternion_matrix(x: float, y: float, z: float, w: float) -> np.ndarray:
    """Unit quaternion (x, y, z, w) -> (3, 3) rotation."""
    return np.array([
        [1 - 2 * (y * y + z * z), 2 * (x * y - z * w), 2 * (x * z + y * w)],
        [2 * (x * y + z * w), 1 - 2 * (x * x + z * z), 2 * (y * z - x * w)],
        [2 * (x * z - y * w), 2 * (y * z + x * w), 1 - 2 * (x * x + y * y)],
    ])


def rotation_vector(R: np.ndarray) -> np.ndarray:
    """Log map of a rotation (3, 3) with angle < pi -> axis * angle (3,)."""
    cos = np.clip((np.trace(R) - 1.0) / 2.0, -1.0, 1.0)
    angle = np.arccos(cos)
    vee = np.array([R[2, 1] - R[1, 2], R[0, 2] - R[2, 0], R[1, 0] - R[0, 1]]) / 2.0
    return vee if angle < 1e-9 else vee * (angle / np.sin(angle))


def _fit_window(image_hw: tuple[int, int], size: tuple[int, int], shift: tuple[int, int] = (0, 0)
                ) -> tuple[int, int, slice, slice, slice, slice]:
    """crop_or_pad's placement: (top, left, source rows, source cols, target rows, target cols),
    top / left > 0 cropping the image, < 0 padding it."""
    H, W = image_hw
    h, w = size
    top = H - h + shift[0]  # > 0 crops rows from the top, < 0 pads
    left = (W - w) // 2 + shift[1]
    if H >= h:
        top = min(max(top, 0), H - h)
    if W >= w:
        left = min(max(left, 0), W - w)
    src_r0, dst_r0 = max(top, 0), max(-top, 0)
    src_c0, dst_c0 = max(left, 0), max(-left, 0)
    nr = min(H - src_r0, h - dst_r0)
    nc = min(W - src_c0, w - dst_c0)
    return (top, left, slice(src_r0, src_r0 + nr), slice(src_c0, src_c0 + nc), slice(dst_r0, dst_r0 + nr),
            slice(dst_c0, dst_c0 + nc))


def crop_or_pad(image: np.ndarray, K: np.ndarray, size: tuple[int, int],
                shift: tuple[int, int] = (0, 0)) -> tuple[np.ndarray, np.ndarray]:
    """Fit an (H, W, ...) image to `size` = (h, w) without resampling.

    Rows: keep the bottom h rows (the road and the objects on it; the sky carries no voxels),
    or pad zeros at the top. Columns: keep / pad symmetrically about the centre. `shift`
    (rows, cols) moves that window (training augmentation), kept inside the image along an
    axis the image covers. Returns the new image and the K (3, 3) that keeps every pixel's ray
    unchanged.
    """
    top, left, sr, sc, dr, dc = _fit_window(image.shape[:2], size, shift)
    out = np.zeros(tuple(size) + image.shape[2:], dtype=image.dtype)
    out[dr, dc] = image[sr, sc]
    K2 = np.asarray(K, dtype=np.float64).copy()
    K2[0, 2] -= left
    K2[1, 2] -= top
    return out, K2


def uncrop(values: np.ndarray, image_hw: tuple[int, int], fill: int = 0) -> np.ndarray:
    """The inverse of crop_or_pad for a per-pixel map: (h, w) values over the model's input ->
    (H, W) over the original image; pixels the model did not see (cropped away) get `fill`."""
    _, _, sr, sc, dr, dc = _fit_window(tuple(image_hw), values.shape[:2])
    out = np.full(tuple(image_hw) + values.shape[2:], fill, dtype=values.dtype)
    out[sr, sc] = values[dr, dc]
    return out


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


def crop_window(image_hw: tuple[int, int], size: tuple[int, int]) -> tuple[int, int, int, int]:
    """(v0, v1, u0, u1): the rows [v0, v1) and columns [u0, u1) of an (H, W) image that
    `crop_or_pad(image, K, size)` keeps; the rest of the model's input is zero padding, so these
    pixels are all the model sees."""
    H, W = (int(v) for v in image_hw)
    h, w = (int(v) for v in size)
    v0 = max(H - h, 0)
    left = (W - w) // 2
    u0 = max(left, 0)
    u1 = u0 + min(W - u0, w - max(-left, 0))
    return v0, H, u0, u1


def in_view(points: np.ndarray, K: np.ndarray, T_cam_grid: np.ndarray,
            window: tuple[int, int, int, int], min_depth: float = 1e-3) -> np.ndarray:
    """(N,) bool: grid-frame points (N, 3) in front of the camera (z > min_depth) that project
    into the pixel `window` (v0, v1, u0, u1) of crop_window, i.e. inside the camera frustum."""
    uv, z = project(points, K, T_cam_grid)
    v0, v1, u0, u1 = window
    with np.errstate(invalid="ignore"):
        return (z > min_depth) & (uv[:, 0] >= u0) & (uv[:, 0] < u1) & (uv[:, 1] >= v0) & (uv[:, 1] < v1)


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
